//! `ScenarioC` of Chaperon's tutorial part 2: posts its name and assigns a `config_value`; in a
//! sequence (`sequence = ["scenario_c", "scenario_a"]`) that assign becomes the next scenario's
//! config.

use chaperon_sdk::prelude::*;

struct ScenarioC;

impl Scenario for ScenarioC {
    fn run(s: &mut Session) -> Result {
        s.post_json("/c", &json!({ "name": "C" }))?;
        s.assign(
            "config_value",
            "This can be used by anyone interested in this value",
        )
    }
}

export_scenario!(ScenarioC);
