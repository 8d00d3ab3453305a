//! Who this node is: its id (the name in its certificate), trust domain, region and
//! jurisdiction, from its config.
//!
//! Used by the node's state, the key checks ([`crate::key`]) and the ceremony steps,
//! which refuse a key or a ceremony that places this node anywhere else. Invariant:
//! the identity is fixed for the life of the process.

use quorate_wire::pb;

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node id.
    pub node_id: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Region tag.
    pub region: String,
    /// Jurisdiction tag.
    pub jurisdiction: String,
}

impl NodeIdentity {
    /// This node as `GetInfo` describes it.
    pub(crate) fn info(&self) -> pb::NodeInfo {
        pb::NodeInfo {
            node_id: self.node_id.clone(),
            region: self.region.clone(),
            jurisdiction: self.jurisdiction.clone(),
        }
    }
}
