//! The `Ceremony` gRPC service, for the ceremony tool: `GetInfo`, `GetManifest`,
//! `InstallKey`, `EscrowSplit`, `RevokeApproval`, and this node's side of DKG,
//! refresh and repair.
//!
//! An adapter only: it checks the caller's role and hands the request to the node's
//! state, [`crate::install`], [`crate::escrow`] or the ceremony steps in
//! [`crate::ceremony`]. Invariant: only callers whose certificate says `ceremony`
//! are served; the caller named in the audit log is that certificate's identity.

use std::sync::Arc;

use quorate_transport::identity::{authorize, PeerIdentity, Role};
use quorate_wire::pb;
use tonic::{Request, Response, Status};

use super::blocking::run_blocking;
use crate::ceremony::{dkg, refresh, repair, Participant};
use crate::error::NodeError;
use crate::escrow;
use crate::install;
use crate::state::NodeState;

/// The `Ceremony` service.
#[derive(Debug, Clone)]
pub struct CeremonyService {
    /// The node's state and key registry.
    pub state: Arc<NodeState>,
    /// This node's ceremony keys and ceremonies under way.
    pub participant: Arc<Participant>,
}

impl CeremonyService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        authorize(req, &self.state.identity.trust_domain, &[Role::Ceremony])
    }
}

#[tonic::async_trait]
impl pb::ceremony_server::Ceremony for CeremonyService {
    async fn get_info(
        &self,
        req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        authorize(&req, &self.state.identity.trust_domain, &[Role::Ceremony])?;
        Ok(Response::new(self.state.identity.info()))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::NodeKey>, Status> {
        authorize(&req, &self.state.identity.trust_domain, &[Role::Ceremony])?;
        let key_id = &req.get_ref().key_id;
        quorate_wire::validate_key_id(key_id).map_err(NodeError::MalformedRequest)?;
        let key = self.state.key(key_id)?;
        Ok(Response::new(key.node_key()))
    }

    #[tracing::instrument(skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn escrow_split(
        &self,
        req: Request<pb::EscrowSplitRequest>,
    ) -> Result<Response<pb::EscrowSplitResponse>, Status> {
        let caller = authorize(&req, &self.state.identity.trust_domain, &[Role::Ceremony])?;
        tracing::info!(caller = %caller, "escrow split requested");
        // Splitting and encrypting are CPU work; keep them off the async workers.
        let state = Arc::clone(&self.state);
        let req = req.into_inner();
        let result = run_blocking(move || escrow::split(&state, req, &caller)).await?;
        self.state.metrics.request("EscrowSplit", &result);
        Ok(Response::new(result?))
    }

    async fn install_key(
        &self,
        req: Request<pb::InstallKeyRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = authorize(&req, &self.state.identity.trust_domain, &[Role::Ceremony])?;
        tracing::info!(caller = %caller, recovery = req.get_ref().setup.is_some(), "key installation requested");
        let result = install::install(
            &self.state,
            self.participant.verifier(),
            req.into_inner(),
            &caller,
        );
        self.state.metrics.request("InstallKey", &result);
        Ok(Response::new(result?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id))]
    async fn dkg_round1(
        &self,
        req: Request<pb::DkgRound1Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(dkg::round1(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_round2(
        &self,
        req: Request<pb::DkgRound2Request>,
    ) -> Result<Response<pb::DkgRound2Response>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(dkg::round2(
            &self.participant,
            &self.state,
            req.into_inner(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_round3(
        &self,
        req: Request<pb::DkgRound3Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(dkg::round3(
            &self.participant,
            &self.state,
            req.into_inner(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_activate(
        &self,
        req: Request<pb::DkgActivateRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(dkg::activate(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    #[tracing::instrument(skip_all)]
    async fn dkg_commit(
        &self,
        req: Request<pb::DkgCommitRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(refresh::commit(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    async fn refresh_state(
        &self,
        req: Request<pb::RefreshStateRequest>,
    ) -> Result<Response<pb::RefreshStateResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(refresh::state(
            &self.participant,
            &self.state,
            req.into_inner(),
        )?))
    }

    async fn abandon_refresh(
        &self,
        req: Request<pb::AbandonRefreshRequest>,
    ) -> Result<Response<pb::Signed>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(refresh::abandon(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    async fn rollback_refresh(
        &self,
        req: Request<pb::RollbackRefreshRequest>,
    ) -> Result<Response<pb::RollbackRefreshResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(refresh::rollback(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    async fn abort(
        &self,
        req: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.participant.abort(req.get_ref())))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn retire_key(
        &self,
        req: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(refresh::retire_key(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_approval(
        &self,
        req: Request<pb::RevokeApprovalRequest>,
    ) -> Result<Response<pb::RevokeApprovalResponse>, Status> {
        let caller = self.authorize(&req)?.spiffe_id();
        // A store flush and an audit fsync: keep them off the async workers.
        let state = Arc::clone(&self.state);
        let revocation = req.into_inner().revocation;
        let result = run_blocking(move || state.revoke_approval(&revocation, &caller)).await?;
        self.state.metrics.request("RevokeApproval", &result);
        Ok(Response::new(result?))
    }

    async fn repair_start(
        &self,
        req: Request<pb::RepairStartRequest>,
    ) -> Result<Response<pb::Signed>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(repair::start(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_deltas(
        &self,
        req: Request<pb::RepairDeltasRequest>,
    ) -> Result<Response<pb::RepairDeltasResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(repair::deltas(
            &self.participant,
            &self.state,
            req.into_inner(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_sigma(
        &self,
        req: Request<pb::RepairSigmaRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(repair::sigma(
            &self.participant,
            &self.state,
            req.into_inner(),
        )?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_finish(
        &self,
        req: Request<pb::RepairFinishRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(repair::finish(
            &self.participant,
            &self.state,
            req.into_inner(),
            &caller.spiffe_id(),
        )?))
    }
}
