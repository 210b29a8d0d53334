// A basic HTTP scenario: read pages, group dynamic paths under one metric, create an item and
// check what the server answered.
//
// The JavaScript twin of example-scenarios/http-basic (Rust): the same requests, metrics and checks.

import { Request, Scenario } from "chaperon";

export default class HttpBasic extends Scenario {
  run(s) {
    const home = s.get("/");
    s.check("home is ok", home.ok);

    // `/items/1`, `/items/2`, ... share the histogram `/items/:id`.
    const items = s.configOr("http_basic.items", 3);
    for (let id = 1; id <= items; id++) {
      s.send(Request.get(`/items/${id}`).metricName("/items/:id"));
    }

    const created = s.postJson("/items", { name: "apple", vu: s.vu() });
    s.check("create returns 201", created.status === 201);
    const item = created.json();
    s.check("create echoes the name", item !== null && typeof item === "object" && item.name === "apple");

    const echo = s.post("/echo", "hello");
    s.check("echo echoes the body", echo.text() === "hello");
  }
}
