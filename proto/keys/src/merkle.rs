//! The Merkle tree over a node's audit log, with RFC 9162 (Certificate
//! Transparency 2.0) hashing: a leaf is `SHA-256(0x00 || record bytes)`, an inner
//! node `SHA-256(0x01 || left || right)`, and the tree over `n` leaves splits at the
//! largest power of two below `n` (RFC 9162, section 2.1.1). Shared by the node,
//! which keeps the tree of its log and serves proofs, and auditors, who verify them.
//!
//! [`Tree`] is built incrementally: appending a leaf completes the perfect subtrees
//! it closes, so every perfect, aligned subtree's hash is kept and the root of any
//! earlier size, an inclusion proof or a consistency proof costs `O(log n)` hashes
//! (memory: about two hashes per record). Proofs follow RFC 9162 sections 2.1.3.1
//! (`PATH`) and 2.1.4.1 (`PROOF`); their verification sections 2.1.3.2 and 2.1.4.2.

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `data` (one record, exactly as stored).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(1 + data.len());
    buf.push(0x00);
    buf.extend_from_slice(data);
    quorate_wire::sha256(&buf)
}

/// The hash of an inner node over `left` and `right`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    quorate_wire::sha256(&buf)
}

/// The root of the empty tree: the SHA-256 of nothing.
pub fn empty_root() -> Hash {
    quorate_wire::sha256(b"")
}

/// Why a proof cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The tree size asked for is larger than the tree.
    #[error("tree size {size} is larger than the log ({len} records)")]
    SizeTooLarge {
        /// Size asked for.
        size: u64,
        /// Records in the tree.
        len: u64,
    },
    /// The leaf index is not below the tree size.
    #[error("record {index} is not in a tree of {size} records")]
    IndexOutOfRange {
        /// Index asked for.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A consistency proof from a larger size to a smaller one.
    #[error("no consistency proof from {first} records to fewer ({second})")]
    Shrinks {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
}

/// A Merkle tree over the leaves appended so far, keeping the hash of every
/// perfect, aligned subtree: `levels[h][i]` covers leaves `i * 2^h .. (i + 1) * 2^h`.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the leaf holding `data`.
    pub fn push(&mut self, data: &[u8]) {
        self.push_hash(leaf_hash(data));
    }

    /// Appends a leaf by its hash.
    pub fn push_hash(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// The root hash of the tree over the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 `PATH(m, D[n])`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// The consistency proof between the trees of the first `first` and the first
    /// `second` leaves (RFC 9162 `PROOF(m, D[n])`; empty when `first` is 0 or equal
    /// to `second`).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(second)?;
        if first > second {
            return Err(ProofError::Shrinks { first, second });
        }
        let mut proof = Vec::new();
        if first > 0 && first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeTooLarge {
                size,
                len: self.len(),
            });
        }
        Ok(())
    }

    /// `MTH(D[start:end])`, for `start < end <= len`.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][(start / n) as usize];
        }
        let k = split(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// `PATH(m, D[start:end])`, appended to `out` from the leaf up.
    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// `SUBPROOF(m, D[start:end], b)`, appended to `out`.
    fn subproof(&self, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !b {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, b, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// The largest power of two smaller than `n` (for `n > 1`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, by `proof` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Verifies that the tree of `second` leaves with root `second_root` extends the
/// tree of `first` leaves with root `first_root`, by `proof` (RFC 9162 section
/// 2.1.4.2; any tree extends the empty one, and a tree extends itself only with an
/// empty proof).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}
