//! Trusted-dealer import against in-process fake nodes that serve the real
//! `Ceremony` gRPC service over mTLS with certificates from the dev PKI.
//!
//! The fakes check what a real node must check (caller role, manifest validity, that
//! the key package belongs to them and matches the manifest) and keep what they were
//! given, so the tests can sign with the installed shares afterwards.

// Test helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use quorate_ceremony::import::{
    import_key, read_secret_file, CeremonyError, CeremonyFile, ImportRequest,
};
use quorate_ceremony::pki;
use quorate_frost::{Ciphersuite, DealtKey, LocalQuorum, PackageDelivery, SecretKeyPackage};
use quorate_keys::manifest::Manifest;
use quorate_transport::identity::{authorize, Location, Role};
use quorate_wire::pb;
use quorate_wire::pb::ceremony_server::{Ceremony, CeremonyServer};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const DOMAIN: &str = "quorate.test";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    Honest,
    /// Refuses InstallKey.
    Refuse,
    /// Claims to have stored a different manifest.
    WrongHash,
}

#[derive(Debug, Default)]
struct Stored {
    manifest: Vec<u8>,
    key_package: Vec<u8>,
}

#[derive(Clone)]
struct FakeNode {
    info: pb::NodeInfo,
    behaviour: Behaviour,
    stored: Arc<Mutex<Option<Stored>>>,
}

