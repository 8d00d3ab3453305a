//! Which manifest of a key id the nodes' reports support: the rule the key
//! directory applies to every `ListNodeKeys` round.
//!
//! A report counts only with its node's attestation (`quorate_transport::key_attestation`):
//! a statement, signed with the reporting node's certificate, naming that node,
//! the key id and the manifest's hash, by a participant of that manifest. Votes are
//! distinct attesting participants, never entries: a node listing a manifest any
//! number of times is one vote, and a node attesting two versions of one key
//! (equivocating) is no vote for either. A manifest is trusted only with at least
//! its threshold of attesting participants (at least 2, since a manifest's threshold
//! is), so no single node certificate can make any manifest trusted. Of several
//! trusted versions the newest generation wins (a refresh moves a key forward, and
//! its old manifest stays genuinely attested by whoever has not retired it yet),
//! then, within it, the one with the most attesters; a tie keeps the version
//! trusted before (or none, if it is not among them). A newest trusted generation
//! below the one served before serves nothing new: the directory keeps what it had
//! rather than roll back.
//!
//! A refresh moves a key to a new manifest one node at a time, and both of its
//! epochs stay usable until every node has committed: a node lists the share a
//! refresh staged on it with a statement of another kind
//! (`key_attestation::Holding::Staged`). Staged statements never make a version
//! served (clients are shown only committed ones), but they count, with committed
//! ones, toward the *holders* of a signing epoch: besides the served version, a
//! version one generation before or after it, of the same group key, that at least
//! its threshold of distinct participants hold ([`Epoch`]). The quorum engine signs
//! within one epoch at a time.
//!
//! Used by [`crate::keys`]; uses nothing of the coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{ChainCache, StatementVerifier};
use quorate_transport::key_attestation::{self, AttestedManifest, Holding};
use quorate_wire::pb;

/// One version of a key, with who attests it.
#[derive(Debug)]
pub(crate) struct Version {
    pub manifest: Manifest,
    /// Verified attestation statements, one per attesting participant.
    pub attestation: BTreeMap<String, pb::Signed>,
    /// Participants whose statement that a refresh staged their share of it
    /// verified.
    pub staged: BTreeSet<String>,
}

impl Version {
    /// Who holds a share of it, committed or staged.
    pub fn holders(&self) -> BTreeSet<String> {
        self.attestation
            .keys()
            .cloned()
            .chain(self.staged.iter().cloned())
            .collect()
    }

    /// The `reporters` of a key id that are not among a version's `holders`.
    fn disagreeing(reporters: &BTreeSet<String>, holders: &BTreeSet<String>) -> HashSet<String> {
        reporters.difference(holders).cloned().collect()
    }
}

/// A version of a key other than the served one that can sign: a refresh's
/// other epoch.
#[derive(Debug)]
pub(crate) struct Epoch {
    pub manifest: Manifest,
    /// Its participants that hold their share of it, committed or staged.
    pub holders: BTreeSet<String>,
    /// Nodes that reported the key id but hold no share of this version.
    pub disagreeing: HashSet<String>,
}

/// What the reports say about one key id.
#[derive(Debug, Default)]
pub(crate) struct KeyReports {
    /// Versions by manifest hash.
    versions: HashMap<[u8; 32], Version>,
    /// Every node that reported anything for this key id.
    pub reporters: BTreeSet<String>,
}

/// The outcome for one key id.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Serve this version; `disagreeing` reported the key id but hold no share of
    /// it; `passed_over` says, for the log, why each other version is not served;
    /// `epochs` are the other versions that can sign ([`Epoch`]).
    Trust {
        version: Box<Version>,
        disagreeing: HashSet<String>,
        passed_over: Vec<String>,
        epochs: Vec<Epoch>,
    },
    /// Serve no new version; the reason, for the log.
    Untrusted(String),
}

