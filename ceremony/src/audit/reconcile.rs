//! Reconciling the share records of several nodes' verified audit logs: every
//! signature must appear as exactly one `sign_share` record on each of its signers,
//! with the same key, message digest, request and quorum.
//!
//! Records are grouped by their signing attempt ([`quorate_keys::audit::signing_attempt_id`]):
//! FROST binds each share to the whole signing package, so the shares of one
//! signature were all made for one attempt, and every honest signer of it wrote
//! the same key, digest, request and quorum. What follows from that:
//! - **Disagreement** (proof of a node's or the coordinator's misbehaviour, exit 20):
//!   records of one attempt that differ in key, digest, request, quorum or client;
//!   a node with two share records of one attempt (its nonce is taken once, so an
//!   honest node makes one share per attempt); a node that records a share for a
//!   quorum it is not in.
//! - **Unmatched shares** (exit 21): an attempt with shares recorded by some of its
//!   signers and, from another audited signer, neither a share nor a refusal, while
//!   no other attempt of the same request completed. A node writes its record
//!   durably before it releases its share, so either the request failed there
//!   (the node was down, or the coordinator gave up) and no signature was made, or
//!   that node released a share without recording it. The auditor decides which;
//!   the finding names the node and the request.
//!
//! An attempt that a later attempt of the same request completed (the coordinator's
//! retry with another quorum after a node failed) and an attempt a member refused
//! are failed attempts, counted but not findings. Attempts recorded shortly before
//! the audit began (30 s by default) may have been written between two logs' reads,
//! and nodes' clocks run a little apart: they are counted but not judged; nor are
//! attempts with a signer whose log was not audited (counted as unchecked).

use std::collections::{BTreeMap, BTreeSet};

use quorate_keys::audit::AuditRecord;

/// What kind of finding reconciliation made; each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconcileKind {
    /// Records of one attempt disagree, or one node recorded two shares of it,
    /// or a share for a quorum without itself.
    Disagreement,
    /// Shares of an attempt recorded by some signers with no trace of it on another.
    Unmatched,
}

impl ReconcileKind {
    /// The process exit code of `quorate-ceremony audit verify` for this finding.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Disagreement => 20,
            Self::Unmatched => 21,
        }
    }
}

/// A cross-node finding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReconcileFinding {
    /// What it shows.
    pub kind: ReconcileKind,
    /// What was found, naming the nodes, for the auditor.
    pub message: String,
}

/// What reconciliation counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Signing attempts with every audited signer's share recorded.
    pub complete: usize,
    /// Attempts that failed and were explained: a signer refused, or another
    /// attempt of the same request completed.
    pub failed: usize,
    /// Attempts in which some signer's log was not audited.
    pub unchecked: usize,
    /// Attempts too recent to judge.
    pub in_flight: usize,
    /// Share records written before records carried their attempt.
    pub without_attempt: usize,
}

/// One node's record of an attempt.
struct Entry<'a> {
    node: &'a str,
    record: &'a AuditRecord,
}

/// The request an attempt served: retries of it share this, with other attempts.
fn request_of(r: &AuditRecord) -> (&str, &str, &str, &str) {
    (&r.key_id, &r.client_id, &r.request_id, &r.message_sha256)
}

