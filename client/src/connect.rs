//! The one place the client opens connections: mTLS to each coordinator, with the
//! client's certificate, against the configured CA and the coordinator's name.
//! (Pinning the coordinators' SPIFFE ids belongs here too.)

use std::time::Duration;

use quorate_transport::attest::StatementSigner;
use quorate_transport::tls::TlsPaths;
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
}

/// The coordinators' channels (lazy: nothing connects before the first call) and the
/// signer of the client's intents.
pub(crate) fn connect(
    config: &ClientConfig,
) -> Result<(Vec<Coordinator>, StatementSigner), ClientError> {
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
        let channel = tls.channel(entry.endpoint(), &entry.server_name()?, CONNECT_TIMEOUT)?;
        coordinators.push(Coordinator {
            endpoint: entry.endpoint().to_string(),
            grpc: SignerClient::new(channel),
        });
    }
    Ok((coordinators, signer))
}
