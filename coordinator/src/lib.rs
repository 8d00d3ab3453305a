//! The Quorate coordinator.
//!
//! Stateless: it serves the public `Signer` API to role `client` and turns each
//! `Sign` into a FROST session across the signer nodes. Everything it knows (keys,
//! node health, idempotency records) is a cache rebuilt from the nodes, so any number
//! of coordinators can serve side by side and one can die without loss.
//!
//! - [`keys`]: key discovery; a manifest is trusted only when `threshold` nodes agree;
//! - [`nodes`]: one reused mTLS channel per node, health tracking and probing;
//! - [`quorum`]: the signing engine: candidates, both FROST rounds, aggregation,
//!   culprit exclusion, retries within the request deadline; round 1 (hedged, or from
//!   the commitment [`pool`]) and quorum selection are in `round1`, batched round 2
//!   in [`round2`], calling one node in `node_call`, rate-limit refusals in
//!   `refusals`, metric names in [`metric`] and the gauges read at scrape time in
//!   [`gauges`];
//! - [`service`]: the gRPC boundary; [`error`] maps every outcome to one status code.
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod error;
pub mod gauges;
pub mod idempotency;
pub mod inflight;
pub mod keys;
pub mod metric;
mod node_call;
pub mod nodes;
pub mod pool;
pub mod quorum;
mod refusals;
mod round1;
pub mod round2;
pub mod service;
mod tally;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quorate_transport::health::HealthPort;
use quorate_transport::metrics::Registry;
use quorate_wire::pb;
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::CoordinatorConfig;
pub use error::CoordError;

use crate::keys::KeyDirectory;
use crate::nodes::NodePool;
use crate::quorum::QuorumEngine;
use crate::service::SignerService;
use quorate_transport::intent::IntentVerifier;

/// A coordinator with its ports bound, ready to serve.
#[derive(Debug)]
pub struct BoundCoordinator {
    config: CoordinatorConfig,
    listener: TcpListener,
    health_port: Option<HealthPort>,
}

