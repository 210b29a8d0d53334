//! A basic HTTP scenario: read pages, group dynamic paths under one metric, create an item
//! and check what the server answered.

use chaperon_sdk::prelude::*;

struct HttpBasic;

impl Scenario for HttpBasic {
    fn run(s: &mut Session) -> Result {
        let home = s.get("/")?;
        s.check("home is ok", home.ok());

        // `/items/1`, `/items/2`, ... share the histogram `/items/:id`.
        let items: u32 = s.config_or("http_basic.items", 3);
        for id in 1..=items {
            s.send(Request::get(format!("/items/{id}")).metric_name("/items/:id"))?;
        }

        let created = s.post_json("/items", &json!({ "name": "apple", "vu": s.vu() }))?;
        s.check("create returns 201", created.status == 201);
        let item: Value = created.json()?;
        s.check("create echoes the name", item["name"] == "apple");

        let echo = s.post("/echo", "hello")?;
        s.check("echo echoes the body", echo.text() == "hello");
        Ok(())
    }
}

export_scenario!(HttpBasic);
