//! Catalogue A (hostile guests) and C (runner) cases of ../shared/reference/style-and-reliability.md
//! Part 2 that have no home in a feature's own test file. Each test is named after its id;
//! the other ids live next to the feature they exercise (`grep -rn "fn a[0-9]" tests/all`).

use crate::faults::{checks, counter, fetch_plan, map, ok_server, read_request, response, serve};
use crate::merge::tempdir;
use crate::support::{ended, guest, host, metric, plan, run, target};
use chaperon_host::report::Report;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The evil guest in `mode` (plus `extra` config) for `sessions` sessions against `base`.
async fn evil(mode: &str, sessions: u32, base: Option<String>, extra: &[&str]) -> Report {
    let mode = format!("evil.mode={mode}");
    let mut config = vec![mode.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", sessions, base, &config);
    plan.limits.session_timeout = Duration::from_secs(20);
    run(&plan).await.report
}

/// `evil.urls=[...]` for `urls`.
fn urls_config(urls: &[String]) -> String {
    format!("evil.urls={}", serde_json::to_string(urls).unwrap())
}

#[test]
fn a5_a_component_with_too_many_memories_is_refused_before_it_reserves_them() {
    // A component holding one core module that declares 17 memories (multi-memory).
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    let memories: Vec<u8> = std::iter::once(17u8).chain([0u8, 1].repeat(17)).collect();
    module.push(5);
    module.push(memories.len() as u8);
    module.extend(memories);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.push(1);
    component.push(module.len() as u8);
    component.extend(module);
    let f = tempdir().join("memories.wasm");
    std::fs::write(&f, component).unwrap();
    let (code, _, stderr) = host(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("has too many memories: 17, more than the 16"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a10_holding_handles_without_dropping_them_hits_the_handle_cap() {
    let r = evil("handles", 2, None, &[]).await;
    assert_eq!(ended(&r, "resource-limit"), 2, "{}", r.summary_table());
    let held = metric(&r, "handles held");
    assert!(
        (3072..=4200).contains(&held.max),
        "stopped near the 4096-handle cap: {}",
        held.max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a12_ten_thousand_requests_at_once_use_at_most_the_connection_cap() {
    let _heavy = crate::support::heavy().await;
    let (addr, served) = ok_server().await;
    let urls: Vec<String> = (0..10_000).map(|i| format!("http://{addr}/{i}")).collect();
    let urls = urls_config(&urls);
    let plan = fetch_plan(addr, 1, &[], &[&urls, "evil.batch=true"]);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch status 200", 10_000)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(served.load(Relaxed), 10_000);
    let over = urls_config(&vec![format!("http://{addr}/"); 10_001]);
    let plan = fetch_plan(addr, 1, &[], &[&over, "evil.batch=true"]);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch invalid", 10_001)]),
        "a batch over 10,000 is refused whole"
    );
    assert_eq!(served.load(Relaxed), 10_000, "and nothing of it is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a12_the_connection_cap_holds_for_a_batch() {
    // Each connection is counted by the server; a batch of 100 opens at most 8.
    let (addr, connections) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        while read_request(&mut socket, &mut buf).await.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if socket.write_all(&response(200, "ok")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let urls = urls_config(&vec![format!("http://{addr}/"); 100]);
    let plan = fetch_plan(addr, 1, &[], &[&urls, "evil.batch=true"]);
    let r = run(&plan).await.report;
    assert_eq!(checks(&r), map(&[("fetch status 200", 100)]));
    let opened = connections.load(Relaxed);
    assert!(
        (1..=8).contains(&opened),
        "{opened} connections for one session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a14_an_allowed_host_on_another_port_or_scheme_is_denied() {
    let base = target(Default::default());
    let sentinel = target(Default::default());
    let port = base.addr().port();
    let urls = urls_config(&[
        "http://127.0.0.1:22/".to_owned(),
        format!("http://127.0.0.1:{}/", sentinel.addr().port()),
        format!("https://127.0.0.1:{port}/"),
        format!("ws://127.0.0.1:{}/", sentinel.addr().port()),
        format!("gopher://127.0.0.1:{port}/"),
        "file:///etc/passwd".to_owned(),
        "unix:/run/docker.sock".to_owned(),
    ]);
    let r = evil("fetch", 1, Some(base.base_url()), &[&urls]).await;
    assert_eq!(
        checks(&r),
        map(&[("fetch denied", 7)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(sentinel.stats().connections(), 0);
    assert_eq!(base.stats().http_requests(), 0, "not even over https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a15_an_allowed_name_resolving_to_a_non_global_address_is_blocked() {
    let base = target(Default::default());
    let sentinel = target(Default::default());
    let port = sentinel.addr().port();
    let names: [(&str, IpAddr); 4] = [
        ("loop.test", [127, 0, 0, 1].into()),
        ("metadata.test", [169, 254, 169, 254].into()),
        ("mapped.test", "::ffff:127.0.0.1".parse().unwrap()),
        ("zero.test", [0, 0, 0, 0].into()),
    ];
    let urls: Vec<String> = names
        .iter()
        .map(|(n, _)| format!("http://{n}:{port}/"))
        .collect();
    let urls = urls_config(&urls);
    let mut plan = plan(
        "evil",
        1,
        Some(base.base_url()),
        &["evil.mode=fetch", &urls],
    );
    for (name, ip) in names {
        plan.allow(name).unwrap();
        plan.pin_host(name, &[ip]);
    }
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch blocked-ip", 4)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(sentinel.stats().connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a16_ip_spellings_are_canonicalised_before_the_allowlist() {
    let base = target(Default::default());
    let sentinel = target(Default::default());
    let port = sentinel.addr().port();
    let spellings = [
        "2130706433",
        "0x7f.1",
        "127.1",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:7f00:1]",
        "[::ffff:127.0.0.1]",
    ];
    let urls: Vec<String> = spellings
        .iter()
        .map(|h| format!("http://{h}:{port}/"))
        .collect();
    let r = evil("fetch", 1, Some(base.base_url()), &[&urls_config(&urls)]).await;
    let refused: u64 = ["fetch denied", "fetch blocked-ip"]
        .iter()
        .map(|k| r.checks.get(*k).map_or(0, |c| c.passed))
        .sum();
    assert_eq!(refused, 7, "{:?}", checks(&r));
    assert_eq!(sentinel.stats().connections(), 0);
}

/// A server answering every request with `302 Location: {location}` (`SELF` = its own URL);
/// returns its address and a count of the requests it answered.
async fn redirector(location: &'static str) -> (SocketAddr, crate::faults::Counter) {
    let answered = counter();
    let count = answered.clone();
    let (addr, _) = serve(move |mut socket| {
        let count = count.clone();
        async move {
            let own = socket
                .local_addr()
                .map(|a| format!("http://{a}/again"))
                .unwrap_or_default();
            let mut buf = Vec::new();
            while read_request(&mut socket, &mut buf).await.is_some() {
                count.fetch_add(1, Relaxed);
                let to = match location {
                    "SELF" => own.clone(),
                    other => other.to_owned(),
                };
                let head =
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a17_redirect_hops_are_rechecked_and_loops_stop_at_ten() {
    let (metadata, _) = redirector("http://169.254.169.254/latest/meta-data/").await;
    let (elsewhere, _) = redirector("http://elsewhere.invalid/").await;
    let (looping, hops) = redirector("SELF").await;
    let urls = urls_config(&[
        format!("http://{metadata}/"),
        format!("http://{elsewhere}/"),
        format!("http://{looping}/"),
    ]);
    // The guest asks for 50 hops; the host follows at most [limits] max_redirects (10).
    let plan = fetch_plan(metadata, 1, &[], &[&urls, "evil.redirects=50"]);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch denied", 2), ("fetch status 302", 1)]),
        "both redirects out of the allowlist are refused at their hop; the loop ends with its last 302"
    );
    assert_eq!(hops.load(Relaxed), 11, "the first request and 10 hops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a18_host_owned_headers_and_relative_or_foreign_urls_are_refused() {
    let base = target(Default::default());
    let r = evil("forbidden_headers", 1, Some(base.base_url()), &[]).await;
    let got = checks(&r);
    assert_eq!(
        got.get("forbidden header refused"),
        Some(&8),
        "{}",
        r.summary_table()
    );
    for url in ["gopher://x/", "file:///etc/passwd", "unix:/run/x"] {
        assert!(
            got.contains_key(&format!("url {url}: denied")),
            "{url}: {got:?}"
        );
    }
    // Scheme-relative and relative paths are paths under the base URL, never another host.
    assert!(
        got.contains_key("url //elsewhere.test/: status 404"),
        "{got:?}"
    );
    assert!(got.contains_key("url health: status 200"), "{got:?}");
    assert_eq!(
        base.stats().http_requests(),
        2,
        "only the base-URL requests were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a19_header_injection_and_ten_thousand_headers_are_refused_unsent() {
    let base = target(Default::default());
    let r = evil("header_injection", 1, Some(base.base_url()), &[]).await;
    assert_eq!(
        checks(&r),
        map(&[("injection: invalid", 6), ("10000 headers: invalid", 1)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(base.stats().http_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a20_wasi_grants_no_files_environment_arguments_or_sockets() {
    let sentinel = target(Default::default());
    let addr = format!("evil.addr={}", sentinel.addr());
    let r = evil("wasi_probe", 1, None, &[&addr]).await;
    assert_eq!(ended(&r, "completed"), 1, "{}", r.summary_table());
    for (name, c) in &r.checks {
        assert_eq!((c.passed, c.failed), (1, 0), "{name}");
    }
    assert_eq!(r.checks.len(), 8, "{:?}", r.checks.keys());
    assert_eq!(sentinel.stats().connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_asking_for_u64_max_random_bytes_ends_the_session_not_the_host() {
    let r = evil("random_huge", 2, None, &[]).await;
    assert_eq!(ended(&r, "completed"), 0, "{}", r.summary_table());
    assert_eq!(
        ended(&r, "trap") + ended(&r, "resource-limit"),
        2,
        "{}",
        r.summary_table()
    );
    assert!(!r.metrics.contains_key("random bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2_a_run_ending_while_guests_spin_interrupts_them_and_reports() {
    let mut plan = plan("evil", 3, None, &["evil.mode=spin"]);
    plan.limits.cpu_budget_ms = 60_000;
    plan.limits.max_duration = Duration::from_millis(500);
    plan.limits.graceful_stop = Duration::from_millis(300);
    let start = std::time::Instant::now();
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "interrupted"), 3, "{}", r.summary_table());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the run ended soon after max_duration + graceful_stop: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_one_scenario_trapping_every_time_leaves_the_others_alone() {
    let plan = crate::loadtests::plan_file(
        "c4",
        r#"
        [[scenario]]
        name = "broken"
        component = "EVIL"
        sessions = 5
        config = { evil = { mode = "panic" } }

        [[scenario]]
        name = "fine"
        component = "EVIL"
        sessions = 5
        config = { evil = { mode = "record" } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "trap"), 5, "{}", r.summary_table());
    assert_eq!(ended(&r, "completed"), 5, "{}", r.summary_table());
    assert_eq!(metric(&r, "value").count, 5);
    let table = r.summary_table();
    assert!(
        table.contains("broken-") && table.contains("evil panic"),
        "the failure is shown with a sample message: {table}"
    );
}

#[test]
fn c5_more_sessions_than_instance_slots_queue_and_all_complete() {
    let _machine = crate::support::heavy_blocking();
    let (code, stdout, stderr) = host(&[
        "run",
        guest("evil").to_str().unwrap(),
        "--sessions",
        "300",
        "--max-concurrent",
        "20",
        "--config",
        "evil.mode=delay",
        "--config",
        "evil.delay_ms=50",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("300 completed"), "{stdout}");
    // 100 children at once against 64 live children per session (and 64 child slots): the
    // 65th spawn is a typed capacity error, which this guest does not handle, so its session
    // fails (exit 2) and the run still reports.
    let (code, stdout, stderr) = host(&[
        "run",
        guest("evil").to_str().unwrap(),
        "--config",
        "evil.mode=children",
        "--config",
        "evil.n=100",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("capacity reached"), "{stdout}");
}
