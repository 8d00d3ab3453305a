//! A client of the public `Signer` API: it signs an intent for every request with
//! the key of its mTLS certificate (docs/intent.md), checks every public key against
//! its participants' attestation (the coordinator is not trusted to name a key's
//! public key), and checks every signature with an independent verifier before it
//! is handed back.

use std::sync::Arc;
use std::time::Duration;

use quorate_frost::Ciphersuite;
use quorate_transport::attest::StatementSigner;
use quorate_transport::attest::StatementVerifier;
use quorate_transport::intent::{sign_intent_now, IntentRequest, DEFAULT_VALIDITY_SECS};
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
    signer: Arc<StatementSigner>,
    /// Checks key attestations under the client's CA and trust domain.
    verifier: StatementVerifier,
}

impl SignerClient {
    /// A client for `endpoint` using `tls`, accepting only the coordinator
    /// `server_name` of `tls`'s trust domain (its DNS name and the name in its
    /// SPIFFE id `coordinator/<server_name>`).
    pub fn connect(endpoint: &str, server_name: &str, tls: &TlsPaths) -> anyhow::Result<Self> {
        quorate_transport::install_crypto_provider();
        let files = tls.load()?;
        let channel = files.coordinator_channel(endpoint, server_name, Duration::from_secs(2))?;
        Ok(Self {
            inner: GrpcSignerClient::new(channel),
            signer: Arc::new(files.statement_signer()?),
            verifier: files.statement_verifier()?,
        })
    }

    /// This client's signed intent for a request, valid from now for
    /// [`DEFAULT_VALIDITY_SECS`].
    pub fn intent(
        &self,
        key_id: &str,
        message: &[u8],
        request_id: &str,
        approval_token: Option<&[u8]>,
    ) -> anyhow::Result<pb::Signed> {
        let request = IntentRequest {
            key_id,
            message,
            request_id,
            approval_token,
        };
        Ok(sign_intent_now(
            &self.signer,
            &request,
            DEFAULT_VALIDITY_SECS,
        )?)
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

    /// `GetPublicKey`, trusted only if the key's attestation verifies
    /// ([`check_attested`]); a key that does not is refused with `UNAUTHENTICATED`
    /// naming why.
    pub async fn public_key(
        &self,
        key_id: &str,
    ) -> Result<pb::GetPublicKeyResponse, tonic::Status> {
        let response = self
            .raw()
            .get_public_key(pb::GetPublicKeyRequest {
                key_id: key_id.into(),
            })
            .await?
            .into_inner();
        check_attested(&self.verifier, key_id, &response).map_err(|e| {
            tonic::Status::unauthenticated(format!(
                "the coordinator's public key for {key_id:?} is not attested by the key's participants: {e}"
            ))
        })?;
        Ok(response)
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
        let intent = self
            .intent(
                key_id,
                message,
                request_id.unwrap_or_default(),
                approval_token.as_deref(),
            )
            .map_err(|e| tonic::Status::internal(format!("cannot sign the intent: {e}")))?;
        let mut req = tonic::Request::new(pb::SignRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            request_id: request_id.unwrap_or_default().into(),
            approval_token: approval_token.unwrap_or_default(),
            intent: Some(intent),
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

/// Checks a `GetPublicKey` answer for `key_id` as every Quorate client does
/// ([`quorate_client::attestation::check_attested`]).
pub fn check_attested(
    verifier: &StatementVerifier,
    key_id: &str,
    response: &pb::GetPublicKeyResponse,
) -> anyhow::Result<()> {
    quorate_client::attestation::check_attested(verifier, key_id, response)
        .map(drop)
        .map_err(anyhow::Error::msg)
}
