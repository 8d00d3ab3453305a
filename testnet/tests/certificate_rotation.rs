//! Live certificate rotation with real processes: under signing load, every node's,
//! the coordinator's and the client's certificate is renewed twice with
//! certificates valid for two minutes, and the load runs on past the expiry of the
//! first renewed set. No request fails; every server presents its latest
//! certificate to a fresh connection; a coordinator connection made after the
//! first set expired carries the coordinator's latest certificate; and a key's
//! attestations still verify (the nodes signed them again). Without live reloading
//! the processes would present a certificate that expired mid-run, and the
//! client's intents and the nodes' attestations would carry it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use quorate_ceremony::pki;
use quorate_testnet::drill::load::{Load, LoadKey, Outcome};
use quorate_testnet::network::LocalNetwork;
use quorate_transport::identity::Role;
use quorate_transport::metrics::{sample, scrape};
use quorate_transport::tls::{hex_sha256, TlsPaths};
use quorate_wire::pb;

/// How long each renewed certificate is valid.
const VALID_FOR: Duration = Duration::from_secs(120);

/// Every party whose certificate is renewed: the nodes, the coordinator and the
/// load's client.
fn parties(net: &LocalNetwork) -> Vec<(Role, String)> {
    let mut parties: Vec<(Role, String)> = net
        .nodes
        .iter()
        .map(|n| (Role::Node, n.spec.id.clone()))
        .collect();
    parties.push((Role::Coordinator, "coordinator".into()));
    parties.push((Role::Client, "demo-client".into()));
    parties
}

fn fingerprint(paths: &TlsPaths) -> String {
    pki::fingerprint_pem(&std::fs::read(&paths.cert).unwrap()).unwrap()
}

/// Renews every party's certificate; returns their new fingerprints in
/// [`parties`] order.
fn renew_all(net: &LocalNetwork) -> Vec<String> {
    let valid_for = pki::parse_validity(&format!("{}s", VALID_FOR.as_secs())).unwrap();
    parties(net)
        .into_iter()
        .map(|(role, name)| {
            pki::renew(&net.pki_dir, role, &name, valid_for).unwrap();
            fingerprint(&net.tls_paths(role, &name))
        })
        .collect()
}

/// The certificate (fingerprint) a server presents to a fresh connection, once a
/// call on it succeeded.
async fn presented(net: &LocalNetwork, role: Role, name: &str) -> Result<String, String> {
    let timeout = Duration::from_secs(2);
    match role {
        Role::Node => {
            let tls = net.tls_paths(Role::Ceremony, "testnet").load().unwrap();
            let node = net.node(name).unwrap();
            let server = tls.server_identity(Role::Node, name).unwrap();
            let (channel, seen) = tls
                .observed_channel(&node.endpoint, &server, timeout)
                .unwrap();
            pb::ceremony_client::CeremonyClient::new(channel)
                .get_info(pb::GetInfoRequest {})
                .await
                .map_err(|e| e.to_string())?;
            Ok(hex_sha256(&seen.get().ok_or("no certificate seen")?))
        }
        _ => {
            let tls = net.tls_paths(Role::Client, "demo-client").load().unwrap();
            let server = tls.server_identity(Role::Coordinator, name).unwrap();
            let (channel, seen) = tls
                .observed_channel(&net.coordinator_endpoint, &server, timeout)
                .unwrap();
            pb::signer_client::SignerClient::new(channel)
                .list_keys(pb::ListKeysRequest {})
                .await
                .map_err(|e| e.to_string())?;
            Ok(hex_sha256(&seen.get().ok_or("no certificate seen")?))
        }
    }
}

