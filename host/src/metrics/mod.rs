//! Metrics: one naming rule ([`keys`]), one recording site ([`Sink`]), sharded HDR recording
//! without per-sample storage ([`recorder`]), and the merged data the report reads ([`data`]).

pub mod data;
pub mod keys;
pub mod recorder;
pub mod sink;
pub mod threshold;
pub mod timeseries;

pub use data::{CheckCount, MAX_METRIC_KEYS, MetricData, MetricSet};
pub use keys::MetricKey;
pub use recorder::Recorder;
pub use sink::Sink;
