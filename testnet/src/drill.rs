//! Quorum drills: failures inflicted on a running network (processes or the
//! docker-compose testnet) under a steady background load of signing requests,
//! each signature checked by an independent verifier, and a report of what the
//! clients saw.
//!
//! A drill is one function in [`registry`]: it starts the load, breaks and mends
//! the network through [`Target`], and returns a [`Verdict`] that asserts its
//! expectation on the requests it measured. Drills leave the network as they found
//! it (and [`Target::restore`] runs between drills regardless), so each can run
//! alone. Every loop here is bounded in count and in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::keygen::{run_repair, RepairRequest};
use quorate_proto::suite::Ciphersuite;
use rand_core::{OsRng, RngCore};

use crate::client::SignerClient;
use crate::compose::ComposeNetwork;
use crate::network::LocalNetwork;

/// Deadline each background request carries (the coordinator's default deadline
/// is 5 s; it answers a caller's shorter deadline less a margin).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent background clients.
pub const LOAD_WORKERS: usize = 4;
/// Pause between one client's requests, so a fast-failing network does not turn
/// the load into a busy loop on shared cores.
const LOAD_PACING: Duration = Duration::from_millis(20);
/// Upper bounds of one load run, whatever a drill does.
const LOAD_MAX_DURATION: Duration = Duration::from_secs(180);
const LOAD_MAX_REQUESTS_PER_WORKER: u64 = 20_000;

/// The network a drill runs against.
#[derive(Debug)]
pub enum Target {
    /// Processes on loopback (boxed: it is large, and there is one per run).
    Local(Box<LocalNetwork>),
    /// The docker-compose testnet.
    Compose(ComposeNetwork),
}

impl Target {
    /// Node ids.
    pub fn node_ids(&self) -> Vec<String> {
        match self {
            Target::Local(n) => n.nodes.iter().map(|n| n.spec.id.clone()).collect(),
            Target::Compose(c) => c.layout.nodes.iter().map(|n| n.spec.id.clone()).collect(),
        }
    }

    /// Coordinator names, in order.
    pub fn coordinator_names(&self) -> Vec<String> {
        match self {
            Target::Local(n) => (0..n.coordinator_count())
                .filter_map(|i| n.coordinator_access(i).ok().map(|(name, _)| name))
                .collect(),
            Target::Compose(c) => c
                .layout
                .coordinators
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        }
    }

    /// A client of coordinator `i`.
    pub fn client(&self, i: usize) -> anyhow::Result<SignerClient> {
        match self {
            Target::Local(n) => n.coordinator_client(i),
            Target::Compose(c) => c.coordinator_client(i),
        }
    }

    /// How a partition is made on this target, for the report.
    pub fn partition_method(&self) -> &'static str {
        match self {
            Target::Local(_) => "SIGSTOP/SIGCONT of the node process (stand-in for a partition)",
            Target::Compose(_) => "docker network disconnect/connect of its segment",
        }
    }

    /// Kills a node (SIGKILL / `docker kill`).
    pub async fn kill_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.kill_node(id).await,
            Target::Compose(c) => c.kill_node(id).await,
        }
    }

    /// Stops a node gracefully (SIGTERM / `docker stop`).
    pub async fn stop_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.stop_node(id).await,
            Target::Compose(c) => c.stop_node(id).await,
        }
    }

    /// Starts a stopped node and waits until it serves.
    pub async fn start_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.start_node(id).await,
            Target::Compose(c) => c.start_node(id).await,
        }
    }

    /// Cuts a node off from everyone.
    pub async fn partition_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.pause_node(id),
            Target::Compose(c) => c.partition_node(id).await,
        }
    }

    /// Undoes [`Target::partition_node`].
    pub async fn heal_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.resume_node(id),
            Target::Compose(c) => c.heal_node(id).await,
        }
    }

    /// Freezes a node in place (SIGSTOP / `docker pause`).
    pub async fn pause_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.pause_node(id),
            Target::Compose(c) => c.pause_node(id).await,
        }
    }

    /// Thaws a frozen node.
    pub async fn resume_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.resume_node(id),
            Target::Compose(c) => c.resume_node(id).await,
        }
    }

    /// Kills coordinator `i`.
    pub async fn kill_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.kill_coordinator(i).await,
            Target::Compose(c) => c.kill_coordinator(i).await,
        }
    }

    /// Starts coordinator `i` and waits until it serves every key.
    pub async fn start_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.start_coordinator(i).await,
            Target::Compose(c) => c.start_coordinator(i).await,
        }
    }

    /// Every key of the network (the load signs with the unrestricted ones).
    pub fn key_ids(&self) -> Vec<String> {
        let spec = match self {
            Target::Local(n) => &n.spec,
            Target::Compose(c) => &c.layout.spec,
        };
        spec.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    /// An approval token from the network's approver (its key in
    /// `DIR/approver/`) for an out-of-policy quorum on `key_id`.
    pub fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Target::Local(n) => n.approve(key_id, valid_secs, reason),
            Target::Compose(c) => c.approve(key_id, valid_secs, reason),
        }
    }

    /// The ceremony's view of the network (nodes, endpoints, the ceremony's
    /// certificate), for repairs run from here.
    pub fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        match self {
            Target::Local(n) => n.ceremony(),
            Target::Compose(c) => c.ceremony(),
        }
    }

    /// How a node's state is destroyed on this target, for the report.
    pub fn wipe_method(&self) -> &'static str {
        match self {
            Target::Local(_) => "SIGKILL, store deleted, restarted empty",
            Target::Compose(_) => "docker rm -f, docker volume rm, up -d --no-deps",
        }
    }

    /// Destroys a node's state (its store, every share it held) and starts it
    /// again empty, with the same identity, certificate and KEK; waits until it
    /// serves.
    pub async fn wipe_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => n.wipe_node(id).await,
            Target::Compose(c) => c.wipe_node(id).await,
        }
    }

    /// Rebuilds, by `repair` from t helpers, every share a node lacks of a key
    /// the other nodes hold (a node wiped by a drill that then failed). Returns
    /// what it repaired, `key_id@node`.
    pub async fn repair_lost_shares(&self) -> anyhow::Result<Vec<String>> {
        let ceremony = self.ceremony()?;
        let mut repaired = Vec::new();
        for key_id in self.key_ids() {
            let mut lacking = Vec::new();
            for node in &ceremony.nodes {
                if !crate::compose::node_holds_key(&ceremony.tls, node, &key_id).await? {
                    lacking.push(node.id.clone());
                }
            }
            // A key no node holds is not ours to create here.
            if lacking.len() == ceremony.nodes.len() {
                continue;
            }
            for node in lacking {
                run_repair(
                    &ceremony,
                    RepairRequest {
                        key_id: key_id.clone(),
                        node: node.clone(),
                    },
                )
                .await
                .with_context(|| format!("repairing {node}'s share of {key_id}"))?;
                repaired.push(format!("{key_id}@{node}"));
            }
        }
        Ok(repaired)
    }

    /// Brings every node and coordinator back to running and serving, and every
    /// node back to holding every key.
    pub async fn restore(&mut self) -> anyhow::Result<()> {
        self.restore_processes().await?;
        let repaired = self.repair_lost_shares().await?;
        if !repaired.is_empty() {
            eprintln!("restore: repaired lost shares {}", repaired.join(", "));
        }
        Ok(())
    }

    async fn restore_processes(&mut self) -> anyhow::Result<()> {
        match self {
            Target::Local(n) => {
                for i in 0..n.nodes.len() {
                    let id = n.nodes[i].spec.id.clone();
                    if n.nodes[i].process.is_running() {
                        // Harmless when it is not stopped.
                        n.resume_node(&id)?;
                    } else {
                        n.start_node(&id).await?;
                    }
                }
                for i in 0..n.coordinator_count() {
                    let running = match i {
                        0 => n.coordinator.is_running(),
                        _ => n.extra_coordinators[i - 1].process.is_running(),
                    };
                    if !running {
                        n.start_coordinator(i).await?;
                    }
                }
                Ok(())
            }
            Target::Compose(c) => c.restore().await,
        }
    }
}

