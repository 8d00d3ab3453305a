//! What can go wrong in a call, with the gRPC code where a coordinator gave one.

use std::fmt;

use tonic::Code;

use crate::config::ConfigError;
use crate::verify::VerifyError;

/// One failed attempt on one coordinator.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The coordinator's endpoint.
    pub endpoint: String,
    /// The gRPC code (transport failures and timeouts are `UNAVAILABLE` or
    /// `DEADLINE_EXCEEDED`).
    pub code: Code,
    /// What it said.
    pub message: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.endpoint, self.code, self.message)
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA, certificate or key could not be loaded.
    #[error("client TLS material: {0}")]
    Tls(#[from] quorate_transport::tls::TlsError),
    /// The client's certificate or key cannot sign intents.
    #[error("cannot sign the intent with the client's key: {0}")]
    Intent(String),
    /// The caller's input is unusable before any call is made.
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// A coordinator refused the request for a reason another coordinator would
    /// share (bad input, not allowed, unknown key, policy, reused request id):
    /// not retried.
    #[error("{}: {:?}: {}", .0.endpoint, .0.code, .0.message)]
    Refused(Attempt),
    /// No coordinator answered in time: every attempt, in order.
    #[error("no coordinator could serve the request within {deadline_ms} ms: {}", list(.attempts))]
    Unavailable {
        /// The call's deadline.
        deadline_ms: u64,
        /// Every failed attempt.
        attempts: Vec<Attempt>,
    },
    /// A coordinator may have taken the `Sign` request up (it did not answer in
    /// time, the connection broke after the request was sent, or it answered
    /// UNAVAILABLE, UNKNOWN or CANCELLED) and gave no answer to retries under the
    /// same request id within the deadline. The request was not sent to another
    /// coordinator, which could have made a second signature for it; a `sign`
    /// with the same request id goes to this coordinator only.
    #[error(
        "{endpoint} may have taken up request {request_id} and gave no answer within \
         {deadline_ms} ms; not sent to another coordinator (retry under the same request id): {}",
        list(.attempts)
    )]
    InDoubt {
        /// The coordinator that may have it.
        endpoint: String,
        /// The request id.
        request_id: String,
        /// The call's deadline.
        deadline_ms: u64,
        /// Every failed attempt, in order.
        attempts: Vec<Attempt>,
    },
    /// A coordinator answered with something that is not a valid answer.
    #[error("{endpoint} sent an invalid response: {message}")]
    BadResponse {
        /// The coordinator.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// A coordinator returned a signature that does not verify under the key's
    /// public key: it is not handed to the caller.
    #[error(
        "signature from {endpoint} does not verify under the public key of {key_id}: {source}"
    )]
    InvalidSignature {
        /// The coordinator that returned it.
        endpoint: String,
        /// The key.
        key_id: String,
        /// Why it does not verify.
        source: VerifyError,
    },
}

fn list(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "the deadline passed before any attempt".into();
    }
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// The gRPC code behind the failure, if a coordinator (or the transport) gave one;
    /// for `Unavailable` and `InDoubt`, the last attempt's.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Refused(a) => Some(a.code),
            Self::Unavailable { attempts, .. } | Self::InDoubt { attempts, .. } => {
                attempts.last().map(|a| a.code)
            }
            _ => None,
        }
    }

    /// Whether the failure lies in the configuration or the client's own files
    /// (the CLI exits 64 for these).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::Tls(_) | Self::Intent(_))
    }
}
