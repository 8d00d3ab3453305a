//! [`Impostor`]: a TLS server that requires a client certificate from the CA and
//! presents whichever certificate is in its slot at each connection. It speaks no
//! gRPC: it only reports whether each handshake completed, as the server saw it, so
//! a client that refuses the certificate shows as a failed handshake (an alert), not
//! as a timeout.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use quorate_transport::tls::TlsPaths;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The outcome of one handshake, as the server saw it: `Err` holds rustls' error.
pub type Outcome = Result<(), String>;

/// The handshake-reporting TLS server.
#[derive(Debug)]
pub struct Impostor {
    addr: SocketAddr,
    presents: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    // In a mutex so that an `&Impostor` may be held across an await.
    outcomes: Mutex<mpsc::Receiver<Outcome>>,
}

/// A server config presenting `tls`'s certificate and requiring a client
/// certificate from `tls`'s CA.
fn server_config(tls: &TlsPaths) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.ca).context("CA file")? {
        roots.add(ca.context("CA certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .context("certificate file")?
        .collect::<Result<Vec<_>, _>>()
        .context("certificate")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).context("private key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

impl Impostor {
    /// Listens on `addr` (port 0: any free port), presenting `presenting`.
    pub fn listen(addr: SocketAddr, presenting: &TlsPaths) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let presents = Arc::new(Mutex::new(server_config(presenting)?));
        let (report, outcomes) = mpsc::channel();
        let slot = Arc::clone(&presents);
        // Detached: the listener lives as long as the process (tests, or the
        // `rogue-node` process a drill kills).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(config) = slot.lock().map(|c| Arc::clone(&c)) else {
                    return;
                };
                let report = report.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let outcome = rustls::ServerConnection::new(config)
                        .map_err(|e| e.to_string())
                        .and_then(|mut conn| {
                            while conn.is_handshaking() {
                                conn.complete_io(&mut stream).map_err(|e| e.to_string())?;
                            }
                            Ok(())
                        });
                    let _ = report.send(outcome);
                });
            }
        });
        Ok(Self {
            addr,
            presents,
            outcomes: Mutex::new(outcomes),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Presents `tls`'s certificate from the next connection on, and forgets the
    /// outcomes of connections made under the previous one.
    pub fn present(&self, tls: &TlsPaths) -> anyhow::Result<()> {
        *self
            .presents
            .lock()
            .map_err(|_| anyhow!("impostor slot poisoned"))? = server_config(tls)?;
        while self.try_recv().is_some() {}
        Ok(())
    }

    /// The next handshake outcome, waiting at most `within`.
    pub fn recv(&self, within: Duration) -> Option<Outcome> {
        self.outcomes.lock().ok()?.recv_timeout(within).ok()
    }

    fn try_recv(&self) -> Option<Outcome> {
        self.outcomes.lock().ok()?.try_recv().ok()
    }

    /// The first handshake outcome reported within `within`, while `poke` runs
    /// between waits (to make the client connect).
    pub async fn next_outcome<F, Fut>(&self, within: Duration, mut poke: F) -> Option<Outcome>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(outcome) = self.try_recv() {
                return Some(outcome);
            }
            poke().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.try_recv()
    }
}
