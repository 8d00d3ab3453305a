//! The node as a server: [`BoundNode::bind`] opens the store and binds the ports
//! (so bad config or a wrong KEK fails before anything is served), and
//! [`BoundNode::serve`] serves the gRPC services, health and metrics until shutdown.
//!
//! Used by `main.rs` and by the testnet, which runs nodes in-process. Invariant: once
//! the audit log can no longer be made durable, the node reports `NOT_SERVING` in
//! `grpc.health.v1` (overall and for `Node`) until it is restarted, on its mTLS port
//! and its plaintext health port alike (one status: [`quorate_transport::health`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use quorate_wire::{pb, MAX_NODE_REQUEST_BYTES};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use quorate_transport::health::{HealthPort, RunningHealthPort};
use quorate_transport::metrics::Registry;
use quorate_transport::tls::TlsMaterial;

use crate::audit::AuditLog;
use crate::ceremony::{CeremonyKeys, Participant};
use crate::config::{NodeConfig, NodeConfigFile};
use crate::error::NodeError;
use crate::identity::NodeIdentity;
use crate::nonces::NonceStore;
use crate::service::{AuditService, CeremonyService, NodeService};
use crate::state::NodeState;
use crate::store::{KekReport, KeyStore};
use quorate_transport::intent::IntentVerifier;

/// A node whose store is open and whose port is bound, ready to serve.
#[derive(Debug)]
pub struct BoundNode {
    file: NodeConfigFile,
    tls: TlsMaterial,
    state: Arc<NodeState>,
    participant: Arc<Participant>,
    listener: TcpListener,
    metrics: Arc<Registry>,
    metrics_listener: Option<TcpListener>,
    health_port: Option<HealthPort>,
}

/// Streams a peer may reset before the server accepts them, per connection (see
/// [`BoundNode::serve`]).
const MAX_PENDING_ACCEPT_RESETS: usize = 4096;

