//! `quorate-ceremony audit verify`: fetch a node's audit log as an auditor, check
//! its hash chain and its signed checkpoint, and (with `--state`) that it only
//! grew since the last audit, and against what witnesses cosigned of it; given
//! several nodes, reconcile their share records
//! ([`crate::audit::reconcile`]).

use std::path::PathBuf;

use clap::Subcommand;
use quorate_transport::tls::TlsPaths;

use super::error::CliError;
use crate::audit;
use crate::audit::history::{self, judge, AuditState, StateLock};
use crate::audit::reconcile::{reconcile, Reconciled};

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Fetch a node's whole audit log over mTLS (as role `auditor`), check its hash
    /// chain, and check its records against the node's latest signed checkpoint
    /// (signed with the log key the node's certificate attests). With --state, also
    /// check that the log only grew since the checkpoint saved there last time (the
    /// node must prove the new checkpoint consistent with it), and save the new one.
    ///
    /// Several nodes (--node and --endpoint repeated, in pairs) are each verified
    /// so, one after another, and then reconciled: every signing attempt's share
    /// records must agree across its signers (key, message digest, request,
    /// quorum, client) and a signature's shares must be recorded on each of its
    /// audited signers. Recent attempts, and those with a signer not audited, are
    /// counted but not judged (see --recent).
    ///
    /// Exit codes: 0 the log verifies; 1 it could not be read or verified, or its
    /// chain is broken (the first broken or missing record is named); 10 truncated
    /// (fewer records than last time, or the last ones replaced by others); 11
    /// rewritten (a record audited before was changed and the chain recomputed);
    /// 12 forked (a signed checkpoint that does not extend the saved one, or
    /// records that do not hash to the node's own signed checkpoint); 13 deleted
    /// (the log begins with another first record); 14 the log is signed by another
    /// key than last time; 15 a witness (--witness) holds evidence that the log is
    /// not the one it cosigned, or cosigned a checkpoint the log no longer extends;
    /// 20 records of one signing attempt disagree across nodes (or a node recorded
    /// two shares of one attempt, or a share for a quorum without itself); 21 a
    /// share recorded by some signers of an attempt has no trace (share or
    /// refusal) on another, and no retry of that request completed; 64 usage. On 10-15 the failing node's saved checkpoint is left as it was
    /// (nodes verified before it are saved); on 20-21 every node's log verified
    /// on its own and all are saved.
    #[command(verbatim_doc_comment)]
    Verify {
        #[command(flatten)]
        target: AuditTarget,
        /// A node that witnesses the audited nodes' logs, as ID=https://host:port
        /// (repeatable): its cosigned checkpoint of each audited node's log but its
        /// own (verified under the witness key its certificate attests) must be
        /// extended by that node's current checkpoint, and it must hold no
        /// evidence against it.
        #[arg(long = "witness", value_name = "ID=URL")]
        witnesses: Vec<crate::audit::witness::WitnessEndpoint>,
        /// Also print every record (one JSON object per line).
        #[arg(long)]
        print: bool,
        /// With several nodes: signing attempts recorded less than SECS before
        /// this run began are counted but not judged (the logs are read one after
        /// another while nodes may still sign, and node clocks run a little apart).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        recent: u64,
    },
    /// Verify a node's log as `verify` does (same checks, same exit codes, same
    /// --state), then write it as payload-free JSON lines for a SIEM or search
    /// index outside the region: first the signed checkpoint (note and attested
    /// log key), then per record node, region, jurisdiction, seq, time, key id,
    /// event, client, message SHA-256, quorum, signing attempt, approval token id,
    /// its leaf hash and its RFC 9162 inclusion proof against that checkpoint.
    /// Never a message, a share, an intent or a record's free-text detail.
    #[command(verbatim_doc_comment)]
    Export {
        #[command(flatten)]
        target: AuditTarget,
        /// Write the lines to FILE (must not exist) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Which node's log, read how, judged against which saved state.
#[derive(Debug, clap::Args)]
pub(super) struct AuditTarget {
    /// The node's endpoint, https://host:port (anything else is refused: the
    /// log is read over mTLS pinned to the node's certificate). `verify` takes
    /// one per --node, in the same order.
    #[arg(long, required = true)]
    endpoint: Vec<String>,
    /// The node's id (the name its certificate is issued for).
    #[arg(long, required = true)]
    node: Vec<String>,
    /// CA certificate.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// The auditor's certificate (role `auditor`).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The auditor's private key.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The auditor's state: the last verified checkpoint of each node. Read if
    /// it exists, written (replaced whole) when the log verifies.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

/// Runs an `audit` command.
pub(super) fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify {
            target,
            print,
            recent,
            witnesses,
        } => {
            // Attempts recorded after the audit began may sit in one log read and
            // not yet in another: reconciliation judges only those well before.
            let judged_before_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                .saturating_sub(recent.saturating_mul(1000));
            let Audited { tls, nodes, state } = target.into_parts()?;
            // Held until this run has written its state back.
            let _lock = state.as_deref().map(StateLock::acquire).transpose()?;
            let mut logs = Vec::with_capacity(nodes.len());
            for (node, endpoint) in &nodes {
                // A node does not witness itself.
                let others: Vec<_> = witnesses
                    .iter()
                    .filter(|w| w.node_id != *node)
                    .cloned()
                    .collect();
                let (observed, summary) =
                    verify_log(node, endpoint, &tls, state.as_deref(), print, &others)?;
                println!("{summary}");
                logs.push((node.clone(), audit::decode(&observed.records)));
            }
            if logs.len() > 1 {
                let counts = reconcile(&logs, judged_before_ms)?;
                println!("{}", reconciled_summary(&counts, logs.len(), recent));
            }
            Ok(())
        }
        AuditCommand::Export { target, out } => {
            if let Some(out) = &out {
                if out.exists() {
                    return Err(CliError::Usage(format!("{} already exists", out.display())));
                }
            }
            let Audited { tls, nodes, state } = target.into_parts()?;
            let [(node, endpoint)] = &nodes[..] else {
                return Err(CliError::Usage(
                    "export writes one node's log: give one --node and one --endpoint".into(),
                ));
            };
            let _lock = state.as_deref().map(StateLock::acquire).transpose()?;
            let (observed, summary) =
                verify_log(node, endpoint, &tls, state.as_deref(), false, &[])?;
            let lines = crate::audit::export::lines(node, &observed)
                .map_err(|e| CliError::Usage(format!("{node}: {e}")))?;
            let text = lines.join("\n") + "\n";
            match &out {
                Some(path) => {
                    use std::io::Write as _;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
                        .map_err(CliError::Write)?;
                }
                None => print!("{text}"),
            }
            eprintln!("{summary}; exported {} lines", lines.len());
            Ok(())
        }
    }
}

