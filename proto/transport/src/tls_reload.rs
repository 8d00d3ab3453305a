//! Live certificate rotation: reloading a party's certificate, key and CA bundle
//! from their files while it serves, and the watcher that does so when the files
//! change or on SIGHUP.
//!
//! A reload replaces the material only with a set that works: the key belongs to
//! the certificate, the certificate has the same SPIFFE id (and, for a node, the
//! same location) as the one it replaces, and it chains to the new CA bundle and
//! is valid now. Anything else keeps the current material, is logged at error
//! level (never with key material) and counted in
//! [`RELOAD_FAILURES`]. A renewal caught between writing its two files (a new
//! certificate beside the old key) is such a set: the watcher reads the files again
//! a second later before it counts a failure, and the next poll picks up the
//! finished pair in any case.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};

use crate::metrics::Registry;
use crate::tls::{Loaded, TlsError, TlsMaterial};

/// How often the watcher reads the files to see whether they changed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How long the watcher waits before reading a set that did not load again
/// (a renewal may be between its two writes).
const SETTLE: Duration = Duration::from_secs(1);

/// Counter: reloads that replaced the material.
pub const RELOADS: &str = "quorate_tls_reloads_total";
const RELOADS_HELP: &str =
    "Reloads of the mTLS certificate, key and CA bundle that replaced them (renewals).";
/// Counter: reloads refused, the previous material kept.
pub const RELOAD_FAILURES: &str = "quorate_tls_reload_failures_total";
const RELOAD_FAILURES_HELP: &str =
    "Changed mTLS files that could not be loaded (broken, mismatched key, other identity, not valid under the CA); the previous certificate stays in use.";

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    /// The files hold what is loaded already (or the material has no files).
    Unchanged,
    /// The material was replaced.
    Replaced {
        /// Hex SHA-256 of the certificate before.
        previous: String,
        /// Hex SHA-256 of the certificate now.
        current: String,
        /// The new certificate's `notAfter`, Unix seconds.
        not_after: i64,
    },
}

impl TlsMaterial {
    /// Reads the files again and, if they changed, swaps in the new set once it has
    /// passed every check (see the module documentation); on any error the current
    /// material stays. Handshakes from then on use the new set; statements are
    /// signed with the new key.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        self.reload_at(UnixTime::now())
    }

    fn reload_at(&self, now: UnixTime) -> Result<Reload, TlsError> {
        let Some(paths) = self.live.paths.as_ref() else {
            return Ok(Reload::Unchanged);
        };
        let (ca, cert, key) = paths.read_all()?;
        let current = self.live.current();
        if current.ca_pem == ca && current.cert_pem == cert && *current.key_pem == *key {
            return Ok(Reload::Unchanged);
        }
        let new = Loaded::from_pem(ca, cert, key, &paths.cert)?;
        check_replacement(&current, &new, now)?;
        let reload = Reload::Replaced {
            previous: current.fingerprint.clone(),
            current: new.fingerprint.clone(),
            not_after: new.not_after,
        };
        *self.live.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        Ok(reload)
    }
}

/// Whether `new` may replace `old`: same identity and location, and the new
/// certificate valid under the new CA bundle at `now`.
fn check_replacement(old: &Loaded, new: &Loaded, now: UnixTime) -> Result<(), TlsError> {
    if new.identity != old.identity {
        return Err(TlsError::Replacement(format!(
            "the new certificate is for {}, but this party is {}",
            new.identity, old.identity
        )));
    }
    if new.location != old.location {
        return Err(TlsError::Replacement(format!(
            "the new certificate attests {}, but this party was started as {}",
            describe(&new.location),
            describe(&old.location)
        )));
    }
    let chain: &[CertificateDer<'static>] = &new.certified.cert;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| TlsError::Pem("no certificate in the certificate file".into()))?;
    new.client_verifier
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|e| {
            TlsError::Replacement(format!(
                "the new certificate is not valid under the CA bundle now: {e}"
            ))
        })?;
    Ok(())
}

fn describe(location: &Option<crate::identity::Location>) -> String {
    match location {
        Some(l) => l.to_string(),
        None => "no location".into(),
    }
}