#[tonic::async_trait]
impl Ceremony for FakeNode {
    // Import never calls the DKG, refresh or repair RPCs; real nodes serve them
    // (testnet/tests/ceremonies.rs).
    async fn dkg_round1(
        &self,
        _request: Request<pb::DkgRound1Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn dkg_round2(
        &self,
        _request: Request<pb::DkgRound2Request>,
    ) -> Result<Response<pb::DkgRound2Response>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn dkg_round3(
        &self,
        _request: Request<pb::DkgRound3Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn dkg_activate(
        &self,
        _request: Request<pb::DkgActivateRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn dkg_commit(
        &self,
        _: Request<pb::DkgCommitRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn refresh_state(
        &self,
        _: Request<pb::RefreshStateRequest>,
    ) -> Result<Response<pb::RefreshStateResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn abandon_refresh(
        &self,
        _: Request<pb::AbandonRefreshRequest>,
    ) -> Result<Response<pb::Signed>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn rollback_refresh(
        &self,
        _: Request<pb::RollbackRefreshRequest>,
    ) -> Result<Response<pb::RollbackRefreshResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn abort(
        &self,
        _request: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn retire_key(
        &self,
        _request: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn repair_start(
        &self,
        _request: Request<pb::RepairStartRequest>,
    ) -> Result<Response<pb::Signed>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn repair_deltas(
        &self,
        _request: Request<pb::RepairDeltasRequest>,
    ) -> Result<Response<pb::RepairDeltasResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn repair_sigma(
        &self,
        _request: Request<pb::RepairSigmaRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn repair_finish(
        &self,
        _request: Request<pb::RepairFinishRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn revoke_approval(
        &self,
        _request: Request<pb::RevokeApprovalRequest>,
    ) -> Result<Response<pb::RevokeApprovalResponse>, Status> {
        Err(Status::unimplemented("the fake node serves import only"))
    }

    async fn get_manifest(
        &self,
        _request: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::NodeKey>, Status> {
        Err(Status::not_found("the fake node stores no manifests"))
    }

    async fn escrow_split(
        &self,
        _request: Request<pb::EscrowSplitRequest>,
    ) -> Result<Response<pb::EscrowSplitResponse>, Status> {
        // Escrow is drilled against real nodes (testnet/tests/escrow.rs).
        Err(Status::unimplemented("the fake node does not escrow"))
    }

    async fn get_info(
        &self,
        request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        authorize(&request, DOMAIN, &[Role::Ceremony])?;
        Ok(Response::new(self.info.clone()))
    }

    async fn install_key(
        &self,
        request: Request<pb::InstallKeyRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        authorize(&request, DOMAIN, &[Role::Ceremony])?;
        if self.behaviour == Behaviour::Refuse {
            return Err(Status::failed_precondition("disk full"));
        }
        let req = request.into_inner();
        let manifest =
            Manifest::decode(&req.manifest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ops = manifest.ciphersuite.ops();
        let kp = SecretKeyPackage::from_bytes(req.key_package.clone());
        let info = ops
            .key_package_info(&kp)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let me = manifest
            .participant(&self.info.node_id)
            .ok_or_else(|| Status::invalid_argument("not a participant"))?;
        if info.identifier != me.identifier
            || info.verifying_share != me.verifying_share
            || info.verifying_key != manifest.public_key.verifying_key
            || info.min_signers != manifest.threshold
        {
            return Err(Status::invalid_argument(
                "key package does not match manifest",
            ));
        }
        *self.stored.lock().unwrap() = Some(Stored {
            manifest: req.manifest,
            key_package: req.key_package,
        });
        let mut hash = manifest.hash.to_vec();
        if self.behaviour == Behaviour::WrongHash {
            hash[0] ^= 1;
        }
        Ok(Response::new(pb::InstallKeyResponse {
            manifest_hash: hash,
            receipt: None,
        }))
    }
}

struct Net {
    _dir: tempfile::TempDir,
    pki: PathBuf,
    ceremony_file: PathBuf,
    nodes: Vec<FakeNode>,
}

struct NodeSpec {
    id: &'static str,
    /// Region and jurisdiction the node reports; the ceremony file says `r-<id>`/EU.
    reports: (&'static str, &'static str),
    behaviour: Behaviour,
    /// Serve with another node's certificate.
    cert_of: Option<&'static str>,
    /// Jurisdiction the node's certificate attests (its region is `r-<id>`).
    certified: &'static str,
}

fn honest(id: &'static str) -> NodeSpec {
    NodeSpec {
        id,
        reports: ("", "EU"),
        behaviour: Behaviour::Honest,
        cert_of: None,
        certified: "EU",
    }
}

async fn start(specs: Vec<NodeSpec>) -> Net {
    quorate_transport::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::create_ca(&pki_dir, DOMAIN).unwrap();
    pki::issue(&pki_dir, DOMAIN, Role::Ceremony, "alice", None, &[]).unwrap();
    let mut nodes = Vec::new();
    let mut toml = format!(
        "trust_domain = \"{DOMAIN}\"\n[tls]\nca = \"pki/ca.pem\"\n\
         cert = \"pki/ceremony-alice.pem\"\nkey = \"pki/ceremony-alice-key.pem\"\n\n"
    );
    for spec in &specs {
        // The certificate attests what the ceremony file says unless `certified`
        // differs; `reports` is what the node claims in GetInfo.
        let location = Location::new(&format!("r-{}", spec.id), spec.certified).unwrap();
        pki::issue(&pki_dir, DOMAIN, Role::Node, spec.id, Some(&location), &[]).unwrap();
    }
    for spec in specs {
        let cert_name = spec.cert_of.unwrap_or(spec.id);
        let tls = pki::IssuedCert {
            cert: pki_dir.join(format!("node-{cert_name}.pem")),
            key: pki_dir.join(format!("node-{cert_name}-key.pem")),
            ca: pki_dir.join("ca.pem"),
        }
        .tls_paths()
        .load()
        .unwrap();
        let region = if spec.reports.0.is_empty() {
            format!("r-{}", spec.id)
        } else {
            spec.reports.0.to_string()
        };
        let node = FakeNode {
            info: pb::NodeInfo {
                node_id: spec.id.to_string(),
                region,
                jurisdiction: spec.reports.1.to_string(),
            },
            behaviour: spec.behaviour,
            stored: Arc::default(),
        };
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let server = Server::builder()
            .tls_config(tls.server_config())
            .unwrap()
            .add_service(CeremonyServer::new(node.clone()))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        toml.push_str(&format!(
            "[[nodes]]\nid = \"{}\"\nendpoint = \"https://{addr}\"\nregion = \"r-{}\"\n\
             jurisdiction = \"EU\"\n\n",
            spec.id, spec.id
        ));
        nodes.push(node);
    }
    let ceremony_file = dir.path().join("ceremony.toml");
    std::fs::write(&ceremony_file, toml).unwrap();
    Net {
        pki: pki_dir,
        ceremony_file,
        nodes,
        _dir: dir,
    }
}

fn stored(node: &FakeNode) -> Option<(Vec<u8>, Vec<u8>)> {
    node.stored
        .lock()
        .unwrap()
        .as_ref()
        .map(|s| (s.manifest.clone(), s.key_package.clone()))
}

/// Signs `message` with the key packages the first `t` nodes stored.
fn sign_with_installed(
    suite: Ciphersuite,
    nodes: &[FakeNode],
    t: usize,
    message: &[u8],
) -> Vec<u8> {
    let (manifest, _) = stored(&nodes[0]).unwrap();
    let manifest = Manifest::decode(&manifest).unwrap();
    let installed = DealtKey {
        public_key_package: manifest.public_key_package.clone(),
        key_packages: nodes[..t]
            .iter()
            .map(|node| {
                let (_, kp) = stored(node).unwrap();
                (node.info.node_id.clone(), SecretKeyPackage::from_bytes(kp))
            })
            .collect(),
    };
    let signers: Vec<usize> = (0..t).collect();
    LocalQuorum::new(suite, &installed, &signers)
        .unwrap()
        .sign(message, PackageDelivery::PerSigner)
        .unwrap()
}

#[tokio::test]
async fn import_installs_matching_shares_that_sign_for_every_ciphersuite() {
    for suite in Ciphersuite::ALL {
        let net = start(vec![honest("node-1"), honest("node-2"), honest("node-3")]).await;
        let file = CeremonyFile::load(&net.ceremony_file).unwrap();
        let transcript = import_key(
            &file,
            ImportRequest {
                key_id: format!("k-{suite}"),
                ciphersuite: suite,
                threshold: 2,
                secret: None,
                policy: Some(pb::KeyPolicy {
                    unsafe_no_administrators: true,
                    ..Default::default()
                }),
                escrow: None,
            },
        )
        .await
        .unwrap();

        assert_eq!(transcript.format, "quorate-transcript/1");
        assert_eq!(transcript.ciphersuite, suite.name());
        // Every node stored the same manifest, the one the transcript records.
        for node in &net.nodes {
            let (manifest, _) = stored(node).unwrap();
            assert_eq!(hex::encode(&manifest), transcript.manifest);
            assert_eq!(
                hex::encode(quorate_wire::sha256(&manifest)),
                transcript.manifest_hash
            );
        }
        // Participants in file order, with the fingerprint of the certificate served.
        let ids: Vec<&str> = transcript
            .participants
            .iter()
            .map(|p| p.node_id.as_str())
            .collect();
        assert_eq!(ids, ["node-1", "node-2", "node-3"]);
        for p in &transcript.participants {
            let pem = std::fs::read(net.pki.join(format!("node-{}.pem", p.node_id))).unwrap();
            assert_eq!(
                p.certificate_fingerprint.as_deref(),
                Some(pki::fingerprint_pem(&pem).unwrap().as_str())
            );
            assert_eq!(p.region, format!("r-{}", p.node_id));
        }
        // Any two installed shares produce a signature under the transcript's key.
        let sig = sign_with_installed(suite, &net.nodes[1..], 2, b"migrated");
        let public_key = hex::decode(&transcript.public_key).unwrap();
        suite.ops().verify(&public_key, b"migrated", &sig).unwrap();
    }
}

#[tokio::test]
async fn imported_ed25519_key_keeps_its_public_key() {
    let net = start(vec![honest("node-1"), honest("node-2")]).await;
    let file = CeremonyFile::load(&net.ceremony_file).unwrap();
    // The scalar 1 (little-endian) has the base point as its public key.
    let secret_file = net.ceremony_file.with_file_name("secret.hex");
    std::fs::write(&secret_file, format!("01{}\n", "00".repeat(31))).unwrap();
    let transcript = import_key(
        &file,
        ImportRequest {
            key_id: "legacy".into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: 2,
            secret: Some(read_secret_file(&secret_file).unwrap()),
            policy: Some(pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        transcript.public_key,
        "5866666666666666666666666666666666666666666666666666666666666666"
    );
    let sig = sign_with_installed(Ciphersuite::Ed25519, &net.nodes, 2, b"m");
    Ciphersuite::Ed25519
        .ops()
        .verify(&hex::decode(&transcript.public_key).unwrap(), b"m", &sig)
        .unwrap();
}

fn request() -> ImportRequest {
    ImportRequest {
        key_id: "k1".into(),
        ciphersuite: Ciphersuite::Ed25519,
        threshold: 2,
        secret: None,
        policy: Some(pb::KeyPolicy {
            unsafe_no_administrators: true,
            ..Default::default()
        }),
        escrow: None,
    }
}

#[tokio::test]
async fn node_reporting_another_jurisdiction_stops_the_import_before_dealing() {
    let mut liar = honest("node-2");
    liar.reports = ("", "US");
    let net = start(vec![honest("node-1"), liar, honest("node-3")]).await;
    let file = CeremonyFile::load(&net.ceremony_file).unwrap();
    let err = import_key(&file, request()).await.unwrap_err();
    match &err {
        CeremonyError::PreCheck { failures, .. } => {
            assert_eq!(failures.len(), 1, "{err}");
            assert_eq!(failures[0].node_id, "node-2");
            assert!(failures[0].reason.contains("jurisdiction \"US\""), "{err}");
        }
        other => panic!("expected a pre-check failure, got {other}"),
    }
    assert!(
        net.nodes.iter().all(|n| stored(n).is_none()),
        "something was dealt"
    );
}

#[tokio::test]
async fn node_certified_in_another_jurisdiction_stops_the_import_though_it_reports_the_files() {
    let mut liar = honest("node-2");
    liar.certified = "US";
    let net = start(vec![honest("node-1"), liar, honest("node-3")]).await;
    let file = CeremonyFile::load(&net.ceremony_file).unwrap();
    let err = import_key(&file, request()).await.unwrap_err();
    match &err {
        CeremonyError::PreCheck { failures, .. } => {
            assert_eq!(failures.len(), 1, "{err}");
            assert_eq!(failures[0].node_id, "node-2");
            assert!(
                failures[0]
                    .reason
                    .contains("certificate jurisdiction \"US\" (ceremony file says \"EU\")"),
                "{err}"
            );
        }
        other => panic!("expected a pre-check failure, got {other}"),
    }
    assert!(
        net.nodes.iter().all(|n| stored(n).is_none()),
        "something was dealt"
    );
}

#[tokio::test]
async fn node_serving_another_nodes_certificate_fails_the_handshake() {
    let mut impostor = honest("node-2");
    impostor.cert_of = Some("node-1");
    let net = start(vec![honest("node-1"), impostor]).await;
    let file = CeremonyFile::load(&net.ceremony_file).unwrap();
    let err = import_key(&file, request()).await.unwrap_err();
    eprintln!("{err}");
    match &err {
        CeremonyError::PreCheck { failures, .. } => {
            let ids: Vec<&str> = failures.iter().map(|f| f.node_id.as_str()).collect();
            assert_eq!(ids, ["node-2"], "{err}");
        }
        other => panic!("expected a pre-check failure, got {other}"),
    }
    assert!(
        net.nodes.iter().all(|n| stored(n).is_none()),
        "something was dealt"
    );
}

#[tokio::test]
async fn refused_install_names_installed_and_failed_nodes() {
    let mut refuser = honest("node-3");
    refuser.behaviour = Behaviour::Refuse;
    let mut confused = honest("node-4");
    confused.behaviour = Behaviour::WrongHash;
    let net = start(vec![honest("node-1"), honest("node-2"), refuser, confused]).await;
    let file = CeremonyFile::load(&net.ceremony_file).unwrap();
    let mut req = request();
    req.threshold = 3;
    let err = import_key(&file, req).await.unwrap_err();
    eprintln!("{err}");
    match &err {
        CeremonyError::Install {
            installed, failed, ..
        } => {
            assert_eq!(installed, &["node-1", "node-2"]);
            let ids: Vec<&str> = failed.iter().map(|f| f.node_id.as_str()).collect();
            assert_eq!(ids, ["node-3", "node-4"]);
            assert!(failed[0].reason.contains("disk full"), "{err}");
            assert!(failed[1].reason.contains("manifest hash"), "{err}");
        }
        other => panic!("expected an install failure, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("unusable on the failing nodes"), "{msg}");
    assert!(msg.contains("cannot sign"), "{msg}");
}

#[tokio::test]
async fn cli_import_writes_the_transcript() {
    let net = start(vec![honest("node-1"), honest("node-2"), honest("node-3")]).await;
    let out = net.ceremony_file.with_file_name("transcript.json");
    let policy = net.ceremony_file.with_file_name("policy.toml");
    std::fs::write(&policy, "unsafe_no_administrators = true\n").unwrap();
    let args = vec![
        "import".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--ceremony".into(),
        net.ceremony_file.display().to_string(),
        "--key-id".into(),
        "cli-key".into(),
        "--ciphersuite".into(),
        "secp256k1-tr".into(),
        "--threshold".into(),
        "2".into(),
        "--transcript".into(),
        out.display().to_string(),
    ];
    // The fake nodes run on this test's runtime; the binary runs beside it.
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_quorate-ceremony"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let first = run(args.clone()).await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["key_id"], "cli-key");
    assert_eq!(json["ciphersuite"], "SECP256K1_TR");
    assert_eq!(json["participants"].as_array().unwrap().len(), 3);

    // A second run must not overwrite the record: a usage error, before any node is
    // contacted.
    let second = run(args).await.unwrap();
    assert_eq!(second.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already exists"));
}