/// Counts attested reports. Keeps the certificates whose chain verified, so a
/// refresh every few seconds does not re-check every node's chain.
#[derive(Debug)]
pub(crate) struct Tally {
    verifier: StatementVerifier,
    certificates: ChainCache,
}

impl Tally {
    /// Checks statements against `verifier` (the trust domain's CA).
    pub fn new(verifier: StatementVerifier) -> Self {
        Self {
            verifier,
            certificates: ChainCache::default(),
        }
    }

    /// Groups the nodes' answers by key id and manifest, keeping only attested
    /// reports; every report that does not count is logged with its node and why.
    pub fn count(
        &mut self,
        answers: Vec<(String, pb::ListNodeKeysResponse)>,
    ) -> BTreeMap<String, KeyReports> {
        let mut reports: BTreeMap<String, KeyReports> = BTreeMap::new();
        // Decoding checks every point of the public key package: each distinct
        // manifest is decoded once, however many times it is listed.
        let mut decoded: HashMap<[u8; 32], Option<Manifest>> = HashMap::new();
        // Reports already judged in this round: (node, manifest hash, holding,
        // signature), so a repeated entry costs neither a decode nor a
        // verification, nor a log line.
        let mut seen: HashSet<(String, [u8; 32], Holding, Vec<u8>)> = HashSet::new();
        // (node, manifest hash, holding) whose attestation verified: more of the
        // same add nothing.
        let mut counted: HashSet<(String, [u8; 32], Holding)> = HashSet::new();
        // Manifest hashes each node attested, per key id and holding.
        let mut attested: HashMap<(String, String, Holding), BTreeSet<[u8; 32]>> = HashMap::new();
        for (node_id, answer) in answers {
            let listed = answer
                .keys
                .into_iter()
                .map(|k| (Holding::Current, k))
                .chain(answer.staged.into_iter().map(|k| (Holding::Staged, k)));
            for (holding, key) in listed {
                let hash = quorate_wire::sha256(&key.manifest);
                let signature = key
                    .attestation
                    .as_ref()
                    .map(|a| a.signature.clone())
                    .unwrap_or_default();
                if counted.contains(&(node_id.clone(), hash, holding))
                    || !seen.insert((node_id.clone(), hash, holding, signature))
                {
                    continue;
                }
                let manifest = decoded.entry(hash).or_insert_with(|| match Manifest::decode(&key.manifest) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(node = %node_id, "node reports an invalid manifest; ignored: {e}");
                        None
                    }
                });
                let Some(manifest) = manifest else { continue };
                let key_id = manifest.key_id.clone();
                reports
                    .entry(key_id.clone())
                    .or_default()
                    .reporters
                    .insert(node_id.clone());
                if let Err(reason) =
                    self.check(&node_id, manifest, key.attestation.as_ref(), holding)
                {
                    tracing::warn!(
                        node = %node_id,
                        key_id = %key_id,
                        manifest_sha256 = %hex::encode(hash),
                        ?holding,
                        "node's report of this manifest does not count: {reason}"
                    );
                    continue;
                }
                counted.insert((node_id.clone(), hash, holding));
                attested
                    .entry((key_id.clone(), node_id.clone(), holding))
                    .or_default()
                    .insert(hash);
                let Some(signed) = key.attestation else {
                    continue;
                };
                let version = reports
                    .entry(key_id)
                    .or_default()
                    .versions
                    .entry(hash)
                    .or_insert_with(|| Version {
                        manifest: manifest.clone(),
                        attestation: BTreeMap::new(),
                        staged: BTreeSet::new(),
                    });
                match holding {
                    Holding::Current => {
                        version.attestation.insert(node_id.clone(), signed);
                    }
                    Holding::Staged => {
                        version.staged.insert(node_id.clone());
                    }
                }
            }
        }
        // A node holds one current share of a key and at most one staged beside
        // it: claiming more is equivocation.
        for ((key_id, node_id, holding), hashes) in attested {
            if hashes.len() > 1 {
                tracing::warn!(
                    node = %node_id,
                    key_id = %key_id,
                    versions = hashes.len(),
                    ?holding,
                    "node attests several manifests of one key; counted for none"
                );
                if let Some(r) = reports.get_mut(&key_id) {
                    for v in r.versions.values_mut() {
                        match holding {
                            Holding::Current => v.attestation.remove(&node_id).is_some(),
                            Holding::Staged => v.staged.remove(&node_id),
                        };
                    }
                }
            }
        }
        // A refresh stages exactly the next generation of the manifest a node
        // holds: a staged statement counts only beside that node's own current
        // one, one generation before (so no node adds itself to an older epoch).
        for reports in reports.values_mut() {
            let current: HashMap<String, u64> = reports
                .versions
                .values()
                .flat_map(|v| {
                    v.attestation
                        .keys()
                        .map(|node| (node.clone(), v.manifest.generation))
                })
                .collect();
            for v in reports.versions.values_mut() {
                v.staged.retain(|node| {
                    let next = current.get(node).map(|g| g.saturating_add(1));
                    if next != Some(v.manifest.generation) {
                        tracing::warn!(
                            node = %node,
                            key_id = %v.manifest.key_id,
                            generation = v.manifest.generation,
                            "node lists a staged share that is not the next generation of its current one; not counted"
                        );
                    }
                    next == Some(v.manifest.generation)
                });
            }
        }
        reports
    }

    /// Why `node_id`'s report of `manifest` does not count, if it does not.
    fn check(
        &mut self,
        node_id: &str,
        manifest: &Manifest,
        attestation: Option<&pb::Signed>,
        holding: Holding,
    ) -> Result<(), String> {
        if manifest.participant(node_id).is_none() {
            return Err("the node is not a participant of it".into());
        }
        let signed = attestation.ok_or("no attestation (a node older than this coordinator?)")?;
        let participants = manifest.participant_ids();
        let attester = key_attestation::verify_holding(
            holding,
            &self.verifier,
            &self.certificates,
            AttestedManifest {
                key_id: &manifest.key_id,
                manifest_hash: &manifest.hash,
                participants: &participants,
            },
            signed,
        )
        .map_err(|e| e.to_string())?;
        if attester != node_id {
            return Err(format!(
                "the attestation is {attester}'s, not the reporting node's"
            ));
        }
        Ok(())
    }
}

