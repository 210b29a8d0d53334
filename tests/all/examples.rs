//! Chaperon's tutorial part 2 and examples, ported as example scenarios: each runs from its
//! `example-scenarios/*/loadtest.toml` against the demo target, whose counters must agree
//! exactly with the report.

use crate::support::{ended, guest, metric, root, run};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use chaperon_host::report::Report;
use chaperon_target::{TargetOptions, TargetServer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every wait of these runs.
const WAIT: Duration = Duration::from_secs(2);

async fn target() -> TargetServer {
    crate::support::target(TargetOptions::default())
}

/// Plans `example-scenarios/{dir}/loadtest.toml` against `server` with `--config` values;
/// `components` are checked first, so a missing build is named.
fn example(dir: &str, components: &[&str], server: &TargetServer, config: &[&str]) -> RunPlan {
    for component in components {
        guest(component);
    }
    let args = RunArgs {
        target: root()
            .join("example-scenarios")
            .join(dir)
            .join("loadtest.toml"),
        base_url: Some(server.base_url()),
        config: config.iter().map(|c| c.to_string()).collect(),
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    let mut plan = RunPlan::from_args(&args).expect("valid load-test file");
    let limits = &mut plan.limits;
    limits.session_timeout = WAIT;
    limits.request_timeout = WAIT;
    limits.connect_timeout = WAIT;
    limits.recv_timeout = WAIT;
    limits.graceful_stop = WAIT;
    plan
}

/// Runs `plan` and checks that every session completed without an error.
async fn run_clean(plan: &RunPlan) -> Report {
    let outcome = run(plan).await;
    let r = &outcome.report;
    assert!(outcome.all_completed(), "{}", r.summary_table());
    assert_eq!(r.total_errors(), 0, "{}", r.summary_table());
    outcome.report
}

fn count(r: &Report, key: &str) -> u64 {
    metric(r, key).count
}

/// A tally of JSON bodies as the target keeps them.
fn bodies<const N: usize>(entries: [(serde_json::Value, u64); N]) -> BTreeMap<String, u64> {
    entries
        .into_iter()
        .map(|(v, n)| (v.to_string(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_await_publishes_only_after_the_subscriber_signalled() {
    let server = target().await;
    let plan = example("publish-and-await", &["publish_and_await"], &server, &[]);
    let r = &run_clean(&plan).await;
    assert_eq!(ended(r, "completed"), 10);

    // 10 sessions × 20 messages, each on its own topic: nothing was published before its
    // subscriber was there, so every message was delivered exactly once.
    let stats = server.stats();
    assert_eq!(stats.subscriptions(), 10);
    assert_eq!(stats.published(), 200);
    assert_eq!(stats.delivered(), 200);
    for vu in 0..10 {
        assert_eq!(stats.requests_to("POST", &format!("/publish/foo-{vu}")), 20);
    }
    assert_eq!(
        count(r, "ws_connect /subscribe/:topic"),
        10,
        "one histogram for all topics"
    );
    assert_eq!(count(r, "async subscribe"), 10);
    assert_eq!(count(r, "http POST /publish/:topic"), 200);
    assert_eq!(count(r, "ws_recv"), 200);
    assert_eq!(r.checks["subscriber got every message"].passed, 10);
    assert_eq!(r.checks["subscriber got every message"].failed, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_a_b_c_nest_and_pass_config_along() {
    let server = target().await;
    let components = ["scenario_a", "scenario_b", "scenario_c"];
    let plan = example("scenario-abc", &components, &server, &[]);
    let r = &run_clean(&plan).await;
    // scenario_a, scenario_b, c_then_a: 1 each; scenario_a_x100, c_then_a_x100: 100 each.
    assert_eq!(ended(r, "completed"), 203);

    // A runs 1 + 1 (inside B) + 1 + 100 + 100 times, C once per sequence session.
    let stats = server.stats();
    assert_eq!(stats.requests_to("POST", "/a"), 203);
    assert_eq!(stats.requests_to("POST", "/a/config"), 203);
    assert_eq!(stats.requests_to("POST", "/b"), 1);
    assert_eq!(stats.requests_to("POST", "/c"), 101);
    let name = |n: &str| serde_json::json!({ "name": n });
    assert_eq!(stats.posted_bodies("/a"), bodies([(name("A"), 203)]));
    assert_eq!(stats.posted_bodies("/b"), bodies([(name("B"), 1)]));
    assert_eq!(stats.posted_bodies("/c"), bodies([(name("C"), 101)]));
    // Which config value each run of A saw: its own, B's, C's assign, the x100 one.
    let config = |v: &str| serde_json::json!({ "config": v });
    let want = bodies([
        (config("Some value to be used by ScenarioA"), 1),
        (config("This is used by ScenarioA"), 1),
        (
            config("This can be used by anyone interested in this value"),
            101,
        ),
        (config("This scenario is now run 100 times!"), 100),
    ]);
    assert_eq!(stats.posted_bodies("/a/config"), want);

    assert_eq!(count(r, "http POST /a"), 203);
    assert_eq!(count(r, "http POST /a/config"), 203);
    assert_eq!(count(r, "http POST /b"), 1);
    assert_eq!(count(r, "http POST /c"), 101);
    assert_eq!(count(r, "run_scenario scenario_a"), 102);
    assert_eq!(count(r, "run_scenario scenario_c"), 101);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_echoes_numbered_messages() {
    let server = target().await;
    let plan = example("ws-echo", &["ws_echo"], &server, &[]);
    let r = &run_clean(&plan).await;
    assert_eq!(ended(r, "completed"), 100);

    let stats = server.stats();
    assert_eq!(stats.ws_opened(), 100);
    assert_eq!(stats.ws_messages(), 1000);
    assert_eq!(count(r, "ws_connect /ws/echo"), 100);
    assert_eq!(count(r, "call echo"), 1000);
    assert_eq!(count(r, "ws_send"), 1000);
    assert_eq!(count(r, "ws_await_recv"), 1000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_publishers_pollers_and_websocket_subscribers() {
    let server = target().await;
    let plan = example("firehose", &["firehose"], &server, &[]);
    let r = &run_clean(&plan).await;
    // p1, p2, s1..s4, ws1..ws4: one session each.
    assert_eq!(ended(r, "completed"), 10);
    let stats = server.stats();

    // Publishers: p1 runs 5 loops, p2 one; every loop iteration publishes in a child.
    let published = stats.published();
    assert_eq!(stats.requests_to("PUT", "/publish/testchannel"), published);
    assert_eq!(count(r, "http PUT /publish/testchannel"), published);
    assert_eq!(count(r, "async publish"), published);
    assert_eq!(count(r, "call publish"), published);
    assert!(published >= 20, "ws4 awaited 20 of {published} messages");

    // Pollers: 5 + 5 + 20 + 1 polling loops, each iteration a GET in a grandchild.
    assert_eq!(count(r, "async subscribe_loop"), 31);
    let polls = stats.polls();
    assert_eq!(stats.requests_to("GET", "/subscribe/testchannel"), polls);
    assert_eq!(count(r, "http GET /subscribe/testchannel"), polls);
    assert_eq!(count(r, "async subscribe"), polls);
    assert_eq!(count(r, "call subscribe"), polls);
    assert!(polls >= 31, "every loop polled at least once: {polls}");

    // WebSocket subscribers: ws1..ws4 await 1 + 5 + 10 + 20 messages.
    assert_eq!(stats.subscriptions(), 4);
    assert_eq!(count(r, "ws_connect /subscribe/testchannel"), 4);
    assert_eq!(count(r, "ws_send"), 4);
    assert_eq!(stats.ws_messages(), 4, "one last_message_sequence each");
    assert_eq!(count(r, "ws_recv"), 36);
    let delivered = stats.delivered();
    assert!(
        (36..=4 * published).contains(&delivered),
        "{delivered} delivered"
    );

    // The longest loop (s2) lasts 600 ms.
    assert!(r.duration_secs >= 0.55, "{} s", r.duration_secs);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_noise_searches_then_spreads_its_posts() {
    let server = target().await;
    let plan = example(
        "background-noise",
        &["background_noise"],
        &server,
        &["interval=500"],
    );
    let r = &run_clean(&plan).await;
    // noise_1 and noise_2: one session each, 2 searches and 25 posts each.
    assert_eq!(ended(r, "completed"), 2);

    let stats = server.stats();
    assert_eq!(stats.searches(), 4);
    assert_eq!(stats.searches_for("foo"), 4);
    assert_eq!(stats.posts(), 50);
    let hello = serde_json::json!({ "message": "hello, world!" });
    assert_eq!(stats.posted_bodies("/posts"), bodies([(hello, 50)]));
    assert_eq!(count(r, "async search"), 4);
    assert_eq!(count(r, "http GET /search"), 4);
    assert_eq!(count(r, "async post_data"), 50);
    assert_eq!(count(r, "http POST /posts"), 50);
    // 25 posts evenly over 500 ms: the last starts 480 ms after the first.
    assert!(r.duration_secs >= 0.45, "{} s", r.duration_secs);
    server.shutdown().await;

    // Without `post_data` the spread children run but post nothing.
    let server = target().await;
    let config = ["post_data=false", "rate=4", "interval=100"];
    let plan = example("background-noise", &[], &server, &config);
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    assert_eq!(count(&r, "async post_data"), 8);
    assert!(!r.metrics.contains_key("http POST /posts"));
    assert_eq!((server.stats().posts(), server.stats().searches()), (0, 4));
    server.shutdown().await;
}
