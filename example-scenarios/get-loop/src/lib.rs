//! The benchmark scenario (`scripts/bench`): each session sends `GET {get_loop.path}` back to
//! back on its keep-alive connection for `get_loop.seconds`, like one wrk connection. Only
//! network failures stop it; an unexpected status is counted as an error by the host. It
//! reads only the status (`status_only`), as wrk and oha do: no headers or body are copied
//! into the guest. `get_loop.full = true` takes the whole response instead.

use chaperon_sdk::prelude::*;
use std::time::{Duration, Instant};

struct GetLoop;

impl Scenario for GetLoop {
    fn run(s: &mut Session) -> Result {
        let path: String = s.config_or("get_loop.path", "/".to_string());
        let seconds: u64 = s.config_or("get_loop.seconds", 10);
        let full: bool = s.config_or("get_loop.full", false);
        let request = if full {
            Request::get(path)
        } else {
            Request::get(path).status_only()
        };
        let until = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < until {
            s.send(request.clone())?;
        }
        Ok(())
    }
}

export_scenario!(GetLoop);