impl BoundCoordinator {
    /// Binds the configured address (and the health port, if configured).
    pub async fn bind(config: CoordinatorConfig) -> Result<Self, CoordError> {
        quorate_transport::tls_reload::keep_sighup_for_reloads();
        let listener = TcpListener::bind(config.file.listen).await.map_err(|e| {
            CoordError::Server(format!("cannot listen on {}: {e}", config.file.listen))
        })?;
        let health_port = match config.file.health_listen {
            Some(addr) => Some(HealthPort::bind(addr).await.map_err(|e| {
                CoordError::Server(format!("cannot listen for health probes on {addr}: {e}"))
            })?),
            None => None,
        };
        Ok(Self {
            config,
            listener,
            health_port,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, CoordError> {
        self.listener
            .local_addr()
            .map_err(|e| CoordError::Server(e.to_string()))
    }

    /// The bound address of the plaintext health port, if configured.
    pub fn health_addr(&self) -> Result<Option<SocketAddr>, CoordError> {
        self.health_port
            .as_ref()
            .map(HealthPort::local_addr)
            .transpose()
            .map_err(|e| CoordError::Server(e.to_string()))
    }

    /// Serves until `shutdown` resolves, then drains: health `NOT_SERVING` and
    /// HTTP/2 GOAWAY to every client (whose next request then finds the port
    /// closed, a connect error, and goes to another coordinator), while `Sign`
    /// requests already taken up finish. Returns once every connection has closed,
    /// or after `shutdown_grace_ms` at the latest; the health port, `NOT_SERVING`
    /// throughout the drain, closes then.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), CoordError> {
        let addr = self.local_addr()?;
        let health_addr = self.health_addr()?;
        let file = &self.config.file;
        let grace = file.shutdown_grace();
        let settings = file.signing;
        let pool = Arc::new(NodePool::new(
            &file.nodes,
            &self.config.tls,
            settings.node_timeout().min(Duration::from_secs(1)),
        )?);
        let probe = tokio::spawn(
            pool.clone()
                .probe_forever(Duration::from_millis(settings.health_interval_ms)),
        );
        // One CA for both: nodes' key attestations and clients' intents.
        let verifier = self
            .config
            .tls
            .statement_verifier()
            .map_err(|e| CoordError::Config(format!("the CA for statements: {e}")))?;
        let keys = Arc::new(KeyDirectory::new(
            pool.clone(),
            verifier.clone(),
            Duration::from_secs(settings.key_refresh_secs),
            settings.node_timeout(),
        ));
        let metrics = Registry::new();
        let engine = QuorumEngine::new(pool.clone(), settings, &metrics);
        let commitments = engine.commitment_pool();
        let intents = IntentVerifier::new(verifier);
        let signer = SignerService::new(
            file.trust_domain.clone(),
            settings,
            keys.clone(),
            engine,
            intents,
            &metrics,
        );
        let metrics_task = match file.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|e| {
                    CoordError::Server(format!("cannot listen for metrics on {addr}: {e}"))
                })?;
                let gauges = gauges::Gauges {
                    pool: pool.clone(),
                    commitments,
                    keys: keys.clone(),
                    tls: self.config.tls.clone(),
                };
                // The per-key gauges cover the keys the directory knows; without
                // this, a key nobody has asked for since a restart would have none.
                let keys = keys.clone();
                let key_refresh = tokio::spawn(async move {
                    loop {
                        keys.all().await;
                        tokio::time::sleep(Duration::from_secs(settings.key_refresh_secs)).await;
                    }
                });
                let serve = tokio::spawn(quorate_transport::metrics::serve(
                    listener,
                    metrics.clone(),
                    Arc::new(move |registry: &Registry| gauges.set(registry)),
                ));
                Some((serve, key_refresh))
            }
            None => None,
        };
        // One status for the mTLS port and the plaintext health port.
        let health = quorate_transport::health::reporter().await;
        let health_service = quorate_transport::health::service(&health);
        health
            .set_serving::<pb::signer_server::SignerServer<SignerService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| CoordError::Server(format!("reflection: {e}")))?;
        tracing::info!(%addr, ?health_addr, nodes = pool.len(), "coordinator serving");
        // Renewed certificates are picked up from the files (and on SIGHUP): clients
        // see the new one on their next connection, nodes on the coordinator's next.
        let tls_watch = tokio::spawn(quorate_transport::tls_reload::watch(
            self.config.tls.clone(),
            Some(metrics.clone()),
            true,
            || {},
        ));
        let incoming = self
            .config
            .tls
            .incoming_tls(self.listener)
            .map_err(|e| CoordError::Server(format!("TLS setup: {e}")))?;
        let (drain_switch, drain) = quorate_transport::runtime::drain();
        let server = Server::builder()
            .http2_max_pending_accept_reset_streams(Some(
                quorate_wire::limits::COORDINATOR_MAX_PENDING_ACCEPT_RESET_STREAMS,
            ))
            .http2_max_local_error_reset_streams(Some(
                quorate_wire::limits::MAX_LOCAL_ERROR_RESET_STREAMS,
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                pb::signer_server::SignerServer::new(signer)
                    .max_decoding_message_size(quorate_wire::MAX_SIGNER_REQUEST_BYTES),
            )
            // tonic's graceful shutdown: stop accepting, send GOAWAY on every
            // connection, wait for their requests to finish.
            .serve_with_incoming_shutdown(incoming, drain.clone().begun());
        // Served once nothing can fail before serving; closed after the drain.
        let health_port = self
            .health_port
            .map(|port| port.spawn(&health))
            .transpose()
            .map_err(|e| CoordError::Server(format!("cannot start the health port: {e}")))?;
        let draining = async move {
            shutdown.await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: finishing the requests in flight"
            );
            quorate_transport::health::set_draining(&health).await;
            health
                .set_not_serving::<pb::signer_server::SignerServer<SignerService>>()
                .await;
            drain_switch.begin();
            std::future::pending::<std::convert::Infallible>().await
        };
        let result = tokio::select! {
            served = quorate_transport::runtime::drain_within(server, &drain, grace) => served,
            never = draining => match never {},
        };
        let result = match result {
            Some(served) => served.map_err(|e| CoordError::Server(e.to_string())),
            None => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "requests still in flight after the shutdown grace; closing their connections"
                );
                Ok(())
            }
        };
        if let Some(port) = health_port {
            port.close().await;
        }
        tracing::info!("coordinator stopped");
        probe.abort();
        tls_watch.abort();
        if let Some((serve, key_refresh)) = metrics_task {
            serve.abort();
            key_refresh.abort();
        }
        result
    }
}
