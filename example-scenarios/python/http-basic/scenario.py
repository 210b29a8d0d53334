"""A basic HTTP scenario: read pages, group dynamic paths under one metric, create an item and
check what the server answered.

The Python twin of example-scenarios/http-basic (Rust): the same requests, metrics and checks."""

from chaperon import Request, Scenario, Session, export


class HttpBasic(Scenario):
    def run(self, s: Session) -> None:
        home = s.get("/")
        s.check("home is ok", home.ok)

        # `/items/1`, `/items/2`, ... share the histogram `/items/:id`.
        items = s.config_or("http_basic.items", 3)
        for id in range(1, items + 1):
            s.send(Request.get(f"/items/{id}").metric_name("/items/:id"))

        created = s.post_json("/items", {"name": "apple", "vu": s.vu()})
        s.check("create returns 201", created.status == 201)
        item = created.json()
        s.check("create echoes the name", isinstance(item, dict) and item.get("name") == "apple")

        echo = s.post("/echo", "hello")
        s.check("echo echoes the body", echo.text() == "hello")


WitWorld = export(HttpBasic)
