//! The list of drills: each [`Drill`] names its number (as in docs/testnet.md), its
//! expectation for the report, whether it needs local processes, and its body in
//! one of the files by theme. A new drill is one function there and one entry here.

use futures::future::BoxFuture;

use super::ctx::DrillCtx;
use super::verdict::Verdict;
use super::{coordinator_failures, malicious, node_failures, restarts, sovereignty, storage};

/// A drill's body.
pub type DrillFn = for<'c> fn(&'c mut DrillCtx) -> BoxFuture<'c, anyhow::Result<Verdict>>;

/// A registered drill.
#[derive(Clone, Copy, Debug)]
pub struct Drill {
    /// Number in the issue's list (5 and 7 come with policy and key repair).
    pub number: u8,
    /// Short name, for `--only` and the report.
    pub name: &'static str,
    /// What must hold.
    pub expectation: &'static str,
    /// The drill.
    pub run: DrillFn,
    /// Whether it needs what only local processes offer (rewriting a node's
    /// config, editing its store on disk, the CA key to issue an auditor
    /// certificate, reading the coordinators' logs for a culprit); skipped on
    /// compose.
    pub local_only: bool,
}

/// Every implemented drill, in the order they run. A new drill is one function
/// and one entry here.
pub fn registry() -> Vec<Drill> {
    vec![
        Drill {
            number: 1,
            name: "kill-2-nodes",
            expectation: "2 of 5 nodes killed: every request signs",
            run: node_failures::kill_two_nodes,
            local_only: false,
        },
        Drill {
            number: 2,
            name: "kill-3-nodes",
            expectation: "3 of 5 killed: fast UNAVAILABLE, no hang; restarted: resumes in seconds",
            run: node_failures::kill_three_nodes,
            local_only: false,
        },
        Drill {
            number: 3,
            name: "partition-node",
            expectation: "1 node partitioned then healed: every request signs; healed node signs",
            run: node_failures::partition_node,
            local_only: false,
        },
        Drill {
            number: 4,
            name: "kill-coordinator",
            expectation: "1 of 2 coordinators killed: the other's clients all sign",
            run: coordinator_failures::kill_coordinator,
            local_only: false,
        },
        Drill {
            number: 6,
            name: "rolling-restart",
            expectation: "every node, then every coordinator, restarted one by one by SIGTERM alone: each exits by itself within its grace, zero failed requests",
            run: restarts::rolling_restart,
            local_only: false,
        },
        Drill {
            number: 5,
            name: "eu-failover",
            expectation:
                "both EU sovereign nodes lost: the EU key refuses without approval, signs with one",
            run: sovereignty::eu_failover,
            local_only: false,
        },
        Drill {
            number: 7,
            name: "wipe-and-repair",
            expectation:
                "one node's state wiped: repaired from t helpers, then signs; load unaffected",
            run: storage::wipe_and_repair,
            local_only: false,
        },
        Drill {
            number: 8,
            name: "malicious-signer",
            expectation:
                "one node sends corrupt shares: named culprit, excluded, every request signs",
            run: malicious::malicious_signer,
            local_only: true,
        },
        Drill {
            number: 9,
            name: "crash-during-signing",
            expectation: "nodes SIGKILLed at random points under load: no nonce used twice, no share lost, audit chains intact",
            run: storage::crash_during_signing,
            local_only: true,
        },
        Drill {
            number: 11,
            name: "malicious-coordinator",
            expectation: "a raw client with a coordinator certificate replays round 2, swaps the message under a client intent, sends none, passes off another node's commitment, asks for an unlawful quorum: every node refuses; a node reporting a forged manifest: the coordinator serves the true key and logs why; a client certificate as a node or coordinator server: handshake refused",
            run: malicious::malicious_coordinator,
            local_only: false,
        },
        Drill {
            number: 10,
            name: "disk-corruption",
            expectation: "a node's store damaged: it refuses to start, naming the damage; repaired, it signs",
            run: storage::disk_corruption,
            local_only: true,
        },
        Drill {
            number: 12,
            name: "doctored-audit-log",
            expectation: "a node's audit log cut under load (stopped, truncated, restarted): every other node, witnessing it, reports the inconsistency within seconds; the load signs on",
            run: storage::doctored_audit_log,
            local_only: true,
        },
        Drill {
            number: 13,
            name: "escrow-rebuild",
            expectation: "a node's region destroyed: its shares escrowed to the keys' custodians, recovered from three custodians' parts onto the empty node with two administrators' authorization; it then signs; load unaffected",
            run: storage::escrow_rebuild,
            local_only: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_numbered_as_in_the_issue() {
        let drills = registry();
        let mut names: Vec<&str> = drills.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), drills.len());
        let numbers: Vec<u8> = drills.iter().map(|d| d.number).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 6, 5, 7, 8, 9, 11, 10, 12, 13]);
    }
}
