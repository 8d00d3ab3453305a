//! Running a handler's CPU-heavy body off the async workers.
//!
//! Used by the `Node` and `Ceremony` adapters. Why: the node's runtime has one
//! worker thread (see `main.rs`), which serves every connection; a batch of
//! commitments, several round-2 shares or an escrow split is milliseconds of curve
//! arithmetic that would stall them all.

use tonic::Status;

/// Runs `work` on tokio's blocking pool, which grows with the load.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("handler task failed: {e}")))
}
