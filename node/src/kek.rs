//! Key-encryption-key providers: what wraps and unwraps the store's data-encryption
//! key (DEK).
//!
//! The store's records are sealed under one random DEK ([`crate::store`]); the DEK is
//! kept in the store only wrapped, once per configured provider, and any one
//! provider that can unwrap its wrap opens the store. Providers:
//! - `file` and `env`: a 32-byte key (64 hex digits) from a file or an environment
//!   variable, wrapping with XChaCha20-Poly1305 here in the process;
//! - `pkcs11`: an AES key that never leaves a PKCS#11 token (an HSM, a cloud HSM,
//!   SoftHSM); the token encrypts and decrypts the DEK with `CKM_AES_GCM`.
//!
//! Invariants: no key, DEK or PIN reaches a log, an error or `Debug` output; every
//! failure is a message naming the provider and the cause, never a panic.

use std::fmt;
use std::path::PathBuf;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::store::Kek;

/// Associated data of every DEK wrap (both kinds): a wrap is only ever a DEK.
const WRAP_AAD: &[u8] = b"quorate-dek-wrap/1";
/// Version byte leading a wrap made here under a 32-byte key.
const WRAP_LOCAL: u8 = 1;
/// Version byte leading a wrap made by a PKCS#11 token with AES-GCM.
const WRAP_PKCS11_GCM: u8 = 2;
/// AES-GCM nonce length (the length every PKCS#11 token supports).
const GCM_IV_LEN: usize = 12;

/// The store's 32-byte data-encryption key. Zeroized on drop, never printed.
pub struct Dek(pub(crate) Zeroizing<[u8; 32]>);

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

impl Dek {
    /// A fresh random DEK.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }
}

/// One `[[kek]]` table of the node config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum KekProviderConfig {
    /// A 32-byte key, 64 hex digits, in a file.
    File {
        /// The provider's name in the store and in messages.
        id: String,
        /// The file.
        path: PathBuf,
    },
    /// A 32-byte key, 64 hex digits, in an environment variable.
    Env {
        /// The provider's name in the store and in messages.
        id: String,
        /// The variable's name.
        var: String,
    },
    /// An AES key on a PKCS#11 token.
    Pkcs11 {
        /// The provider's name in the store and in messages.
        id: String,
        /// The PKCS#11 module (shared library) of the HSM.
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// The label (`CKA_LABEL`) of the AES secret key on the token.
        key_label: String,
        /// File holding the token's user PIN. Set this or `pin_env`.
        #[serde(default)]
        pin_file: Option<PathBuf>,
        /// Environment variable holding the token's user PIN.
        #[serde(default)]
        pin_env: Option<String>,
    },
}

impl KekProviderConfig {
    /// The provider's id.
    pub fn id(&self) -> &str {
        match self {
            Self::File { id, .. } | Self::Env { id, .. } | Self::Pkcs11 { id, .. } => id,
        }
    }
}

/// A configured provider, ready to try: its secrets are read only when it is used,
/// so a missing file or token is a provider that fails, not a config that does.
pub struct KekProvider {
    id: String,
    source: Source,
}

enum Source {
    /// A key already in memory (`QUORATE_KEK`, tests).
    Key(Kek),
    /// A key read from `QUORATE_KEK` or another variable that did not parse, or a
    /// variable that is not set: the reason, without the value.
    Broken(String),
    File(PathBuf),
    Pkcs11(Pkcs11Source),
}

struct Pkcs11Source {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin: PinSource,
}

enum PinSource {
    File(PathBuf),
    Env {
        var: String,
        value: Option<Zeroizing<String>>,
    },
}

impl fmt::Debug for KekProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekProvider")
            .field("id", &self.id)
            .field("kind", &self.describe())
            .finish()
    }
}

impl KekProvider {
    /// A provider holding `kek` in memory.
    pub fn key(id: impl Into<String>, kek: Kek) -> Self {
        Self {
            id: id.into(),
            source: Source::Key(kek),
        }
    }

    /// A provider reading its key from `path` when used.
    pub fn file(id: impl Into<String>, path: PathBuf) -> Self {
        Self {
            id: id.into(),
            source: Source::File(path),
        }
    }

    /// A provider for 64 hex digits taken from the environment variable `var`
    /// (`value` is what it holds, if set).
    pub fn env(id: impl Into<String>, var: &str, value: Option<Zeroizing<String>>) -> Self {
        let source = match value {
            None => Source::Broken(format!("environment variable {var} is not set")),
            Some(hex) => match Kek::from_hex(hex.trim()) {
                Ok(kek) => Source::Key(kek),
                Err(_) => Source::Broken(format!(
                    "environment variable {var} is not a key: it must be exactly 64 hex digits"
                )),
            },
        };
        Self {
            id: id.into(),
            source,
        }
    }

