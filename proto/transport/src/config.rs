//! Loading TOML config files with `QUORATE_*` environment overrides, shared by the
//! node and the coordinator so both behave the same way.

use serde::de::DeserializeOwned;

/// Parses `text` as TOML, overrides keys from `env` (each `(VAR, "dotted.key")` in
/// `overrides` whose variable is set replaces that key with a string), and
/// deserializes into `T`. Errors name the offending key.
pub fn from_toml_with_env<T: DeserializeOwned>(
    text: &str,
    overrides: &[(&str, &str)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for (var, key) in overrides {
        if let Some(value) = env(var) {
            set_dotted(&mut table, key, value);
        }
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())
}

fn set_dotted(table: &mut toml::Table, dotted: &str, value: String) {
    match dotted.split_once('.') {
        None => {
            // Numbers and booleans written in the environment keep their TOML type.
            let parsed = value
                .parse::<i64>()
                .map(toml::Value::Integer)
                .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
                .unwrap_or(toml::Value::String(value));
            table.insert(dotted.to_string(), parsed);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                set_dotted(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Sample {
        name: String,
        tls: Tls,
        port: u16,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Tls {
        ca: String,
    }

    #[test]
    fn env_overrides_nested_and_typed_keys() {
        let s: Sample = from_toml_with_env(
            "name = \"a\"\nport = 1\n[tls]\nca = \"x\"",
            &[("N", "name"), ("CA", "tls.ca"), ("P", "port")],
            |v| match v {
                "CA" => Some("y".into()),
                "P" => Some("7".into()),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!((s.name.as_str(), s.tls.ca.as_str(), s.port), ("a", "y", 7));
    }

    #[test]
    fn error_names_the_missing_key() {
        let err = from_toml_with_env::<Sample>("name = \"a\"", &[], |_| None).unwrap_err();
        assert!(err.contains("tls") || err.contains("port"), "{err}");
    }
}
