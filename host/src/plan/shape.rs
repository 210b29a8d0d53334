//! Load shapes: how a scenario's iterations are started over time. A closed model runs virtual
//! users (each an iteration after another, for a count or a duration, or following ramping
//! stages); an open model starts iterations at an arrival rate, whatever the target's speed.

use serde::Deserialize;
use std::time::Duration;

/// Longest a due iteration of an arrival rate waits for a free virtual user by default.
pub const DEFAULT_MAX_START_LAG: Duration = Duration::from_secs(1);

/// Virtual users an arrival rate may use at once when the file does not say: twice the peak
/// rate (iterations of up to two seconds keep up), at least 100, at most 10,000.
fn default_max_vus(peak_rate: f64) -> u32 {
    (2.0 * peak_rate).ceil().clamp(100.0, 10_000.0) as u32
}

/// How one scenario's iterations start.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Closed model: `vus` virtual users, each running iterations back to back until it ran
    /// `iterations` (when set) or `duration` passed (when set), whichever comes first.
    Vus {
        vus: u32,
        iterations: Option<u32>,
        duration: Option<Duration>,
    },
    /// Closed model, ramping: the number of active virtual users moves linearly from
    /// `start_vus` through each stage's target; users above the target finish their iteration
    /// (within `graceful_stop`) and stop.
    RampingVus { start_vus: u32, stages: Vec<Stage> },
    /// Open model: iterations start at `start_rate` per second, moving linearly through each
    /// stage's target rate; each runs on a free virtual user (at most `max_vus`). A due start
    /// waits up to `max_start_lag` for one, else it is dropped and counted.
    Arrival {
        start_rate: f64,
        stages: Vec<Stage>,
        max_vus: u32,
        pre_allocated: u32,
        max_start_lag: Duration,
    },
}

/// One step of a ramp: reach `target` (virtual users, or iterations per second) over
/// `duration`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(with = "crate::plan::limits::humantime_serde_compat")]
    pub duration: Duration,
    pub target: f64,
}

/// The shape keys of a `[[scenario]]` or the command line, before they are resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapeSpec {
    /// Legacy: this many sessions, one iteration each.
    pub sessions: Option<u32>,
    pub vus: Option<u32>,
    pub iterations: Option<u32>,
    pub duration: Option<Duration>,
    pub stages: Option<Vec<Stage>>,
    pub rate: Option<f64>,
    pub max_vus: Option<u32>,
    pub pre_allocated: Option<u32>,
    pub max_start_lag: Option<Duration>,
}

