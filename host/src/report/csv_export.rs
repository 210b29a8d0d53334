//! The CSV output: one row per metric with Chaperon's columns and percentile set (in µs,
//! rounded), plus our error count and rate, quoted properly (keys may hold commas and quotes).

use super::{Report, ReportError};
use std::path::Path;

/// Chaperon's percentile set.
const PERCENTILES: [f64; 15] = [
    10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 75.0, 80.0, 85.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999,
];

impl Report {
    /// The CSV text: a header, then one row per metric key.
    pub fn to_csv(&self) -> Result<String, ReportError> {
        let mut out = ::csv::Writer::from_writer(Vec::new());
        let mut header = vec![
            "metric".to_owned(),
            "total_count".into(),
            "errors".into(),
            "max".into(),
            "mean".into(),
            "min".into(),
        ];
        header.extend(PERCENTILES.iter().map(|p| format!("percentile_{p:?}")));
        header.push("rate_per_sec".into());
        out.write_record(&header).map_err(csv_error)?;
        for (key, stats) in &self.metrics {
            let data = stats
                .to_data()
                .map_err(|e| ReportError::Histogram(format!("metric {key:?}: {e}")))?;
            let h = &data.histogram;
            let mut row = vec![
                key.clone(),
                stats.count.to_string(),
                stats.errors.to_string(),
                stats.max.to_string(),
                format!("{}", stats.mean.round()),
                stats.min.to_string(),
            ];
            row.extend(PERCENTILES.iter().map(|p| {
                if stats.count == 0 {
                    "0".to_owned()
                } else {
                    h.value_at_quantile(p / 100.0).to_string()
                }
            }));
            row.push(format!("{:.3}", stats.rate));
            out.write_record(&row).map_err(csv_error)?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ReportError::Histogram(e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Writes [`Report::to_csv`] to `path`.
    pub fn write_csv(&self, path: &Path) -> Result<(), ReportError> {
        super::write_file(path, &self.to_csv()?)
    }
}

fn csv_error(e: ::csv::Error) -> ReportError {
    ReportError::Histogram(format!("CSV: {e}"))
}
