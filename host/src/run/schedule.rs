//! Starting iterations by each scenario's load shape, waiting for them, and stopping. Every
//! scenario runs its own driver side by side (after its `start_time`); each iteration is a
//! fresh session on a pool slot. The whole test is bounded by `max_duration`, Ctrl-C honoured.
//!
//! Stopping has two levels ([`Stop`]): `Graceful` starts nothing new, `Now` interrupts what
//! runs. A shape's own end (its duration, a ramp-down) works the same way for its virtual
//! users: no new iteration, the running one may finish within `graceful_stop`, then it is
//! interrupted and counted as cut by the plan.

use super::Stop;
use super::ends::{EndTally, Ended};
use super::load::{Loaded, Runs};
use crate::net::http::HttpClient;
use crate::outcome::SessionEnd;
use crate::plan::ScenarioPlan;
use crate::plan::limits::Limits;
use crate::plan::shape::{Shape, Stage, arrival_time, ramp_value};
use crate::session::nested::run_sequence;
use crate::session::{Deadline, Seed, SessionIdentity, lifecycle};
use crate::util::random_below;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

/// Report counter of arrival-rate iterations that found no free virtual user in time.
pub const DROPPED_ITERATIONS: &str = "dropped_iterations";

/// The sessions of a run and how the run stopped.
pub struct Sessions {
    pub ends: EndTally,
    /// Stopped from outside (Ctrl-C) rather than by the plan.
    pub interrupted: bool,
    /// Sessions interrupted at a planned end (a shape's duration or ramp-down, or
    /// `max_duration` + graceful stop): counted `interrupted`, but not failures.
    pub cut_by_plan: u64,
    /// Sessions whose start delay was still running when they were cut: never started.
    pub not_started: u64,
}

/// What every driver of the run shares.
#[derive(Clone)]
struct Ctl {
    /// `Graceful`: start nothing new; `Now`: interrupt running iterations.
    halt: watch::Receiver<Stop>,
    permits: Arc<Semaphore>,
    /// Sessions alive at once at most (the pool's size).
    slots: usize,
    /// Where sessions count their end: a tally under a lock, not a channel, so a session's end
    /// wakes no task (a wake per session cost a cross-thread unpark at high start rates).
    ends: Arc<std::sync::Mutex<EndTally>>,
    grace: Duration,
    live: Arc<super::live::Live>,
    not_started: Arc<std::sync::atomic::AtomicU64>,
}

impl Ctl {
    fn halted(&self) -> bool {
        *self.halt.borrow() != Stop::Running
    }

