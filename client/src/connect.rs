//! The one place the client opens connections: mTLS to each coordinator, with the
//! client's certificate, against the configured CA, and pinned to the coordinator's
//! SPIFFE id (`spiffe://<trust-domain>/coordinator/<server name>`): a certificate of
//! any other party, even from the same CA, fails the handshake.

use std::time::Duration;

use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::tls::{TlsMaterial, TlsPaths};
use quorate_wire::pb::signer_client::SignerClient;
use tonic::transport::Channel;

use crate::config::{ClientConfig, ConfigError};
use crate::error::ClientError;

/// How long opening a TCP connection to a coordinator may take: a host that does not
/// answer at all fails within this, and the client moves on to the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A coordinator's gRPC client.
#[derive(Clone, Debug)]
pub(crate) struct Coordinator {
    pub(crate) endpoint: String,
    pub(crate) grpc: SignerClient<Channel>,
    /// The same channel, for its health checks.
    pub(crate) channel: Channel,
}

/// What a client works with: the coordinators' channels (lazy: nothing connects
/// before the first call), the signer of its intents, and the checker of key
/// attestations under its CA.
pub(crate) struct Connected {
    pub(crate) coordinators: Vec<Coordinator>,
    /// The client's TLS material: every new connection presents its current
    /// certificate, and intents are signed with its current key.
    pub(crate) tls: TlsMaterial,
    pub(crate) signer: StatementSigner,
    pub(crate) attestations: StatementVerifier,
}

/// Opens (lazily) everything a client needs for `config`.
pub(crate) fn connect(config: &ClientConfig) -> Result<Connected, ClientError> {
    config.validate()?;
    quorate_transport::install_crypto_provider();
    let tls = TlsPaths {
        ca: config.ca.clone(),
        cert: config.cert.clone(),
        key: config.key.clone(),
    }
    .load()?;
    if let Some(domain) = &config.trust_domain {
        let id = tls.identity();
        if &id.trust_domain != domain {
            return Err(ConfigError::Invalid(format!(
                "the client certificate {} belongs to trust domain {:?}, not {domain:?}",
                config.cert.display(),
                id.trust_domain
            ))
            .into());
        }
    }
    let signer = tls
        .statement_signer()
        .map_err(|e| ClientError::Intent(e.to_string()))?;
    let mut coordinators = Vec::with_capacity(config.coordinators.len());
    for entry in &config.coordinators {
        let channel =
            tls.coordinator_channel(entry.endpoint(), &entry.server_name()?, CONNECT_TIMEOUT)?;
        coordinators.push(Coordinator {
            endpoint: entry.endpoint().to_string(),
            grpc: SignerClient::new(channel.clone()),
            channel,
        });
    }
    let attestations = tls
        .statement_verifier()
        .map_err(|e| ClientError::Intent(e.to_string()))?;
    Ok(Connected {
        coordinators,
        tls,
        signer,
        attestations,
    })
}
