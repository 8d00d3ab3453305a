//! A node that says it is going away (health `NOT_SERVING`: draining after SIGTERM,
//! or its audit log broke) stays out of the coordinator's choice until its health
//! says `SERVING` again, over real mTLS connections. Regression: the key refresh
//! loop's `ListNodeKeys`, which such a node still answers, marked it available
//! again, so new signing work went to a node that would refuse it. And a node that
//! says `SERVING` to its probes but refuses work as going away is not brought back
//! by every probe.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_coordinator::config::NodeEndpoint;
use quorate_coordinator::keys::KeyDirectory;
use quorate_coordinator::nodes::{NodePool, Standing};
use quorate_transport::test_ca::{new_ca, pem, Ca};
use quorate_transport::tls::{TlsMaterial, TlsPaths};
use quorate_wire::pb;
use quorate_wire::pb::node_server::{Node, NodeServer};
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// A node that lists no keys and takes no signing work, as a draining node does,
/// and counts the key listings it answered.
#[derive(Debug, Clone, Default)]
struct ListingNode {
    listings: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Node for ListingNode {
    async fn get_info(
        &self,
        _: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        Err(Status::unimplemented("not needed here"))
    }

    async fn list_node_keys(
        &self,
        _: Request<pb::ListNodeKeysRequest>,
    ) -> Result<Response<pb::ListNodeKeysResponse>, Status> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::ListNodeKeysResponse::default()))
    }

    async fn commit(
        &self,
        _: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        Err(quorate_wire::api::going_away_status("shutting down"))
    }

    async fn sign_share(
        &self,
        _: Request<pb::SignShareRequest>,
    ) -> Result<Response<pb::SignShareResponse>, Status> {
        Err(quorate_wire::api::going_away_status("shutting down"))
    }

    type SignSharesStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::SignSharesResponse, Status>> + Send>,
    >;

    async fn sign_shares(
        &self,
        _: Request<tonic::Streaming<pb::SignSharesRequest>>,
    ) -> Result<Response<Self::SignSharesStream>, Status> {
        Err(quorate_wire::api::going_away_status("shutting down"))
    }
}

/// Certificates of `role/name` from `ca`, written under `dir` and loaded.
fn material(dir: &std::path::Path, ca: &Ca, role: &str, name: &str) -> TlsMaterial {
    let (cert, key) = pem(ca, role, name);
    let paths = TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{role}-{name}.pem")),
        key: dir.join(format!("{role}-{name}-key.pem")),
    };
    std::fs::write(&paths.ca, &ca.pem).unwrap();
    std::fs::write(&paths.cert, cert).unwrap();
    std::fs::write(&paths.key, key).unwrap();
    paths.load().unwrap()
}

/// node-1 served over mTLS on loopback with its health `NOT_SERVING`, the
/// coordinator's pool of it (probing every `probe_interval`, its first probe at
/// once) and a key directory over that pool.
struct Setup {
    node: ListingNode,
    health: HealthReporter,
    pool: Arc<NodePool>,
    keys: KeyDirectory,
    _dir: tempfile::TempDir,
}

async fn setup(probe_interval: Duration) -> Setup {
    quorate_transport::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("test CA");
    let node_tls = material(dir.path(), &ca, "node", "node-1");
    let coordinator_tls = material(dir.path(), &ca, "coordinator", "coordinator");

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let node = ListingNode::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tonic::transport::Server::builder()
        .tls_config(node_tls.server_config())
        .unwrap()
        .add_service(health_service)
        .add_service(NodeServer::new(node.clone()))
        .serve_with_incoming(quorate_transport::tls::incoming(listener));
    tokio::spawn(server);

    let pool = Arc::new(
        NodePool::new(
            &[NodeEndpoint {
                id: "node-1".into(),
                endpoint: format!("https://127.0.0.1:{port}"),
            }],
            &coordinator_tls,
            Duration::from_secs(1),
        )
        .unwrap(),
    );
    tokio::spawn(pool.clone().probe_forever(probe_interval));
    let keys = KeyDirectory::new(
        pool.clone(),
        coordinator_tls.statement_verifier().unwrap(),
        Duration::ZERO,
        Duration::from_secs(2),
    );
    Setup {
        node,
        health,
        pool,
        keys,
        _dir: dir,
    }
}

fn standing(pool: &NodePool) -> Standing {
    pool.get("node-1").unwrap().standing()
}

async fn wait_for(pool: &NodePool, wanted: Standing) {
    let started = Instant::now();
    while standing(pool) != wanted {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node-1 is {:?}, not {wanted:?}, after 10 s",
            standing(pool)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_draining_node_that_answers_a_key_listing_stays_going_away() {
    // One probe, at once; the next in an hour, so only the listing could bring
    // the node back within this test.
    let setup = setup(Duration::from_secs(3600)).await;
    wait_for(&setup.pool, Standing::GoingAway).await;

    setup.keys.all().await;
    setup.keys.all().await;
    assert_eq!(
        setup.node.listings.load(Ordering::SeqCst),
        2,
        "the key refresh listed node-1's keys twice"
    );
    assert_eq!(standing(&setup.pool), Standing::GoingAway);
    assert!(!setup.pool.get("node-1").unwrap().is_available());
}

#[tokio::test]
async fn a_node_going_away_is_back_once_its_health_says_serving() {
    let setup = setup(Duration::from_millis(100)).await;
    wait_for(&setup.pool, Standing::GoingAway).await;
    setup.keys.all().await;
    assert_eq!(standing(&setup.pool), Standing::GoingAway);

    // Restarted (or its drain called off): the next probe restores it.
    setup
        .health
        .set_service_status("", ServingStatus::Serving)
        .await;
    wait_for(&setup.pool, Standing::Available).await;
}

/// Regression: a node that answered its probes SERVING and refused every Commit as
/// going away was brought back by each probe (every second by default), its
/// refusals never counted, so it drew signing work to itself for ever.
#[tokio::test]
async fn a_node_that_says_serving_but_refuses_as_going_away_is_not_brought_back_by_its_probes() {
    let setup = setup(Duration::from_millis(100)).await;
    wait_for(&setup.pool, Standing::GoingAway).await;
    setup
        .health
        .set_service_status("", ServingStatus::Serving)
        .await;
    wait_for(&setup.pool, Standing::Available).await;

    // Chosen again, it refuses the work as a draining node would.
    let node = setup.pool.get("node-1").unwrap();
    let refused = node
        .client()
        .commit(pb::CommitRequest::default())
        .await
        .unwrap_err();
    assert!(
        quorate_coordinator::nodes::going_away(&refused),
        "{refused:?}"
    );
    node.record_status(&refused);
    assert_eq!(standing(&setup.pool), Standing::GoingAway);

    // Its probes go on saying SERVING; several pass without bringing it back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(standing(&setup.pool), Standing::GoingAway);
    assert!(!node.is_available());
}