/// A key the load signs with, and what verifies its signatures.
#[derive(Clone, Debug)]
pub struct LoadKey {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Group public key (public API encoding).
    pub public_key: Vec<u8>,
}

/// What one request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A signature that the independent verifier accepted.
    Signed,
    /// A signature that it rejected.
    Invalid(String),
    /// An error status.
    Failed(tonic::Code, String),
}

/// One request of the background load.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Which coordinator it went to.
    pub coordinator: usize,
    /// When it was sent.
    pub sent: Instant,
    /// How long it took.
    pub latency: Duration,
    /// Its outcome.
    pub outcome: Outcome,
}

impl Sample {
    /// When its answer came.
    pub fn done(&self) -> Instant {
        self.sent + self.latency
    }
}

/// Background signing load: [`LOAD_WORKERS`] clients signing continuously.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load; worker `w` uses `clients[w % clients.len()]`.
    pub fn start(clients: &[(usize, SignerClient)], keys: &[LoadKey], label: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..LOAD_WORKERS {
            let Some((coordinator, client)) = clients.get(w % clients.len().max(1)).cloned() else {
                break;
            };
            let keys = keys.to_vec();
            let stop = stop.clone();
            let samples = samples.clone();
            let label = label.to_string();
            workers.push(tokio::spawn(async move {
                for n in 0..LOAD_MAX_REQUESTS_PER_WORKER {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_MAX_DURATION {
                        break;
                    }
                    let Some(key) = keys.get((n as usize + w) % keys.len().max(1)) else {
                        break;
                    };
                    let message = format!("drill {label} worker {w} request {n}");
                    let sent = Instant::now();
                    let result = client
                        .sign(&key.key_id, message.as_bytes(), None, REQUEST_TIMEOUT)
                        .await;
                    let latency = sent.elapsed();
                    let outcome = match result {
                        Ok(resp) => match crate::verify::verify(
                            key.ciphersuite,
                            &key.public_key,
                            message.as_bytes(),
                            &resp.signature,
                        ) {
                            Ok(()) => Outcome::Signed,
                            Err(e) => Outcome::Invalid(e),
                        },
                        Err(status) => Outcome::Failed(status.code(), status.message().to_string()),
                    };
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            coordinator,
                            sent,
                            latency,
                            outcome,
                        });
                    }
                    tokio::time::sleep(LOAD_PACING).await;
                }
            }));
        }
        Self {
            stop,
            samples,
            workers,
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (at most `timeout`) for a request sent after `since` to be signed;
    /// returns when its answer came.
    pub async fn first_success_after(&self, since: Instant, timeout: Duration) -> Option<Instant> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(done) = self
                .snapshot()
                .iter()
                .filter(|s| s.sent >= since && s.outcome == Outcome::Signed)
                .map(Sample::done)
                .min()
            {
                return Some(done);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops the workers (each finishes its request in flight) and returns every
    /// sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            // A request carries a deadline, so this ends; the bound is a backstop.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, w).await;
        }
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples
    }
}

