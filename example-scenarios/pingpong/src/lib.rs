//! Port of Chaperon's `Scenario.WS.PingPong` (tutorial part 1): connect a WebSocket, then
//! time `ping_pong.iterations` round trips of "ping" → "pong" under the metric
//! `call ping_pong`. `ping_pong.hold_ms` (default 0) first holds the open connection idle that
//! long: the idle WebSocket session that `chaperon-host bench` measures memory with.

use chaperon_sdk::prelude::*;

struct PingPong;

impl Scenario for PingPong {
    fn run(s: &mut Session) -> Result {
        // Like `config(session, [:ping_pong, :iterations])`: an error names the missing key.
        let iterations: u32 = s.config("ping_pong.iterations")?;

        s.ws_connect("/ping/pong")?;
        let hold: u32 = s.config_or("ping_pong.hold_ms", 0);
        if hold > 0 {
            s.delay(hold);
        }
        // One `call ping_pong` sample per iteration.
        s.repeat_traced("ping_pong", iterations, ping_pong)?;
        s.log_info(format!("PingPong finished after {iterations} iterations"));
        s.ws_close()
    }
}

fn ping_pong(s: &mut Session) -> Result {
    s.ws_send("ping")?;
    // Wait until "pong" arrives on the connection (other messages are dropped).
    s.ws_await_recv("pong")
}

export_scenario!(PingPong);
