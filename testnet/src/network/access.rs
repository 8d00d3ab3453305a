//! What tests, drills and the CLI ask a running [`LocalNetwork`] for: a demo
//! client of its coordinator, an approval token from its approver, a certificate
//! from its CA, its ceremony file.

use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::pki;
use quorate_transport::identity::{Location, Role};
use quorate_transport::tls::TlsPaths;

use super::LocalNetwork;
use crate::client::SignerClient;

impl LocalNetwork {
    /// An approval token from the network's approver for an out-of-policy quorum on
    /// `key_id`, valid for `valid_secs` from now.
    pub fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        crate::approver::approve(&self.approver_key_file, key_id, valid_secs, reason)
    }

    /// The ceremony's view of the network.
    pub fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        Ok(CeremonyFile::load(&self.ceremony_file)?)
    }

    /// Issues a certificate for another party (e.g. a second client). A node's
    /// certificate carries the location the network's spec gives that node.
    pub fn issue(&self, role: Role, name: &str) -> anyhow::Result<TlsPaths> {
        let location = match role {
            Role::Node => Some(
                self.spec
                    .nodes
                    .iter()
                    .find(|n| n.id == name)
                    .ok_or_else(|| anyhow::anyhow!("no node {name} in this network"))?
                    .location()?,
            ),
            _ => None,
        };
        self.issue_at(role, name, location.as_ref())
    }

    /// Issues a certificate for `role`/`name` carrying `location` (which a node's
    /// certificate needs and no other role's takes).
    pub fn issue_at(
        &self,
        role: Role,
        name: &str,
        location: Option<&Location>,
    ) -> anyhow::Result<TlsPaths> {
        Ok(pki::issue(
            &self.pki_dir,
            &self.spec.trust_domain,
            role,
            name,
            location,
            &[],
        )?
        .tls_paths())
    }

    /// A client for the public API, as the demo client.
    pub async fn client(&self) -> anyhow::Result<SignerClient> {
        SignerClient::connect(
            &self.coordinator_endpoint,
            "coordinator",
            &self.tls_paths(Role::Client, "demo-client"),
        )
    }
}
