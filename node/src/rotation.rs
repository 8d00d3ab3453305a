//! `quorate-node kek rotate` and `kek rekey`: changing a stopped node's
//! key-encryption keys and data-encryption key.
//!
//! Both open the store with any one configured provider, then make every configured
//! provider (and only those) able to open it: `rotate` re-wraps the same DEK,
//! `rekey` re-seals every record under a fresh DEK. Each ends in one sled
//! transaction ([`crate::store`]), so a process killed at any point leaves a store
//! that opens with the keys it had before or with the new ones. The node must be
//! stopped: sled's lock refuses a second opener.

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::kek::KekProvider;
use crate::store::KeyStore;

/// Re-wraps the store's DEK under exactly the configured providers; returns what
/// to tell the operator.
pub fn rotate(config: &NodeConfig) -> Result<String, NodeError> {
    let (store, report) = KeyStore::open_with(&config.file.data_dir, &config.keks)?;
    store.rewrap(&config.keks)?;
    Ok(format!(
        "opened with {}; the DEK is now wrapped under {} (and no other provider)",
        report.opened_with,
        names(&config.keks)
    ))
}

/// Re-seals every record under a fresh DEK wrapped under exactly the configured
/// providers; returns what to tell the operator.
pub fn rekey(config: &NodeConfig) -> Result<String, NodeError> {
    let (mut store, report) = KeyStore::open_with(&config.file.data_dir, &config.keks)?;
    store.rekey(&config.keks)?;
    Ok(format!(
        "opened with {}; every record is re-sealed under a new DEK wrapped under {}. \
         Copies of the store from before open only with the KEKs they were wrapped \
         under: destroy those to make them unreadable",
        report.opened_with,
        names(&config.keks)
    ))
}

fn names(providers: &[KekProvider]) -> String {
    providers
        .iter()
        .map(KekProvider::describe)
        .collect::<Vec<_>>()
        .join(", ")
}
