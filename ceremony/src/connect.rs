//! Reaching the nodes of a ceremony: one mTLS channel per node, the pre-check that
//! every node is who the ceremony file says before anything is sent, and how a
//! node's gRPC status reads in errors. Used by import, the key ceremonies and escrow.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use quorate_transport::identity::{Location, Role};
use quorate_transport::tls::TlsMaterial;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::transport::Channel;

use crate::ceremony_file::{CeremonyFile, CeremonyNode};
use crate::error::{CeremonyError, NodeFailure};

/// How long to wait for a node's TCP/TLS connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC to a node may take, connection included.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// A node that passed the pre-check.
pub(crate) struct Reached {
    pub(crate) channel: Channel,
    pub(crate) fingerprint: Option<String>,
}

/// Reaches every node and checks who it says it is; fails naming every node that
/// did not answer as expected. Returns one entry per node, in file order.
pub(crate) async fn precheck(
    file: &CeremonyFile,
    tls: &Arc<TlsMaterial>,
) -> Result<Vec<Reached>, CeremonyError> {
    let checks = file
        .nodes
        .iter()
        .map(|node| check_node(node, Arc::clone(tls)));
    let results = join_all(checks).await;
    let mut reached = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for (node, result) in file.nodes.iter().zip(results) {
        match result {
            Ok(r) => reached.push(r),
            Err(reason) => failures.push(NodeFailure {
                node_id: node.id.clone(),
                reason: format!("{}: {reason}", node.endpoint),
            }),
        }
    }
    if failures.is_empty() {
        Ok(reached)
    } else {
        Err(CeremonyError::PreCheck {
            total: file.nodes.len(),
            failures,
        })
    }
}

/// Reaches one node and checks it is who the ceremony file says: the certificate of
/// spiffe://<td>/node/<id>, the region and jurisdiction its CA attests, and what it
/// reports. The reason it is not, as a user reads it (without the endpoint).
pub(crate) async fn check_node(
    node: &CeremonyNode,
    tls: Arc<TlsMaterial>,
) -> Result<Reached, String> {
    // The channel accepts only the certificate of spiffe://<td>/node/<id>
    // (a node answering at the wrong endpoint, or another party's
    // certificate, fails the handshake), and records the certificate the
    // node presents on it, for the transcript and for the node's location:
    // the certificate of the connection the ceremony runs over, at no extra
    // handshake.
    let server = tls
        .server_identity(Role::Node, &node.id)
        .map_err(|e| e.to_string())?;
    let (channel, server_certificate) = tls
        .observed_channel(&node.endpoint, &server, CONNECT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut client = CeremonyClient::new(channel.clone());
    let info = match tokio::time::timeout(RPC_TIMEOUT, client.get_info(pb::GetInfoRequest {})).await
    {
        Err(_) => return Err(format!("GetInfo timed out after {RPC_TIMEOUT:?}")),
        Ok(Err(status)) => return Err(describe_status(&status)),
        Ok(Ok(response)) => response.into_inner(),
    };
    // GetInfo completed a verified handshake, so the certificate is known.
    let certificate = server_certificate
        .get()
        .ok_or_else(|| "the node's certificate was not observed on its connection".to_string())?;
    // The node's location is what its CA attests, not what it reports: the
    // ceremony file's region and jurisdiction go into the setup and the
    // manifest only if the certificate says the same.
    let attested = Location::from_certificate_der(&certificate)
        .map_err(|e| format!("the node's certificate: {e}"))?
        .ok_or_else(|| {
            "the node's certificate carries no region and jurisdiction \
             (issue it with --region and --jurisdiction)"
                .to_string()
        })?;
    let mut mismatches = Vec::new();
    for (field, got, want) in [
        ("certificate region", &attested.region, &node.region),
        (
            "certificate jurisdiction",
            &attested.jurisdiction,
            &node.jurisdiction,
        ),
        ("node_id", &info.node_id, &node.id),
        ("region", &info.region, &node.region),
        ("jurisdiction", &info.jurisdiction, &node.jurisdiction),
    ] {
        if got != want {
            mismatches.push(format!("{field} {got:?} (ceremony file says {want:?})"));
        }
    }
    if !mismatches.is_empty() {
        return Err(format!("node answers with {}", mismatches.join(", ")));
    }
    let fingerprint = Some(crate::pki::fingerprint_der(&certificate));
    tracing::info!(
        node = %node.id,
        region = %info.region,
        jurisdiction = %info.jurisdiction,
        "node checked"
    );
    Ok(Reached {
        channel,
        fingerprint,
    })
}

/// A status as a user reads it, with the transport cause when there is one
/// (tonic's own message is often just "transport error").
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(cause) = source {
        // hyper and tonic wrap errors in layers that repeat each other's words.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
