//! `ScenarioA` of Chaperon's tutorial part 2 ("Reusing and nesting scenarios"): posts its name,
//! then the `config_value` it was configured with (by the load test, by `ScenarioB` through
//! `run_scenario`, or by `ScenarioC`'s assign in a sequence).

use chaperon_sdk::prelude::*;

struct ScenarioA;

impl Scenario for ScenarioA {
    fn run(s: &mut Session) -> Result {
        s.post_json("/a", &json!({ "name": "A" }))?;
        let config_value: Value = s.config("config_value")?;
        s.post_json("/a/config", &json!({ "config": config_value }))?;
        Ok(())
    }
}

export_scenario!(ScenarioA);
