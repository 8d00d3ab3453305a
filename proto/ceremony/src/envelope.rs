//! End-to-end encryption of ceremony messages between nodes.
//!
//! Every node draws a fresh X25519 **envelope key** for each ceremony and keeps it in
//! memory with the ceremony's state (it is never stored: a ceremony that outlives
//! the node's process is abandoned anyway, and a key that dies with the ceremony
//! gives forward secrecy). The public half travels inside the node's signed
//! contribution, so the ceremony relay can neither read nor substitute it.
//!
//! A message from `sender` to `recipient` is sealed with ChaCha20-Poly1305 under
//! `HKDF-SHA256(X25519(sender, recipient), salt = ceremony id, info = label, sender,
//! recipient, purpose)`. The key is static-static Diffie-Hellman between two signed
//! keys, so only the named sender (or the recipient itself) can make an envelope the
//! recipient opens: the envelope authenticates its sender as well. The AAD binds the
//! format, ceremony id, sender, recipient and purpose, so an envelope cannot be
//! replayed into another ceremony, another step or another pair of nodes.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use quorate_frost::SecretBytes;

/// Format label of envelopes (part of the key derivation and of the AAD).
const LABEL: &[u8] = b"quorate-envelope/1";

/// Why an envelope could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A public key that is not 32 bytes, or a low-order point.
    #[error("invalid envelope public key")]
    BadPublicKey,
    /// The envelope does not authenticate: tampered with, or not made by the named
    /// sender for this recipient, ceremony and purpose.
    #[error("envelope does not authenticate (tampered with, or not sealed by its named sender for this ceremony)")]
    Unauthentic,
}

/// A node's envelope key for one ceremony. Zeroized on drop, never printed.
pub struct EnvelopeKey(StaticSecret);

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeKey(<redacted>)")
    }
}

/// Who an envelope goes between, and what it is for.
#[derive(Clone, Copy, Debug)]
pub struct EnvelopeContext<'a> {
    /// The ceremony id.
    pub ceremony_id: &'a str,
    /// Sender node id.
    pub sender: &'a str,
    /// Recipient node id.
    pub recipient: &'a str,
    /// The ceremony step, e.g. `dkg-round2`.
    pub purpose: &'a str,
}

impl EnvelopeContext<'_> {
    /// Length-prefixed fields, so that no two contexts encode alike.
    fn encode(&self) -> Vec<u8> {
        let mut out = LABEL.to_vec();
        for field in [self.ceremony_id, self.sender, self.recipient, self.purpose] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

impl EnvelopeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(StaticSecret::random_from_rng(OsRng))
    }

    /// The public key (32 bytes) to publish in a signed contribution.
    pub fn public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }

    fn cipher(
        &self,
        peer_public: &[u8],
        ctx: &EnvelopeContext<'_>,
    ) -> Result<ChaCha20Poly1305, EnvelopeError> {
        let peer: [u8; 32] = peer_public
            .try_into()
            .map_err(|_| EnvelopeError::BadPublicKey)?;
        let shared = self.0.diffie_hellman(&PublicKey::from(peer));
        // A low-order peer key would make the shared secret predictable.
        if !shared.was_contributory() {
            return Err(EnvelopeError::BadPublicKey);
        }
        let hk = Hkdf::<Sha256>::new(Some(ctx.ceremony_id.as_bytes()), shared.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(&ctx.encode(), key.as_mut_slice())
            .map_err(|_| EnvelopeError::BadPublicKey)?;
        Ok(ChaCha20Poly1305::new(key.as_slice().into()))
    }

    /// Seals `plaintext` from this key's holder (`ctx.sender`) to the holder of
    /// `recipient_public` (`ctx.recipient`). Returns (nonce, ciphertext).
    pub fn seal(
        &self,
        recipient_public: &[u8],
        ctx: &EnvelopeContext<'_>,
        plaintext: &SecretBytes,
    ) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
        let cipher = self.cipher(recipient_public, ctx)?;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = ctx.encode();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.expose_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::Unauthentic)?;
        Ok((nonce.to_vec(), ciphertext))
    }

    /// Opens an envelope sealed by the holder of `sender_public` (`ctx.sender`) to
    /// this key's holder (`ctx.recipient`).
    pub fn open(
        &self,
        sender_public: &[u8],
        ctx: &EnvelopeContext<'_>,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<SecretBytes, EnvelopeError> {
        let cipher = self.cipher(sender_public, ctx)?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| EnvelopeError::Unauthentic)?;
        let aad = ctx.encode();
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(SecretBytes::from_bytes)
            .map_err(|_| EnvelopeError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(sender: &'a str, recipient: &'a str) -> EnvelopeContext<'a> {
        EnvelopeContext {
            ceremony_id: "c1",
            sender,
            recipient,
            purpose: "dkg-round2",
        }
    }

    #[test]
    fn recipient_opens_what_the_sender_sealed() {
        let (a, b) = (EnvelopeKey::generate(), EnvelopeKey::generate());
        let secret = SecretBytes::from_bytes(b"share".to_vec());
        let (nonce, ct) = a.seal(&b.public_key(), &ctx("a", "b"), &secret).unwrap();
        assert!(!ct.windows(5).any(|w| w == b"share"));
        let opened = b
            .open(&a.public_key(), &ctx("a", "b"), &nonce, &ct)
            .unwrap();
        assert_eq!(opened.expose_bytes(), b"share");
    }

    #[test]
    fn envelope_fails_for_a_third_party_a_relabelled_sender_or_a_bit_flip() {
        let (a, b, c) = (
            EnvelopeKey::generate(),
            EnvelopeKey::generate(),
            EnvelopeKey::generate(),
        );
        let secret = SecretBytes::from_bytes(b"share".to_vec());
        let (nonce, mut ct) = a.seal(&b.public_key(), &ctx("a", "b"), &secret).unwrap();
        // c cannot read it, even knowing a's public key.
        assert!(c
            .open(&a.public_key(), &ctx("a", "b"), &nonce, &ct)
            .is_err());
        // Claiming it came from c does not work either.
        assert!(b
            .open(&c.public_key(), &ctx("c", "b"), &nonce, &ct)
            .is_err());
        // Another purpose or ceremony.
        let other = EnvelopeContext {
            purpose: "repair-sigma",
            ..ctx("a", "b")
        };
        assert!(b.open(&a.public_key(), &other, &nonce, &ct).is_err());
        ct[0] ^= 1;
        assert!(b
            .open(&a.public_key(), &ctx("a", "b"), &nonce, &ct)
            .is_err());
    }

    #[test]
    fn low_order_public_key_is_refused() {
        let a = EnvelopeKey::generate();
        let secret = SecretBytes::from_bytes(b"x".to_vec());
        assert!(matches!(
            a.seal(&[0u8; 32], &ctx("a", "b"), &secret),
            Err(EnvelopeError::BadPublicKey)
        ));
        assert_eq!(format!("{a:?}"), "EnvelopeKey(<redacted>)");
    }
}
