//! Credentials never reach a report: config values under secret-looking keys are replaced.

/// Replacement for redacted configuration values.
const REDACTED: &str = "[redacted]";

/// Key fragments that mark a configuration value as a credential.
const SECRET_KEY_PARTS: [&str; 7] = [
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "auth",
];

/// Copy of `config` with every object value whose key contains (case-insensitive) "password",
/// "secret", "token", "api_key", "apikey", "authorization" or "auth" replaced by `"[redacted]"`,
/// recursively, so reports can be shared without leaking credentials.
pub fn redact(config: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if is_secret_key(key) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Whether a config key names a credential.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}
