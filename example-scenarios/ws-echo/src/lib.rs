//! Port of Chaperon's `WS.Echo.Scenario` (examples/ws_echo.ex): send `echo.iterations`
//! numbered messages ("Echo #0", "Echo #1", ...) over one WebSocket and wait for each to come
//! back, counting in an assign; one `call echo` sample per round trip.

use chaperon_sdk::prelude::*;

struct WsEcho;

impl Scenario for WsEcho {
    fn init(s: &mut Session) -> Result {
        s.assign("counter", 0)
    }

    fn run(s: &mut Session) -> Result {
        let iterations: u32 = s.config("echo.iterations")?;
        s.ws_connect(&s.config_or("echo.path", "/ws/echo".to_owned()))?;
        s.repeat_traced("echo", iterations, echo)?;
        s.log_info(format!("Echo finished after {iterations} iterations"));
        s.ws_close()
    }
}

fn echo(s: &mut Session) -> Result {
    let counter: u32 = s.assigned("counter")?;
    let msg = format!("Echo #{counter}");
    s.ws_send(&msg)?;
    s.ws_await_recv(&msg)?;
    s.assign("counter", counter + 1)
}

export_scenario!(WsEcho);