/// Counts and latency percentiles of a set of samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Requests sent.
    pub sent: usize,
    /// Verified signatures.
    pub succeeded: usize,
    /// Error statuses.
    pub failed: usize,
    /// Signatures that did not verify.
    pub invalid: usize,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Stats {
    /// Stats of `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut s = Stats::default();
        let mut latencies = Vec::new();
        for sample in samples {
            s.sent += 1;
            latencies.push(sample.latency);
            match sample.outcome {
                Outcome::Signed => s.succeeded += 1,
                Outcome::Invalid(_) => s.invalid += 1,
                Outcome::Failed(..) => s.failed += 1,
            }
        }
        latencies.sort();
        let pct = |p: usize| {
            latencies
                .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        s.p50 = pct(50);
        s.p99 = pct(99);
        s
    }
}

/// What a drill concluded.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Whether the expectation held.
    pub pass: bool,
    /// The requests the expectation is about.
    pub stats: Stats,
    /// What happened, and why it failed if it did.
    pub detail: String,
}

/// Everything a drill needs.
#[derive(Debug)]
pub struct DrillCtx {
    /// The network.
    pub target: Target,
    /// Keys to sign with.
    pub keys: Vec<LoadKey>,
}

impl DrillCtx {
    /// Fetches every key's public key through the first coordinator.
    pub async fn new(target: Target, key_ids: &[String]) -> anyhow::Result<Self> {
        let client = target.client(0)?;
        let mut keys = Vec::new();
        for key_id in key_ids {
            let public = client
                .public_key(key_id)
                .await
                .with_context(|| format!("GetPublicKey({key_id})"))?;
            keys.push(LoadKey {
                key_id: key_id.clone(),
                ciphersuite: Ciphersuite::from_pb(public.ciphersuite)?,
                public_key: public.public_key,
            });
        }
        Ok(Self { target, keys })
    }

