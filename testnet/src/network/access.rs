//! What tests, drills and the CLI ask a running [`LocalNetwork`] for: a demo
//! client of its coordinator, an approval token from its approver, its
//! administrators' authorizations, a certificate from its CA, its ceremony file.

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

    /// Authorizations of `plan` by as many of the network's administrators as its
    /// keys' policies need.
    pub fn authorize(&self, plan: &quorate_ceremony::plan::Plan) -> anyhow::Result<Vec<Vec<u8>>> {
        crate::administrators::authorize(&self.dir, plan)
    }

    /// Repairs `node`'s share of `key_id` from t helpers, authorized by the
    /// network's administrators.
    pub async fn repair(
        &self,
        key_id: &str,
        node: &str,
    ) -> anyhow::Result<quorate_ceremony::keygen::RepairOutcome> {
        crate::administrators::repair(&self.dir, &self.ceremony()?, key_id, node).await
    }

    /// Refreshes a key as an operator would: plans the refresh, has the network's
    /// administrators authorize it, and runs it.
    pub async fn refresh(
        &self,
        request: quorate_ceremony::keygen::RefreshRequest,
    ) -> anyhow::Result<quorate_ceremony::transcript::Transcript> {
        use quorate_ceremony::keygen::{plan_refresh, run_refresh};
        let ceremony = self.ceremony()?;
        let plan = plan_refresh(&ceremony, request).await?;
        let authorizations = self.authorize(&plan)?;
        Ok(run_refresh(&ceremony, &plan, &authorizations).await?)
    }

    /// Has `node` split its share of `key_id` among the key's escrow custodians as
    /// an operator would (plan, the administrators' authorizations, split),
    /// writing the parts to `out_dir`.
    pub async fn escrow_split(
        &self,
        key_id: &str,
        node: &str,
        out_dir: &std::path::Path,
    ) -> anyhow::Result<quorate_ceremony::escrow::SplitOutcome> {
        use quorate_ceremony::escrow::{plan_split, split, SplitRequest};
        let ceremony = self.ceremony()?;
        let plan = plan_split(&ceremony, key_id, &[node.to_string()]).await?;
        let authorizations = self.authorize(&plan)?;
        Ok(split(
            &ceremony,
            SplitRequest {
                key_id: key_id.into(),
                node_id: node.into(),
                out_dir: out_dir.to_path_buf(),
                plan: Some(plan),
                authorizations,
            },
        )
        .await?)
    }

    /// Rebuilds `node`'s share of `key_id` from custodians' escrow `parts` and
    /// installs it as an operator would (plan, the administrators'
    /// authorizations, recovery).
    pub async fn escrow_recover(
        &self,
        key_id: &str,
        node: &str,
        parts: Vec<(std::path::PathBuf, quorate_escrow::EscrowPart)>,
    ) -> anyhow::Result<quorate_ceremony::escrow::RecoverOutcome> {
        use quorate_ceremony::escrow::{plan_recover, recover, RecoverRequest};
        let ceremony = self.ceremony()?;
        let plan = plan_recover(&ceremony, key_id, node).await?;
        let authorizations = self.authorize(&plan)?;
        Ok(recover(
            &ceremony,
            RecoverRequest {
                key_id: key_id.into(),
                node_id: node.into(),
                parts,
                plan: Some(plan),
                authorizations,
            },
        )
        .await?)
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
