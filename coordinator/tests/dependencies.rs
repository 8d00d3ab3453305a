//! The dependency graph is part of the trust model: the coordinator is an untrusted
//! relay that never handles a share, an escrow part or a ceremony envelope, so it must
//! not even link the code that does. These tests read the graph with `cargo tree`
//! (offline: the lock file already names every package) and fail if a dependency
//! change would let the coordinator, or let a node or the ceremony tool reach into
//! the coordinator or the testnet.

use std::process::Command;

/// Every package `package` links in a normal (non-dev, non-build) build.
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_links_none_of(package: &str, forbidden: &[&str]) {
    let linked = normal_dependencies(package);
    assert!(
        linked.iter().any(|p| p == package),
        "{package} not in its own tree: {linked:?}"
    );
    let found: Vec<&String> = linked
        .iter()
        .filter(|p| forbidden.contains(&p.as_str()))
        .collect();
    assert!(found.is_empty(), "{package} links {found:?}");
}

#[test]
fn the_coordinator_links_no_escrow_envelope_or_share_handling_code() {
    assert_links_none_of(
        "quorate-coordinator",
        &[
            "vsss-rs",
            "x25519-dalek",
            "hkdf",
            "age",
            "quorate-escrow",
            "quorate-ceremony-protocol",
            "quorate-node",
            "sled",
        ],
    );
}

#[test]
fn nodes_and_the_ceremony_tool_do_not_depend_on_the_coordinator_or_the_testnet() {
    for package in ["quorate-node", "quorate-ceremony"] {
        assert_links_none_of(package, &["quorate-coordinator", "quorate-testnet"]);
    }
}

#[test]
fn the_client_links_nothing_that_handles_shares_ceremonies_or_escrow() {
    assert_links_none_of(
        "quorate-client",
        &[
            "quorate-node",
            "quorate-ceremony",
            "quorate-ceremony-protocol",
            "quorate-escrow",
            "quorate-coordinator",
            "quorate-testnet",
            "vsss-rs",
            "sled",
        ],
    );
}
