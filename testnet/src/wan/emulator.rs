//! The link emulator: every party's network namespace reaches the others through
//! one TUN device whose other end this emulator holds. It reads each IPv4 packet a
//! party sends, looks up the link from the sender's site to the receiver's, drops
//! it with the link's loss probability, and writes it into the receiver's TUN device
//! after the link's one-way delay plus jitter.
//!
//! Why not `tc netem`: the kernels this runs on (the development machine's and
//! CI's) are built without `sch_netem` (and without the `fq` qdisc that BPF-based
//! delay needs), so the kernel cannot delay packets there; a TUN device works on
//! any kernel with `CONFIG_TUN`. One emulator also gives a true per-pair matrix
//! with no per-destination qdisc classes.
//!
//! A party can be cut off ([`Emulator::set_partitioned`]): every packet from or to
//! it is dropped until it is joined again, as a partition between it and everyone
//! else would; its process runs on and its connections stay open, so TCP
//! retransmits and reconnects as it would across a real partition.
//!
//! The emulator runs on its own thread and runtime, so the load a benchmark puts on
//! its own runtime does not hold packets up. Packets of one link leave in the order
//! they came (jitter never reorders them); tokio's timer has a resolution of one
//! millisecond, so a delayed packet leaves up to about 1 ms late.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use tokio::sync::{mpsc, oneshot};
use tokio_tun::Tun;

use super::profile::Link;

/// One party's TUN device, as the emulator should create it.
#[derive(Clone, Debug)]
pub struct Port {
    /// Interface name (at most 15 bytes).
    pub ifname: String,
    /// The party's address on the testbed subnet.
    pub addr: Ipv4Addr,
}

/// A running emulator; stops (and its TUN devices vanish) when dropped.
#[derive(Debug)]
pub struct Emulator {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
    /// Per port: cut off from every other.
    partitioned: Arc<[AtomicBool]>,
}

/// Packets the emulator handled.
#[derive(Debug, Default)]
pub struct Counters {
    /// Delivered.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Dropped for the link's loss.
    pub lost: std::sync::atomic::AtomicU64,
    /// Dropped as not IPv4 or for no known party.
    pub unroutable: std::sync::atomic::AtomicU64,
    /// Dropped because the sender or the receiver is partitioned.
    pub partitioned: std::sync::atomic::AtomicU64,
}

impl Emulator {
    /// Creates one TUN device per port (in the caller's network namespace; move
    /// them into theirs afterwards) and starts forwarding. `links[i][j]` is the
    /// link from port `i` to port `j`.
    pub fn start(ports: Vec<Port>, links: Vec<Vec<Link>>) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let partitioned: Arc<[AtomicBool]> = ports.iter().map(|_| AtomicBool::new(false)).collect();
        let thread_partitioned = partitioned.clone();
        let thread = std::thread::Builder::new()
            .name("wan-emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let tuns = match create(&ports) {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let tasks = forward(tuns, &ports, links, thread_counters, thread_partitioned);
                    let _ = stop_rx.await;
                    for t in tasks {
                        t.abort();
                    }
                });
            })
            .context("starting the WAN emulator thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the WAN emulator thread ended while starting"))??;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
            counters,
            partitioned,
        })
    }

    /// What it handled so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Cuts port `port` off from every other (`true`) or joins it again (`false`);
    /// packets already delayed on a link still arrive.
    pub fn set_partitioned(&self, port: usize, cut: bool) -> anyhow::Result<()> {
        self.partitioned
            .get(port)
            .ok_or_else(|| anyhow!("no port {port} in the WAN emulator"))?
            .store(cut, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn create(ports: &[Port]) -> anyhow::Result<Vec<Arc<Tun>>> {
    ports
        .iter()
        .map(|p| {
            let mut tuns = Tun::builder()
                .name(&p.ifname)
                .build()
                .with_context(|| format!("creating TUN device {} (/dev/net/tun)", p.ifname))?;
            tuns.pop()
                .map(Arc::new)
                .ok_or_else(|| anyhow!("no TUN queue for {}", p.ifname))
        })
        .collect()
}

/// A small, fast generator for loss and jitter draws (xorshift64*); the draws need
/// no cryptographic quality.
struct Draws(u64);

impl Draws {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A delayed link's queue: each packet with the instant it may leave.
type LinkQueue = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

/// Spawns a reader per port and a delivery queue per delayed link.
fn forward(
    tuns: Vec<Arc<Tun>>,
    ports: &[Port],
    links: Vec<Vec<Link>>,
    counters: Arc<Counters>,
    partitioned: Arc<[AtomicBool]>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let by_addr: Arc<HashMap<Ipv4Addr, usize>> =
        Arc::new(ports.iter().enumerate().map(|(i, p)| (p.addr, i)).collect());
    let mut tasks = Vec::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
    for (src, row) in links.into_iter().enumerate() {
        // One FIFO queue per delayed link out of `src`, drained by its own task.
        let mut queues: Vec<Option<LinkQueue>> = Vec::new();
        for (dst, link) in row.iter().enumerate() {
            if link.delay.is_zero() && link.jitter.is_zero() {
                queues.push(None);
                continue;
            }
            let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            let out = tuns[dst].clone();
            let counters = counters.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((at, packet)) = rx.recv().await {
                    tokio::time::sleep_until(at.into()).await;
                    if out.send(&packet).await.is_ok() {
                        counters
                            .delivered
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
            queues.push(Some(tx));
        }
        let input = tuns[src].clone();
        let tuns = tuns.clone();
        let by_addr = by_addr.clone();
        let counters = counters.clone();
        let partitioned = partitioned.clone();
        let mut draws = Draws::new(seed ^ ((src as u64 + 1) << 32));
        tasks.push(tokio::spawn(async move {
            let mut last_departure: Vec<Instant> = vec![Instant::now(); row.len()];
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = match input.recv(&mut buf).await {
                    Ok(n) => n,
                    Err(_) => return,
                };
                let packet = &buf[..n];
                let dst = (n >= 20 && packet[0] >> 4 == 4)
                    .then(|| Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]))
                    .and_then(|a| by_addr.get(&a).copied());
                let Some(dst) = dst else {
                    counters
                        .unroutable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                };
                if partitioned[src].load(Ordering::Relaxed)
                    || partitioned[dst].load(Ordering::Relaxed)
                {
                    counters.partitioned.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let link = row[dst];
                if link.loss > 0.0 && draws.unit() < link.loss {
                    counters
                        .lost
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                match &queues[dst] {
                    None => {
                        if tuns[dst].send(packet).await.is_ok() {
                            counters
                                .delivered
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Some(queue) => {
                        let jitter = link.jitter.mul_f64(draws.unit());
                        let at = (Instant::now() + link.delay + jitter).max(last_departure[dst]);
                        last_departure[dst] = at;
                        let _ = queue.send((at, packet.to_vec()));
                    }
                }
            }
        }));
    }
    tasks
}
