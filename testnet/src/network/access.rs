//! What tests, drills and the CLI ask a running [`LocalNetwork`] for: a demo
//! client of its coordinator, an approval token from its approver, a certificate
//! from its CA, its ceremony file.

use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::pki;
use quorate_transport::identity::Role;
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

    /// Issues a certificate for another party (e.g. a second client).
    pub fn issue(&self, role: Role, name: &str) -> anyhow::Result<TlsPaths> {
        Ok(pki::issue(&self.pki_dir, &self.spec.trust_domain, role, name, &[])?.tls_paths())
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