/// How often the node signs a checkpoint of its audit log if it has grown (and on
/// every `GetCheckpoint`).
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl BoundNode {
    /// Opens the store (refusing a wrong KEK or a damaged store) and binds the port.
    pub async fn bind(config: NodeConfig) -> Result<Self, NodeError> {
        quorate_transport::tls_reload::keep_sighup_for_reloads();
        let NodeConfig { file, tls, keks } = config;
        let (store, report) = KeyStore::open_with(&file.data_dir, &keks)?;
        report_keks(&report);
        let identity = NodeIdentity {
            node_id: file.node_id.clone(),
            trust_domain: file.trust_domain.clone(),
            region: file.region.clone(),
            jurisdiction: file.jurisdiction.clone(),
        };
        let limits = file.nonces;
        let metrics = Registry::new();
        crate::metrics::set_kek_providers_unavailable(&metrics, report.unavailable.len());
        // One CA for ceremony statements and clients' intents.
        let verifier = tls
            .statement_verifier()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let ceremony = CeremonyKeys {
            signer: tls
                .statement_signer()
                .map_err(|e| NodeError::Config(e.to_string()))?,
            verifier: verifier.clone(),
        };
        let intents = IntentVerifier::new(verifier);
        let attestor = tls
            .statement_signer()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let state = NodeState::open(
            identity,
            attestor,
            store,
            NonceStore::new(limits.max_outstanding, limits.ttl()),
            intents,
            metrics.clone(),
            file.audit,
        )?
        .with_danger(file.danger)
        .with_witnessed(
            file.witness
                .peers
                .iter()
                .map(|p| p.node_id.clone())
                .collect(),
        );
        let participant = Participant::new(ceremony);
        let listener = TcpListener::bind(file.listen)
            .await
            .map_err(|e| NodeError::Server(format!("cannot listen on {}: {e}", file.listen)))?;
        let metrics_listener = match file.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Server(format!("cannot listen for metrics on {addr}: {e}"))
            })?),
            None => None,
        };
        let health_port = match file.health_listen {
            Some(addr) => Some(HealthPort::bind(addr).await.map_err(|e| {
                NodeError::Server(format!("cannot listen for health probes on {addr}: {e}"))
            })?),
            None => None,
        };
        Ok(Self {
            file,
            tls,
            state: Arc::new(state),
            participant: Arc::new(participant),
            listener,
            metrics,
            metrics_listener,
            health_port,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, NodeError> {
        self.listener
            .local_addr()
            .map_err(|e| NodeError::Server(e.to_string()))
    }

    /// The bound address of the plaintext health port, if configured.
    pub fn health_addr(&self) -> Result<Option<SocketAddr>, NodeError> {
        self.health_port
            .as_ref()
            .map(HealthPort::local_addr)
            .transpose()
            .map_err(|e| NodeError::Server(e.to_string()))
    }

    /// Serves until `shutdown` resolves, then drains: health `NOT_SERVING`, HTTP/2
    /// GOAWAY to every peer, new signing work refused, round-2 batches already
    /// taken signed, recorded and answered, and round-2 streams ended. Returns once
    /// every connection has closed, or after `shutdown_grace_ms` at the latest; the
    /// health port, `NOT_SERVING` throughout the drain, closes then.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let addr = self.local_addr()?;
        let health_addr = self.health_addr()?;
        let grace = self.file.shutdown_grace();
        let health = quorate_transport::health::reporter().await;
        let health_service = quorate_transport::health::service(&health);
        health
            .set_serving::<pb::node_server::NodeServer<NodeService>>()
            .await;
        let audit_health_task = {
            let state = self.state.clone();
            let health = health.clone();
            tokio::spawn(async move { not_serving_once_audit_breaks(state.audit(), &health).await })
        };
        // A checkpoint at least every few seconds while records arrive (signed only
        // when the durable log grew), so the latest one is never older than that.
        let checkpoint_task = {
            let state = self.state.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(CHECKPOINT_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    state.audit_checkpoint();
                }
            })
        };
        // Witness every configured peer's audit log.
        let witness_tasks = crate::witness::peers::spawn(
            self.state.clone(),
            &self.tls,
            &self.metrics,
            &self.file.witness.peers,
            self.file.witness.interval(),
        )?;
        tracing::info!(
            node_id = %self.file.node_id,
            region = %self.file.region,
            jurisdiction = %self.file.jurisdiction,
            keys = self.state.key_count(),
            %addr,
            ?health_addr,
            "node serving"
        );
        let metrics_task = match self.metrics_listener {
            Some(listener) => {
                let state = self.state.clone();
                let tls = self.tls.clone();
                Some(tokio::spawn(quorate_transport::metrics::serve(
                    listener,
                    self.metrics.clone(),
                    Arc::new(move |registry: &Registry| {
                        state.refresh_gauges(registry);
                        // The certificate in use now: it follows renewals.
                        if let Ok(not_after) = tls.certificate_not_after() {
                            crate::metrics::set_certificate_not_after(registry, not_after);
                        }
                    }),
                )))
            }
            None => None,
        };
        // Renewed certificates are picked up from the files (and on SIGHUP); each
        // renewal signs the key attestations again under the new certificate.
        let tls_watch = {
            let state = self.state.clone();
            tokio::spawn(quorate_transport::tls_reload::watch(
                self.tls.clone(),
                Some(self.metrics.clone()),
                true,
                move || state.reattest_keys(),
            ))
        };
        let incoming = self
            .tls
            .incoming_tls(self.listener)
            .map_err(|e| NodeError::Server(format!("TLS setup: {e}")))?;
        let drain = self.state.drain();
        let server = Server::builder()
            // h2's rapid-reset guard closes a connection once 20 streams were reset by
            // the peer before the server accepted them. Our only callers are
            // authenticated coordinators, and they reset streams by design (round 1
            // asks t+1 nodes and cancels the slowest; every call has a timeout), so a
            // node that stalls or comes back from a partition finds dozens queued and,
            // with the default, cut off its coordinators just as it recovered (found
            // by the partition drill: requests failed with RESOURCE_EXHAUSTED).
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(
                quorate_wire::limits::MAX_LOCAL_ERROR_RESET_STREAMS,
            ))
            .add_service(health_service)
            .add_service(
                pb::node_server::NodeServer::new(NodeService(self.state.clone()))
                    .max_decoding_message_size(MAX_NODE_REQUEST_BYTES),
            )
            .add_service(
                pb::ceremony_server::CeremonyServer::new(CeremonyService {
                    state: self.state.clone(),
                    participant: self.participant.clone(),
                })
                .max_decoding_message_size(MAX_NODE_REQUEST_BYTES),
            )
            .add_service(
                pb::audit_server::AuditServer::new(AuditService(self.state.clone()))
                    .max_decoding_message_size(MAX_NODE_REQUEST_BYTES),
            )
            // tonic's graceful shutdown: stop accepting, send GOAWAY on every
            // connection, wait for their streams to end.
            .serve_with_incoming_shutdown(incoming, drain.clone().begun());
        // Served once nothing can fail before serving; closed after the drain.
        let health_port: Option<RunningHealthPort> = self
            .health_port
            .map(|port| port.spawn(&health))
            .transpose()
            .map_err(|e| NodeError::Server(format!("cannot start the health port: {e}")))?;
        let draining = {
            let state = self.state.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    grace_ms = grace.as_millis() as u64,
                    "shutting down: refusing new work, finishing what is in flight"
                );
                // NOT_SERVING first, so a coordinator probing now stops choosing
                // this node even before its connection's GOAWAY arrives; and
                // unready, so the kubelet takes it out of its Services.
                quorate_transport::health::set_draining(&health).await;
                set_not_serving(&health).await;
                state.begin_drain();
                std::future::pending::<std::convert::Infallible>().await
            }
        };
        let result = tokio::select! {
            served = quorate_transport::runtime::drain_within(server, &drain, grace) => served,
            never = draining => match never {},
        };
        let result = match result {
            Some(served) => served.map_err(|e| NodeError::Server(e.to_string())),
            None => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "connections still open after the shutdown grace; closing them"
                );
                Ok(())
            }
        };
        if let Some(port) = health_port {
            port.close().await;
        }
        if let Some(task) = metrics_task {
            task.abort();
        }
        audit_health_task.abort();
        checkpoint_task.abort();
        for task in witness_tasks {
            task.abort();
        }
        tls_watch.abort();
        // Every answered share's record was flushed before the share left; this
        // syncs whatever a batch cut off by the grace recorded without answering.
        if let Err(e) = self.state.audit().sync() {
            tracing::error!("audit log sync at shutdown: {e}");
        }
        tracing::info!("node stopped");
        result
    }
}

