//! Signing on this node, one module per FROST round: [`round1`] issues commitments
//! (nonces kept here, single use), [`round2`] enforces the key's policy, spends a
//! nonce, records it durably and computes the signature share.
//!
//! Used by the `Node` gRPC adapter; uses the node's state.

pub mod round1;
pub mod round2;

#[cfg(test)]
mod tests;
