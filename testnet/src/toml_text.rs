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

/// How often the testnets' nodes check each other's audit logs (milliseconds):
/// short, so a doctored log is reported within seconds.
pub const WITNESS_INTERVAL_MS: u64 = 1000;

/// The `[witness]` table of node `me`: every other node of `nodes` (`(id,
/// endpoint)`) is witnessed every [`WITNESS_INTERVAL_MS`].
pub fn witness_toml(me: &str, nodes: &[(&str, &str)]) -> String {
    let mut text = format!("\n[witness]\ninterval_ms = {WITNESS_INTERVAL_MS}\n");
    for (id, endpoint) in nodes.iter().filter(|(id, _)| *id != me) {
        text.push_str(&format!(
            "\n[[witness.peers]]\nnode_id = {}\nendpoint = {}\n",
            toml_string(id),
            toml_string(endpoint)
        ));
    }
    text
}
