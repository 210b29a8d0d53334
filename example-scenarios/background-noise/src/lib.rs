//! Port of Chaperon's examples/background_noise.ex: two async searches, awaited, then `rate`
//! posts spread evenly over `interval` ms (`cc_spread`) and awaited, after which the rate grows
//! by 2.5%. `rate` and `interval` are 25 and 1000 ms unless the config sets them; the posts are
//! only sent when the config says `post_data = true`.

use chaperon_sdk::prelude::*;

struct BackgroundNoise;

impl Scenario for BackgroundNoise {
    fn init(s: &mut Session) -> Result {
        // rate: incoming requests per interval; interval: spread them over this many ms
        s.assign("rate", s.config_or("rate", 25.0))?;
        s.assign("interval", s.config_or("interval", 1_000))
    }

    fn run(s: &mut Session) -> Result {
        s.spawn("search", "foo")?; // async(:search, ["foo"])
        s.spawn("search", "foo")?; // the same again (`~> search("foo")`)
        s.await_task("search")?; // await(:search), `<~ search`
        spread_post_data(s)
    }

    fn invoke(s: &mut Session, function: &str, args: Value) -> Result<Value> {
        match function {
            "search" => search(s, args.as_str().unwrap_or("WHO AM I?"))?,
            "post_data" => post_data(s)?,
            _ => return Err(format!("unknown function {function}").into()),
        }
        Ok(Value::Null)
    }
}

fn spread_post_data(s: &mut Session) -> Result {
    let rate: f64 = s.assigned("rate")?;
    let interval: u32 = s.assigned("interval")?;
    s.cc_spread("post_data", rate.round() as u32, interval, "")?;
    s.await_all()?;
    increase_noise(s)
}

fn search(s: &mut Session, query: &str) -> Result {
    s.send(Request::get("/search").query("q", query))?;
    Ok(())
}

fn post_data(s: &mut Session) -> Result {
    if s.config_or("post_data", false) {
        s.post_json("/posts", &json!({ "message": "hello, world!" }))?;
    }
    Ok(())
}

fn increase_noise(s: &mut Session) -> Result {
    s.update_assign("rate", |rate| {
        json!(rate.and_then(|r| r.as_f64()).unwrap_or(0.0) * 1.025) // increase by 2.5%
    })
}

export_scenario!(BackgroundNoise);
