//! While a run goes: once a second, a snapshot of the recorders becomes a bucket of the time
//! series and a progress update (an indicatif line on a terminal, a plain line every few
//! seconds otherwise, nothing with `--quiet`). Sampling reads the sharded recorder, so the hot
//! path pays nothing for it.

use crate::metrics::MetricSet;
use crate::metrics::data::MetricData;
use crate::metrics::timeseries::{Bucket, Sampler, TimeSeries};
use crate::net::influx::InfluxTarget;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How often the plain progress line is printed without a terminal.
const PLAIN_EVERY: u64 = 5;

/// Counters the scheduler keeps for the display.
#[derive(Default)]
pub struct Live {
    /// Sessions running now.
    pub active: AtomicU64,
    /// Iterations ended so far.
    pub iterations: AtomicU64,
}

/// Where progress goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    Quiet,
    Plain,
    Bar,
}

impl Display {
    /// A bar on a terminal, else plain lines; none when quiet.
    pub fn pick(progress: bool) -> Display {
        if !progress {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Plain
        }
    }
}

/// What the display shows of the plan.
pub struct Plan {
    pub display: Display,
    /// The planned length, when known.
    pub total: Option<Duration>,
    /// The stage running at a time since the start ("stage 2/3"), when shapes have stages.
    pub stage: Box<dyn Fn(Duration) -> Option<String> + Send>,
}

/// The running sampler: [`Sampling::finish`] stops it and returns the series.
pub struct Sampling {
    done: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<TimeSeries>,
}

impl Sampling {
    /// Starts sampling `snapshot` every second. `total` is the planned length, when known.
    pub fn start(
        snapshot: impl Fn() -> MetricSet + Send + 'static,
        live: Arc<Live>,
        plan: Plan,
        influx: Option<InfluxTarget>,
    ) -> Sampling {
        let (done, mut stop) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut sampler = Sampler::new();
            let mut stream = Stream::new(influx);
            let mut view = View::new(plan);
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stop => break,
                }
                let (bucket, deltas) = sampler.second(snapshot(), live.active.load(Relaxed));
                view.show(start.elapsed(), &live, &bucket, &deltas);
                stream.send(&bucket, &deltas);
            }
            let (bucket, deltas) = sampler.second(snapshot(), live.active.load(Relaxed));
            view.clear();
            stream.send(&bucket, &deltas);
            stream.flush().await;
            sampler.finish()
        });
        Sampling { done, task }
    }

    /// Takes the last (partial) second and returns the series.
    pub async fn finish(self) -> TimeSeries {
        let _ = self.done.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Each bucket's points on their way to InfluxDB (writes run concurrently, the run never waits
/// for them; the end waits for the last ones); the first failure is printed once.
struct Stream {
    target: Option<InfluxTarget>,
    writes: tokio::task::JoinSet<Result<(), String>>,
    warned: bool,
}

impl Stream {
    fn new(target: Option<InfluxTarget>) -> Stream {
        Stream {
            target,
            writes: tokio::task::JoinSet::new(),
            warned: false,
        }
    }

    fn send(&mut self, bucket: &Bucket, deltas: &BTreeMap<String, MetricData>) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let body = super::influx::lines(bucket, deltas);
        self.writes.spawn(async move { target.write(body).await });
        while let Some(done) = self.writes.try_join_next() {
            self.warn(done);
        }
    }

    async fn flush(&mut self) {
        while let Some(done) = self.writes.join_next().await {
            self.warn(done);
        }
    }

    fn warn(&mut self, done: Result<Result<(), String>, tokio::task::JoinError>) {
        if let Ok(Err(e)) = done
            && !self.warned
        {
            self.warned = true;
            eprintln!("warning: {e}; points are not being written");
        }
    }
}

/// The progress display.
struct View {
    display: Display,
    total: Option<Duration>,
    stage: Box<dyn Fn(Duration) -> Option<String> + Send>,
    bar: Option<indicatif::ProgressBar>,
    dropped: u64,
    errors: u64,
}

impl View {
    fn new(plan: Plan) -> View {
        let Plan {
            display,
            total,
            stage,
        } = plan;
        let bar = (display == Display::Bar).then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t.as_secs().max(1)),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
            );
            if let (Some(_), Ok(style)) = (total, style) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        View {
            display,
            total,
            stage,
            bar,
            dropped: 0,
            errors: 0,
        }
    }

    fn show(
        &mut self,
        elapsed: Duration,
        live: &Live,
        bucket: &Bucket,
        deltas: &BTreeMap<String, MetricData>,
    ) {
        self.dropped += bucket.dropped;
        self.errors += bucket.errors;
        let stage = (self.stage)(elapsed)
            .map(|s| format!("{s}, "))
            .unwrap_or_default();
        let line = format!(
            "{stage}{} active, {} iterations, {} req/s, {} errors, p95 {}, {} dropped",
            bucket.active,
            live.iterations.load(Relaxed),
            bucket.requests,
            self.errors,
            current_p95(deltas),
            self.dropped
        );
        match (&self.bar, self.display) {
            (Some(bar), _) => {
                bar.set_position(elapsed.as_secs());
                bar.set_message(line);
            }
            (None, Display::Plain) if elapsed.as_secs().is_multiple_of(PLAIN_EVERY) => {
                let total = self
                    .total
                    .map(|t| format!("/{}s", t.as_secs()))
                    .unwrap_or_default();
                eprintln!("[{:>4}s{total}] {line}", elapsed.as_secs());
            }
            _ => {}
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// p95 of the last second over the HTTP request metrics (all metrics when there are none).
fn current_p95(deltas: &BTreeMap<String, MetricData>) -> String {
    let is_request = crate::metrics::timeseries::is_request;
    let requests: Vec<&MetricData> = deltas
        .iter()
        .filter(|(k, _)| is_request(k))
        .map(|(_, d)| d)
        .collect();
    let chosen: Vec<&MetricData> = if requests.is_empty() {
        deltas.values().collect()
    } else {
        requests
    };
    let mut all = MetricData::new();
    for d in chosen {
        all.merge(d);
    }
    if all.histogram.is_empty() {
        return "-".to_owned();
    }
    crate::report::format_micros(all.histogram.value_at_quantile(0.95) as f64)
}