/// Logs which provider opened the store and, as warnings, which could not: the
/// node runs on one, and the operator should restore the others before it is the
/// last.
fn report_keks(report: &KekReport) {
    if report.upgraded {
        tracing::info!("store upgraded to format 2: records re-sealed under a new DEK");
    }
    tracing::info!(provider = %report.opened_with, "store opened");
    for (provider, why) in &report.unavailable {
        tracing::warn!(
            %provider,
            "key-encryption key provider unavailable, starting with the others: {why}"
        );
    }
    for id in &report.unconfigured {
        tracing::info!(
            provider = %id,
            "the store holds a DEK wrap for a provider the config does not name"
        );
    }
}

/// Reports the node NOT_SERVING in `grpc.health.v1` (overall and `Node`) once its
/// audit log can no longer be made durable: it refuses round 2 until restarted, and
/// the coordinators' health probes then stop preferring it instead of finding out
/// one refused request at a time. Its readiness stays `SERVING`
/// ([`quorate_transport::health::READINESS_SERVICE`]): auditors still read its
/// durable records, and nothing evicts it before its operator has checked the disk.
async fn not_serving_once_audit_breaks(audit: &AuditLog, health: &HealthReporter) {
    audit.wait_broken().await;
    set_not_serving(health).await;
}

/// Reports the node `NOT_SERVING`, overall and for `Node`.
async fn set_not_serving(health: &HealthReporter) {
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<pb::node_server::NodeServer<NodeService>>()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::server::HealthService;

    async fn status(health: &HealthReporter, service: &str) -> i32 {
        HealthService::from_health_reporter(health.clone())
            .check(tonic::Request::new(HealthCheckRequest {
                service: service.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn a_node_whose_audit_log_breaks_reports_not_serving() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .temporary(true)
            .open()
            .unwrap();
        let audit = Arc::new(
            AuditLog::open_with_sync(
                dir.path(),
                &db,
                "node-1",
                Box::new(|_: std::time::Duration| {}),
                |_: &std::fs::File| Err(std::io::Error::other("EIO")),
            )
            .unwrap(),
        );
        let health = quorate_transport::health::reporter().await;
        let node = <pb::node_server::NodeServer<NodeService> as tonic::server::NamedService>::NAME;
        health
            .set_serving::<pb::node_server::NodeServer<NodeService>>()
            .await;
        let watcher = {
            let (audit, health) = (audit.clone(), health.clone());
            tokio::spawn(async move { not_serving_once_audit_breaks(&audit, &health).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(status(&health, "").await, ServingStatus::Serving as i32);

        let append = {
            let audit = audit.clone();
            tokio::task::spawn_blocking(move || {
                audit.append(quorate_keys::audit::AuditRecord::default())
            })
        };
        append.await.unwrap().unwrap_err();
        tokio::time::timeout(std::time::Duration::from_secs(10), watcher)
            .await
            .expect("the health is updated once the log breaks")
            .unwrap();
        assert_eq!(status(&health, "").await, ServingStatus::NotServing as i32);
        assert_eq!(
            status(&health, node).await,
            ServingStatus::NotServing as i32
        );
        // Still ready: its auditors read it, and no drain evicts it as unhealthy.
        assert_eq!(
            status(&health, quorate_transport::health::READINESS_SERVICE).await,
            ServingStatus::Serving as i32
        );
        assert_eq!(
            status(&health, quorate_transport::health::LIVENESS_SERVICE).await,
            ServingStatus::Serving as i32
        );
    }
}
