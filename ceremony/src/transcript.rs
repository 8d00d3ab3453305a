//! The transcript: the public JSON record of a ceremony (group key, verifying
//! shares, certificate fingerprints, manifest hash, times; never a secret), written
//! by import, DKG and refresh and re-checked by `transcript verify`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::custodians_file::CustodiansFile;
use crate::error::CeremonyError;

/// The readable forms a transcript records of a manifest's policy and escrow
/// custodians (`policy`, `escrow`): written by the ceremonies, compared by
/// `transcript verify`.
pub(crate) fn readable_terms(
    manifest: &quorate_wire::pb::KeyManifest,
) -> (Option<serde_json::Value>, Option<CustodiansFile>) {
    let policy = manifest.policy.as_ref().map(|p| {
        serde_json::to_value(crate::policy_file::PolicyFile::from_pb(p)).unwrap_or_default()
    });
    let escrow = manifest.escrow.as_ref().map(CustodiansFile::from_pb);
    (policy, escrow)
}

/// Format tag of transcripts this build writes and reads.
pub const TRANSCRIPT_FORMAT: &str = "quorate-transcript/1";

/// Why a transcript's text is not a transcript this build reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscriptError {
    /// The text is not JSON of a transcript's shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The transcript is of another format (version).
    #[error("unsupported transcript format {found:?} (this build reads {TRANSCRIPT_FORMAT})")]
    UnsupportedFormat {
        /// The format the transcript names.
        found: String,
    },
}

/// A share holder as recorded in a transcript.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptParticipant {
    /// Node id.
    pub node_id: String,
    /// The endpoint the ceremony reached it at.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// FROST identifier, hex.
    pub identifier: String,
    /// Verifying share, hex (FROST encoding).
    pub verifying_share: String,
    /// Hex SHA-256 of the DER of the TLS certificate the node presented (verified
    /// against the CA for the node's name). Absent when it could not be observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
}

/// The public record of a ceremony (JSON). Holds no secret.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// Always [`TRANSCRIPT_FORMAT`].
    pub format: String,
    /// Which ceremony: `import`.
    pub kind: String,
    /// Key id.
    pub key_id: String,
    /// Ciphersuite name (`ED25519`, `SECP256K1`, `SECP256K1_TR`).
    pub ciphersuite: String,
    /// Threshold `t`.
    pub threshold: u16,
    /// Share holders, in manifest order.
    pub participants: Vec<TranscriptParticipant>,
    /// Group public key, hex, in the public API encoding.
    pub public_key: String,
    /// frost PublicKeyPackage, hex.
    pub public_key_package: String,
    /// The encoded KeyManifest every node stored, hex.
    pub manifest: String,
    /// SHA-256 of the manifest, hex; every node acknowledged it.
    pub manifest_hash: String,
    /// When the ceremony started (RFC 3339, UTC).
    pub started_at: String,
    /// When every node had acknowledged (RFC 3339, UTC).
    pub finished_at: String,
    /// DKG, refresh: the ceremony id every node signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony_id: Option<String>,
    /// DKG, refresh: SHA-256 of the ceremony setup, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_hash: Option<String>,
    /// DKG, refresh: the round-1 transcript hash every node confirmed, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round1_transcript_hash: Option<String>,
    /// The key's policy as stored in the manifest (JSON of its fields), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// The key's escrow custodians and threshold as stored in the manifest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<CustodiansFile>,
    /// DKG, refresh: every participant's signed confirmation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<TranscriptConfirmation>,
}

/// A participant's signed confirmation, as recorded in a transcript: anyone holding
/// the CA certificate can re-check it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfirmation {
    /// Node id.
    pub node_id: String,
    /// The encoded `Confirmation`, hex.
    pub body: String,
    /// The node's certificate (DER), hex.
    pub certificate: String,
    /// TLS signature scheme.
    pub scheme: u32,
    /// Signature, hex.
    pub signature: String,
}

