//! What the command line adds to a load-test file: limit overrides, the shape flags, config
//! values and files, thresholds and outputs. Each is validated here, once.

use super::file::{self, ThresholdRules};
use super::limits::Limits;
use super::shape::{self, ShapeSpec};
use super::{ConfigError, Output, toml_to_json, validate_base_url};
use crate::cli::RunArgs;
use crate::metrics::threshold::{Threshold, ThresholdError};
use crate::util::jsonpath;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[limits]` with the command line's overrides.
pub(super) fn with_cli_limits(mut limits: Limits, args: &RunArgs) -> Result<Limits, ConfigError> {
    if let Some(m) = args.max_concurrent {
        limits.max_concurrent = m;
    }
    if let Some(t) = &args.session_timeout {
        limits.session_timeout =
            humantime::parse_duration(t).map_err(|_| ConfigError::Duration(t.clone()))?;
    }
    Ok(limits)
}

/// `[thresholds]` of the file, then `--threshold` rules.
pub(super) fn thresholds(
    section: &BTreeMap<String, ThresholdRules>,
    args: &[String],
) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = Vec::new();
    for (subject, rules) in section {
        for rule in rules.rules() {
            out.push(match rule {
                file::ThresholdRule::Expr(e) => Threshold::parse(subject, e)?,
                file::ThresholdRule::Full {
                    threshold,
                    abort_on_fail,
                    delay_abort_eval,
                } => Threshold::parse(subject, threshold)?
                    .aborting(*abort_on_fail, delay_abort_eval.unwrap_or_default()),
            });
        }
    }
    for arg in args {
        out.push(Threshold::parse_arg(arg)?);
    }
    Ok(out)
}

/// The shape flags of the command line (`--sessions`, `--vus`, `--rate`, ...).
pub(super) fn cli_shape(args: &RunArgs) -> Result<ShapeSpec, ConfigError> {
    let duration = match &args.duration {
        Some(d) => {
            Some(humantime::parse_duration(d).map_err(|_| ConfigError::ShapeDuration(d.clone()))?)
        }
        None => None,
    };
    let stages = match &args.stages {
        Some(s) => Some(shape::parse_stages(s)?),
        None => None,
    };
    Ok(ShapeSpec {
        sessions: args.sessions,
        vus: args.vus,
        iterations: args.iterations,
        duration,
        stages,
        rate: args.rate,
        max_vus: args.max_vus,
        ..ShapeSpec::default()
    })
}

/// The config set on the command line, applied over every scenario's config.
pub(super) fn cli_overlay(args: &RunArgs) -> Result<Value, ConfigError> {
    let mut overlay = Value::Object(serde_json::Map::new());
    if let Some(path) = &args.config_file {
        jsonpath::deep_merge(&mut overlay, read_config_file(path)?);
    }
    if let Some(url) = &args.base_url {
        validate_base_url(url)?;
        jsonpath::deep_merge(&mut overlay, serde_json::json!({ "base_url": url }));
    }
    for raw in &args.config {
        let (path, value) = raw
            .split_once('=')
            .filter(|(p, _)| !p.is_empty())
            .ok_or_else(|| ConfigError::ConfigArg(raw.clone()))?;
        jsonpath::set(
            &mut overlay,
            &jsonpath::parse(path),
            jsonpath::parse_cli_value(value),
        )
        .map_err(|e| ConfigError::ConfigPath {
            path: path.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(overlay)
}

fn read_config_file(path: &Path) -> Result<Value, ConfigError> {
    let err = |reason: String| ConfigError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if path.extension().and_then(|e| e.to_str()) == Some("toml") {
        let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.message().into()))?;
        return Ok(toml_to_json(table));
    }
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// Parses `--out FORMAT=FILE` values.
pub fn parse_outputs(raw: &[String]) -> Result<Vec<Output>, ConfigError> {
    raw.iter()
        .map(|o| {
            let (format, file) = o
                .split_once('=')
                .filter(|(_, f)| !f.is_empty())
                .ok_or_else(|| ConfigError::OutArg(o.clone()))?;
            match format {
                "json" => Ok(Output::Json(PathBuf::from(file))),
                "csv" => Ok(Output::Csv(PathBuf::from(file))),
                "junit" => Ok(Output::Junit(PathBuf::from(file))),
                "html" => Ok(Output::Html(PathBuf::from(file))),
                "influxdb" => crate::net::influx::InfluxTarget::parse(file)
                    .map(Output::Influx)
                    .map_err(ConfigError::Influx),
                _ => Err(ConfigError::OutArg(o.clone())),
            }
        })
        .collect()
}
