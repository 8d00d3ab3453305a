//! The node's gRPC services, one adapter per service: [`NodeService`] (`Node`, for
//! coordinators), [`CeremonyService`] (`Ceremony`, for the ceremony tool) and
//! [`AuditService`] (`Audit`, for auditors).
//!
//! Adapters check the caller's role from its verified certificate, convert the
//! request, call the node's state or a step ([`crate::sign`], [`crate::escrow`],
//! [`crate::ceremony`]) and map its error to a status through
//! `From<NodeError> for tonic::Status` ([`crate::error`]), the only such mapping.
//! Nothing below calls back into them.

mod audit;
mod blocking;
mod ceremony;
mod node;

pub use audit::AuditService;
pub use ceremony::CeremonyService;
pub use node::NodeService;
pub use quorate_wire::api::MAX_COMMITMENTS_PER_CALL;
