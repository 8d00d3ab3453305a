//! Named WAN profiles: where each party of the default network sits, and the
//! one-way delay, jitter and loss of every link between two sites.
//!
//! Delays are one way; a round trip between two sites costs twice the link's delay
//! (the emulator applies a link's delay in each direction). The figures are typical
//! of public cloud backbones: 5-10 ms one way between EU regions (10-20 ms round
//! trip), 40-45 ms EU to US east, 80-90 ms EU to Singapore, 110 ms US east to
//! Singapore. Parties at the same site (the coordinator and node-1 in
//! `eu-central-sov`, or the client beside the coordinator) reach each other at once.

use std::fmt;
use std::time::Duration;

/// A place parties run: one of the default network's regions.
pub type Site = &'static str;

/// One link's behaviour in each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way delay.
    pub delay: Duration,
    /// Each packet's delay is `delay` plus a uniform draw in `[0, jitter]`; packets
    /// of one link keep their order (as on a real path, unlike netem's reordering
    /// jitter, which TCP would read as loss).
    pub jitter: Duration,
    /// Probability that a packet is dropped, in `[0, 1)`.
    pub loss: f64,
}

impl Link {
    /// A link with no delay, jitter or loss (two parties at one site).
    pub const LOCAL: Link = Link {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
    };
}

/// A named latency matrix between sites, with the coordinator's (and the client's)
/// site.
#[derive(Clone, Debug, PartialEq)]
pub struct WanProfile {
    /// Its name (`eu-us-ap`, ...).
    pub name: &'static str,
    /// Where the coordinators and the clients (the bench's load, the drills' load,
    /// the ceremony) run.
    pub coordinator_site: Site,
    /// `(a, b, one-way delay in ms)`, symmetric; pairs not listed are an error.
    delays_ms: &'static [(Site, Site, f64)],
    /// Jitter as a fraction of each link's delay.
    jitter_fraction: f64,
    /// Loss on every link between two different sites.
    loss: f64,
}

/// The sites of the default network (testnet/src/spec.rs) and their one-way delays.
const EU_US_AP: &[(Site, Site, f64)] = &[
    ("eu-central-sov", "eu-west-sov", 6.0),
    ("eu-central-sov", "eu-onprem", 5.0),
    ("eu-west-sov", "eu-onprem", 9.0),
    ("eu-central-sov", "us-east", 45.0),
    ("eu-west-sov", "us-east", 40.0),
    ("eu-onprem", "us-east", 45.0),
    ("eu-central-sov", "ap-southeast", 85.0),
    ("eu-west-sov", "ap-southeast", 90.0),
    ("eu-onprem", "ap-southeast", 85.0),
    ("us-east", "ap-southeast", 110.0),
];

/// Every named profile.
pub const PROFILES: &[WanProfile] = &[
    WanProfile {
        name: "eu-us-ap",
        coordinator_site: "eu-central-sov",
        delays_ms: EU_US_AP,
        jitter_fraction: 0.05,
        loss: 0.0,
    },
    WanProfile {
        name: "eu-us-ap-loss1",
        coordinator_site: "eu-central-sov",
        delays_ms: EU_US_AP,
        jitter_fraction: 0.05,
        loss: 0.01,
    },
];

/// Why a profile was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// No profile has that name.
    #[error("no WAN profile {name:?}; profiles: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The known names.
        known: String,
    },
    /// A party sits at a site the profile has no delays for.
    #[error("WAN profile {profile} has no delay between {a} and {b}")]
    NoLink {
        /// The profile.
        profile: &'static str,
        /// One site.
        a: String,
        /// The other.
        b: String,
    },
}

impl WanProfile {
    /// The profile called `name`.
    pub fn named(name: &str) -> Result<&'static WanProfile, ProfileError> {
        PROFILES
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ProfileError::Unknown {
                name: name.into(),
                known: PROFILES
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The link between sites `a` and `b` (either order).
    pub fn link(&self, a: &str, b: &str) -> Result<Link, ProfileError> {
        if a == b {
            return Ok(Link::LOCAL);
        }
        let ms = self
            .delays_ms
            .iter()
            .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
            .map(|(_, _, ms)| *ms)
            .ok_or_else(|| ProfileError::NoLink {
                profile: self.name,
                a: a.into(),
                b: b.into(),
            })?;
        Ok(Link {
            delay: Duration::from_secs_f64(ms / 1e3),
            jitter: Duration::from_secs_f64(ms * self.jitter_fraction / 1e3),
            loss: self.loss,
        })
    }

    /// The round trip the profile sets between `a` and `b`, without jitter.
    pub fn rtt(&self, a: &str, b: &str) -> Result<Duration, ProfileError> {
        Ok(self.link(a, b)?.delay * 2)
    }
}

impl fmt::Display for WanProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (coordinator in {}, jitter {:.0}% of each delay, loss {:.1}%)",
            self.name,
            self.coordinator_site,
            self.jitter_fraction * 100.0,
            self.loss * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_default_regions_has_a_link_in_every_profile() {
        let regions = crate::spec::NetworkSpec::default_five_regions()
            .nodes
            .iter()
            .map(|n| n.region.clone())
            .collect::<Vec<_>>();
        for p in PROFILES {
            for a in &regions {
                for b in &regions {
                    let link = p.link(a, b).expect("link");
                    assert_eq!(link.delay.is_zero(), a == b, "{} {a} {b}", p.name);
                }
            }
        }
    }

    #[test]
    fn an_unknown_profile_names_the_known_ones() {
        let err = WanProfile::named("moon").expect_err("unknown");
        assert!(err.to_string().contains("eu-us-ap"), "{err}");
    }
}
