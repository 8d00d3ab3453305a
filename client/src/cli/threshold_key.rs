//! What every command that signs a standard artifact (X.509, SSHSIG, JWS) shares:
//! the key, an optional approval token, and one signature through [`Client::sign`],
//! so each artifact passes the key's sovereignty policy like any other signature.

use std::path::{Path, PathBuf};

use super::{CliError, GlobalArgs};
use crate::{Client, PublicKey, SignOptions};

/// The key flags of a signing command.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The key to sign with.
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Approval token file (from `quorate-ceremony approve`) permitting an
    /// out-of-policy quorum.
    #[arg(long, value_name = "FILE")]
    pub approval_token: Option<PathBuf>,
}

/// A threshold key as seen by a client: its attested public key, and the network
/// that signs with it.
#[derive(Clone, Debug)]
pub struct ThresholdKey {
    client: Client,
    key: PublicKey,
    approval_token: Option<Vec<u8>>,
}

impl ThresholdKey {
    /// The key `args` names, its public key fetched (and attested) once.
    pub async fn open(global: &GlobalArgs, args: &KeyArgs) -> Result<Self, CliError> {
        let approval_token = args.read_approval_token()?;
        let client = global.client()?;
        let key = client.public_key(&args.key_id).await?;
        Ok(Self {
            client,
            key,
            approval_token,
        })
    }

    /// The key's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// A signature on `message` by the key's quorum, verified under the public key
    /// this handle was opened with (a fresh request id each call).
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CliError> {
        let signed = self
            .client
            .sign(
                &self.key.key_id,
                message,
                SignOptions {
                    request_id: None,
                    approval_token: self.approval_token.clone(),
                    deadline: None,
                },
            )
            .await?;
        // The client verified it under the key's attested public key; that key
        // must still be the one the artifact names.
        if signed.public_key != self.key.public_key {
            return Err(CliError::Failed(format!(
                "key {} changed its public key while signing; nothing was written",
                self.key.key_id
            )));
        }
        Ok(signed.signature)
    }
}

impl KeyArgs {
    /// The approval token's bytes, if a file is given.
    pub fn read_approval_token(&self) -> Result<Option<Vec<u8>>, CliError> {
        self.approval_token
            .as_deref()
            .map(|path: &Path| {
                std::fs::read(path).map_err(|e| {
                    CliError::Usage(format!(
                        "cannot read --approval-token {}: {e}",
                        path.display()
                    ))
                })
            })
            .transpose()
    }
}