/// Waits until every server presents the certificate renewed for it last.
async fn wait_presented(net: &LocalNetwork, expected: &[String], when: &str) {
    let started = Instant::now();
    for ((role, name), expected) in parties(net).iter().zip(expected) {
        if *role == Role::Client {
            continue;
        }
        loop {
            let seen = presented(net, *role, name).await;
            if seen.as_deref() == Ok(expected.as_str()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{when}: {role}/{name} presents {seen:?}, not its renewed certificate {expected}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Whether `log` records a connection from the coordinator with certificate
/// `fingerprint`.
fn accepted_from_coordinator(log: &Path, fingerprint: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .any(|line| {
            line.contains("mTLS connection accepted")
                && line.contains("/coordinator/coordinator")
                && line.contains(fingerprint)
        })
}

#[tokio::test]
async fn certificates_renewed_twice_under_load_outlive_the_first_renewal_and_no_request_fails() {
    let net = common::start_default().await;
    let signer = net.coordinator_client(0).unwrap();
    let mut keys = Vec::new();
    for key in net.spec.keys.iter().filter(|k| k.policy.is_none()) {
        let public = signer.public_key(&key.key_id).await.unwrap();
        keys.push(LoadKey {
            key_id: key.key_id.clone(),
            ciphersuite: quorate_wire::ciphersuite_from_pb(public.ciphersuite).unwrap(),
            public_key: public.public_key,
        });
    }
    let client = quorate_client::Client::new(&net.client_config()).unwrap();
    let load = Load::start(&[(0, client.clone())], &keys, "certificate-rotation");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // First renewal: everyone moves to two-minute certificates.
    let first = renew_all(&net);
    let first_expires = Instant::now() + VALID_FOR;
    wait_presented(&net, &first, "after the first renewal").await;

    tokio::time::sleep(Duration::from_secs(30)).await;
    let second = renew_all(&net);
    wait_presented(&net, &second, "after the second renewal").await;

    // Run on until the first renewed set has expired.
    let past_expiry = first_expires + Duration::from_secs(5);
    tokio::time::sleep(past_expiry.saturating_duration_since(Instant::now())).await;
    wait_presented(&net, &second, "after the first renewed set expired").await;

    // The coordinator's connection to node-5, made again after the first set
    // expired (a pause drops it: the coordinator's HTTP/2 pings go unanswered),
    // is handshaken with the coordinator's latest certificate, which node-5 accepts.
    let coordinator_latest = &second[net.nodes.len()];
    let node_log = net.net.dir.join("logs/node-5.log");
    net.pause_node("node-5").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    net.resume_node("node-5").unwrap();
    let started = Instant::now();
    while !accepted_from_coordinator(&node_log, coordinator_latest) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "node-5 logged no connection from the coordinator's renewed certificate {coordinator_latest}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let samples = load.stop().await;
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.outcome != Outcome::Signed)
        .collect();
    let late = samples
        .iter()
        .filter(|s| s.sent > first_expires && s.outcome == Outcome::Signed)
        .count();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed while certificates were renewed; first: {:?}",
        failed.len(),
        samples.len(),
        failed.first().map(|s| &s.outcome)
    );
    assert!(
        late >= 20,
        "only {late} signatures after the first renewed set expired"
    );

    // The attestations the coordinator serves were signed under live
    // certificates: the client still accepts every key's public key.
    for key in &keys {
        client
            .public_key(&key.key_id)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.key_id));
    }

    // Each server counted two reloads and no refusal, and exports the expiry of
    // the certificate it uses now.
    let mut endpoints: Vec<(String, String, String)> = net
        .nodes
        .iter()
        .zip(&second)
        .map(|(n, f)| {
            (
                n.spec.id.clone(),
                n.metrics.clone(),
                f.clone() + "|quorate_node_certificate_not_after_seconds",
            )
        })
        .collect();
    endpoints.push((
        "coordinator".into(),
        net.coordinator_metrics.clone(),
        coordinator_latest.clone() + "|quorate_coordinator_certificate_not_after_seconds",
    ));
    for (name, metrics, gauge) in endpoints {
        let text = scrape(&metrics).await.unwrap();
        let (_, gauge) = gauge.split_once('|').unwrap();
        assert_eq!(
            sample(&text, "quorate_tls_reloads_total"),
            Some(2.0),
            "{name}"
        );
        assert_eq!(
            sample(&text, "quorate_tls_reload_failures_total"),
            Some(0.0),
            "{name}"
        );
        let not_after = sample(&text, gauge).unwrap() as u64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            not_after > now && not_after <= now + VALID_FOR.as_secs(),
            "{name}: not_after {not_after}, now {now}"
        );
    }
}
