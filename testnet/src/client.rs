//! A client of the public `Signer` API, with every signature checked by an
//! independent verifier before it is handed back.

use std::time::Duration;

use quorate_frost::Ciphersuite;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;
use quorate_wire::pb::signer_client::SignerClient as GrpcSignerClient;
use tonic::transport::Channel;

/// A signature the client has verified.
#[derive(Clone, Debug)]
pub struct VerifiedSignature {
    /// The coordinator's response.
    pub response: pb::SignResponse,
    /// The group public key it verified under.
    pub public_key: Vec<u8>,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
}

/// Client of a coordinator.
#[derive(Clone, Debug)]
pub struct SignerClient {
    inner: GrpcSignerClient<Channel>,
}

impl SignerClient {
    /// A client for `endpoint` using `tls`, accepting only the coordinator
    /// `server_name` of `tls`'s trust domain (its DNS name and the name in its
    /// SPIFFE id `coordinator/<server_name>`).
    pub fn connect(endpoint: &str, server_name: &str, tls: &TlsPaths) -> anyhow::Result<Self> {
        quorate_transport::install_crypto_provider();
        let channel =
            tls.load()?
                .coordinator_channel(endpoint, server_name, Duration::from_secs(2))?;
        Ok(Self {
            inner: GrpcSignerClient::new(channel),
        })
    }

    /// The raw gRPC client, for calls that test error codes.
    pub fn raw(&self) -> GrpcSignerClient<Channel> {
        self.inner.clone()
    }

    /// `ListKeys`.
    pub async fn list_keys(&self) -> Result<Vec<pb::KeySummary>, tonic::Status> {
        Ok(self
            .raw()
            .list_keys(pb::ListKeysRequest {})
            .await?
            .into_inner()
            .keys)
    }

    /// `GetPublicKey`.
    pub async fn public_key(
        &self,
        key_id: &str,
    ) -> Result<pb::GetPublicKeyResponse, tonic::Status> {
        Ok(self
            .raw()
            .get_public_key(pb::GetPublicKeyRequest {
                key_id: key_id.into(),
            })
            .await?
            .into_inner())
    }

    /// `Sign` with a deadline.
    pub async fn sign(
        &self,
        key_id: &str,
        message: &[u8],
        request_id: Option<&str>,
        timeout: Duration,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.sign_with(key_id, message, request_id, None, timeout)
            .await
    }

    /// `Sign` with a deadline and an optional approval token.
    pub async fn sign_with(
        &self,
        key_id: &str,
        message: &[u8],
        request_id: Option<&str>,
        approval_token: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<pb::SignResponse, tonic::Status> {
        let mut req = tonic::Request::new(pb::SignRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            request_id: request_id.unwrap_or_default().into(),
            approval_token: approval_token.unwrap_or_default(),
        });
        req.set_timeout(timeout);
        Ok(self.raw().sign(req).await?.into_inner())
    }

    /// Signs and verifies the signature independently of frost.
    pub async fn sign_verified(
        &self,
        key_id: &str,
        message: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<VerifiedSignature> {
        let public = self.public_key(key_id).await?;
        let response = self.sign(key_id, message, None, timeout).await?;
        let ciphersuite = quorate_wire::ciphersuite_from_pb(public.ciphersuite)?;
        crate::verify::verify(
            ciphersuite,
            &public.public_key,
            message,
            &response.signature,
        )
        .map_err(|e| anyhow::anyhow!("signature from the coordinator does not verify: {e}"))?;
        Ok(VerifiedSignature {
            response,
            public_key: public.public_key,
            ciphersuite,
        })
    }
}