/// Which version of `key_id` to serve, given the version trusted before
/// (`previous`).
pub(crate) fn decide(key_id: &str, reports: KeyReports, previous: Option<&Manifest>) -> Decision {
    let KeyReports {
        versions,
        reporters,
    } = reports;
    let describe = |v: &Version| {
        format!(
            "manifest {} generation {} attested by {} of its participants {:?}, threshold {}",
            hex::encode(&v.manifest.hash[..8]),
            v.manifest.generation,
            v.attestation.len(),
            v.attestation.keys().collect::<Vec<_>>(),
            v.manifest.threshold
        )
    };
    // Staged statements never make a version served: the candidates are the
    // versions some participant holds as its current share.
    let (versions, staged_only): (Vec<Version>, Vec<Version>) = versions
        .into_values()
        .partition(|v| !v.attestation.is_empty());
    let (mut trusted, short): (Vec<Version>, Vec<Version>) = versions
        .into_iter()
        .partition(|v| v.attestation.len() >= usize::from(v.manifest.threshold).max(2));
    let mut passed_over: Vec<String> = short
        .iter()
        .map(|v| format!("{}: too few", describe(v)))
        .collect();
    let Some(newest) = trusted.iter().map(|v| v.manifest.generation).max() else {
        return Decision::Untrusted(if passed_over.is_empty() {
            format!("no attested report of key {key_id:?}")
        } else {
            format!(
                "no manifest of key {key_id:?} has enough attesting participants: {}",
                passed_over.join("; ")
            )
        });
    };
    if let Some(served) = previous.filter(|p| p.generation > newest) {
        return Decision::Untrusted(format!(
            "the newest trusted manifest of key {key_id:?} is generation {newest}, older than generation {} served before: not rolling back",
            served.generation
        ));
    }
    let (mut current, older): (Vec<Version>, Vec<Version>) = trusted
        .drain(..)
        .partition(|v| v.manifest.generation == newest);
    passed_over.extend(
        older
            .iter()
            .map(|v| format!("{}: generation {newest} supersedes it", describe(v))),
    );
    let most = current
        .iter()
        .map(|v| v.attestation.len())
        .max()
        .unwrap_or_default();
    let (mut top, fewer): (Vec<Version>, Vec<Version>) =
        current.drain(..).partition(|v| v.attestation.len() == most);
    passed_over.extend(
        fewer
            .iter()
            .map(|v| format!("{}: another version has more", describe(v))),
    );
    let chosen = if top.len() == 1 {
        top.pop()
    } else {
        top.iter()
            .position(|v| Some(v.manifest.hash) == previous.map(|p| p.hash))
            .map(|i| top.swap_remove(i))
    };
    let Some(version) = chosen else {
        return Decision::Untrusted(format!(
            "{} manifests of key {key_id:?} are each attested by {most} participants and none was trusted before: {}",
            top.len(),
            top.iter().map(describe).collect::<Vec<_>>().join("; ")
        ));
    };
    passed_over.extend(
        top.iter()
            .map(|v| format!("{}: ties with the version trusted before", describe(v))),
    );
    let disagreeing = Version::disagreeing(&reporters, &version.holders());
    let epochs = other_epochs(
        &version.manifest,
        &reporters,
        short
            .into_iter()
            .chain(older)
            .chain(fewer)
            .chain(top)
            .chain(staged_only),
    );
    Decision::Trust {
        version: Box::new(version),
        disagreeing,
        passed_over,
        epochs,
    }
}