    /// The provider a `[[kek]]` table describes; `env` reads the environment.
    pub fn from_config(
        config: &KekProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        Ok(match config {
            KekProviderConfig::File { id, path } => Self::file(id, path.clone()),
            KekProviderConfig::Env { id, var } => Self::env(id, var, env(var).map(Zeroizing::new)),
            KekProviderConfig::Pkcs11 {
                id,
                module,
                token_label,
                key_label,
                pin_file,
                pin_env,
            } => {
                let pin = match (pin_file, pin_env) {
                    (Some(path), None) => PinSource::File(path.clone()),
                    (None, Some(var)) => PinSource::Env {
                        var: var.clone(),
                        value: env(var).map(Zeroizing::new),
                    },
                    _ => {
                        return Err(format!(
                            "kek {id:?}: set exactly one of pin_file and pin_env (the PIN \
                             itself never goes in the config)"
                        ))
                    }
                };
                Self {
                    id: id.clone(),
                    source: Source::Pkcs11(Pkcs11Source {
                        module: module.clone(),
                        token_label: token_label.clone(),
                        key_label: key_label.clone(),
                        pin,
                    }),
                }
            }
        })
    }

    /// The provider's id, under which its wrap of the DEK is stored.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The provider for messages: kind, id and where its key is (never the key).
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Key(_) | Source::Broken(_) => format!("env {:?}", self.id),
            Source::File(path) => format!("file {:?} ({})", self.id, path.display()),
            Source::Pkcs11(p) => format!(
                "pkcs11 {:?} (key {:?} on token {:?}, module {})",
                self.id,
                p.key_label,
                p.token_label,
                p.module.display()
            ),
        }
    }

    /// Wraps `dek` under this provider's key.
    pub fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, String> {
        match &self.source {
            Source::Pkcs11(p) => p.wrap(dek),
            _ => {
                let kek = self.local_key()?;
                let mut nonce = [0u8; 24];
                OsRng.fill_bytes(&mut nonce);
                let ct = local_cipher(&kek)
                    .encrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: dek.0.as_slice(),
                            aad: WRAP_AAD,
                        },
                    )
                    .map_err(|_| "encryption failed".to_string())?;
                Ok([[WRAP_LOCAL].as_slice(), &nonce, &ct].concat())
            }
        }
    }

    /// Unwraps a DEK this provider wrapped.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, String> {
        match &self.source {
            Source::Pkcs11(p) => p.unwrap(wrapped),
            _ => {
                let kek = self.local_key()?;
                let body = match wrapped.split_first() {
                    Some((&WRAP_LOCAL, body)) if body.len() > 24 => body,
                    _ => return Err("its wrap of the DEK is not a local-key wrap".into()),
                };
                let (nonce, ct) = body.split_at(24);
                let nonce: [u8; 24] = nonce
                    .try_into()
                    .map_err(|_| "its wrap of the DEK is truncated".to_string())?;
                let plain = Zeroizing::new(
                    local_cipher(&kek)
                        .decrypt(
                            &XNonce::from(nonce),
                            Payload {
                                msg: ct,
                                aad: WRAP_AAD,
                            },
                        )
                        .map_err(|_| {
                            "this key does not unwrap the store's DEK (wrong KEK, or the \
                             store belongs to another node)"
                                .to_string()
                        })?,
                );
                Dek::from_slice(&plain).ok_or_else(|| "the unwrapped DEK is not 32 bytes".into())
            }
        }
    }

    /// The 32-byte key of a `file` or `env` provider (`None` for `pkcs11`), for
    /// opening a store of the first format, sealed under the KEK itself.
    pub(crate) fn legacy_key(&self) -> Option<Result<Kek, String>> {
        match &self.source {
            Source::Pkcs11(_) => None,
            _ => Some(self.local_key()),
        }
    }

    fn local_key(&self) -> Result<Kek, String> {
        match &self.source {
            Source::Key(kek) => Ok(kek.clone_secret()),
            Source::Broken(reason) => Err(reason.clone()),
            Source::File(path) => {
                let hex = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                );
                Kek::from_hex(hex.trim()).map_err(|_| {
                    format!(
                        "{} is not a key: it must hold exactly 64 hex digits",
                        path.display()
                    )
                })
            }
            Source::Pkcs11(_) => Err("a pkcs11 key never leaves its token".into()),
        }
    }
}

fn local_cipher(kek: &Kek) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(kek.expose().into())
}