    /// Resolves once the run is stopping at `level` or beyond.
    async fn reached(&self, level: Stop) {
        let mut halt = self.halt.clone();
        let _ = halt.wait_for(|s| *s >= level).await;
        if *halt.borrow() < level {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs every scenario's shape (at most `permits` sessions alive at once) and waits for them.
pub async fn run_sessions(
    scenarios: Vec<Arc<Loaded>>,
    permits: Arc<Semaphore>,
    limits: &Limits,
    mut options: super::RunOptions,
    live: Arc<super::live::Live>,
) -> Sessions {
    let (halt_tx, halt) = watch::channel(Stop::Running);
    let ctl = Ctl {
        halt,
        slots: permits.available_permits(),
        permits,
        ends: Arc::default(),
        grace: limits.graceful_stop,
        live,
        not_started: Arc::default(),
    };
    let not_started = ctl.not_started.clone();
    let ended = ctl.ends.clone();
    let mut drivers = JoinSet::new();
    for sc in scenarios.into_iter().filter(|s| s.plan.sessions > 0) {
        drivers.spawn(drive(sc, ctl.clone()));
    }
    drop(ctl);
    let test_end = Instant::now() + limits.max_duration;
    let stop = &mut options.stop;
    let mut grace_end: Option<Instant> = None;
    let mut watching = true;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        let level = (*stop.borrow()).max(*halt_tx.borrow());
        if level == Stop::Graceful && grace_end.is_none() {
            let _ = halt_tx.send(Stop::Graceful);
            grace_end = Some(Instant::now() + limits.graceful_stop);
        }
        if level == Stop::Now {
            let _ = halt_tx.send(Stop::Now);
        }
        tokio::select! {
            next = drivers.join_next() => if next.is_none() { break },
            changed = stop.changed(), if watching => watching = changed.is_ok(),
            _ = sleep_until(test_end), if grace_end.is_none() => {
                let _ = halt_tx.send(Stop::Graceful);
            }
            _ = sleep_until(grace_end.unwrap_or(far)), if grace_end.is_some() => {
                let _ = halt_tx.send(Stop::Now);
            }
        }
    }
    let ends = ended
        .lock()
        .map(|mut e| std::mem::take(&mut *e))
        .unwrap_or_default();
    let interrupted = *stop.borrow() != Stop::Running;
    let cut = ends.cut;
    Sessions {
        ends,
        interrupted,
        cut_by_plan: if interrupted { 0 } else { cut },
        not_started: not_started.load(Relaxed),
    }
}

/// Runs one scenario's shape to its end.
async fn drive(sc: Arc<Loaded>, ctl: Ctl) {
    let start_time = sc.plan.start_time;
    if !start_time.is_zero() {
        tokio::select! {
            _ = sleep(start_time) => {}
            _ = ctl.reached(Stop::Graceful) => return,
        }
    }
    let start = Instant::now();
    match sc.plan.shape.clone() {
        Shape::Vus {
            vus,
            iterations,
            duration,
        } => {
            let end = duration.map(|d| start + d);
            let mut users = JoinSet::new();
            // One-session users past twice the pool wait unspawned: 100,000 sessions do not
            // allocate 100,000 waiting tasks first. Users with more iterations all start, as
            // they share the pool between iterations.
            let window = if iterations == Some(1) {
                ctl.slots.saturating_mul(2).max(1)
            } else {
                usize::MAX
            };
            for vu in 0..vus {
                while users.len() >= window && users.join_next().await.is_some() {}
                if ctl.halted() {
                    break;
                }
                if end.is_some_and(|e| Instant::now() >= e) {
                    // Never spawned before the shape ended: not started, as a user that
                    // waited for a slot past the end is.
                    ctl.not_started.fetch_add(u64::from(vus - vu), Relaxed);
                    break;
                }
                let user = VirtualUser::new(&sc, ctl.clone(), vu);
                users.spawn(user.run_closed(iterations, end));
            }
            while users.join_next().await.is_some() {}
        }
        Shape::RampingVus { start_vus, stages } => {
            let stages = Arc::new(stages);
            let mut users = JoinSet::new();
            for vu in 0..sc.plan.sessions {
                let user = VirtualUser::new(&sc, ctl.clone(), vu);
                let ramp = Ramp {
                    start,
                    from: f64::from(start_vus),
                    stages: stages.clone(),
                };
                users.spawn(user.run_ramping(ramp));
            }
            while users.join_next().await.is_some() {}
        }
        Shape::Arrival {
            start_rate,
            stages,
            max_vus,
            pre_allocated,
            max_start_lag,
        } => {
            let arrival = Arrival {
                start,
                rate: start_rate,
                stages,
                lag: max_start_lag,
            };
            arrival.run(&sc, &ctl, max_vus, pre_allocated).await;
        }
    }
}

/// A ramp of virtual users over time.
struct Ramp {
    start: Instant,
    from: f64,
    stages: Arc<Vec<Stage>>,
}

impl Ramp {
    fn target(&self) -> f64 {
        ramp_value(self.from, &self.stages, self.start.elapsed())
    }

    fn end(&self) -> Instant {
        self.start + self.stages.iter().map(|s| s.duration).sum::<Duration>()
    }

    /// Resolves `grace` after the target first drops to `vu` or below (or the ramp ends).
    async fn drops_below(&self, vu: u32, grace: Duration) {
        let end = self.end();
        while self.target() > f64::from(vu) && Instant::now() < end {
            sleep(Duration::from_millis(20)).await;
        }
        sleep(grace).await;
    }
}

/// One virtual user: a slot that runs iterations one after another, keeping its connections
/// and cookie jar across them (unless the scenario resets them).
struct VirtualUser {
    sc: Arc<Loaded>,
    ctl: Ctl,
    vu: u32,
    iteration: u32,
    http: Option<HttpClient>,
}

impl VirtualUser {
    fn new(sc: &Arc<Loaded>, ctl: Ctl, vu: u32) -> VirtualUser {
        VirtualUser {
            sc: sc.clone(),
            ctl,
            vu,
            iteration: 0,
            http: None,
        }
    }

    /// Iterations until `iterations` ran or `end` passed (cut `grace` after it).
    async fn run_closed(mut self, iterations: Option<u32>, end: Option<Instant>) {
        let grace = self.ctl.grace;
        while iterations.is_none_or(|n| self.iteration < n)
            && end.is_none_or(|e| Instant::now() < e)
            && !self.ctl.halted()
        {
            let cut_at = end.map(|e| e + grace);
            let planned_end = async move {
                match cut_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            if !self.iterate(None, planned_end).await {
                break;
            }
        }
    }

    /// Iterations while the ramp's target is above this user's number.
    async fn run_ramping(mut self, ramp: Ramp) {
        let end = ramp.end();
        let grace = self.ctl.grace;
        loop {
            while ramp.target() <= f64::from(self.vu) {
                if Instant::now() >= end || self.ctl.halted() {
                    return;
                }
                sleep(Duration::from_millis(20)).await;
            }
            if Instant::now() >= end || self.ctl.halted() {
                return;
            }
            if !self.iterate(None, ramp.drops_below(self.vu, grace)).await {
                return;
            }
        }
    }

    /// Runs one iteration on a pool slot; `planned_end` interrupts it (a cut by the plan),
    /// as does the run's `Stop::Now`. `due` is its intended start under an arrival rate.
    /// Returns false when the run is stopping.
    async fn iterate(
        &mut self,
        due: Option<Instant>,
        planned_end: impl Future<Output = ()>,
    ) -> bool {
        let permit = tokio::select! {
            p = self.ctl.permits.clone().acquire_owned() => p,
            _ = self.ctl.reached(Stop::Graceful) => return false,
        };
        let Ok(permit) = permit else { return false };
        let planned_end = std::pin::pin!(planned_end);
        let mut planned_end = planned_end;
        if self.iteration == 0 {
            // A session cut while it waits out its start delay never started.
            let waited = tokio::select! {
                _ = start_delay(&self.sc.plan) => true,
                _ = &mut planned_end => false,
                _ = self.ctl.reached(Stop::Now) => false,
            };
            if !waited {
                self.ctl.not_started.fetch_add(1, Relaxed);
                return false;
            }
        }
        let id = if self.iteration == 0 {
            format!("{}-{}", self.sc.plan.name, self.vu)
        } else {
            format!("{}-{}-{}", self.sc.plan.name, self.vu, self.iteration)
        };
        let identity = SessionIdentity {
            id: id.clone(),
            parent_id: None,
            vu: self.vu,
            iteration: self.iteration,
        };
        let http = if self.sc.plan.reset_connections {
            None
        } else {
            self.http.take()
        };
        let started = Instant::now();
        let live = &self.ctl.live;
        live.active.fetch_add(1, Relaxed);
        // Boxed once it has a slot: a user waiting for one (all but `max_concurrent` of a
        // large run) then holds a few hundred bytes rather than a whole session's future.
        let run = Box::pin(self.sc.run(identity, http));
        let (end, cut) = tokio::select! {
            (end, http) = run => {
                self.http = http;
                (end, false)
            }
            _ = &mut planned_end => (SessionEnd::Interrupted, true),
            _ = self.ctl.reached(Stop::Now) => (SessionEnd::Interrupted, true),
        };
        drop(permit);
        live.active.fetch_sub(1, Relaxed);
        live.iterations.fetch_add(1, Relaxed);
        if !cut {
            self.sc.record_iteration(started, due);
        }
        self.iteration = self.iteration.saturating_add(1);
        let ended = Ended {
            id,
            scenario: self.sc.plan.name.clone(),
            end,
            cut,
        };
        if let Ok(mut ends) = self.ctl.ends.lock() {
            ends.add(ended);
        }
        !self.ctl.halted()
    }
}

/// An open model: iterations start when due, each on a free virtual user.
struct Arrival {
    start: Instant,
    rate: f64,
    stages: Vec<Stage>,
    lag: Duration,
}

impl Arrival {
    async fn run(&self, sc: &Arc<Loaded>, ctl: &Ctl, max_vus: u32, pre_allocated: u32) {
        let free: Arc<Mutex<Vec<VirtualUser>>> = Arc::new(Mutex::new(
            (0..pre_allocated)
                .rev()
                .map(|vu| VirtualUser::new(sc, ctl.clone(), vu))
                .collect(),
        ));
        let next_vu = Arc::new(std::sync::atomic::AtomicU32::new(pre_allocated));
        let slots = Arc::new(Semaphore::new(max_vus as usize));
        let end = self.start + self.stages.iter().map(|s| s.duration).sum::<Duration>();
        let cut_at = end + ctl.grace;
        let mut running = JoinSet::new();
        for n in 0u64.. {
            let Some(offset) = arrival_time(self.rate, &self.stages, n) else {
                break;
            };
            let due = self.start + offset;
            tokio::select! {
                _ = sleep_until(due) => {}
                _ = ctl.reached(Stop::Graceful) => break,
            }
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s,
                _ = sleep_until(due + self.lag) => {
                    sc.recorder_add(DROPPED_ITERATIONS, 1);
                    continue;
                }
                _ = ctl.reached(Stop::Graceful) => break,
            };
            let Ok(slot) = slot else { break };
            let reused = free.lock().ok().and_then(|mut f| f.pop());
            let mut user = reused.unwrap_or_else(|| {
                let vu = next_vu.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                VirtualUser::new(sc, ctl.clone(), vu)
            });
            let free = free.clone();
            running.spawn(async move {
                user.iterate(Some(due), sleep_until(cut_at)).await;
                if let Ok(mut f) = free.lock() {
                    f.push(user);
                }
                drop(slot);
            });
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }
}

impl Loaded {
    /// One session of this scenario; returns its end and its HTTP connections for the user's next iteration.
    async fn run(
        &self,
        identity: SessionIdentity,
        http: Option<HttpClient>,
    ) -> (SessionEnd, Option<HttpClient>) {
        let deadline = Deadline::after(self.timeout);
        match &self.runs {
            Runs::Component(scenario) => {
                // The scenario's config is this plan's, shared rather than copied per session.
                let config = scenario.config.clone();
                let seed = Seed::fresh(identity, config, deadline).continuing(http);
                let finished = lifecycle::run(scenario, seed).await;
                (finished.end, finished.http)
            }
            Runs::Sequence(steps) => {
                let config = self.plan.config.clone();
                // Boxed: a sequence's state machine is large, and only sequences should pay it.
                let steps = Box::pin(run_sequence(steps, identity, config, deadline));
                (steps.await, None)
            }
        }
    }

    /// Records an iteration's duration (shapes beyond one iteration per session), and under
    /// an arrival rate also its latency from the intended start (coordinated omission).
    fn record_iteration(&self, started: Instant, due: Option<Instant>) {
        let Some(sink) = self.sink() else { return };
        if matches!(
            self.plan.shape,
            Shape::Vus {
                iterations: Some(1),
                duration: None,
                ..
            }
        ) {
            return;
        }
        let micros = |from: Instant| u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX);
        let [iteration, from_due] = &self.iteration_keys;
        sink.duration(iteration, micros(started));
        if let Some(due) = due {
            sink.duration(from_due, micros(due));
        }
    }

    fn recorder_add(&self, counter: &'static str, n: u64) {
        if let Some(sink) = self.sink() {
            sink.recorder().add(counter, n);
        }
    }

    fn sink(&self) -> Option<&crate::metrics::Sink> {
        match &self.runs {
            Runs::Component(s) => Some(&s.sink),
            Runs::Sequence(steps) => steps.first().map(|s| &s.sink),
        }
    }
}

/// The scenario's start delay (and random extra) before a virtual user's first session.
async fn start_delay(plan: &ScenarioPlan) {
    let jitter = u32::try_from(plan.random_start_delay.as_millis()).unwrap_or(u32::MAX);
    let delay = plan.start_delay + Duration::from_millis(u64::from(random_below(jitter)));
    if !delay.is_zero() {
        sleep(delay).await;
    }
}