/// Takes SIGHUP over from its default action (terminating the process) for the
/// rest of the process's life, so a SIGHUP sent while a server is still starting
/// (opening its store can wait on an HSM) does not kill it; [`watch`] answers the
/// ones that come once it runs. Servers call it first thing; a library leaves the
/// process's signals alone, so the client does not.
pub fn keep_sighup_for_reloads() {
    // tokio installs its handler at the first registration and never removes it;
    // the stream itself is not needed.
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tracing::warn!("cannot catch SIGHUP ({e}); a SIGHUP would stop this process");
    }
}

/// Keeps `tls` in step with its files until the task is dropped: reads them every
/// [`POLL_INTERVAL`] and, if `sighup`, at once on SIGHUP (a library leaves the
/// process's signals alone). Counts [`RELOADS`] and [`RELOAD_FAILURES`] in
/// `registry`, and calls `on_reload` after each replacement (the node signs its key
/// attestations again with the new certificate).
pub async fn watch(
    tls: TlsMaterial,
    registry: Option<Arc<Registry>>,
    sighup: bool,
    on_reload: impl Fn() + Send + Sync + 'static,
) {
    // Both series exist from the start (at 0), so that an alert on an increase sees
    // the first failure.
    let counters = registry.map(|registry| {
        (
            registry.counter(RELOADS, RELOADS_HELP),
            registry.counter(RELOAD_FAILURES, RELOAD_FAILURES_HELP),
        )
    });
    let mut hangup = if sighup {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("cannot catch SIGHUP ({e}); certificate files are still polled");
                None
            }
        }
    } else {
        None
    };
    let mut last_error: Option<String> = None;
    loop {
        let signalled = tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let mut result = tls.reload();
        if result.is_err() {
            tokio::time::sleep(SETTLE).await;
            result = tls.reload();
        }
        match result {
            Ok(Reload::Unchanged) => {
                if signalled {
                    tracing::info!("SIGHUP: the TLS files are unchanged");
                }
                last_error = None;
            }
            Ok(Reload::Replaced {
                previous,
                current,
                not_after,
            }) => {
                tracing::info!(
                    identity = %tls.identity(),
                    previous_certificate_sha256 = %previous,
                    certificate_sha256 = %current,
                    not_after,
                    "TLS certificate reloaded; new connections use it"
                );
                if let Some((reloads, _)) = &counters {
                    reloads.inc();
                }
                last_error = None;
                on_reload();
            }
            Err(e) => {
                let message = e.to_string();
                if let Some((_, failures)) = &counters {
                    failures.inc();
                }
                // Once per distinct failure: the files are read every few seconds.
                if last_error.as_deref() != Some(message.as_str()) || signalled {
                    tracing::error!(
                        identity = %tls.identity(),
                        certificate_sha256 = %tls.certificate_fingerprint(),
                        "TLS reload refused, the current certificate stays in use: {message}"
                    );
                }
                last_error = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_ca::{new_ca, pem, pem_valid, Ca};
    use crate::tls::TlsPaths;

    struct Files {
        _dir: tempfile::TempDir,
        paths: TlsPaths,
    }

    fn files(ca: &Ca, cert: &str, key: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&paths.ca, &ca.pem).unwrap();
        std::fs::write(&paths.cert, cert).unwrap();
        std::fs::write(&paths.key, key).unwrap();
        Files { _dir: dir, paths }
    }

    fn signed_certificate(tls: &TlsMaterial) -> Vec<u8> {
        tls.statement_signer()
            .unwrap()
            .sign("test", b"body".to_vec())
            .unwrap()
            .certificate
    }

    #[test]
    fn a_renewed_certificate_replaces_the_old_one_for_handshakes_and_statements() {
        crate::install_crypto_provider();
        let ca = new_ca("CA");
        let (cert, key) = pem(&ca, "node", "node-1");
        let f = files(&ca, &cert, &key);
        let tls = f.paths.load().unwrap();
        let before = tls.certificate_fingerprint();
        let first_statement = signed_certificate(&tls);
        assert_eq!(tls.reload().unwrap(), Reload::Unchanged);

        let now = time::OffsetDateTime::now_utc();
        let (cert2, key2) = pem_valid(
            &ca,
            "node",
            "node-1",
            now - time::Duration::minutes(1),
            now + time::Duration::minutes(2),
        );
        std::fs::write(&f.paths.key, &key2).unwrap();
        std::fs::write(&f.paths.cert, &cert2).unwrap();
        let Reload::Replaced {
            previous,
            current,
            not_after,
        } = tls.reload().unwrap()
        else {
            panic!("not replaced");
        };
        assert_eq!(previous, before);
        assert_eq!(current, tls.certificate_fingerprint());
        assert_ne!(current, before);
        assert_eq!(tls.certificate_not_after().unwrap(), not_after);
        assert!((not_after - (now + time::Duration::minutes(2)).unix_timestamp()).abs() <= 1);
        // Statements are signed with the new pair; clones share the material.
        let renewed_statement = signed_certificate(&tls.clone());
        assert_ne!(renewed_statement, first_statement);
        assert_eq!(crate::tls::hex_sha256(&renewed_statement), current);
        assert_eq!(tls.live.current().cert_pem, cert2.as_bytes());
    }

    #[test]
    fn a_half_written_renewal_is_refused_and_the_old_pair_kept_until_it_is_complete() {
        crate::install_crypto_provider();
        let ca = new_ca("CA");
        let (cert, key) = pem(&ca, "coordinator", "coordinator");
        let f = files(&ca, &cert, &key);
        let tls = f.paths.load().unwrap();
        let before = tls.certificate_fingerprint();
        let (cert2, key2) = pem(&ca, "coordinator", "coordinator");
        // The new certificate is written, its key not yet.
        std::fs::write(&f.paths.cert, &cert2).unwrap();
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
        assert_eq!(tls.certificate_fingerprint(), before);
        assert_eq!(tls.live.current().cert_pem, cert.as_bytes());
        // A truncated key file is refused without quoting it.
        std::fs::write(&f.paths.key, &key2[..key2.len() / 2]).unwrap();
        let err = tls.reload().unwrap_err().to_string();
        assert!(!err.contains(&key2[30..60]), "{err}");
        assert_eq!(tls.certificate_fingerprint(), before);
        std::fs::write(&f.paths.key, &key2).unwrap();
        assert!(matches!(tls.reload().unwrap(), Reload::Replaced { .. }));
        assert_ne!(tls.certificate_fingerprint(), before);
    }

    #[test]
    fn a_certificate_of_another_party_an_expired_one_or_one_of_another_ca_is_refused() {
        crate::install_crypto_provider();
        let ca = new_ca("CA");
        let (cert, key) = pem(&ca, "node", "node-1");
        let f = files(&ca, &cert, &key);
        let tls = f.paths.load().unwrap();
        let before = tls.certificate_fingerprint();
        let now = time::OffsetDateTime::now_utc();
        let expired = pem_valid(
            &ca,
            "node",
            "node-1",
            now - time::Duration::hours(2),
            now - time::Duration::hours(1),
        );
        for ((cert, key), why) in [
            (pem(&ca, "node", "node-2"), "node/node-2"),
            (pem(&ca, "client", "node-1"), "client/node-1"),
            (expired, "not valid"),
            (pem(&new_ca("other CA"), "node", "node-1"), "not valid"),
        ] {
            std::fs::write(&f.paths.key, &key).unwrap();
            std::fs::write(&f.paths.cert, &cert).unwrap();
            let err = tls.reload().unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
            assert_eq!(tls.certificate_fingerprint(), before);
        }
        // A broken CA bundle is refused too.
        let (cert2, key2) = pem(&ca, "node", "node-1");
        std::fs::write(&f.paths.key, &key2).unwrap();
        std::fs::write(&f.paths.cert, &cert2).unwrap();
        std::fs::write(&f.paths.ca, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.certificate_fingerprint(), before);
        std::fs::write(&f.paths.ca, &ca.pem).unwrap();
        assert!(matches!(tls.reload().unwrap(), Reload::Replaced { .. }));
    }

    /// After `keep_sighup_for_reloads`, a SIGHUP to this very process is taken by
    /// the runtime instead of ending it (without the call, this test dies).
    #[tokio::test]
    async fn a_sighup_before_the_watcher_runs_does_not_end_the_process() {
        keep_sighup_for_reloads();
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// A CA rotation: the bundle gains the new CA, later loses the old one. The
    /// statement verifier made at start follows each reload, remembered chains
    /// included: a client of the new CA is accepted once its CA is in the bundle,
    /// and one of the old CA is refused once its CA is out, though its chain was
    /// remembered under the old bundle.
    #[test]
    fn statement_checks_follow_a_reloaded_ca_bundle() {
        crate::install_crypto_provider();
        let (old_ca, new_ca) = (new_ca("old CA"), new_ca("new CA"));
        let (cert, key) = pem(&old_ca, "node", "node-1");
        let f = files(&old_ca, &cert, &key);
        let tls = f.paths.load().unwrap();
        let verifier = tls.statement_verifier().unwrap();
        let chains = crate::attest::ChainCache::default();
        let intent = |ca: &Ca| {
            crate::test_ca::signer(ca, "client", "svc")
                .sign("intent", b"body".to_vec())
                .unwrap()
        };
        let identify = |signed: &quorate_wire::pb::Signed| {
            verifier.identify(
                signed,
                "intent",
                crate::identity::Role::Client,
                &chains,
                UnixTime::now(),
            )
        };
        let (from_old, from_new) = (intent(&old_ca), intent(&new_ca));
        identify(&from_old).unwrap();
        assert!(
            identify(&from_new).is_err(),
            "the new CA is not trusted yet"
        );

        // Both CAs in the bundle: both accepted, with no new verifier.
        std::fs::write(&f.paths.ca, format!("{}{}", old_ca.pem, new_ca.pem)).unwrap();
        assert!(matches!(tls.reload().unwrap(), Reload::Replaced { .. }));
        identify(&from_new).unwrap();
        identify(&from_old).unwrap();

        // The old CA retired (this party renewed under the new one first): a
        // statement of the old CA is refused, its remembered chain notwithstanding.
        let (cert2, key2) = pem(&new_ca, "node", "node-1");
        std::fs::write(&f.paths.key, &key2).unwrap();
        std::fs::write(&f.paths.cert, &cert2).unwrap();
        std::fs::write(&f.paths.ca, &new_ca.pem).unwrap();
        assert!(matches!(tls.reload().unwrap(), Reload::Replaced { .. }));
        identify(&from_new).unwrap();
        let err = identify(&from_old).unwrap_err();
        assert!(
            matches!(err, crate::attest::AttestError::Certificate(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_watcher_counts_reloads_and_refusals() {
        crate::install_crypto_provider();
        tokio::time::pause();
        let ca = new_ca("CA");
        let (cert, key) = pem(&ca, "client", "svc");
        let f = files(&ca, &cert, &key);
        let tls = f.paths.load().unwrap();
        let registry = Registry::new();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = {
            let calls = calls.clone();
            tokio::spawn(watch(
                tls.clone(),
                Some(registry.clone()),
                false,
                move || {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                },
            ))
        };
        tokio::time::sleep(SETTLE).await;
        assert!(registry.render().contains(&format!("{RELOAD_FAILURES} 0")));
        let (cert2, key2) = pem(&ca, "client", "svc");
        std::fs::write(&f.paths.cert, &cert2).unwrap();
        tokio::time::sleep(POLL_INTERVAL + SETTLE * 2).await;
        assert_eq!(
            registry
                .counter(RELOAD_FAILURES, RELOAD_FAILURES_HELP)
                .get(),
            1
        );
        assert_eq!(registry.counter(RELOADS, RELOADS_HELP).get(), 0);
        std::fs::write(&f.paths.key, &key2).unwrap();
        tokio::time::sleep(POLL_INTERVAL + SETTLE).await;
        assert_eq!(registry.counter(RELOADS, RELOADS_HELP).get(), 1);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(tls.live.current().cert_pem, cert2.as_bytes());
        task.abort();
    }
}