/// Reconciles the records of the audited nodes (`(node id, its records)`, each log
/// already verified on its own), judging the attempts whose every record is older
/// than `judged_before_ms` (milliseconds since the Unix epoch). The first finding,
/// by attempt id, is the error.
pub fn reconcile(
    logs: &[(String, Vec<AuditRecord>)],
    judged_before_ms: u64,
) -> Result<Reconciled, ReconcileFinding> {
    let audited: BTreeSet<&str> = logs.iter().map(|(node, _)| node.as_str()).collect();
    let mut counts = Reconciled::default();
    let mut attempts: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    for (node, records) in logs {
        for record in records {
            if record.event != "sign_share" && record.event != "sign_refused" {
                continue;
            }
            if record.attempt.is_empty() {
                counts.without_attempt += usize::from(record.event == "sign_share");
                continue;
            }
            attempts
                .entry(record.attempt.as_str())
                .or_default()
                .push(Entry { node, record });
        }
    }
    let disagree = |message: String| ReconcileFinding {
        kind: ReconcileKind::Disagreement,
        message,
    };

    // First every attempt on its own: what its records say must agree.
    for (attempt, entries) in &attempts {
        let first = entries[0].record;
        let mut shares_by_node: BTreeMap<&str, usize> = BTreeMap::new();
        let mut share_client: Option<&str> = None;
        for Entry { node, record } in entries {
            let same = record.key_id == first.key_id
                && record.message_sha256 == first.message_sha256
                && record.request_id == first.request_id
                && record.quorum == first.quorum;
            if !same {
                return Err(disagree(format!(
                    "attempt {attempt}: {node}'s record {} says key {:?}, message {}, \
                     request {:?}, quorum {:?}, but {}'s record {} says key {:?}, \
                     message {}, request {:?}, quorum {:?}",
                    record.seq,
                    record.key_id,
                    record.message_sha256,
                    record.request_id,
                    record.quorum,
                    entries[0].node,
                    first.seq,
                    first.key_id,
                    first.message_sha256,
                    first.request_id,
                    first.quorum
                )));
            }
            if !record.quorum.iter().any(|q| q == node) {
                return Err(disagree(format!(
                    "{node}: record {} ({}) is for attempt {attempt} with quorum {:?}, \
                     which does not include {node}",
                    record.seq, record.event, record.quorum
                )));
            }
            if record.event != "sign_share" {
                continue;
            }
            // Every key needs at least 2 signers, and a node signs only for a quorum
            // of at least its key's threshold of distinct participants. A share
            // "for a quorum" of itself alone would complete its request here on one
            // node's word, excusing as failed the attempt whose record that node
            // cut: proof of its misbehaviour instead.
            let distinct: BTreeSet<&str> = record.quorum.iter().map(String::as_str).collect();
            if distinct.len() < 2 || distinct.len() != record.quorum.len() {
                return Err(disagree(format!(
                    "{node}: share record {} is for attempt {attempt} with quorum {:?}, \
                     not at least 2 distinct signers: no node signs for such a quorum",
                    record.seq, record.quorum
                )));
            }
            // The client comes from the intent each signer verified; refusals may
            // lack it (an intent one node's clock found expired), shares may not.
            match share_client {
                Some(client) if client != record.client_id => {
                    return Err(disagree(format!(
                        "attempt {attempt}: {node} recorded its share for client {}, \
                         another signer for {client}",
                        record.client_id
                    )))
                }
                _ => share_client = Some(&record.client_id),
            }
            let shares = shares_by_node.entry(node).or_default();
            *shares += 1;
            if *shares > 1 {
                return Err(disagree(format!(
                    "{node}: two share records of attempt {attempt} (the second is \
                     record {}): one attempt's nonce is spent once",
                    record.seq
                )));
            }
        }
    }

    // Then whether each attempt's shares are matched on every audited signer.
    let is_complete = |entries: &[Entry]| {
        let quorum = &entries[0].record.quorum;
        quorum.iter().all(|member| {
            entries
                .iter()
                .any(|e| e.node == member && e.record.event == "sign_share")
        })
    };
    let completed_requests: BTreeSet<_> = attempts
        .values()
        .filter(|entries| is_complete(entries))
        .map(|entries| request_of(entries[0].record))
        .collect();
    for (attempt, entries) in &attempts {
        let first = entries[0].record;
        if entries
            .iter()
            .any(|e| e.record.time_unix_ms >= judged_before_ms)
        {
            counts.in_flight += 1;
            continue;
        }
        if first.quorum.iter().any(|m| !audited.contains(m.as_str())) {
            counts.unchecked += 1;
            continue;
        }
        if is_complete(entries) {
            counts.complete += 1;
            continue;
        }
        let refused = entries.iter().any(|e| e.record.event == "sign_refused");
        let shares: Vec<&str> = entries
            .iter()
            .filter(|e| e.record.event == "sign_share")
            .map(|e| e.node)
            .collect();
        if refused || shares.is_empty() || completed_requests.contains(&request_of(first)) {
            counts.failed += 1;
            continue;
        }
        let silent: Vec<&str> = first
            .quorum
            .iter()
            .map(String::as_str)
            .filter(|m| !entries.iter().any(|e| e.node == *m))
            .collect();
        return Err(ReconcileFinding {
            kind: ReconcileKind::Unmatched,
            message: format!(
                "attempt {attempt} (key {:?}, client {}, request {:?}, message {}): \
                 {} recorded shares, but {} recorded neither a share nor a refusal and \
                 no other attempt of this request completed. Either the request failed \
                 at {} and no signature was made, or {} made a share without \
                 recording it",
                first.key_id,
                first.client_id,
                first.request_id,
                first.message_sha256,
                shares.join(", "),
                silent.join(", "),
                silent.join(", "),
                silent.join(", "),
            ),
        });
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 10_000_000;
    const THEN: u64 = NOW - 60_000;

    fn share(node: &str, attempt: &str, quorum: &[&str], request: &str) -> AuditRecord {
        AuditRecord {
            node_id: node.into(),
            event: "sign_share".into(),
            key_id: "k".into(),
            client_id: "spiffe://quorate.test/client/a".into(),
            request_id: request.into(),
            message_sha256: "ab".repeat(32),
            quorum: quorum.iter().map(|q| q.to_string()).collect(),
            attempt: attempt.into(),
            time_unix_ms: THEN,
            ..Default::default()
        }
    }

    fn refusal(node: &str, attempt: &str, quorum: &[&str], request: &str) -> AuditRecord {
        AuditRecord {
            event: "sign_refused".into(),
            client_id: String::new(),
            ..share(node, attempt, quorum, request)
        }
    }

    fn logs(records: Vec<AuditRecord>, nodes: &[&str]) -> Vec<(String, Vec<AuditRecord>)> {
        nodes
            .iter()
            .map(|n| {
                let own = records.iter().filter(|r| r.node_id == *n).cloned();
                (n.to_string(), own.collect())
            })
            .collect()
    }

    const ALL: &[&str] = &["n1", "n2", "n3"];
    const Q: &[&str] = &["n1", "n2"];

    fn kind(r: Result<Reconciled, ReconcileFinding>) -> ReconcileKind {
        r.expect_err("a finding").kind
    }

    #[test]
    fn a_signature_with_one_share_on_each_signer_reconciles() {
        let records = vec![share("n1", "a1", Q, "r1"), share("n2", "a1", Q, "r1")];
        let got = reconcile(&logs(records, ALL), NOW).unwrap();
        assert_eq!(got.complete, 1);
        assert_eq!(got.failed, 0);
    }

    #[test]
    fn a_retry_with_another_quorum_explains_the_failed_attempt() {
        let records = vec![
            share("n1", "a1", Q, "r1"),
            share("n1", "a2", &["n1", "n3"], "r1"),
            share("n3", "a2", &["n1", "n3"], "r1"),
        ];
        let got = reconcile(&logs(records, ALL), NOW).unwrap();
        assert_eq!((got.complete, got.failed), (1, 1));
    }

    #[test]
    fn a_refusal_explains_a_failed_attempt() {
        let records = vec![share("n1", "a1", Q, "r1"), refusal("n2", "a1", Q, "r1")];
        let got = reconcile(&logs(records, ALL), NOW).unwrap();
        assert_eq!(got.failed, 1);
    }

    #[test]
    fn a_share_with_no_trace_on_its_cosigner_is_unmatched_and_names_it() {
        let records = vec![share("n1", "a1", Q, "r1")];
        let finding = reconcile(&logs(records, ALL), NOW).unwrap_err();
        assert_eq!(finding.kind, ReconcileKind::Unmatched);
        assert!(
            finding.message.contains("but n2 recorded neither"),
            "{finding}"
        );
    }

    #[test]
    fn records_that_disagree_within_an_attempt_are_a_disagreement() {
        let mut other = share("n2", "a1", Q, "r1");
        other.message_sha256 = "cd".repeat(32);
        let records = vec![share("n1", "a1", Q, "r1"), other];
        assert_eq!(
            kind(reconcile(&logs(records, ALL), NOW)),
            ReconcileKind::Disagreement
        );

        let mut other = share("n2", "a1", Q, "r1");
        other.client_id = "spiffe://quorate.test/client/b".into();
        let records = vec![share("n1", "a1", Q, "r1"), other];
        assert_eq!(
            kind(reconcile(&logs(records, ALL), NOW)),
            ReconcileKind::Disagreement
        );
    }

    #[test]
    fn two_shares_of_one_attempt_on_one_node_are_a_disagreement() {
        let records = vec![
            share("n1", "a1", Q, "r1"),
            share("n1", "a1", Q, "r1"),
            share("n2", "a1", Q, "r1"),
        ];
        let finding = reconcile(&logs(records, ALL), NOW).unwrap_err();
        assert_eq!(finding.kind, ReconcileKind::Disagreement);
        assert!(
            finding.message.starts_with("n1: two share records"),
            "{finding}"
        );
    }

    #[test]
    fn a_share_for_a_quorum_without_its_node_is_a_disagreement() {
        let records = vec![share("n3", "a1", Q, "r1")];
        let finding = reconcile(&logs(records, ALL), NOW).unwrap_err();
        assert_eq!(finding.kind, ReconcileKind::Disagreement);
        assert!(finding.message.contains("does not include n3"), "{finding}");
    }

    #[test]
    fn a_share_for_a_quorum_of_its_node_alone_is_a_disagreement_not_a_completed_request() {
        // n2 made its share in a1 with n1 and n3 (a signature was made), cut that
        // record and wrote instead a share of the same request "for a quorum" of
        // itself alone, which would otherwise complete the request and excuse a1 as
        // a failed attempt.
        let all = &["n1", "n2", "n3"];
        for quorum in [&["n2"][..], &["n2", "n2"][..]] {
            let records = vec![
                share("n1", "a1", all, "r1"),
                share("n3", "a1", all, "r1"),
                share("n2", "a2", quorum, "r1"),
            ];
            let finding = reconcile(&logs(records, ALL), NOW).unwrap_err();
            assert_eq!(finding.kind, ReconcileKind::Disagreement, "{finding}");
            assert!(finding.message.starts_with("n2: share record"), "{finding}");
        }
    }

    #[test]
    fn recent_attempts_and_unaudited_signers_are_counted_not_judged() {
        let mut recent = share("n1", "a1", Q, "r1");
        recent.time_unix_ms = NOW + 1_000;
        let unaudited = share("n1", "a2", &["n1", "n9"], "r2");
        let got = reconcile(&logs(vec![recent, unaudited], ALL), NOW).unwrap();
        assert_eq!((got.in_flight, got.unchecked), (1, 1));
    }

    #[test]
    fn share_records_from_before_attempt_ids_are_counted_apart() {
        let records = vec![share("n1", "", Q, "r1")];
        let got = reconcile(&logs(records, ALL), NOW).unwrap();
        assert_eq!(got.without_attempt, 1);
    }
}
