//! Making and remaking key shares: a trusted dealer ([`dealer`]), distributed key
//! generation ([`dkg`]), refreshing shares under the same group key ([`refresh`]) and
//! repairing a lost share ([`repair`]).

pub mod dealer;
pub mod dkg;
pub mod refresh;
pub mod repair;

pub use dealer::{Dealer, DealtKey};
pub use dkg::{Dkg, DkgMode};
pub use refresh::Refresh;
pub use repair::Repair;
