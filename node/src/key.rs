//! A key share ready to sign with ([`ActiveKey`]), and the check that makes a stored
//! or delivered key record one: `activate`.
//!
//! Used by the node's state (every key it loads or installs goes through
//! `activate`) and, through it, by the signing, escrow and ceremony steps.
//! Invariants: an active key's manifest names this node at its own region and
//! jurisdiction, and its key package is this node's share of the manifest's key; the
//! key package is decoded once, here, and the signing path uses the decoded form.

use quorate_frost::{ParsedKeyPackage, SecretKeyPackage};
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::StatementSigner;
use quorate_transport::key_attestation;
use quorate_wire::pb;

use crate::identity::NodeIdentity;
use crate::store::KeyRecord;

/// A key share ready to sign with.
#[derive(Debug)]
pub struct ActiveKey {
    /// The key's validated manifest.
    pub manifest: Manifest,
    /// This node's FROST identifier for the key.
    pub identifier: Vec<u8>,
    /// The key package as stored (ceremonies and escrow work from these bytes).
    pub(crate) key_package: SecretKeyPackage,
    /// The same, decoded once when the key is loaded: the signing path uses it.
    pub(crate) parsed_key_package: ParsedKeyPackage,
    /// This node's signed statement that it holds this manifest's key, made when
    /// the key is loaded or installed, made again with each renewed certificate
    /// ([`ActiveKey::attest`]), and listed with the manifest.
    attestation: std::sync::RwLock<pb::Signed>,
}

impl ActiveKey {
    /// The key as `ListNodeKeys` and `GetManifest` report it: the manifest and this
    /// node's attestation of it.
    pub(crate) fn node_key(&self) -> pb::NodeKey {
        pb::NodeKey {
            manifest: self.manifest.encoded.clone(),
            attestation: Some(self.attestation()),
        }
    }

    /// This node's current attestation of the key.
    pub fn attestation(&self) -> pb::Signed {
        self.attestation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signs the attestation again with `attestor`'s current certificate: after a
    /// renewal, so that the key's attestation verifies for as long as the new
    /// certificate is valid, not only as long as the old one was. (An attestation
    /// made under the old certificate stays valid until that certificate expires,
    /// so peers that read it before the renewal are not wrong meanwhile.)
    pub(crate) fn attest(
        &self,
        identity: &NodeIdentity,
        attestor: &StatementSigner,
    ) -> Result<(), String> {
        let attestation = key_attestation::sign(
            attestor,
            &identity.node_id,
            &self.manifest.key_id,
            &self.manifest.hash,
        )
        .map_err(|e| format!("cannot attest key {:?}: {e}", self.manifest.key_id))?;
        *self.attestation.write().unwrap_or_else(|p| p.into_inner()) = attestation;
        Ok(())
    }
}

/// Validates a key record against this node: the manifest names this node with its
/// region and jurisdiction, and the key package is this node's share of that key.
///
/// The active key carries this node's attestation of the manifest, signed with
/// `attestor` (its mTLS key): every key the node holds is attested, including keys
/// stored before attestations existed, since they are signed again on every load.
pub(crate) fn activate(
    identity: &NodeIdentity,
    attestor: &StatementSigner,
    record: KeyRecord,
) -> Result<ActiveKey, String> {
    let manifest = Manifest::decode(&record.manifest).map_err(|e| e.to_string())?;
    let me = manifest.participant(&identity.node_id).ok_or_else(|| {
        format!(
            "key {:?} does not name this node ({}) as a participant",
            manifest.key_id, identity.node_id
        )
    })?;
    if me.region != identity.region || me.jurisdiction != identity.jurisdiction {
        return Err(format!(
            "key {:?} places {} in {}/{}, but this node is in {}/{}",
            manifest.key_id,
            identity.node_id,
            me.region,
            me.jurisdiction,
            identity.region,
            identity.jurisdiction
        ));
    }
    let ops = manifest.ciphersuite.ops();
    let parsed_key_package = ops
        .parse_key_package(&record.key_package)
        .map_err(|e| e.to_string())?;
    let info = parsed_key_package.info();
    if info.identifier != me.identifier
        || info.verifying_share != me.verifying_share
        || info.verifying_key != manifest.public_key.verifying_key
        || info.min_signers != manifest.threshold
    {
        return Err(format!(
            "key package is not {}'s share of key {:?}",
            identity.node_id, manifest.key_id
        ));
    }
    let attestation = key_attestation::sign(
        attestor,
        &identity.node_id,
        &manifest.key_id,
        &manifest.hash,
    )
    .map_err(|e| format!("cannot attest key {:?}: {e}", manifest.key_id))?;
    Ok(ActiveKey {
        attestation: std::sync::RwLock::new(attestation),
        identifier: me.identifier.clone(),
        manifest,
        key_package: record.key_package,
        parsed_key_package,
    })
}
