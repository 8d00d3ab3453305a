//! The docker-compose testnet: five node containers, each alone on its own network
//! segment, two coordinators on every segment, and one-shot setup and key-ceremony
//! containers (docs/testnet.md).
//!
//! [`layout`] is the single source of truth: [`yaml`] renders
//! `testnet/docker-compose.yml` from it (`compose-file`; a test checks the committed
//! file still matches), [`setup`] writes the configs for the same addresses inside
//! the `setup` container (`compose-setup`), and [`keys`] runs the key ceremony inside
//! the `keys` container (`compose-keys`). On the host, [`driver`] drives the running
//! network for the drills through the docker command line in [`docker`], and
//! [`rogue`] puts a rogue in a node's place for the malicious-coordinator drill.

pub mod docker;
pub mod driver;
pub mod keys;
pub mod layout;
pub mod rogue;
pub mod setup;
pub mod yaml;

pub use docker::DockerError;
pub use driver::ComposeNetwork;
pub use keys::{create_keys, CeremonyCommandError, KEY_CEREMONY, POLICY};
pub use layout::{ComposeCoordinator, ComposeLayout, ComposeNode};
pub use setup::setup;
