//! Paths into JSON values: how config and assigns are read and written.
//!
//! Config and assigns are JSON objects owned by the host; guests address them with a path of
//! keys (`["ping_pong", "iterations"]`, written `ping_pong.iterations` on the command line).

use serde_json::{Map, Value};

/// Why a path lookup or update failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("no value at `{0}`")]
    Missing(String),
    #[error("`{path}` runs through `{at}`, which is not an object")]
    NotAnObject { path: String, at: String },
    #[error(
        "a path of {segments} segments (longest {longest} bytes) is over the limit of {MAX_SEGMENTS} segments of at most {MAX_SEGMENT_LEN} bytes"
    )]
    TooLong { segments: usize, longest: usize },
}

/// Largest JSON text a guest may hand the host at once (a config or assign value, a signal, a
/// child's arguments); deeper than 128 levels is refused by the parser itself.
pub const MAX_JSON: usize = 1 << 20;

/// Most segments a path may have: bounds the nesting a guest can build in host memory (and
/// so every recursion over it).
pub const MAX_SEGMENTS: usize = 32;
/// Longest segment of a path, in bytes.
pub const MAX_SEGMENT_LEN: usize = 256;

/// Refuses a path over [`MAX_SEGMENTS`] or with a segment over [`MAX_SEGMENT_LEN`], before
/// anything walks it or prints it.
pub fn check(path: &[String]) -> Result<(), PathError> {
    let longest = path.iter().map(String::len).max().unwrap_or(0);
    if path.len() > MAX_SEGMENTS || longest > MAX_SEGMENT_LEN {
        return Err(PathError::TooLong {
            segments: path.len(),
            longest,
        });
    }
    Ok(())
}

/// `["a", "b"]` → `a.b`, for messages.
pub fn display(path: &[String]) -> String {
    path.join(".")
}

/// `a.b.c` → `["a", "b", "c"]`; an empty string is the empty (root) path.
pub fn parse(dotted: &str) -> Vec<String> {
    if dotted.is_empty() {
        return Vec::new();
    }
    dotted.split('.').map(str::to_owned).collect()
}

/// The value at `path`; the root for an empty path.
pub fn get<'a>(root: &'a Value, path: &[String]) -> Result<&'a Value, PathError> {
    check(path)?;
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(PathError::NotAnObject {
                path: display(path),
                at: display(&path[..i]),
            });
        };
        cur = map
            .get(key)
            .ok_or_else(|| PathError::Missing(display(path)))?;
    }
    Ok(cur)
}

/// Sets `value` at `path`, creating intermediate objects; an empty path replaces the root.
pub fn set(root: &mut Value, path: &[String], value: Value) -> Result<(), PathError> {
    check(path)?;
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return Ok(());
    };
    let mut cur = root;
    for (i, key) in parents.iter().enumerate() {
        let map = as_object(cur, path, i)?;
        cur = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    as_object(cur, path, parents.len())?.insert(last.clone(), value);
    Ok(())
}

/// Removes the value at `path`; a missing value is not an error.
pub fn delete(root: &mut Value, path: &[String]) -> Result<(), PathError> {
    check(path)?;
    let Some((last, parents)) = path.split_last() else {
        *root = Value::Object(Map::new());
        return Ok(());
    };
    let mut cur = root;
    for key in parents {
        match cur.get_mut(key) {
            Some(next) => cur = next,
            None => return Ok(()),
        }
    }
    if let Value::Object(map) = cur {
        map.remove(last);
    }
    Ok(())
}

/// Bytes of host memory a value holds, roughly: its strings and keys plus a fixed cost per
/// node. Iterative, so any depth is safe.
pub fn weight(value: &Value) -> u64 {
    const NODE: u64 = 32;
    let mut total = 0u64;
    let mut todo = vec![value];
    while let Some(v) = todo.pop() {
        total += NODE;
        match v {
            Value::String(s) => total += s.len() as u64,
            Value::Array(items) => todo.extend(items),
            Value::Object(map) => {
                for (k, item) in map {
                    total += NODE + k.len() as u64;
                    todo.push(item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

/// Merges `overlay` into `base`: objects merge key by key (recursively), anything else replaces.
pub fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parses a command-line value: JSON when it parses as JSON, else a plain string.
pub fn parse_cli_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn as_object<'a>(
    v: &'a mut Value,
    path: &[String],
    depth: usize,
) -> Result<&'a mut Map<String, Value>, PathError> {
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(map) => Ok(map),
        _ => Err(PathError::NotAnObject {
            path: display(path),
            at: display(&path[..depth]),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_creates_nested_objects_and_get_reads_them() {
        let mut v = json!({});
        set(&mut v, &parse("ping_pong.iterations"), json!(10)).unwrap();
        assert_eq!(get(&v, &parse("ping_pong.iterations")).unwrap(), &json!(10));
        assert_eq!(
            get(&v, &parse("ping_pong.missing")),
            Err(PathError::Missing("ping_pong.missing".into()))
        );
    }

    #[test]
    fn set_through_a_scalar_is_an_error() {
        let mut v = json!({"a": 1});
        assert!(matches!(
            set(&mut v, &parse("a.b"), json!(2)),
            Err(PathError::NotAnObject { .. })
        ));
    }

    #[test]
    fn deep_merge_keeps_siblings() {
        let mut v = json!({"a": {"x": 1, "y": 2}, "b": 1});
        deep_merge(&mut v, json!({"a": {"y": 3}, "c": 4}));
        assert_eq!(v, json!({"a": {"x": 1, "y": 3}, "b": 1, "c": 4}));
    }

    #[test]
    fn cli_values_are_json_or_strings() {
        assert_eq!(parse_cli_value("10"), json!(10));
        assert_eq!(parse_cli_value("hello"), json!("hello"));
        assert_eq!(parse_cli_value("[1,2]"), json!([1, 2]));
    }

    #[test]
    fn over_long_paths_are_refused_before_they_are_walked() {
        let deep: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        let mut root = Value::Object(Map::new());
        assert!(matches!(
            set(&mut root, &deep, Value::Null),
            Err(PathError::TooLong { .. })
        ));
        assert!(matches!(get(&root, &deep), Err(PathError::TooLong { .. })));
        assert!(delete(&mut root, &deep).is_err());
        let wide = vec!["x".repeat(MAX_SEGMENT_LEN + 1)];
        assert!(set(&mut root, &wide, Value::Null).is_err());
        assert!(set(&mut root, &deep[..MAX_SEGMENTS], Value::Null).is_ok());
    }

    #[test]
    fn delete_removes_and_ignores_missing() {
        let mut v = json!({"a": {"b": 1, "c": 2}});
        delete(&mut v, &parse("a.b")).unwrap();
        delete(&mut v, &parse("x.y")).unwrap();
        assert_eq!(v, json!({"a": {"c": 2}}));
    }
}
