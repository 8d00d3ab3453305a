//! Reaching the one node an escrow command talks to (split asks it to split its
//! share, recover installs the rebuilt share): finding it in the ceremony file, its
//! mTLS channel, and one RPC with the ceremony's timeout. Used by split and recover.

use quorate_transport::tls::TlsMaterial;
use tonic::transport::Channel;

use super::error::EscrowError;
use crate::ceremony_file::{CeremonyFile, CeremonyNode};
use crate::connect::{describe_status, CONNECT_TIMEOUT, RPC_TIMEOUT};
use crate::error::CeremonyError;

pub(super) fn node<'a>(
    file: &'a CeremonyFile,
    node_id: &str,
) -> Result<&'a CeremonyNode, EscrowError> {
    file.nodes.iter().find(|n| n.id == node_id).ok_or_else(|| {
        EscrowError::Usage(format!(
            "node {node_id:?} is not in the ceremony file {}",
            file.source.display()
        ))
    })
}

pub(super) fn tls(file: &CeremonyFile) -> Result<TlsMaterial, EscrowError> {
    file.validate()?;
    Ok(file.tls.load().map_err(CeremonyError::from)?)
}

pub(super) fn channel(tls: &TlsMaterial, node: &CeremonyNode) -> Result<Channel, EscrowError> {
    tls.node_channel(&node.endpoint, &node.id, CONNECT_TIMEOUT)
        .map_err(|e| EscrowError::Node {
            node_id: node.id.clone(),
            reason: e.to_string(),
        })
}

pub(super) async fn call<T>(
    node_id: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Err(_) => Err(format!("{what} timed out after {RPC_TIMEOUT:?}")),
        Ok(Err(status)) => Err(format!("{what}: {}", describe_status(&status))),
        Ok(Ok(response)) => {
            tracing::debug!(node = %node_id, what, "node answered");
            Ok(response.into_inner())
        }
    }
}