/// An [`AuditTarget`] checked: each endpoint an https URL, paired with its node.
struct Audited {
    tls: TlsPaths,
    /// `(node id, endpoint)`, in the order given.
    nodes: Vec<(String, String)>,
    state: Option<PathBuf>,
}

impl AuditTarget {
    /// The target, checked.
    fn into_parts(self) -> Result<Audited, CliError> {
        let Self {
            endpoint,
            node,
            ca,
            cert,
            key,
            state,
        } = self;
        if endpoint.len() != node.len() {
            return Err(CliError::Usage(format!(
                "{} --node but {} --endpoint: give one endpoint per node, in the same order",
                node.len(),
                endpoint.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (node, endpoint) in node.iter().zip(&endpoint) {
            if !seen.insert(node) {
                return Err(CliError::Usage(format!("--node {node} is given twice")));
            }
            // The log is trusted only as read from the node itself, over mTLS
            // pinned to its certificate: a plaintext endpoint is a usage mistake.
            if !endpoint.starts_with("https://") {
                return Err(CliError::Usage(format!(
                    "--endpoint {endpoint:?} is not an https://host:port URL: the audit log \
                     is read over mTLS, pinned to the certificate of node {node:?}"
                )));
            }
        }
        Ok(Audited {
            tls: TlsPaths { ca, cert, key },
            nodes: node.into_iter().zip(endpoint).collect(),
            state,
        })
    }
}

/// The line that says what reconciling `nodes` logs found.
fn reconciled_summary(c: &Reconciled, nodes: usize, recent_secs: u64) -> String {
    format!(
        "reconciled {nodes} nodes' share records: {} signing attempts with a share recorded \
         on every signer, {} failed attempts (refused by a signer, or retried with another \
         quorum), {} with a signer not audited, {} of the last {} s not judged, {} share \
         records from before attempt ids",
        c.complete, c.failed, c.unchecked, c.in_flight, recent_secs, c.without_attempt
    )
}

/// Reads node `node`'s log at `endpoint` and verifies it (chain, signed
/// checkpoint, and with a state file its history), saving the new checkpoint
/// there (the caller holds the state file's lock); returns what was read and the
/// line that says what was verified.
fn verify_log(
    node: &str,
    endpoint: &str,
    tls: &TlsPaths,
    state: Option<&std::path::Path>,
    print: bool,
    witnesses: &[crate::audit::witness::WitnessEndpoint],
) -> Result<(history::Observed, String), CliError> {
    let node = node.to_string();
    let mut saved_state = match state {
        Some(path) => Some(AuditState::load(path)?),
        None => None,
    };
    let saved = saved_state
        .as_ref()
        .and_then(|s| s.nodes.get(&node))
        .cloned();
    let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
    let observed = runtime.block_on(audit::fetch_observed(
        endpoint,
        &node,
        tls,
        saved.as_ref().map(|s| s.size),
    ))?;
    if print {
        for (_, bytes) in &observed.records {
            println!("{}", String::from_utf8_lossy(bytes));
        }
    }
    // What the history shows comes first: a rewritten log may also have a
    // broken chain, and "rewritten" says more than where the chain breaks.
    let verified = judge(&node, &observed, saved.as_ref())?;
    // Then what other regions saw of it: a log cut or rewritten since a witness
    // cosigned it fails here even on a first audit.
    let witnessed = runtime
        .block_on(audit::witness::check(
            &node, endpoint, &observed, witnesses, tls,
        ))?
        .map_err(CliError::AuditFinding)?;
    let report = audit::check(&observed.records);
    let head = match report.head {
        Ok(head) => head,
        Err(brk) => {
            return Err(CliError::AuditChainBroken {
                node,
                brk,
                records: report.records,
            })
        }
    };
    let since = match (&saved, state) {
        (Some(saved), _) => format!(
            ", consistent with the checkpoint of {} records audited before",
            saved.size
        ),
        // Say plainly what a first audit cannot know.
        (None, Some(_)) => "; first audit of this node with this state file: \
                            its history before now is not checked"
            .into(),
        (None, None) => "; without --state its history is not checked".into(),
    };
    // Every share the node says it made was asked for by the client it names.
    let ca_pem = std::fs::read(&tls.ca).map_err(|source| CliError::Read {
        path: tls.ca.clone(),
        source,
    })?;
    let trust_domain = tls
        .load()
        .map_err(|e| audit::AuditError::Tls(e.to_string()))?
        .identity()
        .trust_domain
        .clone();
    let intents = audit::check_intents(&node, &observed.records, &ca_pem, &trust_domain)?;
    let mut summary = format!(
        "{node}: {} records, chain intact, head {head}; signed checkpoint of {} records \
         verified, root {}; {intents} share records' client intents verified{since}",
        report.records, verified.size, verified.root
    );
    for line in witnessed {
        summary.push_str("; ");
        summary.push_str(&line);
    }
    if let (Some(path), Some(saved_state)) = (state, saved_state.as_mut()) {
        saved_state.nodes.insert(node, verified);
        saved_state.save(path)?;
    }
    Ok((observed, summary))
}
