//! Trusted-dealer import: split an existing (or fresh) signing key into FROST shares
//! and install one share on each node, for migrations from single-key signers.
//!
//! The ceremony process briefly holds the whole key, so this is the one ceremony
//! that trusts its operator's machine; DKG (which never assembles the key) replaces it
//! for new keys. To keep that window small and checkable:
//!
//! 1. every node is reached over mTLS and must answer `Ceremony.GetInfo` with the
//!    node id, region and jurisdiction the ceremony file expects, **before** anything
//!    is dealt;
//! 2. the key is split, the manifest encoded once, and every node gets the same
//!    manifest plus its own key package, concurrently;
//! 3. each node must acknowledge the SHA-256 of the manifest it stored.
//!
//! The secret and the key packages are never logged, printed or written; the
//! [`Transcript`] holds public facts only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use futures::future::join_all;
use quorate_frost::Ciphersuite;
use quorate_keys::manifest::{Manifest, ManifestError, NewManifest};
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use zeroize::Zeroizing;

use crate::connect::{describe_status, precheck, RPC_TIMEOUT};
use crate::custodians_file::CustodiansFile;
// Re-exported so that the import ceremony's types stay reachable where they
// always were (`quorate_ceremony::import::*`).
pub use crate::ceremony_file::{CeremonyFile, CeremonyNode};
pub use crate::error::{CeremonyError, NodeFailure};
use crate::transcript::now_rfc3339;
pub use crate::transcript::{
    Transcript, TranscriptConfirmation, TranscriptParticipant, TRANSCRIPT_FORMAT,
};

/// What to import.
pub struct ImportRequest {
    /// Key id (`[A-Za-z0-9._-]`, at most 128 bytes).
    pub key_id: String,
    /// Ciphersuite of the key.
    pub ciphersuite: Ciphersuite,
    /// Signers needed, `2..=n`.
    pub threshold: u16,
    /// The signing key in the ciphersuite's FROST scalar encoding; `None` deals a
    /// fresh random key.
    pub secret: Option<Zeroizing<Vec<u8>>>,
    /// The key's policy, stored with it on every node. It must list administrators
    /// or opt out of them (`unsafe_no_administrators`); `None` is refused.
    pub policy: Option<quorate_wire::pb::KeyPolicy>,
    /// The key's escrow custodians and threshold, fixed in its manifest; `None` for a
    /// key whose shares cannot be escrowed.
    pub escrow: Option<quorate_wire::pb::KeyEscrow>,
}

impl fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRequest")
            .field("key_id", &self.key_id)
            .field("ciphersuite", &self.ciphersuite)
            .field("threshold", &self.threshold)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("policy", &self.policy)
            .field("escrow", &self.escrow)
            .finish()
    }
}

/// Reads a signing key for import: a file holding the 32-byte scalar as hex
/// (surrounding whitespace ignored), in the ciphersuite's FROST encoding (Ed25519:
/// little-endian; secp256k1: big-endian). Whether the scalar is canonical for the
/// ciphersuite is checked when the key is split.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| CeremonyError::Read {
            what: "secret file",
            path: path.to_path_buf(),
            source,
        })?;
    parse_secret_hex(&text).map_err(|message| CeremonyError::Secret {
        path: path.to_path_buf(),
        message,
    })
}

/// Never quotes the input: an error message must not leak part of a key.
fn parse_secret_hex(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let hex_text = text.trim();
    if hex_text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (a 32-byte scalar), found {} characters",
            hex_text.chars().count()
        ));
    }
    let mut secret = Zeroizing::new(vec![0u8; 32]);
    hex::decode_to_slice(hex_text, secret.as_mut_slice())
        .map_err(|_| "expected 64 hex digits (a 32-byte scalar); found a non-hex character")?;
    Ok(secret)
}

