//! `ScenarioB` of Chaperon's tutorial part 2: posts its name, then runs the load test's scenario
//! `scenario_a` inside this session, giving it the `config_value` it needs.

use chaperon_sdk::prelude::*;

struct ScenarioB;

impl Scenario for ScenarioB {
    fn run(s: &mut Session) -> Result {
        s.post_json("/b", &json!({ "name": "B" }))?;
        let config = json!({ "config_value": "This is used by ScenarioA" });
        s.run_scenario("scenario_a", config, true)?; // merged over this session's config
        Ok(())
    }
}

export_scenario!(ScenarioB);