/// Shape keys that do not fit together, or values out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShapeError {
    #[error("`rate` needs `duration` or `stages` (e.g. rate = 20, duration = \"30s\")")]
    RateWithoutTime,
    #[error(
        "`rate` is an open model; it does not take `{0}` (use max_vus for the concurrency cap)"
    )]
    RateWith(&'static str),
    #[error("`stages` of virtual users do not take `{0}` (the stages say how long and how many)")]
    StagesWith(&'static str),
    #[error("`{0}` must be a positive number")]
    NotPositive(&'static str),
    #[error("`stages` is empty; give at least one {{ duration = \"10s\", target = 10 }}")]
    NoStages,
    #[error("--stages `{0}` is not DURATION:TARGET,... (e.g. --stages 10s:20,30s:20,10s:0)")]
    StagesArg(String),
}

impl ShapeSpec {
    /// `over`'s keys replace these (the command line over the file); `--sessions` and the
    /// quick flags start a new shape rather than mixing with the file's.
    pub fn overridden_by(&self, over: &ShapeSpec) -> ShapeSpec {
        if *over == ShapeSpec::default() {
            return self.clone();
        }
        let keep = |mine: Option<u32>, theirs: Option<u32>| theirs.or(mine);
        ShapeSpec {
            max_vus: keep(self.max_vus, over.max_vus),
            pre_allocated: keep(self.pre_allocated, over.pre_allocated),
            max_start_lag: over.max_start_lag.or(self.max_start_lag),
            ..over.clone()
        }
    }

    /// The shape these keys describe.
    pub fn resolve(&self) -> Result<Shape, ShapeError> {
        if let Some(rate) = self.rate {
            return self.arrival(rate);
        }
        if let Some(stages) = &self.stages {
            if self.iterations.is_some() {
                return Err(ShapeError::StagesWith("iterations"));
            }
            if self.duration.is_some() {
                return Err(ShapeError::StagesWith("duration"));
            }
            check_stages(stages)?;
            return Ok(Shape::RampingVus {
                start_vus: self.vus.unwrap_or(0),
                stages: stages.clone(),
            });
        }
        let vus = self.vus.or(self.sessions).unwrap_or(1);
        let iterations = match (self.iterations, self.duration) {
            (None, None) => Some(1),
            (i, _) => i,
        };
        Ok(Shape::Vus {
            vus,
            iterations,
            duration: self.duration,
        })
    }

    fn arrival(&self, rate: f64) -> Result<Shape, ShapeError> {
        if !(rate >= 0.0 && rate.is_finite()) {
            return Err(ShapeError::NotPositive("rate"));
        }
        for (key, set) in [
            ("vus", self.vus.is_some()),
            ("iterations", self.iterations.is_some()),
            ("sessions", self.sessions.is_some()),
        ] {
            if set {
                return Err(ShapeError::RateWith(key));
            }
        }
        let stages = match (&self.stages, self.duration) {
            (Some(s), None) => s.clone(),
            (None, Some(d)) => vec![Stage {
                duration: d,
                target: rate,
            }],
            (Some(_), Some(_)) => return Err(ShapeError::StagesWith("duration")),
            (None, None) => return Err(ShapeError::RateWithoutTime),
        };
        check_stages(&stages)?;
        let peak = stages.iter().map(|s| s.target).fold(rate, f64::max);
        let max_vus = self.max_vus.unwrap_or_else(|| default_max_vus(peak)).max(1);
        let pre_allocated = self
            .pre_allocated
            .unwrap_or(peak.ceil() as u32)
            .clamp(1, max_vus);
        Ok(Shape::Arrival {
            start_rate: rate,
            stages,
            max_vus,
            pre_allocated,
            max_start_lag: self.max_start_lag.unwrap_or(DEFAULT_MAX_START_LAG),
        })
    }
}

fn check_stages(stages: &[Stage]) -> Result<(), ShapeError> {
    if stages.is_empty() {
        return Err(ShapeError::NoStages);
    }
    if stages
        .iter()
        .any(|s| !(s.target >= 0.0 && s.target.is_finite()))
    {
        return Err(ShapeError::NotPositive("stages target"));
    }
    Ok(())
}

/// `--stages 10s:20,30s:20,10s:0`.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, ShapeError> {
    let bad = || ShapeError::StagesArg(text.to_owned());
    text.split(',')
        .map(|part| {
            let (d, t) = part.trim().split_once(':').ok_or_else(bad)?;
            Ok(Stage {
                duration: humantime::parse_duration(d.trim()).map_err(|_| bad())?,
                target: t.trim().parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

impl Shape {
    /// Sessions of this scenario alive at once at most (its pool slots): 0 for a scenario that
    /// is only a building block of sequences and `run_scenario`.
    pub fn peak_vus(&self) -> u32 {
        match self {
            Shape::Vus { vus, .. } => *vus,
            Shape::RampingVus { start_vus, stages } => stages
                .iter()
                .map(|s| s.target.ceil() as u32)
                .fold(*start_vus, u32::max),
            Shape::Arrival { max_vus, .. } => *max_vus,
        }
    }

    /// How long the shape runs by itself (None: until its iterations are done).
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Shape::Vus { duration, .. } => *duration,
            Shape::RampingVus { stages, .. } | Shape::Arrival { stages, .. } => {
                Some(stages.iter().map(|s| s.duration).sum())
            }
        }
    }

    /// Which of its stages runs `elapsed` after the shape's start: (1-based index, count);
    /// None for shapes without stages or past the last.
    pub fn stage_at(&self, elapsed: Duration) -> Option<(usize, usize)> {
        let (Shape::RampingVus { stages, .. } | Shape::Arrival { stages, .. }) = self else {
            return None;
        };
        let mut end = Duration::ZERO;
        for (i, s) in stages.iter().enumerate() {
            end += s.duration;
            if elapsed < end {
                return Some((i + 1, stages.len()));
            }
        }
        None
    }

    /// One line for the summary: "10 VUs x 5 iterations", "20/s for 30s", ...
    pub fn describe(&self) -> String {
        match self {
            Shape::Vus {
                vus,
                iterations: Some(n),
                duration: None,
            } => format!("{vus} VUs x {n} iterations"),
            Shape::Vus {
                vus,
                iterations,
                duration: Some(d),
            } => {
                let cap = iterations.map(|n| format!(" (at most {n} iterations each)"));
                format!(
                    "{vus} VUs for {}{}",
                    humantime::format_duration(*d),
                    cap.unwrap_or_default()
                )
            }
            Shape::Vus { vus, .. } => format!("{vus} VUs"),
            Shape::RampingVus { stages, .. } => format!("ramping VUs, {} stages", stages.len()),
            Shape::Arrival {
                start_rate,
                stages,
                max_vus,
                ..
            } => format!(
                "{start_rate}/s arrival rate, {} stage(s), at most {max_vus} VUs",
                stages.len()
            ),
        }
    }
}

/// Linear interpolation of a value that starts at `start` and moves through `stages`: its
/// value `at` a time since the start (the last target after the end).
pub fn ramp_value(start: f64, stages: &[Stage], at: Duration) -> f64 {
    let mut from = start;
    let mut left = at.as_secs_f64();
    for s in stages {
        let d = s.duration.as_secs_f64();
        if left < d {
            return from + (s.target - from) * (left / d);
        }
        left -= d;
        from = s.target;
    }
    from
}

/// When the `n`-th (0-based) iteration of an arrival rate that starts at `start` per second
/// and moves through `stages` is due, as time since the start; None when it falls after the
/// last stage. The count due by time t is the integral of the rate, solved for t.
pub fn arrival_time(start: f64, stages: &[Stage], n: u64) -> Option<Duration> {
    let mut want = n as f64;
    let mut from = start;
    let mut elapsed = 0.0;
    for s in stages {
        let d = s.duration.as_secs_f64();
        let count = (from + s.target) / 2.0 * d;
        if want < count {
            let slope = (s.target - from) / d;
            let t = if slope.abs() < 1e-9 {
                want / from
            } else {
                (-from + (from * from + 2.0 * slope * want).max(0.0).sqrt()) / slope
            };
            return Some(Duration::from_secs_f64(elapsed + t.clamp(0.0, d)));
        }
        want -= count;
        elapsed += d;
        from = s.target;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn legacy_sessions_are_one_iteration_each() {
        let spec = ShapeSpec {
            sessions: Some(5),
            ..ShapeSpec::default()
        };
        assert_eq!(
            spec.resolve(),
            Ok(Shape::Vus {
                vus: 5,
                iterations: Some(1),
                duration: None
            })
        );
    }

    #[test]
    fn a_rate_for_a_duration_starts_rate_times_duration_iterations() {
        let spec = ShapeSpec {
            rate: Some(20.0),
            duration: Some(secs(5)),
            ..ShapeSpec::default()
        };
        let Ok(Shape::Arrival {
            start_rate, stages, ..
        }) = spec.resolve()
        else {
            panic!("arrival expected");
        };
        assert_eq!(arrival_time(start_rate, &stages, 0), Some(Duration::ZERO));
        assert_eq!(
            arrival_time(start_rate, &stages, 99),
            Some(Duration::from_millis(4950))
        );
        assert_eq!(arrival_time(start_rate, &stages, 100), None);
    }

    #[test]
    fn a_ramping_rate_integrates() {
        // 0 → 10/s over 10 s: 50 iterations, the 25th (half of them) at √50 ≈ 7.07 s.
        let stages = [Stage {
            duration: secs(10),
            target: 10.0,
        }];
        let t = arrival_time(0.0, &stages, 25).unwrap().as_secs_f64();
        assert!((t - 50f64.sqrt()).abs() < 1e-6, "{t}");
        assert_eq!(arrival_time(0.0, &stages, 50), None);
        assert!((ramp_value(0.0, &stages, secs(5)) - 5.0).abs() < 1e-9);
        assert!((ramp_value(0.0, &stages, secs(20)) - 10.0).abs() < 1e-9);
        let ramp = Shape::RampingVus {
            start_vus: 0,
            stages: parse_stages("10s:5,20s:5,10s:0").unwrap(),
        };
        assert_eq!(ramp.stage_at(secs(5)), Some((1, 3)));
        assert_eq!(ramp.stage_at(secs(35)), Some((3, 3)));
        assert_eq!(ramp.stage_at(secs(40)), None);
    }

    #[test]
    fn conflicting_keys_are_named() {
        let spec = ShapeSpec {
            rate: Some(1.0),
            vus: Some(3),
            duration: Some(secs(1)),
            ..ShapeSpec::default()
        };
        assert_eq!(spec.resolve(), Err(ShapeError::RateWith("vus")));
        let spec = ShapeSpec {
            rate: Some(1.0),
            ..ShapeSpec::default()
        };
        assert_eq!(spec.resolve(), Err(ShapeError::RateWithoutTime));
        assert!(parse_stages("10s:5,oops").is_err());
        assert_eq!(parse_stages("1s:2,3m:0").unwrap().len(), 2);
    }

    #[test]
    fn the_command_line_replaces_the_files_shape() {
        let file = ShapeSpec {
            sessions: Some(10),
            max_vus: Some(50),
            ..ShapeSpec::default()
        };
        let cli = ShapeSpec {
            rate: Some(5.0),
            duration: Some(secs(2)),
            ..ShapeSpec::default()
        };
        let merged = file.overridden_by(&cli);
        assert_eq!(merged.sessions, None);
        assert_eq!(merged.max_vus, Some(50));
        assert!(matches!(
            merged.resolve(),
            Ok(Shape::Arrival { max_vus: 50, .. })
        ));
    }
}
