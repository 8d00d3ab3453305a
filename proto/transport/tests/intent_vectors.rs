//! The sign-intent test vectors of docs/intent.md, checked against this
//! implementation: the body encoding, the signed bytes, and a signature by a fixed
//! Ed25519 client certificate (Ed25519 is deterministic, so the signature is
//! reproduced exactly), verified as nodes verify it.
//!
//! `tests/vectors/` holds the CA, the client certificate and key, and
//! `intent.json`. They were written by the ignored test below
//! (`cargo test -p quorate-transport --test intent_vectors -- --ignored`); rerunning
//! it writes new certificates and so new vectors.

use std::path::PathBuf;

use rustls::pki_types::UnixTime;
use serde::{Deserialize, Serialize};

use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::intent::{
    sign_intent, IntentRequest, IntentVerifier, SignIntent, INTENT_KIND,
};

#[derive(Debug, Serialize, Deserialize)]
struct Vector {
    description: String,
    key_id: String,
    message_hex: String,
    request_id: String,
    approval_token_hex: String,
    not_before: u64,
    not_after: u64,
    body_hex: String,
    signed_bytes_hex: String,
    scheme: u32,
    signature_hex: String,
    verify_at_unix: u64,
    client_spiffe_id: String,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn intent_of(v: &Vector) -> SignIntent {
    let message = hex::decode(&v.message_hex).unwrap();
    let token = hex::decode(&v.approval_token_hex).unwrap();
    let request = IntentRequest {
        key_id: &v.key_id,
        message: &message,
        request_id: &v.request_id,
        approval_token: (!token.is_empty()).then_some(token.as_slice()),
    };
    SignIntent::for_request(&request, v.not_before, v.not_after - v.not_before)
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [
        b"quorate-statement/1\0".as_slice(),
        INTENT_KIND.as_bytes(),
        b"\0",
        body,
    ]
    .concat()
}

#[test]
fn the_documented_vectors_encode_sign_and_verify_exactly() {
    quorate_transport::install_crypto_provider();
    let vectors: Vec<Vector> = serde_json::from_str(&read("intent.json")).unwrap();
    assert!(!vectors.is_empty());
    let signer = StatementSigner::from_pem(
        read("client-cert.pem").as_bytes(),
        read("client-key.pem").as_bytes(),
    )
    .unwrap();
    let verifier = IntentVerifier::new(
        StatementVerifier::from_pem(read("ca.pem").as_bytes(), "quorate.test").unwrap(),
    );
    for v in &vectors {
        let intent = intent_of(v);
        let body = intent.encode();
        assert_eq!(hex::encode(&body), v.body_hex, "{}: body", v.description);
        assert_eq!(
            SignIntent::decode(&body).unwrap(),
            intent,
            "{}",
            v.description
        );
        assert_eq!(
            hex::encode(signed_bytes(&body)),
            v.signed_bytes_hex,
            "{}",
            v.description
        );
        let signed = sign_intent(&signer, &intent).unwrap();
        assert_eq!(signed.scheme, v.scheme, "{}: scheme", v.description);
        assert_eq!(
            hex::encode(&signed.signature),
            v.signature_hex,
            "{}: signature",
            v.description
        );
        let message = hex::decode(&v.message_hex).unwrap();
        let token = hex::decode(&v.approval_token_hex).unwrap();
        let request = IntentRequest {
            key_id: &v.key_id,
            message: &message,
            request_id: &v.request_id,
            approval_token: (!token.is_empty()).then_some(token.as_slice()),
        };
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(v.verify_at_unix));
        let verified = verifier.verify_at(Some(&signed), &request, at).unwrap();
        assert_eq!(
            verified.client.spiffe_id(),
            v.client_spiffe_id,
            "{}",
            v.description
        );
        // One flipped bit of the signature, and it is refused.
        let mut forged = signed.clone();
        forged.signature[0] ^= 1;
        assert!(verifier.verify_at(Some(&forged), &request, at).is_err());
    }
}

/// Writes new vectors (new CA and client certificate). Run by hand only.
#[test]
#[ignore]
fn write_vectors() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    quorate_transport::install_crypto_provider();
    let date = |y| {
        time::Date::from_calendar_date(y, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc()
    };
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "quorate.test intent-vector CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_params.not_before = date(2026);
    ca_params.not_after = date(2046);
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "payments");
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://quorate.test/client/payments".try_into().unwrap(),
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = date(2026);
    params.not_after = date(2046);
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(dir().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir().join("client-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir().join("client-key.pem"), key.serialize_pem()).unwrap();
    let signer =
        StatementSigner::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let cases = [
        (
            "no request id, no approval token",
            "demo-ed25519",
            b"pay 10 EUR".to_vec(),
            "",
            Vec::new(),
        ),
        (
            "request id and approval token",
            "eu-payments",
            b"pay 10 EUR".to_vec(),
            "invoice-4711",
            b"{\"format\":\"quorate-approval/1\"}".to_vec(),
        ),
    ];
    let mut vectors = Vec::new();
    for (description, key_id, message, request_id, token) in cases {
        let mut v = Vector {
            description: description.into(),
            key_id: key_id.into(),
            message_hex: hex::encode(&message),
            request_id: request_id.into(),
            approval_token_hex: hex::encode(&token),
            not_before: 1_798_761_600,
            not_after: 1_798_761_660,
            body_hex: String::new(),
            signed_bytes_hex: String::new(),
            scheme: 0,
            signature_hex: String::new(),
            verify_at_unix: 1_798_761_630,
            client_spiffe_id: "spiffe://quorate.test/client/payments".into(),
        };
        let intent = intent_of(&v);
        let signed = sign_intent(&signer, &intent).unwrap();
        v.body_hex = hex::encode(intent.encode());
        v.signed_bytes_hex = hex::encode(signed_bytes(&intent.encode()));
        v.scheme = signed.scheme;
        v.signature_hex = hex::encode(&signed.signature);
        vectors.push(v);
    }
    std::fs::write(
        dir().join("intent.json"),
        serde_json::to_string_pretty(&vectors).unwrap() + "\n",
    )
    .unwrap();
}