impl Pkcs11Source {
    /// Loads the module, finds the token by label, logs in with the PIN and finds
    /// the AES key by label; then runs `f` with the session and the key. The module
    /// is finalized when this returns.
    fn with_key<T>(
        &self,
        f: impl FnOnce(&cryptoki::session::Session, cryptoki::object::ObjectHandle) -> Result<T, String>,
    ) -> Result<T, String> {
        use cryptoki::context::{CInitializeArgs, Pkcs11};
        use cryptoki::object::{Attribute, ObjectClass};
        use cryptoki::session::UserType;
        use cryptoki::types::AuthPin;

        let pkcs11 = Pkcs11::new(&self.module)
            .map_err(|e| format!("cannot load PKCS#11 module {}: {e}", self.module.display()))?;
        pkcs11
            .initialize(CInitializeArgs::OsThreads)
            .map_err(|e| format!("PKCS#11 module {}: {e}", self.module.display()))?;
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(|e| format!("cannot list the module's tokens: {e}"))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == self.token_label)
            })
            .ok_or_else(|| format!("no token labelled {:?}", self.token_label))?;
        let session = pkcs11
            .open_ro_session(slot)
            .map_err(|e| format!("cannot open a session on token {:?}: {e}", self.token_label))?;
        let pin = self.pin()?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.to_string())))
            .map_err(|e| format!("cannot log in to token {:?}: {e}", self.token_label))?;
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| format!("cannot search token {:?}: {e}", self.token_label))?;
        let key = match keys.as_slice() {
            [key] => *key,
            [] => {
                return Err(format!(
                    "no secret key labelled {:?} on token {:?}",
                    self.key_label, self.token_label
                ))
            }
            _ => {
                return Err(format!(
                    "{} secret keys labelled {:?} on token {:?}; labels must be unique",
                    keys.len(),
                    self.key_label,
                    self.token_label
                ))
            }
        };
        let result = f(&session, key);
        // Logging out and finalizing happen on drop; an error there changes nothing.
        let _ = session.logout();
        result
    }

    fn pin(&self) -> Result<Zeroizing<String>, String> {
        let pin = match &self.pin {
            PinSource::File(path) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read pin_file {}: {e}", path.display()))?,
            ),
            PinSource::Env { var, value } => value
                .clone()
                .ok_or_else(|| format!("pin_env: environment variable {var} is not set"))?,
        };
        Ok(Zeroizing::new(
            pin.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }

    fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, String> {
        use cryptoki::mechanism::aead::GcmParams;
        use cryptoki::mechanism::Mechanism;

        let mut iv = [0u8; GCM_IV_LEN];
        OsRng.fill_bytes(&mut iv);
        let ct = self.with_key(|session, key| {
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, WRAP_AAD, 128u64.into())
                .map_err(|e| format!("AES-GCM parameters: {e}"))?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, dek.0.as_slice())
                .map_err(|e| format!("token refused to encrypt with the key: {e}"))
        })?;
        Ok([[WRAP_PKCS11_GCM].as_slice(), &iv, &ct].concat())
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, String> {
        use cryptoki::mechanism::aead::GcmParams;
        use cryptoki::mechanism::Mechanism;

        let body = match wrapped.split_first() {
            Some((&WRAP_PKCS11_GCM, body)) if body.len() > GCM_IV_LEN => body,
            _ => return Err("its wrap of the DEK is not a PKCS#11 AES-GCM wrap".into()),
        };
        let (iv, ct) = body.split_at(GCM_IV_LEN);
        let plain = self.with_key(|session, key| {
            let mut iv_param = [0u8; GCM_IV_LEN];
            iv_param.copy_from_slice(iv);
            let params = GcmParams::new(&mut iv_param, WRAP_AAD, 128u64.into())
                .map_err(|e| format!("AES-GCM parameters: {e}"))?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, ct)
                .map(Zeroizing::new)
                .map_err(|e| {
                    format!(
                        "the key {:?} does not unwrap the store's DEK ({e}): another key \
                         with this label, or the store belongs to another node",
                        self.key_label
                    )
                })
        })?;
        Dek::from_slice(&plain).ok_or_else(|| "the unwrapped DEK is not 32 bytes".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Kek {
        Kek::from_hex(&hex::encode([byte; 32])).expect("64 hex digits")
    }

    #[test]
    fn a_local_wrap_opens_under_its_key_only() {
        let dek = Dek::generate();
        let wrapped = KekProvider::key("a", kek(1)).wrap(&dek).expect("wrap");
        let back = KekProvider::key("a", kek(1))
            .unwrap(&wrapped)
            .expect("unwrap");
        assert_eq!(back.0.as_slice(), dek.0.as_slice());
        let err = KekProvider::key("a", kek(2)).unwrap(&wrapped).unwrap_err();
        assert!(err.contains("wrong KEK"), "{err}");
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let hex = "ab".repeat(32);
        let p = KekProvider::env("e", "V", Some(Zeroizing::new(hex.clone())));
        assert!(!format!("{p:?}").contains(&hex));
        let bad = KekProvider::env("e", "V", Some(Zeroizing::new("secret-not-hex".into())));
        let err = bad.wrap(&Dek::generate()).unwrap_err();
        assert!(!err.contains("secret-not-hex"), "{err}");
        assert_eq!(format!("{:?}", Dek::generate()), "Dek(<redacted>)");
    }

    #[test]
    fn a_pkcs11_provider_needs_exactly_one_pin_source() {
        let config = KekProviderConfig::Pkcs11 {
            id: "hsm".into(),
            module: "/nonexistent.so".into(),
            token_label: "t".into(),
            key_label: "k".into(),
            pin_file: None,
            pin_env: None,
        };
        let err = KekProvider::from_config(&config, &|_| None).unwrap_err();
        assert!(err.contains("pin_file"), "{err}");
    }
}
