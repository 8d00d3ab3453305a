//! TOML text of the configs both testnets write for `quorate-node` and
//! `quorate-coordinator` (the local network on loopback, the compose testnet inside
//! containers): values are quoted by the `toml` crate, so a path or name with quotes
//! or backslashes cannot break a config.

use std::path::Path;

use quorate_transport::tls::TlsPaths;

/// `value` as a TOML string.
pub fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// `path` as a TOML string.
pub fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

/// The `[tls]` table of a node's or coordinator's config.
pub fn tls_toml(paths: &TlsPaths) -> String {
    format!(
        "[tls]\nca = {}\ncert = {}\nkey = {}\n",
        toml_path(&paths.ca),
        toml_path(&paths.cert),
        toml_path(&paths.key)
    )
}

/// One `[[nodes]]` entry of a coordinator's config.
pub fn node_entry(id: &str, endpoint: &str) -> String {
    format!(
        "\n[[nodes]]\nid = {}\nendpoint = {}\n",
        toml_string(id),
        toml_string(endpoint)
    )
}
