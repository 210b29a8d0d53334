//! Data feeders: record sets a load test names (`[data.NAME]`), loaded once and shared
//! read-only by every session, which takes records with `session.feed(NAME)`.
//!
//! Guests have no files, so this is how per-user data (accounts, search terms) reaches them.
//! Records cross as JSON: a CSV row becomes an object keyed by the header row (values are
//! strings); a JSON file must hold an array, one record per element.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How sessions take records.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FeedMode {
    /// Each virtual user gets record `vu % len` (the same record on every call).
    #[default]
    Vu,
    /// Each call takes the next record, wrapping around.
    RoundRobin,
    /// Each call takes a random record.
    Random,
    /// Each record is handed out once; then `exhausted`.
    Unique,
}

/// `[data.NAME]` in the load-test file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// A .csv (with a header row) or .json (an array) file, relative to the load-test file.
    pub file: PathBuf,
    #[serde(default)]
    pub mode: FeedMode,
}

/// A loaded data set.
#[derive(Debug)]
pub struct Dataset {
    name: String,
    records: Vec<String>,
    mode: FeedMode,
    next: AtomicUsize,
}

/// Why a data set cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data set `{name}`: cannot read {path}: {reason}")]
    Read {
        name: String,
        path: String,
        reason: String,
    },
    #[error("data set `{name}`: {path} is not valid {format}: {reason}")]
    Parse {
        name: String,
        path: String,
        format: &'static str,
        reason: String,
    },
    #[error("data set `{name}`: {path} has no records")]
    Empty { name: String, path: String },
    #[error("data set `{name}`: {path} must be a .csv or .json file")]
    Format { name: String, path: String },
}

/// Why `feed` returned no record.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedError {
    Exhausted,
}

impl Dataset {
    /// Loads `spec` (its path already resolved).
    pub fn load(name: &str, spec: &DataSpec) -> Result<Dataset, DataError> {
        let path = spec.file.display().to_string();
        let records = match spec.file.extension().and_then(|e| e.to_str()) {
            Some("csv") => read_csv(name, &spec.file)?,
            Some("json") => read_json(name, &spec.file)?,
            _ => {
                return Err(DataError::Format {
                    name: name.into(),
                    path,
                });
            }
        };
        if records.is_empty() {
            return Err(DataError::Empty {
                name: name.into(),
                path,
            });
        }
        Ok(Dataset {
            name: name.into(),
            records,
            mode: spec.mode,
            next: AtomicUsize::new(0),
        })
    }

    /// From records already in memory (tests, setup data).
    pub fn from_records(name: &str, records: Vec<serde_json::Value>, mode: FeedMode) -> Dataset {
        Dataset {
            name: name.into(),
            records: records.iter().map(ToString::to_string).collect(),
            mode,
            next: AtomicUsize::new(0),
        }
    }

    /// The data set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The record for virtual user `vu`, by the set's mode; `random` is a draw in `[0, len)`.
    pub fn take(&self, vu: u32, random: impl FnOnce(u32) -> u32) -> Result<&str, FeedError> {
        let len = self.records.len();
        let i = match self.mode {
            FeedMode::Vu => vu as usize % len,
            FeedMode::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % len,
            FeedMode::Random => random(u32::try_from(len).unwrap_or(u32::MAX)) as usize,
            FeedMode::Unique => self.next.fetch_add(1, Ordering::Relaxed),
        };
        self.records
            .get(i)
            .map(String::as_str)
            .ok_or(FeedError::Exhausted)
    }
}

fn read_csv(name: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let err = |reason: String| DataError::Parse {
        name: name.into(),
        path: path.display().to_string(),
        format: "CSV",
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| match e.kind() {
        csv::ErrorKind::Io(io) => DataError::Read {
            name: name.into(),
            path: path.display().to_string(),
            reason: io.to_string(),
        },
        _ => err(e.to_string()),
    })?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    reader
        .records()
        .map(|row| {
            let row = row.map_err(|e| err(e.to_string()))?;
            let object: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .zip(row.iter())
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                .collect();
            Ok(serde_json::Value::Object(object).to_string())
        })
        .collect()
}

fn read_json(name: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Read {
        name: name.into(),
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let err = |reason: String| DataError::Parse {
        name: name.into(),
        path: path.display().to_string(),
        format: "JSON",
        reason,
    };
    match serde_json::from_str::<serde_json::Value>(&text).map_err(|e| err(e.to_string()))? {
        serde_json::Value::Array(items) => Ok(items.iter().map(ToString::to_string).collect()),
        _ => Err(err("the top level must be an array of records".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(mode: FeedMode) -> Dataset {
        Dataset::from_records("users", vec![json!("a"), json!("b"), json!("c")], mode)
    }

    #[test]
    fn modes_hand_out_records_as_documented() {
        let vu = set(FeedMode::Vu);
        assert_eq!(vu.take(4, |_| 0), Ok("\"b\""));
        assert_eq!(vu.take(4, |_| 0), Ok("\"b\""));
        let rr = set(FeedMode::RoundRobin);
        let got: Vec<_> = (0..4).map(|_| rr.take(0, |_| 0).unwrap()).collect();
        assert_eq!(got, ["\"a\"", "\"b\"", "\"c\"", "\"a\""]);
        let unique = set(FeedMode::Unique);
        for _ in 0..3 {
            assert!(unique.take(0, |_| 0).is_ok());
        }
        assert_eq!(unique.take(0, |_| 0), Err(FeedError::Exhausted));
        assert_eq!(set(FeedMode::Random).take(0, |n| n - 1), Ok("\"c\""));
    }

    #[test]
    fn csv_rows_become_objects() {
        let dir = std::env::temp_dir().join(format!("chaperon-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.csv");
        std::fs::write(&file, "name,pass\nann,x1\nbob,\"y,2\"\n").unwrap();
        let d = Dataset::load(
            "users",
            &DataSpec {
                file,
                mode: FeedMode::RoundRobin,
            },
        )
        .unwrap();
        let first: serde_json::Value = serde_json::from_str(d.take(0, |_| 0).unwrap()).unwrap();
        assert_eq!(first, json!({"name": "ann", "pass": "x1"}));
        let second: serde_json::Value = serde_json::from_str(d.take(0, |_| 0).unwrap()).unwrap();
        assert_eq!(second["pass"], "y,2");
    }
}
