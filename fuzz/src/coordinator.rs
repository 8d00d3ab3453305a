//! Fuzz target for the coordinator's config parsing and validation.

#![allow(dead_code)]

use quorate_coordinator::{CoordError, CoordinatorConfig};

use crate::target::{Target, CHEAP};

/// Every target of this module, by name.
pub const NAMES: &[&str] = &["coordinator_config"];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    (name == "coordinator_config").then(coordinator_config)
}

/// Every input is refused in the end (the TLS files do not exist); the property is
/// that parsing and validation fail cleanly as configuration errors.
fn coordinator_config() -> Target {
    let corpus = vec![r#"trust_domain = "quorate.test"
listen = "127.0.0.1:7000"
metrics_listen = "127.0.0.1:9000"
[tls]
ca = "/nonexistent/ca.pem"
cert = "/nonexistent/coordinator.pem"
key = "/nonexistent/coordinator.key"
[signing]
deadline_ms = 5000
node_timeout_ms = 1500
round1_extra = 1
preprocess_batch = 32
max_in_flight_per_client = 256
[[nodes]]
id = "node-1"
endpoint = "https://127.0.0.1:7001"
[[nodes]]
id = "node-2"
endpoint = "https://127.0.0.1:7002"
"#
    .as_bytes()
    .to_vec()];
    Target {
        name: "coordinator_config",
        corpus,
        must_accept: 0,
        seeds_stay_valid: true,
        smoke_cases: CHEAP,
        check: Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            match CoordinatorConfig::from_toml(&text, |_| None) {
                Ok(_) => true,
                Err(CoordError::Config(_)) => false,
                Err(e) => panic!("config errors must be CoordError::Config, got {e}"),
            }
        }),
    }
}
