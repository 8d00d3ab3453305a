//! The fuzz targets of Quorate's decoders, for two harnesses: the libFuzzer binaries
//! in `fuzz_targets/` (coverage-guided, `cargo fuzz run <target>`), and the stable
//! seeded driver (`proto/fuzzing/mod.rs`), whose tests in `proto/keys`, `node` and
//! `coordinator` include these modules by path and run the same targets on every
//! `cargo nextest run`. See docs/security.md.

pub mod coordinator;
pub mod node;
pub mod shared;
pub mod target;

use std::cell::RefCell;

pub use target::Target;

/// Every target's name: each is a libFuzzer binary `fuzz_targets/<name>.rs` and a seed
/// corpus `corpus/<name>/`.
pub fn names() -> impl Iterator<Item = &'static str> {
    shared::NAMES
        .iter()
        .chain(node::NAMES)
        .chain(coordinator::NAMES)
        .copied()
}

/// The target called `name`, built afresh.
pub fn target(name: &str) -> Option<Target> {
    shared::target(name)
        .or_else(|| node::target(name))
        .or_else(|| coordinator::target(name))
}

thread_local! {
    static CURRENT: RefCell<Option<Target>> = const { RefCell::new(None) };
}

/// One libFuzzer iteration of target `name`: builds the target on the first call and
/// runs its check on `data`. A broken property panics, which libFuzzer reports as a
/// crash with the input saved.
pub fn run(name: &str, data: &[u8]) {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let t = current.get_or_insert_with(|| {
            target(name).unwrap_or_else(|| panic!("no fuzz target called {name}"))
        });
        (t.check)(data);
    });
}
