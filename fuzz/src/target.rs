//! One fuzz target: a decoder, the property it keeps, and the valid encodings the
//! mutations start from. The libFuzzer binaries (`fuzz/fuzz_targets/`) and the
//! stable driver's tests (`proto/fuzzing/mod.rs`) run the same [`Target`]s, so the
//! two harnesses cannot drift apart.

#![allow(dead_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// Default case count of the stable driver's smoke pass for decoders that do no curve
/// arithmetic (protobuf, JSON, TOML).
pub const CHEAP: u64 = 20_000;
/// The same for decoders that do curve arithmetic.
pub const CRYPTO: u64 = 2_000;

/// Runs a decoder on one input and returns whether it accepted it. Returns `false`
/// for a clean refusal and panics when a property is broken (the decoder panicked, a
/// config error came back as another kind of error, something forged verified).
pub type Check = Box<dyn Fn(&[u8]) -> bool>;

/// A decoder under fuzzing.
pub struct Target {
    /// File-safe name: the libFuzzer binary's and its seed corpus directory's.
    pub name: &'static str,
    /// Valid encodings to mutate. The first [`Target::must_accept`] of them must be
    /// accepted by [`Target::check`]; the rest (another ciphersuite's encodings, a
    /// config whose files do not exist here) are starting points only.
    pub corpus: Vec<Vec<u8>>,
    pub must_accept: usize,
    /// Whether the committed seed corpus stays accepted when the target is built
    /// again: false when acceptance depends on fresh randomness of the target's
    /// context (a signature share is genuine only for the nonces it was made with).
    pub seeds_stay_valid: bool,
    /// The stable driver's default case count.
    pub smoke_cases: u64,
    pub check: Check,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("corpus", &self.corpus.len())
            .field("must_accept", &self.must_accept)
            .finish_non_exhaustive()
    }
}

/// The repository's `fuzz/` directory, found from the manifest directory of the crate
/// that includes this file (a workspace crate or the fuzz crate itself).
pub fn fuzz_dir() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        if dir.join("fuzz/src/target.rs").is_file() {
            return dir.join("fuzz");
        }
        if !dir.pop() {
            panic!("no fuzz/src/target.rs above {}", env!("CARGO_MANIFEST_DIR"));
        }
    }
}

/// Name of the `i`th committed seed file of a target: `valid-NN` for the entries the
/// target must accept, `start-NN` for the others.
pub fn seed_file_name(target: &Target, i: usize) -> String {
    if i < target.must_accept {
        format!("valid-{i:02}")
    } else {
        format!("start-{i:02}")
    }
}

/// Replaces `fuzz/corpus/<name>/` with the target's corpus.
pub fn write_seed_corpus(target: &Target) -> std::io::Result<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for (i, entry) in target.corpus.iter().enumerate() {
        std::fs::write(dir.join(seed_file_name(target, i)), entry)?;
    }
    Ok(dir)
}

/// Checks the committed seed corpus of `target` against the target: it exists, the
/// libFuzzer binary for it exists, and (unless its seeds depend on fresh randomness)
/// every `valid-NN` seed is still accepted. Returns a description of what is wrong.
pub fn check_committed_seeds(target: &Target) -> Result<(), String> {
    let root = fuzz_dir();
    let binary = root
        .join("fuzz_targets")
        .join(format!("{}.rs", target.name));
    let source = std::fs::read_to_string(&binary).map_err(|e| {
        format!(
            "{}: no libFuzzer target {}: {e}",
            target.name,
            binary.display()
        )
    })?;
    if !source.contains(&format!("\"{}\"", target.name)) {
        return Err(format!(
            "{} does not run target {}",
            binary.display(),
            target.name
        ));
    }
    let dir = root.join("corpus").join(target.name);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: no seed corpus {}: {e}", target.name, dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    seeds.sort();
    if seeds.len() != target.corpus.len() {
        return Err(format!(
            "{}: {} seeds committed, the target has {}",
            target.name,
            seeds.len(),
            target.corpus.len()
        ));
    }
    for seed in seeds {
        let name = seed.file_name().unwrap_or_default().to_string_lossy();
        if !name.starts_with("valid-") || !target.seeds_stay_valid {
            continue;
        }
        let bytes = std::fs::read(&seed).map_err(|e| format!("{}: {e}", seed.display()))?;
        if !(target.check)(&bytes) {
            return Err(format!(
                "{}: seed {} is no longer accepted",
                target.name,
                seed.display()
            ));
        }
    }
    Ok(())
}

/// The committed `valid-NN` seeds of target `name` (none if there are none yet). A
/// target whose property is "whatever verifies is one of the originals" counts these
/// among its originals: they were made by an earlier run of the same generator (with
/// other randomness) and are what libFuzzer starts from.
pub fn committed_valid_seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut seeds: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("valid-"))
        })
        .collect();
    seeds.sort();
    seeds
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}
