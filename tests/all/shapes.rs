//! Load shapes seen from the server: arrival rates hold their rate per second, a stalled
//! target under an arrival rate shows dropped iterations and a corrected latency above the
//! service time, ramping virtual users follow their stages, and a virtual user keeps its
//! keep-alive connection across iterations.

use crate::faults::{read_request, response, serve};
use crate::support::{ended, guest, metric, run};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What a recording server saw: each request's arrival time and the requests in flight then.
#[derive(Default)]
struct Seen {
    arrivals: Mutex<Vec<(Instant, i64)>>,
    in_flight: AtomicI64,
}

/// A server answering every request with 200 after `delay`, recording what it saw.
async fn recording_server(delay: Duration) -> (SocketAddr, Arc<Seen>, crate::faults::Counter) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let (addr, connections) = serve(move |mut socket| {
        let s = s.clone();
        async move {
            let mut buf = Vec::new();
            while read_request(&mut socket, &mut buf).await.is_some() {
                let now = s.in_flight.fetch_add(1, Relaxed) + 1;
                s.arrivals.lock().unwrap().push((Instant::now(), now));
                tokio::time::sleep(delay).await;
                s.in_flight.fetch_sub(1, Relaxed);
                if socket.write_all(&response(200, "ok")).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen, connections)
}

/// `run evil.wasm` in mode `get` against `addr` with the shape flags set by `shape`.
fn get_plan(addr: SocketAddr, shape: impl FnOnce(&mut RunArgs)) -> RunPlan {
    let mut args = RunArgs {
        target: guest("evil"),
        base_url: Some(format!("http://{addr}")),
        config: vec!["evil.mode=get".into(), "evil.path=/x".into()],
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    shape(&mut args);
    RunPlan::from_args(&args).expect("valid plan")
}

/// Requests per whole second since the first one.
fn per_second(seen: &Seen) -> Vec<usize> {
    let arrivals = seen.arrivals.lock().unwrap();
    let Some(first) = arrivals.first().map(|a| a.0) else {
        return Vec::new();
    };
    let mut buckets = Vec::new();
    for (at, _) in arrivals.iter() {
        let s = at.duration_since(first).as_secs() as usize;
        if buckets.len() <= s {
            buckets.resize(s + 1, 0);
        }
        buckets[s] += 1;
    }
    buckets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_arrival_rate_holds_its_rate_every_second() {
    let _heavy = crate::support::heavy().await;
    let (addr, seen, _) = recording_server(Duration::from_millis(5)).await;
    let plan = get_plan(addr, |a| {
        a.rate = Some(40.0);
        a.duration = Some("4s".into());
    });
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 160, "{}", r.summary_table());
    let buckets = per_second(&seen);
    assert_eq!(buckets.iter().sum::<usize>(), 160);
    for (second, n) in buckets.iter().enumerate().skip(1).take(3) {
        assert!(
            (32..=48).contains(n),
            "second {second}: {n} of 40: {buckets:?}"
        );
    }
    assert_eq!(r.counters.get("dropped_iterations"), None);
    // The time series has a bucket per second, and its requests add up to the report's.
    let ts = &r.timeseries;
    assert_eq!(ts.bucket_secs, 1);
    assert!((4..=6).contains(&ts.buckets.len()), "{:?}", ts.buckets);
    let requests: u64 = ts.buckets.iter().map(|b| b.requests).sum();
    assert_eq!(requests, 160, "{:?}", ts.buckets);
    let points = &ts.metrics["http GET /x"];
    assert_eq!(points.len(), ts.buckets.len());
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 160);
    for b in &ts.buckets[1..4] {
        assert!((32..=48).contains(&b.requests), "{:?}", ts.buckets);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_under_an_arrival_rate_drops_iterations_and_corrects_latency() {
    let (addr, _, _) = recording_server(Duration::from_millis(400)).await;
    let plan = get_plan(addr, |a| {
        a.rate = Some(20.0);
        a.duration = Some("2s".into());
        a.max_vus = Some(2);
    });
    let r = run(&plan).await.report;
    let table = r.summary_table();
    let dropped = r.counters.get("dropped_iterations").copied().unwrap_or(0);
    let started = r.sessions.started;
    assert_eq!(
        started + dropped,
        40,
        "every due iteration ran or was dropped: {table}"
    );
    assert!(
        dropped >= 20,
        "two users at 400 ms cannot keep 20/s: {table}"
    );
    let service = metric(&r, "iteration evil");
    let corrected = metric(&r, "iteration evil (from intended start)");
    assert!(service.p50 >= 400_000, "{table}");
    assert!(corrected.p99 > service.p99, "{table}");
    assert!(table.contains("dropped_iterations"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_virtual_users_follow_their_stages_at_the_server() {
    let _heavy = crate::support::heavy().await;
    let (addr, seen, _) = recording_server(Duration::from_millis(50)).await;
    let plan = get_plan(addr, |a| {
        a.stages = Some("500ms:4,1500ms:4,500ms:0".into());
    });
    let started = Instant::now();
    let r = run(&plan).await.report;
    assert_eq!(
        r.sessions.started,
        ended(&r, "completed"),
        "{}",
        r.summary_table()
    );
    let arrivals = seen.arrivals.lock().unwrap();
    let at = |from: u64, to: u64| {
        arrivals
            .iter()
            .filter(|(t, _)| {
                let ms = t.duration_since(started).as_millis() as u64;
                (from..to).contains(&ms)
            })
            .map(|(_, n)| *n)
            .collect::<Vec<i64>>()
    };
    let hold = at(900, 1900);
    assert!(!hold.is_empty());
    assert!(hold.iter().all(|n| (1..=4).contains(n)), "{hold:?}");
    let mut sorted = hold.clone();
    sorted.sort_unstable();
    assert!(
        sorted[sorted.len() / 2] >= 3,
        "most of the hold runs 4 users: {hold:?}"
    );
    let after = at(2700, 10_000);
    assert!(
        after.is_empty(),
        "nothing starts after the ramp-down: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_user_keeps_its_connection_across_iterations_unless_reset() {
    let (addr, seen, connections) = recording_server(Duration::ZERO).await;
    let plan = get_plan(addr, |a| {
        a.vus = Some(3);
        a.iterations = Some(4);
    });
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 12, "{}", r.summary_table());
    assert_eq!(seen.arrivals.lock().unwrap().len(), 12);
    assert_eq!(
        connections.load(Relaxed),
        3,
        "one keep-alive connection per user"
    );
    assert_eq!(metric(&r, "iteration evil").count, 12);

    let (addr, _, connections) = recording_server(Duration::ZERO).await;
    let toml = format!(
        r#"
        [[scenario]]
        name = "fresh"
        component = "EVIL"
        vus = 3
        iterations = 4
        reset_connections = true
        config = {{ base_url = "http://{addr}", evil = {{ mode = "get", path = "/x" }} }}
        "#
    );
    let r = run(&crate::loadtests::plan_file("reset", &toml))
        .await
        .report;
    assert_eq!(ended(&r, "completed"), 12, "{}", r.summary_table());
    assert_eq!(
        connections.load(Relaxed),
        12,
        "a new connection per iteration"
    );
}

#[test]
fn the_quick_flags_make_a_rate_for_a_duration() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let plan = get_plan(addr, |a| {
        a.rate = Some(20.0);
        a.duration = Some("5s".into());
    });
    let shape = &plan.scenarios[0].shape;
    assert_eq!(shape.duration(), Some(Duration::from_secs(5)));
    let mut args = RunArgs {
        target: guest("evil"),
        rate: Some(5.0),
        ..RunArgs::default()
    };
    let e = RunPlan::from_args(&args).unwrap_err().to_string();
    assert!(e.contains("`rate` needs `duration` or `stages`"), "{e}");
    args.stages = Some("10s".into());
    let e = RunPlan::from_args(&args).unwrap_err().to_string();
    assert!(e.contains("--stages `10s` is not DURATION:TARGET"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_with_their_own_shapes_run_side_by_side_with_start_offsets() {
    let (early_addr, early, _) = recording_server(Duration::ZERO).await;
    let (late_addr, late, _) = recording_server(Duration::ZERO).await;
    let toml = format!(
        r#"
        [[scenario]]
        name = "early"
        component = "EVIL"
        rate = 10
        duration = "2s"
        config = {{ base_url = "http://{early_addr}", evil = {{ mode = "get", path = "/e" }} }}

        [[scenario]]
        name = "late"
        component = "EVIL"
        vus = 2
        iterations = 3
        start_time = "1s"
        config = {{ base_url = "http://{late_addr}", evil = {{ mode = "get", path = "/l" }} }}
        "#
    );
    let started = Instant::now();
    let r = run(&crate::loadtests::plan_file("side-by-side", &toml))
        .await
        .report;
    assert_eq!(ended(&r, "completed"), 20 + 6, "{}", r.summary_table());
    let first = |seen: &Seen| seen.arrivals.lock().unwrap()[0].0.duration_since(started);
    assert!(
        first(&early) < Duration::from_millis(500),
        "{:?}",
        first(&early)
    );
    assert!(first(&late) >= Duration::from_secs(1), "{:?}", first(&late));
    assert_eq!(late.arrivals.lock().unwrap().len(), 6);
    assert_eq!(r.sessions.by_scenario["late"]["completed"], 6);
}

/// Many one-iteration users for a duration, on a pool too small to run them all in time: every
/// user is accounted for, started or not started, also those never spawned before the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_iteration_users_past_the_duration_are_counted_not_started() {
    let mut plan = RunPlan::from_args(&RunArgs {
        target: guest("evil"),
        vus: Some(300),
        iterations: Some(1),
        duration: Some("1s".into()),
        max_concurrent: Some(10),
        config: vec!["evil.mode=delay".into(), "evil.delay_ms=250".into()],
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    })
    .expect("valid plan");
    plan.limits.graceful_stop = Duration::from_millis(100);
    let r = run(&plan).await.report;
    let table = r.summary_table();
    let s = &r.sessions;
    assert!(s.started >= 10 && s.started < 300, "{table}");
    assert!(s.not_started > 0, "{table}");
    assert_eq!(s.started + s.not_started, 300, "{table}");
}
