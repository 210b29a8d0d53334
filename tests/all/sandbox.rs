//! The sandbox against a hostile tenant (catalogue: ../shared/reference/style-and-reliability.md
//! Part 2): the outbound allowlist and the stop signals.

use crate::loadtests::plan_file;
use crate::merge::tempdir;
use crate::support::{bin, ended, guest, metric, plan, run, target};
use chaperon_host::report::Report;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Runs the evil guest in mode `reach` over `urls` with `base` as base URL and `allow` entries.
async fn reach(base: &str, urls: &[String], allow: &[&str]) -> Report {
    let urls = format!("evil.urls={}", serde_json::to_string(urls).unwrap());
    let mut plan = plan(
        "evil",
        1,
        Some(base.to_owned()),
        &["evil.mode=reach", &urls],
    );
    plan.limits.session_timeout = Duration::from_secs(20);
    for entry in allow {
        plan.allow(entry).expect("valid allow entry");
    }
    run(&plan).await.report
}

fn outcomes(r: &Report) -> Vec<(String, u64)> {
    r.checks
        .iter()
        .map(|(name, c)| (name.clone(), c.passed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a13_request_outside_allowlist_is_denied() {
    let base = target(Default::default());
    let sentinel = target(Default::default());
    let port = sentinel.addr().port();
    let urls: Vec<String> = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ]
    .into();
    let r = reach(&base.base_url(), &urls, &[]).await;
    assert_eq!(
        outcomes(&r),
        vec![("reach denied".to_owned(), 8)],
        "{}",
        r.summary_table()
    );
    assert_eq!(
        sentinel.stats().connections(),
        0,
        "the sentinel saw no connection"
    );
    assert_eq!(
        r.metrics
            .values()
            .map(|m| m.errors_by_kind.get("denied").copied().unwrap_or(0))
            .sum::<u64>(),
        8,
        "each refusal is counted as `denied`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a13_names_outside_the_allowlist_are_never_resolved() {
    let base = target(Default::default());
    // A name that would fail DNS: refused by the allowlist first, so `denied`, not `dns`.
    let urls = vec!["http://chaperon-sentinel.invalid/".to_owned()];
    let r = reach(&base.base_url(), &urls, &[]).await;
    assert_eq!(outcomes(&r), vec![("reach denied".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_entry_opens_exactly_what_it_names() {
    let base = target(Default::default());
    let other = target(Default::default());
    let port = other.addr().port();
    let urls = vec![
        format!("http://127.0.0.1:{port}/health"),
        format!("http://localhost:{port}/health"),
    ];
    // By address and port: the address is reachable; the name `localhost` is not listed.
    let r = reach(&base.base_url(), &urls, &[&format!("127.0.0.1:{port}")]).await;
    assert_eq!(
        outcomes(&r),
        vec![
            ("reach denied".to_owned(), 1),
            ("reach status 200".to_owned(), 1)
        ]
    );
    // A name entry whose name resolves to a loopback address: reachable only when an entry
    // (or the base URL) names that address too. This base URL is on 127.0.0.2, not 127.0.0.1.
    let elsewhere = "http://127.0.0.2:1";
    let r = reach(elsewhere, &urls[1..], &[&format!("localhost:{port}")]).await;
    assert_eq!(
        outcomes(&r),
        vec![("reach blocked-ip".to_owned(), 1)],
        "{:?}",
        r.checks
    );
    let r = reach(
        elsewhere,
        &urls[1..],
        &[&format!("localhost:{port}"), "127.0.0.1"],
    )
    .await;
    assert_eq!(outcomes(&r), vec![("reach status 200".to_owned(), 1)]);
    assert_eq!(other.stats().requests_to("GET", "/health"), 2);
}

#[test]
fn a_bad_allow_entry_is_one_line_naming_the_fix() {
    let (code, _, stderr) = crate::support::host(&[
        "run",
        guest("evil").to_str().unwrap(),
        "--allow",
        "ftp://x.test",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: allow entry `ftp://x.test` is not usable"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Runs the evil guest with `args` (plus `--quiet --out json=…`) in sessions that each wait
/// on `GET /delay/10000` of `server`; once all `sessions` are waiting there, sends `signal`
/// twice (graceful, then now) and returns (exit code, stdout, the report if written).
fn stopped_by(
    signal: &str,
    server: &chaperon_target::TargetServer,
    sessions: u64,
) -> (i32, String, Option<Report>) {
    let report = tempdir().join(format!("stopped-by-{signal}.json"));
    let _ = std::fs::remove_file(&report);
    let child = std::process::Command::new(bin())
        .arg("run")
        .arg(guest("evil"))
        .args([
            "--sessions",
            &sessions.to_string(),
            "--base-url",
            &server.base_url(),
        ])
        .args([
            "--config",
            "evil.mode=get",
            "--config",
            "evil.path=/delay/10000",
        ])
        .args(["--quiet", "--out"])
        .arg(format!("json={}", report.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("host binary runs");
    let waiting = || server.stats().requests_to("GET", "/delay/10000");
    let start = std::time::Instant::now();
    while waiting() < sessions && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    for wait in [0, 500] {
        std::thread::sleep(Duration::from_millis(wait));
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
    let out = child.wait_with_output().expect("host ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        Report::read_json(&report).ok(),
    )
}

#[test]
fn c3_sigterm_sighup_and_sigquit_stop_like_ctrl_c_and_the_report_is_written() {
    for signal in ["TERM", "HUP", "QUIT", "INT"] {
        let server = target(Default::default());
        let (code, stdout, report) = stopped_by(signal, &server, 3);
        assert_eq!(code, 130, "SIG{signal}: {stdout}");
        assert!(
            stdout.contains("3 started"),
            "SIG{signal}: the summary is printed: {stdout}"
        );
        let report = report.unwrap_or_else(|| panic!("SIG{signal}: the report file is written"));
        assert_eq!(ended(&report, "interrupted"), 3);
    }
}

#[test]
fn c1_requests_in_flight_at_a_stop_are_counted_interrupted_not_as_latency() {
    let server = target(Default::default());
    let (code, stdout, report) = stopped_by("INT", &server, 2);
    assert_eq!(code, 130, "{stdout}");
    let report = report.expect("the report is written");
    let m = metric(&report, "http GET /delay/10000");
    assert_eq!(m.count, 0, "no latency sample for a request cut off");
    assert_eq!(m.errors_by_kind.get("interrupted"), Some(&2), "{stdout}");
}

/// Runs mode `exhaust_then_spawn` under a 300 ms CPU budget, the root's second child spinning
/// `ms`; returns whether that second child completed.
async fn second_child_completes(ms: u32) -> bool {
    let ms = format!("evil.ms={ms}");
    let mut plan = plan("evil", 1, None, &["evil.mode=exhaust_then_spawn", &ms]);
    plan.limits.cpu_budget_ms = 300;
    plan.limits.session_timeout = Duration::from_secs(30);
    let r = run(&plan).await.report;
    assert_eq!(
        ended(&r, "completed"),
        1,
        "the parent itself stays within budget"
    );
    assert_eq!(r.checks["first child ended by the budget"].passed, 1);
    let spin = metric(&r, "async spin");
    assert_eq!(spin.errors_by_kind.get("cpu-budget"), Some(&1));
    metric(&r, "second_child_completed").max == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_spinning_children_draw_from_their_roots_cpu_budget() {
    // One child spun the tree's whole budget away: a second child, however small, gets no CPU
    // (with a budget per child it would complete).
    assert!(!second_child_completes(30).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a9_extreme_arguments_are_refused_or_bounded_and_every_output_renders() {
    let base = target(Default::default());
    let mut plan = plan("evil", 2, Some(base.base_url()), &["evil.mode=extremes"]);
    plan.limits.session_timeout = Duration::from_secs(30);
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    let refused: Vec<_> = r
        .checks
        .iter()
        .filter(|(n, _)| n.starts_with("refused:"))
        .collect();
    assert_eq!(
        refused.len(),
        7,
        "{:?}",
        r.checks.keys().collect::<Vec<_>>()
    );
    for (name, c) in refused {
        assert_eq!((c.passed, c.failed), (2, 0), "{name}");
    }
    assert_eq!(
        base.stats().http_requests(),
        0,
        "no refused request reached the target"
    );
    assert!(
        r.metrics
            .keys()
            .chain(r.checks.keys())
            .all(|k| k.len() <= 600),
        "keys are cut"
    );
    let table = r.summary_table();
    assert!(table.contains("mmmm"), "{table}");
    assert!(!table.contains('\u{1b}'), "control characters are escaped");
    r.to_json().expect("the report serialises");
}

/// A WebSocket server that sends 1 MiB messages as fast as the client takes them; returns its
/// URL and the count of messages it managed to send.
async fn flooding_server() -> (String, Arc<AtomicU64>) {
    use futures_util::SinkExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
            return;
        };
        let mib = vec![7u8; 1 << 20];
        for _ in 0..300 {
            let msg = tokio_tungstenite::tungstenite::Message::Binary(mib.clone().into());
            if ws.send(msg).await.is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (url, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b20_a_flooding_websocket_is_held_back_by_the_inbound_byte_cap() {
    let (url, sent) = flooding_server().await;
    let mut plan = plan(
        "evil",
        1,
        Some(url),
        &[
            "evil.mode=ws_hold",
            "evil.path=/flood",
            "evil.delay_ms=3000",
        ],
    );
    plan.limits.session_timeout = Duration::from_secs(20);
    let running = tokio::spawn(async move { run(&plan).await.report });
    // Wait until the server can send no more (the guest never receives), at most 10 s.
    let mut last = u64::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let held = sent.load(Ordering::Relaxed);
    // 4 MiB queued in the host plus what the kernel's socket buffers hold; without the byte
    // cap the host would take all 300 (its message cap is 1024).
    assert!(
        held < 64,
        "the host took {held} MiB from a guest that never read"
    );
    let r = running.await.unwrap();
    assert_eq!(ended(&r, "completed"), 1, "{}", r.summary_table());
}

#[test]
fn c6_an_address_space_limit_sizes_the_pool_and_names_the_fix() {
    // `ulimit -v` of ~7.6 GiB: the pool of 64 MiB slots must be sized to fit, not fail.
    let script = format!(
        "ulimit -v 8000000 && exec {} run {} --sessions 200",
        bin(),
        guest("evil").display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("address-space limit (ulimit -v"),
        "{stderr}"
    );
    assert!(stderr.contains("raise `ulimit -v`"), "{stderr}");
    assert!(stdout.contains("200 started, 200 completed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a26_tenants_cannot_reach_each_others_scenarios_data_or_network() {
    let (alpha, beta) = (target(Default::default()), target(Default::default()));
    let dir = tempdir();
    let data = dir.join("tenant-set.json");
    std::fs::write(&data, r#"[{"n": 1}, {"n": 2}]"#).unwrap();
    let toml = format!(
        r#"
        [setup]
        scenario = "hooks"
        function = "make_setup"

        [[scenario]]
        name = "hooks"
        component = "EVIL"
        sessions = 0

        [tenant.alpha.data.alpha_set]
        file = "{data}"

        [tenant.beta.data.beta_set]
        file = "{data}"

        [[scenario]]
        name = "alpha_main"
        tenant = "alpha"
        component = "EVIL"
        sessions = 2
        config = {{ base_url = "{a}", evil = {{ mode = "tenant_probe", other_scenario = "beta_child", other_set = "beta_set", own_set = "alpha_set", other_url = "{b}/health" }} }}

        [[scenario]]
        name = "beta_child"
        component = "EVIL"
        sessions = 0
        tenant = "beta"
        config = {{ base_url = "{b}" }}
        "#,
        data = data.display(),
        a = alpha.base_url(),
        b = beta.base_url(),
    );
    let plan = plan_file("tenants", &toml);
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    for (name, c) in &r.checks {
        assert_eq!((c.passed, c.failed), (2, 0), "{name}");
    }
    assert_eq!(r.checks.len(), 6, "{:?}", r.checks);
    assert_eq!(
        beta.stats().http_requests(),
        0,
        "alpha never reached beta's target"
    );
    assert_eq!(alpha.stats().requests_to("GET", "/health"), 2);
}

#[test]
fn a_scenario_naming_an_undeclared_tenant_is_one_line_naming_the_fix() {
    let toml = "[[scenario]]\nname = \"x\"\ntenant = \"ghost\"\ncomponent = \"EVIL\"\n";
    let (code, _, stderr) = crate::support::host_on_file("bad-tenant", toml, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("names tenant `ghost`, which has no [tenant.ghost] section"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a23_one_tenants_metric_names_cannot_erase_anothers() {
    let plan = plan_file(
        "tenant-quotas",
        r#"
        [tenant.noisy]
        [tenant.quiet]

        [[scenario]]
        name = "noisy"
        tenant = "noisy"
        component = "EVIL"
        config = { evil = { mode = "many_metrics", n = 5000 } }

        [[scenario]]
        name = "quiet"
        tenant = "quiet"
        component = "EVIL"
        sessions = 3
        start_delay = "500ms"
        config = { evil = { mode = "record" } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 4, "{}", r.summary_table());
    assert_eq!(
        metric(&r, "quiet: value").count,
        3,
        "the quiet tenant's metric is kept"
    );
    let noisy = r
        .metrics
        .keys()
        .filter(|k| k.starts_with("noisy: "))
        .count();
    assert_eq!(noisy, 1000, "the noisy tenant is held to its own quota");
    assert_eq!(r.counters.get("dropped_metric_keys noisy"), Some(&4000));
    assert_eq!(r.counters.get("dropped_metric_keys quiet"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a26_a_tenants_limits_apply_to_its_sessions_only() {
    let plan = plan_file(
        "tenant-limits",
        r#"
        [limits]
        cpu_budget_ms = 800

        [tenant.tight.limits]
        session_timeout = "1s"

        [[scenario]]
        name = "tight"
        tenant = "tight"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "delay", delay_ms = 1500 } }

        [[scenario]]
        name = "roomy"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "delay", delay_ms = 1500 } }
        "#,
    );
    let tight = plan.scenarios.iter().find(|s| s.name == "tight").unwrap();
    assert_eq!(
        tight.limits(&plan.limits).cpu_budget_ms,
        800,
        "other keys come from [limits]"
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "timeout"), 2, "{}", r.summary_table());
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
}

#[test]
fn a_bad_tenant_limit_is_one_line_naming_the_tenant() {
    let toml = "[tenant.t.limits]\nsession_timeout = \"soon\"\n\n[[scenario]]\nname = \"x\"\ntenant = \"t\"\ncomponent = \"EVIL\"\n";
    let (code, _, stderr) = crate::support::host_on_file("bad-tenant-limits", toml, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("error: [tenant.t.limits]: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
