//! Test guest: a global counter that must start at 0 in every session. Each session records
//! `global_counter` = 1, unless state leaks between instances.

use std::sync::atomic::{AtomicU32, Ordering};

use chaperon_sdk::prelude::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl Scenario for Counter {
    fn run(s: &mut Session) -> Result {
        let value = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        s.record("global_counter", value);
        s.delay(s.config_or("counter.delay_ms", 0));
        Ok(())
    }
}

export_scenario!(Counter);