    /// Starts the load over the coordinators `which` (all when empty).
    pub fn load(&self, which: &[usize], label: &str) -> anyhow::Result<Load> {
        let indices: Vec<usize> = if which.is_empty() {
            (0..self.target.coordinator_names().len()).collect()
        } else {
            which.to_vec()
        };
        let clients = indices
            .into_iter()
            .map(|i| Ok((i, self.target.client(i)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Load::start(&clients, &self.keys, label))
    }

    /// `count` distinct node ids picked at random (so repeated runs cover different
    /// nodes).
    pub fn pick_nodes(&self, count: usize) -> Vec<String> {
        let mut ids = self.target.node_ids();
        // Fisher-Yates over the first `count` slots.
        for i in 0..count.min(ids.len()) {
            let j = i + (OsRng.next_u32() as usize) % (ids.len() - i);
            ids.swap(i, j);
        }
        ids.truncate(count);
        ids
    }
}

/// A drill's body.
pub type DrillFn = for<'c> fn(&'c mut DrillCtx) -> BoxFuture<'c, anyhow::Result<Verdict>>;

/// A registered drill.
#[derive(Clone, Copy, Debug)]
pub struct Drill {
    /// Number in the issue's list (5 and 7 come with policy and key repair).
    pub number: u8,
    /// Short name, for `--only` and the report.
    pub name: &'static str,
    /// What must hold.
    pub expectation: &'static str,
    /// The drill.
    pub run: DrillFn,
    /// Whether it needs what only local processes offer (rewriting a node's
    /// config, editing its store on disk, the CA key to issue an auditor or a
    /// rogue coordinator certificate, coordinator logs); skipped on compose.
    pub local_only: bool,
}

/// Every implemented drill, in the order they run. A new drill is one function
/// and one entry here.
pub fn registry() -> Vec<Drill> {
    vec![
        Drill {
            number: 1,
            name: "kill-2-nodes",
            expectation: "2 of 5 nodes killed: every request signs",
            run: kill_two_nodes,
            local_only: false,
        },
        Drill {
            number: 2,
            name: "kill-3-nodes",
            expectation: "3 of 5 killed: fast UNAVAILABLE, no hang; restarted: resumes in seconds",
            run: kill_three_nodes,
            local_only: false,
        },
        Drill {
            number: 3,
            name: "partition-node",
            expectation: "1 node partitioned then healed: every request signs; healed node signs",
            run: partition_node,
            local_only: false,
        },
        Drill {
            number: 4,
            name: "kill-coordinator",
            expectation: "1 of 2 coordinators killed: the other's clients all sign",
            run: kill_coordinator,
            local_only: false,
        },
        Drill {
            number: 6,
            name: "rolling-restart",
            expectation: "all 5 nodes restarted one by one: zero failed requests",
            run: rolling_restart,
            local_only: false,
        },
        Drill {
            number: 5,
            name: "eu-failover",
            expectation:
                "both EU sovereign nodes lost: the EU key refuses without approval, signs with one",
            run: eu_failover,
            local_only: false,
        },
        Drill {
            number: 7,
            name: "wipe-and-repair",
            expectation:
                "one node's state wiped: repaired from t helpers, then signs; load unaffected",
            run: wipe_and_repair,
            local_only: false,
        },
        Drill {
            number: 8,
            name: "malicious-signer",
            expectation:
                "one node sends corrupt shares: named culprit, excluded, every request signs",
            run: malicious_signer,
            local_only: true,
        },
        Drill {
            number: 9,
            name: "crash-during-signing",
            expectation: "nodes SIGKILLed at random points under load: no nonce used twice, no share lost, audit chains intact",
            run: crash_during_signing,
            local_only: true,
        },
        Drill {
            number: 11,
            name: "malicious-coordinator",
            expectation: "a raw client with a coordinator certificate replays round 2, swaps the message, passes off another node's commitment, asks for an unlawful quorum: every node refuses",
            run: malicious_coordinator,
            local_only: true,
        },
        Drill {
            number: 10,
            name: "disk-corruption",
            expectation: "a node's store damaged: it refuses to start, naming the damage; repaired, it signs",
            run: disk_corruption,
            local_only: true,
        },
    ]
}

/// Every key id of the local network.
fn all_key_ids(net: &LocalNetwork) -> Vec<String> {
    net.spec.keys.iter().map(|k| k.key_id.clone()).collect()
}

/// Checks every node's audit chain, that no commitment (nonce) was spent twice on
/// any node, and that every node still holds every key. Returns the problems.
async fn check_nodes_after_crashes(net: &LocalNetwork) -> anyhow::Result<(Vec<String>, usize)> {
    let auditor = net.issue(quorate_proto::identity::Role::Auditor, "drill-auditor")?;
    let ceremony_tls = net
        .tls_paths(quorate_proto::identity::Role::Ceremony, "testnet")
        .load()?;
    let mut problems = Vec::new();
    let mut shares_checked = 0;
    for node in &net.nodes {
        let id = &node.spec.id;
        let records = quorate_ceremony::audit::fetch(&node.endpoint, id, &auditor).await?;
        if let Err(brk) = quorate_ceremony::audit::check(&records).head {
            problems.push(format!("{id}: {brk}"));
        }
        let mut seen = std::collections::HashSet::new();
        for r in quorate_ceremony::audit::decode(&records) {
            // A share's record names the commitment it spent; so does a refusal
            // that spent one unused (a client over its rate limit).
            let Some(commitment) = r.spent_commitment() else {
                continue;
            };
            if r.event == "sign_share" {
                shares_checked += 1;
            }
            if !seen.insert(format!("{} {commitment}", r.key_id)) {
                problems.push(format!(
                    "{id}: commitment spent twice ({} {commitment})",
                    r.key_id
                ));
            }
        }
        let channel = ceremony_tls.channel(&node.endpoint, id, Duration::from_secs(2))?;
        let mut client = quorate_proto::pb::ceremony_client::CeremonyClient::new(channel);
        for key_id in all_key_ids(net) {
            if let Err(s) = client
                .get_manifest(quorate_proto::pb::GetManifestRequest {
                    key_id: key_id.clone(),
                })
                .await
            {
                problems.push(format!("{id} lost key {key_id}: {}", s.message()));
            }
        }
    }
    Ok((problems, shares_checked))
}

/// Drill 9 (hardening): nodes die by SIGKILL at random moments of both rounds under
/// load and come back. Afterwards no node has spent a nonce twice (each signature
/// share's audit record names the commitment it consumed), no node lost a share,
/// and every audit chain is intact.
fn crash_during_signing(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "crash-during-signing")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut killed = Vec::new();
        for _ in 0..6 {
            let victim = ctx.pick_nodes(1).remove(0);
            // A random point in the middle of the traffic: both rounds are always
            // in flight under this load.
            tokio::time::sleep(Duration::from_millis(
                50 + u64::from(OsRng.next_u32() % 450),
            ))
            .await;
            ctx.target.kill_node(&victim).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            ctx.target.start_node(&victim).await?;
            killed.push(victim);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let (problems, shares) = check_nodes_after_crashes(local(ctx)?).await?;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        why.extend(problems);
        let detail = format!(
            "SIGKILLed and restarted {}; {shares} signature shares checked for nonce reuse",
            killed.join(", ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 11 (hardening): a compromised coordinator talks to the nodes directly.
/// Each attack must be refused by the node itself, under the background load.
fn malicious_coordinator(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        use quorate_proto::pb;
        let load = ctx.load(&[], "malicious-coordinator")?;
        let net = local(ctx)?;
        let tls = net
            .tls_paths(quorate_proto::identity::Role::Coordinator, "coordinator")
            .load()?;
        let mut clients = std::collections::BTreeMap::new();
        for id in ["node-1", "node-2", "node-3", "node-4", "node-5"] {
            let channel = tls.channel(&net.node(id)?.endpoint, id, Duration::from_secs(2))?;
            clients.insert(id, pb::node_client::NodeClient::new(channel));
        }
        let client_id = "spiffe://quorate.test/client/demo-client".to_string();
        let mut why = Vec::new();
        let mut refused = 0;
        fn expect_refusal(
            why: &mut Vec<String>,
            refused: &mut usize,
            what: &str,
            result: Result<tonic::Response<pb::SignShareResponse>, tonic::Status>,
        ) {
            match result {
                Err(s) if s.code() == tonic::Code::FailedPrecondition => *refused += 1,
                other => why.push(format!(
                    "{what}: expected FAILED_PRECONDITION, got {:?}",
                    other.map(|_| "a signature share")
                )),
            }
        }
        async fn commit(
            c: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
            key_id: &str,
        ) -> anyhow::Result<Vec<u8>> {
            let mut r = c
                .commit(pb::CommitRequest {
                    key_id: key_id.into(),
                    count: 1,
                })
                .await?
                .into_inner();
            r.commitments.pop().context("no commitment")
        }
        let ops = Ciphersuite::Ed25519.ops();
        let key = "demo-ed25519";
        let signers = ["node-1", "node-2", "node-3"];
        let mut commitments = std::collections::BTreeMap::new();
        for id in signers {
            let c = clients.get_mut(id).context("client")?;
            commitments.insert(ops.identifier(id)?, commit(c, key).await?);
        }
        type Quorum = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;
        let request = |quorum: &Quorum, message: &[u8], key_id: &str| pb::SignShareRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            commitments: quorate_proto::api::signer_commitments(quorum),
            request_id: "malicious-coordinator".into(),
            client_id: client_id.clone(),
            approval_token: Vec::new(),
        };
        let n1 = clients.get_mut("node-1").context("client")?;
        // The honest first use succeeds; a replay of it is refused.
        if let Err(s) = n1.sign_share(request(&commitments, b"pay 10", key)).await {
            why.push(format!("first use refused: {s:?}"));
        }
        let replay = n1.sign_share(request(&commitments, b"pay 10", key)).await;
        expect_refusal(&mut why, &mut refused, "replayed round 2", replay);
        // The message swapped after round 1: node-2's nonce is still unused, so it
        // signs the swapped package once (the coordinator chooses messages); what must
        // never happen is a second share with the same nonce for another message.
        let n2 = clients.get_mut("node-2").context("client")?;
        if let Err(s) = n2
            .sign_share(request(&commitments, b"pay 10000", key))
            .await
        {
            why.push(format!("swapped package refused on first use: {s:?}"));
        }
        let original = n2.sign_share(request(&commitments, b"pay 10", key)).await;
        expect_refusal(
            &mut why,
            &mut refused,
            "same nonce, original message",
            original,
        );
        // Another node's commitment passed off as node-4's.
        let mut forged = std::collections::BTreeMap::new();
        let theirs = commit(clients.get_mut("node-5").context("client")?, key).await?;
        forged.insert(ops.identifier("node-4")?, theirs);
        for id in ["node-1", "node-3"] {
            let c = clients.get_mut(id).context("client")?;
            forged.insert(ops.identifier(id)?, commit(c, key).await?);
        }
        let result = clients
            .get_mut("node-4")
            .context("client")?
            .sign_share(request(&forged, b"pay 10", key))
            .await;
        expect_refusal(&mut why, &mut refused, "another node's commitment", result);
        // An unlawful quorum for the EU key: one EU signer with two others.
        let mut unlawful = std::collections::BTreeMap::new();
        for id in ["node-1", "node-4", "node-5"] {
            let c = clients.get_mut(id).context("client")?;
            unlawful.insert(ops.identifier(id)?, commit(c, EU_KEY).await?);
        }
        let result = clients
            .get_mut("node-1")
            .context("client")?
            .sign_share(request(&unlawful, b"pay 10", EU_KEY))
            .await;
        expect_refusal(&mut why, &mut refused, "unlawful EU quorum", result);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{refused} of 4 attacks (replay, second message for one nonce, foreign commitment, unlawful quorum) refused by the nodes themselves"
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 10 (hardening): a node's key store is damaged on disk. It must refuse to
/// start and say why (rather than sign with a wrong share or silently drop a key);
/// the ceremony then rebuilds its shares by repair and it signs again.
fn disk_corruption(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "disk-corruption")?;
        let victim = "node-4";
        let net = local(ctx)?;
        net.kill_node(victim).await?;
        let data_dir = net.node(victim)?.data_dir.clone();
        {
            let keys = quorate_node::audit::open_offline_tree(&data_dir, "keys")?;
            let (k, v) = keys.iter().next().context("no key record to damage")??;
            let mut damaged = v.to_vec();
            let at = damaged.len() / 2;
            damaged[at] ^= 0x40;
            keys.insert(k, damaged)?;
            keys.flush()?;
        }
        let mut why = Vec::new();
        match net.start_node(victim).await {
            Ok(()) => why.push(format!("{victim} started with a damaged store")),
            Err(e) => {
                let text = format!("{e:#}");
                if !text.contains("corrupt") {
                    why.push(format!(
                        "{victim} failed to start without naming the damage: {text}"
                    ));
                }
            }
        }
        net.wipe_node(victim).await?;
        let ceremony = net.ceremony()?;
        for key_id in all_key_ids(net) {
            if let Err(e) = run_repair(
                &ceremony,
                RepairRequest {
                    key_id: key_id.clone(),
                    node: victim.into(),
                },
            )
            .await
            {
                why.push(format!("repairing {key_id}: {e}"));
            }
        }
        net.pause_node("node-1")?;
        net.pause_node("node-5")?;
        let client = net.client().await?;
        for key in ctx.keys.clone() {
            match client
                .sign(&key.key_id, b"after disk repair", None, REQUEST_TIMEOUT)
                .await
            {
                Ok(r) if r.signers.iter().any(|s| s == victim) => {}
                Ok(r) => why.push(format!(
                    "{}: {victim} did not sign ({:?})",
                    key.key_id, r.signers
                )),
                Err(s) => why.push(format!("{}: {s:?}", key.key_id)),
            }
        }
        let net = local(ctx)?;
        net.resume_node("node-1")?;
        net.resume_node("node-5")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail =
            format!("{victim}'s key store damaged on disk; refused to start; wiped and repaired");
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// The EU-policy key of both testnets.
const EU_KEY: &str = "eu-payments";

fn local(ctx: &mut DrillCtx) -> anyhow::Result<&mut LocalNetwork> {
    match &mut ctx.target {
        Target::Local(n) => Ok(n),
        Target::Compose(_) => bail!("this drill needs local processes"),
    }
}

/// Drill 5: both EU sovereign clouds are lost. The EU key (at least 2 EU signers)
/// must refuse without an approval and sign with a compliance approval, while the
/// background load on unrestricted keys keeps signing.
fn eu_failover(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "eu-failover")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lost = ["node-1", "node-2"];
        for id in lost {
            ctx.target.kill_node(id).await?;
        }
        let client = ctx.target.client(0)?;
        let mut why = Vec::new();
        match client
            .sign(EU_KEY, b"eu drill", None, REQUEST_TIMEOUT)
            .await
        {
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
            other => why.push(format!(
                "without approval: expected FAILED_PRECONDITION, got {other:?}"
            )),
        }
        let approval = ctx
            .target
            .approve(EU_KEY, 600, "drill: eu-central and eu-west lost")?;
        let public = client.public_key(EU_KEY).await?;
        let mut approved_signers = Vec::new();
        match client
            .sign_with(EU_KEY, b"eu drill", None, Some(approval), REQUEST_TIMEOUT)
            .await
        {
            Ok(r) => {
                if let Err(e) = crate::verify::verify(
                    Ciphersuite::Ed25519,
                    &public.public_key,
                    b"eu drill",
                    &r.signature,
                ) {
                    why.push(format!("approved signature does not verify: {e}"));
                }
                if let Some(dead) = r.signers.iter().find(|s| lost.contains(&s.as_str())) {
                    why.push(format!("{dead} is down, yet reported as a signer"));
                }
                approved_signers = r.signers;
            }
            Err(s) => why.push(format!("with approval: {s:?}")),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let samples = load.stop().await;
        for id in lost {
            ctx.target.start_node(id).await?;
        }
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        if stats.failed > 0 {
            why.push(format!("{} background requests failed", stats.failed));
        }
        let detail = format!(
            "node-1 and node-2 (EU sovereign) killed; EU key refused, then signed under an approval token by {}",
            approved_signers.join(", ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 7: a node loses its state (its region is rebuilt empty). The ceremony
/// repairs its share of every key from t helper nodes; the node then signs.
fn wipe_and_repair(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "wipe-and-repair")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = "node-3";
        // Every key, the EU key too: the node must come back whole.
        let keys = ctx.target.key_ids();
        ctx.target.wipe_node(victim).await?;
        let ceremony = ctx.target.ceremony()?;
        let mut why = Vec::new();
        // The wipe is real: the restarted node holds none of its shares.
        let node = ceremony
            .nodes
            .iter()
            .find(|n| n.id == victim)
            .ok_or_else(|| anyhow!("the ceremony file lists no {victim}"))?;
        for key_id in &keys {
            if crate::compose::node_holds_key(&ceremony.tls, node, key_id).await? {
                why.push(format!("{victim} still holds {key_id} after the wipe"));
            }
        }
        for key_id in &keys {
            if let Err(e) = run_repair(
                &ceremony,
                RepairRequest {
                    key_id: key_id.clone(),
                    node: victim.into(),
                },
            )
            .await
            {
                why.push(format!("repairing {key_id}: {e}"));
            }
        }
        // The repaired node must sign: take two other nodes away for one request
        // per key.
        let frozen = ["node-4", "node-5"];
        for id in frozen {
            ctx.target.pause_node(id).await?;
        }
        let client = ctx.target.client(0)?;
        for key in ctx.keys.clone() {
            let message = format!("after repair of {victim}");
            match client
                .sign(&key.key_id, message.as_bytes(), None, REQUEST_TIMEOUT)
                .await
            {
                Ok(r) if r.signers.iter().any(|s| s == victim) => {
                    if let Err(e) = crate::verify::verify(
                        key.ciphersuite,
                        &key.public_key,
                        message.as_bytes(),
                        &r.signature,
                    ) {
                        why.push(format!(
                            "{}: invalid signature after repair: {e}",
                            key.key_id
                        ));
                    }
                }
                Ok(r) => why.push(format!(
                    "{}: {victim} did not sign ({:?})",
                    key.key_id, r.signers
                )),
                Err(s) => why.push(format!("{}: {s:?}", key.key_id)),
            }
        }
        for id in frozen {
            ctx.target.resume_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{victim} wiped ({}) and repaired for {} keys; it then signed each with {} frozen",
            ctx.target.wipe_method(),
            keys.len(),
            frozen.join(" and ")
        );
        // Requests sent while node-4 and node-5 were frozen may time out on them
        // before the coordinator skips them; only invalid signatures fail the drill
        // besides the repair itself.
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 8 (hardening): one node answers with corrupt signature shares. The
/// coordinator names it as culprit, leaves it out, and every request still signs.
fn malicious_signer(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victim = "node-2";
        local(ctx)?.set_corrupt_signer(victim, true).await?;
        let load = ctx.load(&[], "malicious-signer")?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let samples = load.stop().await;
        let net = local(ctx)?;
        // Either coordinator may have met the bad share first.
        let named = std::iter::once(&net.coordinator)
            .chain(net.extra_coordinators.iter().map(|c| &c.process))
            .any(|c| {
                std::fs::read_to_string(&c.log)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.contains("culprit") && l.contains(victim))
            });
        net.set_corrupt_signer(victim, false).await?;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        if !named {
            why.push(format!("the coordinator never named {victim} as culprit"));
        }
        let detail = format!("{victim} corrupted its shares; named culprit: {named}");
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Checks shared by every drill: the load ran and no signature was invalid.
fn baseline_failures(stats: &Stats, min_sent: usize) -> Vec<String> {
    let mut why = Vec::new();
    if stats.invalid > 0 {
        why.push(format!("{} invalid signatures", stats.invalid));
    }
    if stats.sent < min_sent {
        why.push(format!(
            "only {} requests sent (load too thin to judge)",
            stats.sent
        ));
    }
    why
}

/// The first `n` errors, each with when it was sent (seconds after the load
/// started), so a failure can be matched to a drill step.
fn first_errors(samples: &[Sample], n: usize) -> String {
    let Some(start) = samples.iter().map(|s| s.sent).min() else {
        return String::new();
    };
    samples
        .iter()
        .filter_map(|s| {
            let at = s.sent.saturating_duration_since(start).as_secs_f64();
            let took = s.latency.as_secs_f64();
            match &s.outcome {
                Outcome::Failed(code, msg) => Some(format!(
                    "sent at +{at:.1} s, after {took:.1} s {code:?}: {msg}"
                )),
                Outcome::Invalid(e) => Some(format!("sent at +{at:.1} s: invalid: {e}")),
                Outcome::Signed => None,
            }
        })
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn verdict(stats: Stats, mut why: Vec<String>, detail: String, samples: &[Sample]) -> Verdict {
    if !why.is_empty() {
        let errors = first_errors(samples, 2);
        if !errors.is_empty() {
            why.push(format!("first errors: {errors}"));
        }
    }
    Verdict {
        pass: why.is_empty(),
        stats,
        detail: if why.is_empty() {
            detail
        } else {
            format!("{detail}; FAILED: {}", why.join("; "))
        },
    }
}

/// Drill 1: any two nodes die; the remaining three are a quorum.
fn kill_two_nodes(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victims = ctx.pick_nodes(2);
        let load = ctx.load(&[], "kill-2")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in &victims {
            ctx.target.kill_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        let samples = load.stop().await;
        for id in &victims {
            ctx.target.start_node(id).await?;
        }
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        let detail = format!("killed {}; restarted after 8 s", victims.join(", "));
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 2: three nodes die, no quorum remains; requests must fail fast with
/// UNAVAILABLE, and signing must resume soon after the nodes return.
fn kill_three_nodes(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victims = ctx.pick_nodes(3);
        let load = ctx.load(&[], "kill-3")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in &victims {
            ctx.target.kill_node(id).await?;
        }
        let all_dead = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let restart = Instant::now();
        let mut restart_error = None;
        for id in &victims {
            if let Err(e) = ctx.target.start_node(id).await {
                restart_error = Some(format!("restarting {id}: {e:#}"));
                break;
            }
        }
        let resumed = load
            .first_success_after(restart, Duration::from_secs(30))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;

        // Requests sent and answered while no quorum existed.
        let down: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent >= all_dead && s.done() <= restart)
            .collect();
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if let Some(e) = restart_error {
            why.push(e);
        }
        if down.len() < 5 {
            why.push(format!("only {} requests while down", down.len()));
        }
        let not_unavailable = down
            .iter()
            .filter(|s| !matches!(s.outcome, Outcome::Failed(tonic::Code::Unavailable, _)))
            .count();
        if not_unavailable > 0 {
            why.push(format!(
                "{not_unavailable} of {} requests while down did not fail with UNAVAILABLE",
                down.len()
            ));
        }
        let slowest = down.iter().map(|s| s.latency).max().unwrap_or_default();
        if slowest >= REQUEST_TIMEOUT {
            why.push(format!(
                "a request took {slowest:?} to fail, not within its {REQUEST_TIMEOUT:?} deadline"
            ));
        }
        let resume_after = resumed.map(|t| t.saturating_duration_since(restart));
        match resume_after {
            Some(d) if d <= Duration::from_secs(15) => {}
            Some(d) => why.push(format!("signing resumed only {d:.1?} after restart")),
            None => why.push("signing did not resume within 30 s of restart".into()),
        }
        let detail = format!(
            "killed {}; while down {}/{} UNAVAILABLE, slowest answer {:.2?} (deadline {:?}); signing resumed {} after restart began",
            victims.join(", "),
            down.len() - not_unavailable,
            down.len(),
            slowest,
            REQUEST_TIMEOUT,
            resume_after.map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 3: one node is cut off and healed. Requests keep signing throughout;
/// after the heal, two other nodes are frozen, so signing proves the healed node
/// is back in quorums.
fn partition_node(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let picked = ctx.pick_nodes(3);
        let (victim, others) = picked
            .split_first()
            .ok_or_else(|| anyhow!("too few nodes"))?;
        let load = ctx.load(&[], "partition")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.target.partition_node(victim).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        ctx.target.heal_node(victim).await?;
        // The coordinators' health probe (every second) takes it back.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let healed_check = Instant::now();
        for id in others {
            ctx.target.pause_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let check_end = Instant::now();
        for id in others {
            ctx.target.resume_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        let healed_signed = samples
            .iter()
            .filter(|s| s.sent >= healed_check && s.done() <= check_end)
            .filter(|s| s.outcome == Outcome::Signed)
            .count();
        if healed_signed == 0 {
            why.push(format!(
                "no signature while {} were frozen: {victim} did not rejoin",
                others.join(", ")
            ));
        }
        let detail = format!(
            "partitioned {victim} for 8 s by {}; after healing, {healed_signed} signatures with {} frozen (so {victim} signed)",
            ctx.target.partition_method(),
            others.join(" and ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 4: one coordinator dies; clients of the other must not notice.
fn kill_coordinator(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let names = ctx.target.coordinator_names();
        if names.len() < 2 {
            bail!(
                "this drill needs two coordinators, the network has {}",
                names.len()
            );
        }
        let (victim, survivor) = (0usize, 1usize);
        let victim_load = ctx.load(&[victim], "coordinator-victim")?;
        let survivor_load = ctx.load(&[survivor], "coordinator-survivor")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.target.kill_coordinator(victim).await?;
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let restart = Instant::now();
        ctx.target.start_coordinator(victim).await?;
        let back = victim_load
            .first_success_after(restart, Duration::from_secs(20))
            .await;
        let survivor_samples = survivor_load.stop().await;
        let victim_samples = victim_load.stop().await;

        let stats = Stats::of(&survivor_samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!(
                "{} requests through {} failed",
                stats.failed, names[survivor]
            ));
        }
        let during = survivor_samples
            .iter()
            .filter(|s| s.sent >= killed && s.done() <= restart && s.outcome == Outcome::Signed)
            .count();
        if during == 0 {
            why.push(format!(
                "no signature through {} while {} was down",
                names[survivor], names[victim]
            ));
        }
        if back.is_none() {
            why.push(format!(
                "{} did not sign again after restart",
                names[victim]
            ));
        }
        let victim_stats = Stats::of(&victim_samples);
        let detail = format!(
            "killed {} for 8 s: figures are {}'s clients ({during} signatures while the other was down); {}'s own clients: {} failed of {} (expected), signing again after restart",
            names[victim], names[survivor], names[victim], victim_stats.failed, victim_stats.sent
        );
        Ok(verdict(stats, why, detail, &survivor_samples))
    })
}

/// Drill 6: every node restarted gracefully in turn, waiting for each to serve
/// before the next; no request may fail.
fn rolling_restart(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "rolling")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ids = ctx.target.node_ids();
        let started = Instant::now();
        for id in &ids {
            ctx.target.stop_node(id).await?;
            ctx.target.start_node(id).await?;
            // Let the coordinators' health probe take it back before the next one
            // goes down.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        let detail = format!(
            "restarted {} in turn (stop, start, serve) in {:.1} s",
            ids.join(", "),
            took.as_secs_f64()
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct ReportRow {
    /// The drill.
    pub drill: Drill,
    /// Its verdict (an error is a failed verdict).
    pub verdict: Verdict,
    /// Wall time.
    pub took: Duration,
}

/// Runs `drills` in order against `ctx`, restoring the network between them.
pub async fn run_drills(ctx: &mut DrillCtx, drills: &[Drill]) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    for drill in drills {
        eprintln!("drill {} {} ...", drill.number, drill.name);
        let started = Instant::now();
        // A drill that hangs is a failed drill, not a hung command.
        let verdict = match tokio::time::timeout(Duration::from_secs(240), (drill.run)(ctx)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => Verdict {
                pass: false,
                stats: Stats::default(),
                detail: format!("FAILED: drill error: {e:#}"),
            },
            Err(_) => Verdict {
                pass: false,
                stats: Stats::default(),
                detail: "FAILED: drill did not finish within 240 s".into(),
            },
        };
        let took = started.elapsed();
        eprintln!(
            "drill {} {}: {} ({:.1} s)",
            drill.number,
            drill.name,
            if verdict.pass { "PASS" } else { "FAIL" },
            took.as_secs_f64()
        );
        rows.push(ReportRow {
            drill: *drill,
            verdict,
            took,
        });
        if let Err(e) = ctx.target.restore().await {
            eprintln!("restoring the network after {} failed: {e:#}", drill.name);
        }
        // Let coordinators' health records settle so drills do not bleed into each
        // other.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    rows
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The report: a Markdown table, then one note per drill.
pub fn render_report(title: &str, rows: &[ReportRow]) -> String {
    let mut out = format!("{title}\n\n");
    out.push_str("| # | drill | expectation | outcome | sent | ok | failed | p50 ms | p99 ms | invalid sigs | time s |\n");
    out.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let s = &r.verdict.stats;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.drill.number,
            r.drill.name,
            r.drill.expectation,
            if r.verdict.pass { "PASS" } else { "FAIL" },
            s.sent,
            s.succeeded,
            s.failed,
            ms(s.p50),
            ms(s.p99),
            s.invalid,
            r.took.as_secs_f64()
        ));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "- {} {}: {}\n",
            r.drill.number, r.drill.name, r.verdict.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, outcome: Outcome) -> Sample {
        Sample {
            coordinator: 0,
            sent: Instant::now(),
            latency: Duration::from_millis(ms),
            outcome,
        }
    }

    #[test]
    fn stats_count_outcomes_and_take_percentiles() {
        let mut samples: Vec<Sample> = (1..=100).map(|i| sample(i, Outcome::Signed)).collect();
        samples.push(sample(500, Outcome::Invalid("bad".into())));
        samples.push(sample(
            600,
            Outcome::Failed(tonic::Code::Unavailable, "no quorum".into()),
        ));
        let s = Stats::of(&samples);
        assert_eq!((s.sent, s.succeeded, s.invalid, s.failed), (102, 100, 1, 1));
        assert_eq!(s.p50, Duration::from_millis(52));
        assert_eq!(s.p99, Duration::from_millis(500));
    }

    #[test]
    fn registry_names_are_unique_and_numbered_as_in_the_issue() {
        let drills = registry();
        let mut names: Vec<&str> = drills.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), drills.len());
        let numbers: Vec<u8> = drills.iter().map(|d| d.number).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 6, 5, 7, 8, 9, 11, 10]);
    }
}
