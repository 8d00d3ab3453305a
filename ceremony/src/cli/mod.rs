//! The `quorate-ceremony` command line: the clap types and one file per command
//! group ([`pki`](self) init/issue, import, approver/approve/cosign/revoke/deliver-revocation,
//! admin/authorize, audit, escrow, and the
//! key ceremonies dkg/refresh/repair/transcript). The binary parses a [`Cli`],
//! calls [`run`] and maps a [`CliError`] to its exit code; everything else is here,
//! so tests can drive it in-process.

mod approval;
mod audit;
mod common;
mod error;
mod escrow;
mod governance;
mod import;
mod keygen;
mod pki;

use clap::{Parser, Subcommand};

pub use error::CliError;

use approval::{ApproveArgs, ApproverCommand, CosignArgs, DeliverRevocationArgs, RevokeArgs};
use audit::AuditCommand;
use escrow::EscrowCommand;
use governance::{AdminCommand, AuthorizeArgs};
use import::ImportArgs;
use keygen::{DkgArgs, RefreshArgs, RepairArgs, TranscriptCommand};
use pki::PkiCommand;

/// Key ceremonies for a Quorate threshold-signing network.
///
/// Run by key custodians. Talks to signer nodes over mTLS as role `ceremony`; never
/// prints or logs secret material. Logs go to stderr (filter with RUST_LOG).
#[derive(Debug, Parser)]
#[command(name = "quorate-ceremony", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development PKI: a CA and SPIFFE role certificates for mTLS.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Trusted-dealer import: split a key into shares and install them on the nodes.
    ///
    /// For migrating an existing single-key signer (--secret-file) or dealing a fresh
    /// key. This process briefly holds the whole key; run it on a trusted machine.
    ///
    /// Before dealing anything, every node in the ceremony file is reached over mTLS
    /// and must report the node id, region and jurisdiction the file lists. Then each
    /// node receives the key's manifest and its own share, and must acknowledge the
    /// manifest's SHA-256. On success a JSON transcript (public facts only: group key,
    /// verifying shares, certificate fingerprints, manifest hash, times) is written.
    Import(ImportArgs),
    /// Approver keys for out-of-policy (failover) quorums.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// Sign an approval token that lets one key be signed by an out-of-policy quorum
    /// (for example outside its home jurisdiction during an outage) for a limited
    /// time. The key's policy must list the approver's public key; the coordinator
    /// and every node of the quorum check the token, and each node records its id in
    /// its audit log.
    Approve(ApproveArgs),
    /// Add this approver's signature to an approval token another approver made,
    /// for a key whose policy needs several approvers (`approvals_required`). Each
    /// approver signs the same payload; pass the file on to the next one.
    Cosign(CosignArgs),
    /// Sign a revocation of an approval token before it expires (offline, with one
    /// approver's key: any one approver the key's policy lists may revoke). Deliver
    /// it with `deliver-revocation`.
    Revoke(RevokeArgs),
    /// Deliver a revocation to every node of the key: each checks it is signed by an
    /// approver of the key, stores it, records it in its audit log and refuses the
    /// token from then on. Fails naming every node that did not store it; running
    /// it again is harmless.
    DeliverRevocation(DeliverRevocationArgs),
    /// Administrator keys: a key's administrators (listed in its policy) authorize
    /// every refresh, repair, node removal, escrow split, policy or custodian change.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Show a plan (written by a governed command's --write-plan) and sign this
    /// administrator's authorization of it: offline, one file per administrator.
    /// What it prints is read from the setup the nodes will check and the key's
    /// manifest it names (the nodes it keeps and removes, the policy and custodians
    /// before and after); read it before passing --admin-key and --out.
    Authorize(AuthorizeArgs),
    /// Audit logs of nodes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Custodian escrow of one node's signing share (split, verify, recover).
    #[command(subcommand)]
    Escrow(EscrowCommand),
    /// Distributed key generation: the nodes create a key no one ever holds whole.
    ///
    /// Every node in the ceremony file takes part (n), any t of them can sign. The
    /// nodes sign their contributions with their mTLS keys and seal secret shares to
    /// each other, so this process only relays. Before the key becomes active every
    /// node checks that all nodes confirmed the same round-1 transcript, group key and
    /// manifest; any disagreement aborts the ceremony on every node and names the
    /// party. Writes a JSON transcript.
    Dkg(DkgArgs),
    /// New shares for an existing key (same group public key). Each node stores
    /// its new share beside the old one and deletes the old one only once every
    /// node has stored its own. With --remove-node, that node is dropped from the
    /// key and deletes its share; with --policy or --custodians, the key's terms
    /// change. The ceremony file must list exactly the key's current nodes. For a
    /// key with administrators: --write-plan, their authorizations, then --plan.
    /// Interrupted, the same command (same plan) run again finishes the refresh or
    /// rolls it back.
    Refresh(RefreshArgs),
    /// Rebuild a node's lost share (after its store was wiped) from t helper nodes;
    /// every message between nodes is sealed end to end. The node checks the rebuilt
    /// share against the key's manifest before activating it. For a key with
    /// administrators: --write-plan, their authorizations, then --plan.
    Repair(RepairArgs),
    /// Transcripts.
    #[command(subcommand)]
    Transcript(TranscriptCommand),
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Pki(command) => pki::run(command),
        Command::Import(args) => import::run(args),
        Command::Approver(command) => approval::approver(command),
        Command::Approve(args) => approval::approve(args),
        Command::Cosign(args) => approval::cosign(args),
        Command::Revoke(args) => approval::revoke(args),
        Command::DeliverRevocation(args) => approval::deliver_revocation(args),
        Command::Admin(command) => governance::admin(command),
        Command::Authorize(args) => governance::authorize(args),
        Command::Audit(command) => audit::run(command),
        Command::Escrow(command) => escrow::run(command),
        Command::Dkg(args) => keygen::dkg(args),
        Command::Refresh(args) => keygen::refresh(args),
        Command::Repair(args) => keygen::repair(args),
        Command::Transcript(TranscriptCommand::Verify {
            file,
            ceremony,
            custodians,
        }) => keygen::transcript_verify(&file, &ceremony, custodians.as_deref()),
    }
}
