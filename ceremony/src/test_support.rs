//! Test helpers shared by the unit tests of the ceremony file and import: a dev
//! PKI in a temporary directory and ceremony file texts using it. (Each test module
//! loads the file itself, so this module uses nothing but `pki`.)
// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use quorate_transport::identity::Role;

use crate::pki;

pub(crate) const DOMAIN: &str = "quorate.test";

/// A PKI with a ceremony certificate, and a ceremony file text using it.
pub(crate) fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::create_ca(&pki_dir, DOMAIN).unwrap();
    pki::issue(&pki_dir, DOMAIN, Role::Ceremony, "alice", None, &[]).unwrap();
    pki::issue(
        &pki_dir,
        DOMAIN,
        Role::Node,
        "node-1",
        Some(&quorate_transport::identity::Location::new("r0", "EU").unwrap()),
        &[],
    )
    .unwrap();
    let path = dir.path().join("ceremony.toml");
    (dir, path)
}

pub(crate) fn nodes_toml(ids: &[&str]) -> String {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "[[nodes]]\nid = \"{id}\"\nendpoint = \"https://127.0.0.1:{}\"\n\
                 region = \"r{i}\"\njurisdiction = \"EU\"\n\n",
                7100 + i
            )
        })
        .collect()
}

pub(crate) fn file_text(cert: &str, nodes: &str) -> String {
    format!(
        "trust_domain = \"{DOMAIN}\"\n\n[tls]\nca = \"pki/ca.pem\"\n\
         cert = \"pki/{cert}.pem\"\nkey = \"pki/{cert}-key.pem\"\n\n{nodes}"
    )
}