impl Transcript {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a transcript, refusing unknown formats.
    pub fn from_json(text: &str) -> Result<Self, TranscriptError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_str(text)?;
        if header.format != TRANSCRIPT_FORMAT {
            return Err(TranscriptError::UnsupportedFormat {
                found: header.format,
            });
        }
        Ok(serde_json::from_str(text)?)
    }

    /// Writes the transcript to `path`, which must not exist: a transcript is a
    /// record and is never silently replaced.
    pub fn write(&self, path: &Path) -> Result<(), CeremonyError> {
        let mut json = self.to_json();
        json.push('\n');
        crate::files::write_new(path, json.as_bytes()).map_err(|e| CeremonyError::Transcript {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a transcript written by [`write`](Self::write).
    pub fn read(path: &Path) -> Result<Self, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "transcript",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| CeremonyError::Transcript {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The current time as transcripts and manifests record it (RFC 3339, UTC).
pub fn now_rfc3339() -> Result<String, CeremonyError> {
    let now = OffsetDateTime::now_utc();
    // Whole seconds: the timestamp goes into the manifest, where precision is noise.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .map_err(|e| CeremonyError::Clock(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_transcript() -> Transcript {
        Transcript {
            format: TRANSCRIPT_FORMAT.into(),
            kind: "import".into(),
            key_id: "k1".into(),
            ciphersuite: "ED25519".into(),
            threshold: 2,
            participants: vec![
                TranscriptParticipant {
                    node_id: "node-1".into(),
                    endpoint: "https://127.0.0.1:7100".into(),
                    region: "eu".into(),
                    jurisdiction: "EU".into(),
                    identifier: "01".into(),
                    verifying_share: "02".into(),
                    certificate_fingerprint: Some("ab".into()),
                },
                TranscriptParticipant {
                    node_id: "node-2".into(),
                    endpoint: "https://127.0.0.1:7101".into(),
                    region: "us".into(),
                    jurisdiction: "US".into(),
                    identifier: "03".into(),
                    verifying_share: "04".into(),
                    certificate_fingerprint: None,
                },
            ],
            public_key: "aa".into(),
            public_key_package: "bb".into(),
            manifest: "cc".into(),
            manifest_hash: "dd".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            ceremony_id: None,
            setup_hash: None,
            round1_transcript_hash: None,
            policy: None,
            escrow: None,
            confirmations: Vec::new(),
        }
    }

    #[test]
    fn transcript_json_has_the_documented_shape() {
        let json: serde_json::Value = serde_json::from_str(&sample_transcript().to_json()).unwrap();
        assert_eq!(json["format"], "quorate-transcript/1");
        assert_eq!(json["kind"], "import");
        assert_eq!(json["ciphersuite"], "ED25519");
        assert_eq!(json["threshold"], 2);
        let p = &json["participants"];
        assert_eq!(p[0]["node_id"], "node-1");
        assert_eq!(p[0]["certificate_fingerprint"], "ab");
        // An unobserved fingerprint is absent, not empty or invented.
        assert!(p[1].get("certificate_fingerprint").is_none());
        for key in [
            "key_id",
            "public_key",
            "public_key_package",
            "manifest",
            "manifest_hash",
            "started_at",
            "finished_at",
        ] {
            assert!(json[key].is_string(), "{key}");
        }
    }

    #[test]
    fn transcript_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let t = sample_transcript();
        t.write(&path).unwrap();
        assert_eq!(Transcript::read(&path).unwrap(), t);
        assert!(matches!(
            t.write(&path),
            Err(CeremonyError::Transcript { .. })
        ));
    }

    #[test]
    fn transcript_of_unknown_format_is_refused() {
        let json = sample_transcript()
            .to_json()
            .replace("quorate-transcript/1", "quorate-transcript/2");
        let err = Transcript::from_json(&json).unwrap_err();
        assert!(
            matches!(err, TranscriptError::UnsupportedFormat { .. }),
            "{err}"
        );
    }
}