/// The versions besides `served` that can sign: a refresh's other epoch, one
/// generation before or after it, of the same group key (so its signatures verify
/// under the key clients were given), held by at least its threshold of distinct
/// participants (never fewer than two: one node certificate makes no epoch).
fn other_epochs(
    served: &Manifest,
    reporters: &BTreeSet<String>,
    others: impl Iterator<Item = Version>,
) -> Vec<Epoch> {
    others
        .filter(|v| {
            let m = &v.manifest;
            m.generation.abs_diff(served.generation) == 1
                && m.ciphersuite == served.ciphersuite
                && m.public_key.verifying_key == served.public_key.verifying_key
        })
        .map(|v| {
            let holders = v.holders();
            Epoch {
                disagreeing: Version::disagreeing(reporters, &holders),
                holders,
                manifest: v.manifest,
            }
        })
        .filter(|e| e.holders.len() >= usize::from(e.manifest.threshold).max(2))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quorate_frost::Ciphersuite;
    use quorate_transport::attest::StatementSigner;
    use quorate_transport::test_ca;

    use super::*;

    const DOMAIN: &str = "quorate.test";

    /// Counts nodes' answers that list only current shares.
    trait CountKeys {
        fn count_keys(
            &mut self,
            answers: Vec<(String, Vec<pb::NodeKey>)>,
        ) -> BTreeMap<String, KeyReports>;
    }

    impl CountKeys for Tally {
        fn count_keys(
            &mut self,
            answers: Vec<(String, Vec<pb::NodeKey>)>,
        ) -> BTreeMap<String, KeyReports> {
            self.count(
                answers
                    .into_iter()
                    .map(|(node, keys)| {
                        (
                            node,
                            pb::ListNodeKeysResponse {
                                keys,
                                staged: Vec::new(),
                            },
                        )
                    })
                    .collect(),
            )
        }
    }

    struct Pki(test_ca::Ca);

    impl Pki {
        fn new() -> Self {
            Self(test_ca::new_ca("CA"))
        }

        fn node(&self, node: &str) -> StatementSigner {
            test_ca::signer(&self.0, "node", node)
        }

        fn tally(&self) -> Tally {
            Tally::new(StatementVerifier::from_pem(self.0.pem.as_bytes(), DOMAIN).unwrap())
        }
    }

    /// A `t`-of-`names` manifest of key `k1`, dealt afresh (another key each time).
    fn manifest(names: &[&str], t: u16) -> Manifest {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let dealt = Ciphersuite::Ed25519.ops().split(None, &names, t).unwrap();
        let encoded = quorate_keys::manifest::encode(
            "k1",
            Ciphersuite::Ed25519,
            t,
            dealt.public_key_package,
            names
                .iter()
                .map(|n| pb::ManifestParticipant {
                    node_id: n.clone(),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect(),
            "2026-01-01T00:00:00Z".into(),
            None,
        );
        Manifest::decode(&encoded).unwrap()
    }

    /// `m` at manifest generation `generation` (as a refresh would number it).
    fn at_generation(m: &Manifest, generation: u64) -> Manifest {
        use prost::Message;
        let mut pb = pb::KeyManifest::decode(m.encoded.as_slice()).unwrap();
        pb.generation = generation;
        Manifest::decode(&pb.encode_to_vec()).unwrap()
    }

    /// `node`'s report of `m`, attested with `signer`.
    fn report(signer: &StatementSigner, node: &str, m: &Manifest) -> pb::NodeKey {
        pb::NodeKey {
            manifest: m.encoded.clone(),
            attestation: Some(key_attestation::sign(signer, node, &m.key_id, &m.hash).unwrap()),
        }
    }

    const FIVE: &[&str] = &["node-1", "node-2", "node-3", "node-4", "node-5"];

    fn honest_answers(pki: &Pki, m: &Manifest, nodes: &[&str]) -> Vec<(String, Vec<pb::NodeKey>)> {
        nodes
            .iter()
            .map(|n| (n.to_string(), vec![report(&pki.node(n), n, m)]))
            .collect()
    }

    fn trusted_hash(decision: Decision) -> [u8; 32] {
        match decision {
            Decision::Trust { version, .. } => version.manifest.hash,
            Decision::Untrusted(reason) => panic!("not trusted: {reason}"),
        }
    }

    #[test]
    fn forged_manifest_listed_many_times_by_one_node_is_outvoted_by_distinct_attesters() {
        let pki = Pki::new();
        let genuine = manifest(FIVE, 3);
        // Threshold 2 and only two participants: the smallest manifest an attacker
        // can make.
        let forged = manifest(&["node-1", "node-2"], 2);
        let node1 = pki.node("node-1");
        let mut answers = honest_answers(&pki, &genuine, &FIVE[1..4]);
        answers.push((
            "node-1".into(),
            (0..50).map(|_| report(&node1, "node-1", &forged)).collect(),
        ));
        let mut reports = pki.tally().count_keys(answers);
        let key = reports.remove("k1").unwrap();
        let Decision::Trust {
            version,
            disagreeing,
            passed_over,
            ..
        } = decide("k1", key, None)
        else {
            panic!("the genuine manifest is not trusted")
        };
        assert_eq!(version.manifest.hash, genuine.hash);
        assert_eq!(version.attestation.len(), 3);
        assert!(disagreeing.contains("node-1"));
        assert!(
            passed_over[0].contains("attested by 1 of"),
            "{passed_over:?}"
        );
    }

    #[test]
    fn one_node_alone_makes_no_manifest_trusted() {
        let pki = Pki::new();
        let forged = manifest(&["node-1", "node-2"], 2);
        let node1 = pki.node("node-1");
        let mut reports = pki.tally().count_keys(vec![(
            "node-1".into(),
            (0..10).map(|_| report(&node1, "node-1", &forged)).collect(),
        )]);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }

    #[test]
    fn attestations_for_others_or_of_non_participants_count_for_nothing() {
        let pki = Pki::new();
        let forged = manifest(&["node-1", "node-2", "node-3"], 2);
        let node1 = pki.node("node-1");
        let node9 = pki.node("node-9");
        let mut reports = pki.tally().count_keys(vec![
            (
                "node-1".into(),
                vec![
                    report(&node1, "node-1", &forged),
                    // node-1's key, node-2's name.
                    report(&node1, "node-2", &forged),
                ],
            ),
            // Not a participant.
            ("node-9".into(), vec![report(&node9, "node-9", &forged)]),
            // node-2's channel relays node-1's statement.
            ("node-2".into(), vec![report(&node1, "node-1", &forged)]),
        ]);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }

    #[test]
    fn statement_from_another_ca_does_not_count() {
        let pki = Pki::new();
        let rogue = Pki::new();
        let forged = manifest(&["node-1", "node-2"], 2);
        let answers = vec![
            (
                "node-1".into(),
                vec![report(&pki.node("node-1"), "node-1", &forged)],
            ),
            (
                "node-2".into(),
                vec![report(&rogue.node("node-2"), "node-2", &forged)],
            ),
        ];
        let mut reports = pki.tally().count_keys(answers);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }

    #[test]
    fn node_attesting_two_versions_counts_for_neither() {
        let pki = Pki::new();
        let a = manifest(&["node-1", "node-2", "node-3"], 2);
        let b = manifest(&["node-1", "node-2", "node-3"], 2);
        let node1 = pki.node("node-1");
        let mut answers = honest_answers(&pki, &a, &["node-2"]);
        answers.push((
            "node-1".into(),
            vec![report(&node1, "node-1", &a), report(&node1, "node-1", &b)],
        ));
        let mut reports = pki.tally().count_keys(answers);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }

    #[test]
    fn refresh_in_progress_serves_the_version_most_participants_attest() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let new = manifest(FIVE, 3);
        let mut answers = honest_answers(&pki, &new, &FIVE[..3]);
        answers.extend(honest_answers(&pki, &old, &FIVE[3..]));
        let mut reports = pki.tally().count_keys(answers);
        let decision = decide("k1", reports.remove("k1").unwrap(), Some(&old));
        assert_eq!(trusted_hash(decision), new.hash);
    }

    /// `node`'s answer: `current` as its current share, `staged` as staged by a
    /// refresh, each attested with the statement kind that says so.
    fn holding(
        pki: &Pki,
        node: &str,
        current: Option<&Manifest>,
        staged: &[&Manifest],
    ) -> (String, pb::ListNodeKeysResponse) {
        let signer = pki.node(node);
        (
            node.to_string(),
            pb::ListNodeKeysResponse {
                keys: current
                    .map(|m| report(&signer, node, m))
                    .into_iter()
                    .collect(),
                staged: staged
                    .iter()
                    .map(|m| pb::NodeKey {
                        manifest: m.encoded.clone(),
                        attestation: Some(
                            key_attestation::sign_staged(&signer, node, &m.key_id, &m.hash)
                                .unwrap(),
                        ),
                    })
                    .collect(),
            },
        )
    }

    fn trusted(decision: Decision) -> (Box<Version>, HashSet<String>, Vec<Epoch>) {
        match decision {
            Decision::Trust {
                version,
                disagreeing,
                epochs,
                ..
            } => (version, disagreeing, epochs),
            Decision::Untrusted(reason) => panic!("not trusted: {reason}"),
        }
    }

    #[test]
    fn while_a_refresh_commits_both_epochs_sign_and_clients_are_served_the_committed_one() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let new = at_generation(&old, 1);
        // Staged everywhere, committed on node-1 and node-2 (which dropped the old
        // share).
        let mut answers: Vec<_> = FIVE[..2]
            .iter()
            .map(|n| holding(&pki, n, Some(&new), &[]))
            .collect();
        answers.extend(
            FIVE[2..]
                .iter()
                .map(|n| holding(&pki, n, Some(&old), &[&new])),
        );
        let mut reports = pki.tally().count(answers);
        let (version, disagreeing, epochs) =
            trusted(decide("k1", reports.remove("k1").unwrap(), Some(&old)));
        // Served: the manifest three nodes hold as current, with only their
        // (committed) statements.
        assert_eq!(version.manifest.hash, old.hash);
        assert_eq!(version.attestation.len(), 3);
        assert_eq!(
            disagreeing,
            HashSet::from(["node-1".into(), "node-2".into()])
        );
        // The refresh's epoch signs too, with every node: two committed, three
        // staged.
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].manifest.hash, new.hash);
        assert_eq!(epochs[0].holders.len(), 5);
        assert!(epochs[0].disagreeing.is_empty());
    }

    #[test]
    fn a_node_cannot_stage_itself_into_an_older_epoch() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let new = at_generation(&old, 1);
        // Three committed the refresh; node-4 and node-5 hold the old share (and
        // the new one staged). node-1 also claims the old manifest as staged.
        let mut answers = vec![holding(&pki, "node-1", Some(&new), &[&old])];
        answers.extend(FIVE[1..3].iter().map(|n| holding(&pki, n, Some(&new), &[])));
        answers.extend(
            FIVE[3..]
                .iter()
                .map(|n| holding(&pki, n, Some(&old), &[&new])),
        );
        let mut reports = pki.tally().count(answers);
        let (version, _, epochs) = trusted(decide("k1", reports.remove("k1").unwrap(), Some(&old)));
        assert_eq!(version.manifest.hash, new.hash);
        assert_eq!(version.holders().len(), 5);
        // Two holders of the old epoch, not three.
        assert!(epochs.is_empty(), "{epochs:?}");
    }

    #[test]
    fn staged_statements_alone_serve_nothing_and_kinds_do_not_mix() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let new = at_generation(&old, 1);
        // Every node staged the new manifest, none holds any current share.
        let answers = FIVE
            .iter()
            .map(|n| holding(&pki, n, None, &[&new]))
            .collect();
        let mut reports = pki.tally().count(answers);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
        // A staged statement listed as a current share, or a current one listed as
        // staged, counts for nothing.
        let answers = FIVE
            .iter()
            .map(|n| {
                let (node, staged) = holding(&pki, n, None, &[&new]);
                let (_, current) = holding(&pki, n, Some(&new), &[]);
                (
                    node,
                    pb::ListNodeKeysResponse {
                        keys: staged.staged,
                        staged: current.keys,
                    },
                )
            })
            .collect();
        let mut reports = pki.tally().count(answers);
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }

    #[test]
    fn an_epoch_needs_its_threshold_of_holders_the_same_group_key_and_the_next_generation() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let epochs_with = |staged: &Manifest, stagers: &[&str]| {
            let answers = FIVE
                .iter()
                .map(|n| {
                    let staged: &[&Manifest] = if stagers.contains(n) { &[staged] } else { &[] };
                    holding(&pki, n, Some(&old), staged)
                })
                .collect();
            let mut reports = pki.tally().count(answers);
            let (version, _, epochs) =
                trusted(decide("k1", reports.remove("k1").unwrap(), Some(&old)));
            assert_eq!(version.manifest.hash, old.hash);
            epochs
        };
        let next = at_generation(&old, 1);
        assert_eq!(epochs_with(&next, &FIVE[..3]).len(), 1);
        // Two holders of a 3-of-5 manifest: no epoch.
        assert!(epochs_with(&next, &FIVE[..2]).is_empty());
        // Another group key, however many hold it: its signatures would not verify
        // under the key clients were given.
        assert!(epochs_with(&at_generation(&manifest(FIVE, 3), 1), FIVE).is_empty());
        // Two generations on: no refresh makes that.
        assert!(epochs_with(&at_generation(&old, 2), FIVE).is_empty());
    }

    #[test]
    fn a_node_staging_two_versions_holds_neither_staged_but_keeps_its_current_share() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let a = at_generation(&old, 1);
        let b = {
            use prost::Message;
            let mut pb = pb::KeyManifest::decode(a.encoded.as_slice()).unwrap();
            pb.created_at = "2026-01-02T00:00:00Z".into();
            Manifest::decode(&pb.encode_to_vec()).unwrap()
        };
        let mut answers: Vec<_> = FIVE[..2]
            .iter()
            .map(|n| holding(&pki, n, Some(&old), &[&a]))
            .collect();
        answers.push(holding(&pki, "node-3", Some(&old), &[&a, &b]));
        answers.extend(FIVE[3..].iter().map(|n| holding(&pki, n, Some(&old), &[])));
        let mut reports = pki.tally().count(answers);
        let (version, _, epochs) = trusted(decide("k1", reports.remove("k1").unwrap(), None));
        assert_eq!(version.attestation.len(), 5);
        assert!(epochs.is_empty(), "{epochs:?}");
    }

    const SEVEN: &[&str] = &[
        "node-1", "node-2", "node-3", "node-4", "node-5", "node-6", "node-7",
    ];

    #[test]
    fn newer_generation_is_served_over_an_older_one_more_participants_still_attest() {
        let pki = Pki::new();
        let old = manifest(SEVEN, 3);
        let new = at_generation(&manifest(SEVEN, 3), 1);
        // Three have installed the refresh; four still attest the old manifest.
        let mut answers = honest_answers(&pki, &new, &SEVEN[..3]);
        answers.extend(honest_answers(&pki, &old, &SEVEN[3..]));
        let mut reports = pki.tally().count_keys(answers);
        let Decision::Trust {
            version,
            passed_over,
            ..
        } = decide("k1", reports.remove("k1").unwrap(), Some(&old))
        else {
            panic!("the refreshed manifest is not trusted")
        };
        assert_eq!(version.manifest.hash, new.hash);
        assert!(
            passed_over[0].contains("generation 1 supersedes it"),
            "{passed_over:?}"
        );
    }

    #[test]
    fn an_older_generation_than_served_before_is_not_served() {
        let pki = Pki::new();
        let old = manifest(FIVE, 3);
        let new = at_generation(&manifest(FIVE, 3), 1);
        let mut reports = pki.tally().count_keys(honest_answers(&pki, &old, FIVE));
        let decision = decide("k1", reports.remove("k1").unwrap(), Some(&new));
        match decision {
            Decision::Untrusted(reason) => assert!(reason.contains("rolling back"), "{reason}"),
            Decision::Trust { .. } => panic!("rolled back to generation 0"),
        }
    }

    #[test]
    fn tie_keeps_the_version_trusted_before_and_otherwise_serves_none() {
        let pki = Pki::new();
        let a = manifest(&["node-1", "node-2", "node-3", "node-4"], 2);
        let b = manifest(&["node-1", "node-2", "node-3", "node-4"], 2);
        let answers = || {
            let mut answers = honest_answers(&pki, &a, &["node-1", "node-2"]);
            answers.extend(honest_answers(&pki, &b, &["node-3", "node-4"]));
            answers
        };
        let mut tally = pki.tally();
        let mut reports = tally.count_keys(answers());
        assert_eq!(
            trusted_hash(decide("k1", reports.remove("k1").unwrap(), Some(&b))),
            b.hash
        );
        let mut reports = tally.count_keys(answers());
        let decision = decide("k1", reports.remove("k1").unwrap(), None);
        assert!(matches!(decision, Decision::Untrusted(_)), "{decision:?}");
    }
}
