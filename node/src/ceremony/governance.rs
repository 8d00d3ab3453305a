//! The administrator quorum: a governed operation on a key (refresh, retirement of
//! a removed node's share, repair, escrow split, escrow recovery) goes ahead on
//! this node only with authorizations of exactly its setup by as many of the key's
//! administrators as its policy needs ([`quorate_keys::authorization`]).
//!
//! Used by the refresh, retirement, repair, escrow and install steps, before they
//! touch a share or start a session. Invariants: the administrators and their
//! number come from the manifest this node holds (or, for a repair's target or an
//! escrow recovery, which hold none, the manifest whose hash the setup names),
//! never from anything else in the request; every verdict is audited, the refusal
//! with its reason and the authorization with who gave it.

use quorate_ceremony_protocol::setup::Setup;
use quorate_keys::audit::AuditRecord;
use quorate_keys::authorization::{self, Operation};
use quorate_keys::manifest::Manifest;

use crate::error::NodeError;
use crate::state::{bounded, NodeState, MAX_REFUSAL_DETAIL};

/// Checks that `authorizations` let `setup` go ahead on `manifest`'s key, and
/// audits the verdict (`caller` is the ceremony tool's SPIFFE id). A key without
/// administrators (its creator opted out, or it predates them) needs none.
pub(crate) fn check_authorized(
    node: &NodeState,
    manifest: &Manifest,
    setup: &Setup,
    authorizations: &[Vec<u8>],
    caller: &str,
) -> Result<(), NodeError> {
    let policy = &manifest.policy;
    if !policy.is_governed() {
        return Ok(());
    }
    let operation = Operation {
        key_id: &setup.pb.key_id,
        operation: setup.kind.name(),
        ceremony_id: setup.ceremony_id(),
        setup_hash: &setup.hash,
    };
    let verdict = authorization::verify_quorum(
        authorizations,
        &operation,
        &policy.administrators,
        policy.administrators_required,
        quorate_keys::approval::unix_now(),
    );
    let described = format!(
        "{} ceremony={} setup={}",
        setup.kind.name(),
        setup.ceremony_id(),
        hex::encode(setup.hash)
    );
    match verdict {
        Ok(admins) => {
            // The authorizations themselves, by hash: an auditor holding the files
            // (the operator keeps them with the transcript) can match each.
            let hashes: Vec<String> = authorizations
                .iter()
                .map(|a| hex::encode(quorate_wire::sha256(a)))
                .collect();
            node.audit.append(AuditRecord {
                event: "operation_authorized".into(),
                key_id: setup.pb.key_id.clone(),
                caller: caller.to_string(),
                detail: format!("{described} authorizations_sha256={}", hashes.join(",")),
                authorized_by: admins.iter().map(hex::encode).collect(),
                ..Default::default()
            })?;
            tracing::info!(key_id = %setup.pb.key_id, operation = setup.kind.name(), ceremony_id = %setup.ceremony_id(), administrators = admins.len(), "governed operation authorized");
            Ok(())
        }
        Err(e) => Err(refuse(
            node,
            &setup.pb.key_id,
            caller,
            &format!("{described}: {e}"),
            format!("{} of key {:?}: {e}", setup.kind.name(), setup.pb.key_id),
        )?),
    }
}

/// Audits a refused governed operation (`detail` for the record) and returns
/// the error to answer with (`message`).
pub(crate) fn refuse(
    node: &NodeState,
    key_id: &str,
    caller: &str,
    detail: &str,
    message: String,
) -> Result<NodeError, NodeError> {
    // The reason may quote what the caller sent: bounded, and logged as a quoted
    // string, so a refusal cannot fill the log or forge lines in it.
    let detail = bounded(detail.to_string(), MAX_REFUSAL_DETAIL);
    node.audit.append(AuditRecord {
        event: "operation_refused".into(),
        key_id: key_id.to_string(),
        caller: caller.to_string(),
        detail: detail.clone(),
        ..Default::default()
    })?;
    tracing::warn!(key_id = %key_id, detail = ?detail, "governed operation refused");
    Ok(NodeError::NotAuthorized(message))
}