/// Runs a trusted-dealer import (see the module docs) and returns its transcript.
pub async fn import_key(
    file: &CeremonyFile,
    req: ImportRequest,
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let n = file.nodes.len();
    if req.threshold < 2 || usize::from(req.threshold) > n {
        return Err(CeremonyError::Request(format!(
            "threshold {} is not within 2..={n} (the ceremony file lists {n} nodes)",
            req.threshold
        )));
    }
    // A new key has administrators, or its creator opted out of them explicitly.
    quorate_keys::policy::Policy::from_pb(req.policy.as_ref(), req.threshold)
        .and_then(|p| p.check_new_key())
        .map_err(|e| CeremonyError::Request(format!("policy: {e}")))?;
    let tls = Arc::new(file.check()?);
    tracing::info!(
        key_id = %req.key_id,
        ciphersuite = %req.ciphersuite,
        threshold = req.threshold,
        nodes = n,
        "import: checking nodes"
    );

    let reached = precheck(file, &tls).await?;

    let ImportRequest {
        key_id,
        ciphersuite,
        threshold,
        secret,
        policy,
        escrow,
    } = req;
    let ops = ciphersuite.ops();
    let names: Vec<String> = file.nodes.iter().map(|node| node.id.clone()).collect();
    let dealt = ops.split(secret.as_ref().map(|s| s.as_slice()), &names, threshold)?;
    drop(secret);

    let participants = file
        .nodes
        .iter()
        .map(|node| pb::ManifestParticipant {
            node_id: node.id.clone(),
            region: node.region.clone(),
            jurisdiction: node.jurisdiction.clone(),
        })
        .collect();
    let transcript_escrow = escrow.as_ref().map(CustodiansFile::from_pb);
    let encoded = NewManifest {
        key_id: key_id.clone(),
        ciphersuite,
        threshold,
        public_key_package: dealt.public_key_package.clone(),
        participants,
        created_at: now_rfc3339()?,
        policy,
        escrow,
    }
    .encode();
    // Decoding what we built runs the same checks every node will run.
    let manifest = Manifest::decode(&encoded)?;
    tracing::info!(
        key_id = %key_id,
        manifest_hash = %hex::encode(manifest.hash),
        public_key = %hex::encode(&manifest.public_key.public_key),
        "import: key split, installing shares"
    );

    let installs = file
        .nodes
        .iter()
        .zip(&reached)
        .zip(&dealt.key_packages)
        .map(|((node, reached), (name, key_package))| {
            debug_assert_eq!(&node.id, name);
            // No setup: an import, which nodes accept only for a key created now.
            let request = pb::InstallKeyRequest {
                manifest: manifest.encoded.clone(),
                key_package: key_package.expose_bytes().to_vec(),
                setup: None,
                authorizations: Vec::new(),
                attestations: Vec::new(),
            };
            let mut client = CeremonyClient::new(reached.channel.clone());
            let expected = manifest.hash;
            async move {
                let outcome =
                    match tokio::time::timeout(RPC_TIMEOUT, client.install_key(request)).await {
                        Err(_) => Err(format!("InstallKey timed out after {RPC_TIMEOUT:?}")),
                        Ok(Err(status)) => Err(describe_status(&status)),
                        Ok(Ok(response)) => {
                            let got = response.into_inner().manifest_hash;
                            if got == expected {
                                Ok(())
                            } else {
                                Err(format!(
                                    "acknowledged manifest hash {}, expected {}",
                                    hex::encode(&got),
                                    hex::encode(expected)
                                ))
                            }
                        }
                    };
                (node.id.clone(), outcome)
            }
        });
    let outcomes = join_all(installs).await;
    drop(dealt);

    let mut installed = Vec::new();
    let mut failed = Vec::new();
    for (node_id, outcome) in outcomes {
        match outcome {
            Ok(()) => {
                tracing::info!(node = %node_id, "import: share installed");
                installed.push(node_id);
            }
            Err(reason) => {
                tracing::error!(node = %node_id, %reason, "import: install failed");
                failed.push(NodeFailure { node_id, reason });
            }
        }
    }
    if !failed.is_empty() {
        return Err(CeremonyError::Install {
            key_id,
            threshold,
            total: n,
            installed,
            failed,
        });
    }

    let participants = file
        .nodes
        .iter()
        .zip(&reached)
        .map(|(node, reached)| {
            let p = manifest.participant(&node.id).ok_or_else(|| {
                ManifestError::Invalid(format!("{} missing from the manifest", node.id))
            })?;
            Ok(TranscriptParticipant {
                node_id: node.id.clone(),
                endpoint: node.endpoint.clone(),
                region: node.region.clone(),
                jurisdiction: node.jurisdiction.clone(),
                identifier: hex::encode(&p.identifier),
                verifying_share: hex::encode(&p.verifying_share),
                certificate_fingerprint: reached.fingerprint.clone(),
            })
        })
        .collect::<Result<Vec<_>, ManifestError>>()?;
    Ok(Transcript {
        format: TRANSCRIPT_FORMAT.to_string(),
        kind: "import".to_string(),
        key_id,
        ciphersuite: ciphersuite.name().to_string(),
        threshold,
        participants,
        public_key: hex::encode(&manifest.public_key.public_key),
        public_key_package: hex::encode(&manifest.public_key_package),
        manifest: hex::encode(&manifest.encoded),
        manifest_hash: hex::encode(manifest.hash),
        started_at,
        finished_at: now_rfc3339()?,
        ceremony_id: None,
        setup_hash: None,
        round1_transcript_hash: None,
        policy: None,
        escrow: transcript_escrow,
        confirmations: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{file_text, nodes_toml, setup};

    fn load(path: &Path, text: &str) -> Result<CeremonyFile, CeremonyError> {
        std::fs::write(path, text).unwrap();
        CeremonyFile::load(path)
    }

    #[tokio::test]
    async fn import_refuses_bad_threshold_and_key_id_before_contacting_nodes() {
        let (_dir, path) = setup();
        let file = load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-3"]),
            ),
        )
        .unwrap();
        for (key_id, threshold) in [("k", 1), ("k", 4), ("bad key", 2), ("", 2)] {
            let req = ImportRequest {
                key_id: key_id.into(),
                ciphersuite: Ciphersuite::Ed25519,
                threshold,
                secret: None,
                policy: Some(quorate_wire::pb::KeyPolicy {
                    unsafe_no_administrators: true,
                    ..Default::default()
                }),
                escrow: None,
            };
            let err = import_key(&file, req).await.unwrap_err();
            assert!(
                matches!(err, CeremonyError::Request(_)),
                "{key_id:?}/{threshold}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn import_deals_nothing_when_a_node_is_unreachable() {
        quorate_transport::install_crypto_provider();
        let (_dir, path) = setup();
        // Port 1 on loopback refuses connections.
        let nodes = nodes_toml(&["node-1", "node-2"])
            .replace("127.0.0.1:7100", "127.0.0.1:1")
            .replace("127.0.0.1:7101", "127.0.0.1:1");
        let file = load(&path, &file_text("ceremony-alice", &nodes)).unwrap();
        let req = ImportRequest {
            key_id: "k1".into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: 2,
            secret: None,
            policy: Some(quorate_wire::pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow: None,
        };
        let err = import_key(&file, req).await.unwrap_err();
        match &err {
            CeremonyError::PreCheck { total, failures } => {
                assert_eq!(*total, 2);
                let ids: Vec<&str> = failures.iter().map(|f| f.node_id.as_str()).collect();
                assert_eq!(ids, ["node-1", "node-2"]);
            }
            other => panic!("expected a pre-check failure, got {other}"),
        }
        assert!(err.to_string().contains("nothing was sent"), "{err}");
    }

    #[test]
    fn secret_file_accepts_hex_with_surrounding_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        let hex_key = "01".repeat(32);
        std::fs::write(&path, format!("  {hex_key}\n\n")).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().as_slice(), &[1u8; 32]);
    }

    #[test]
    fn malformed_secret_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        for bad in [
            "c0ffee".repeat(10),
            "c0ffee".repeat(11),
            format!("{}zz", "c0ffee".repeat(10)),
            "0x".to_string() + &"c0ffee".repeat(10) + "ab",
            String::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let err = read_secret_file(&path).unwrap_err();
            assert!(matches!(err, CeremonyError::Secret { .. }), "{err}");
            assert!(!err.to_string().contains("c0ffee"), "{err}");
        }
    }

    #[test]
    fn imported_secret_determines_the_group_key_for_each_ciphersuite() {
        // The secret file's encoding is the one `split` takes: dealing the scalar 1
        // yields the group key 1*G, the generator.
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        for (suite, scalar_one, generator) in [
            (
                Ciphersuite::Ed25519,
                format!("01{}", "00".repeat(31)),
                "5866666666666666666666666666666666666666666666666666666666666666",
            ),
            (
                Ciphersuite::Secp256k1,
                format!("{}01", "00".repeat(31)),
                "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            ),
        ] {
            let secret = parse_secret_hex(&scalar_one).unwrap();
            let dealt = suite.ops().split(Some(&secret), &names, 2).unwrap();
            let info = suite
                .ops()
                .public_key_info(&dealt.public_key_package)
                .unwrap();
            assert_eq!(hex::encode(info.public_key), generator, "{suite}");
        }
    }

    #[test]
    fn import_request_debug_redacts_the_secret() {
        let req = ImportRequest {
            key_id: "k".into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: 2,
            secret: Some(Zeroizing::new(vec![0xAB; 32])),
            policy: Some(quorate_wire::pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow: None,
        };
        let text = format!("{req:?}");
        assert!(
            text.contains("<redacted>") && !text.contains("171"),
            "{text}"
        );
    }
}
