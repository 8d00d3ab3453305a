//! A WAN testbed on one machine: every node and coordinator of a local network
//! runs in its own network namespace (`ip netns`), and the packets between them
//! cross a link emulator that gives each pair of sites the one-way delay, jitter
//! and loss of a named [`WanProfile`] ([`profile`]).
//!
//! Each party's namespace holds one TUN device with the party's address on a
//! private /24 of the benchmarking range 198.18.0.0/15 (RFC 2544), which no real
//! network routes; this process (the "host": the clients, the ceremony, the probes)
//! gets one such device in its own namespace, at the coordinator's site. The
//! [`emulator`] holds the other end of every device. Set-up needs root (network
//! namespaces) and iproute2; [`Testbed::create`] says clearly which is missing.
//!
//! Namespaces are named `qwan-<pid>-<party>`. [`Testbed`] deletes its own when
//! dropped (the TUN devices vanish with the emulator), and every new testbed first
//! deletes those whose process no longer runs, so an interrupted run (SIGKILL,
//! a crash) leaves nothing behind for long.

pub mod emulator;
pub mod profile;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{anyhow, bail, Context};

pub use profile::{Link, Site, WanProfile, PROFILES};

use emulator::{Emulator, Port};

/// The prefix of every namespace a testbed creates.
pub const NETNS_PREFIX: &str = "qwan-";

/// The name the host (this process's own namespace) has among the parties.
pub const HOST: &str = "host";

/// One party of the testbed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// Its name (a node id, a coordinator name, or [`HOST`]).
    pub name: String,
    /// Its site (a region of the profile).
    pub site: String,
    /// Its network namespace; `None` for the host.
    pub netns: Option<String>,
    /// Its address.
    pub addr: Ipv4Addr,
}

/// A set-up testbed: namespaces, TUN devices and the running emulator.
#[derive(Debug)]
pub struct Testbed {
    /// The profile it emulates.
    pub profile: WanProfile,
    parties: BTreeMap<String, Party>,
    /// Each party's port in the emulator.
    ports: BTreeMap<String, usize>,
    emulator: Option<Emulator>,
}

impl Testbed {
    /// Sets up a namespace per party (`(name, site)`), plus the host at the
    /// coordinator's site, and starts the emulator.
    pub fn create(profile: &WanProfile, parties: &[(String, String)]) -> anyhow::Result<Self> {
        preflight()?;
        remove_leftovers();
        let pid = std::process::id();
        let subnet = free_subnet(pid)?;
        let mut all: Vec<Party> = Vec::new();
        for (i, (name, site)) in parties.iter().enumerate() {
            // Fails early for a region the profile has no delays for.
            profile.link(site, profile.coordinator_site)?;
            all.push(Party {
                name: name.clone(),
                site: site.clone(),
                netns: Some(format!("{NETNS_PREFIX}{pid}-{name}")),
                addr: Ipv4Addr::new(198, subnet.0, subnet.1, u8::try_from(i + 1)?),
            });
        }
        all.push(Party {
            name: HOST.into(),
            site: profile.coordinator_site.to_string(),
            netns: None,
            addr: Ipv4Addr::new(198, subnet.0, subnet.1, 254),
        });
        let ports: Vec<Port> = all
            .iter()
            .enumerate()
            .map(|(i, p)| Port {
                ifname: format!("qw{}-{i}", pid % 10_000_000),
                addr: p.addr,
            })
            .collect();
        let links = all
            .iter()
            .map(|a| {
                all.iter()
                    .map(|b| profile.link(&a.site, &b.site))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut testbed = Self {
            profile: profile.clone(),
            parties: all.iter().map(|p| (p.name.clone(), p.clone())).collect(),
            ports: all
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect(),
            emulator: None,
        };
        // From here on, dropping `testbed` removes whatever was made.
        testbed.emulator = Some(Emulator::start(ports.clone(), links)?);
        for (party, port) in all.iter().zip(&ports) {
            let dev = port.ifname.as_str();
            let cidr = format!("{}/24", party.addr);
            match &party.netns {
                Some(ns) => {
                    ip(&["netns", "add", ns])?;
                    ip(&["link", "set", dev, "netns", ns])?;
                    ip(&["-n", ns, "link", "set", "lo", "up"])?;
                    ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
                    ip(&["-n", ns, "link", "set", dev, "up"])?;
                }
                None => {
                    ip(&["addr", "add", &cidr, "dev", dev])?;
                    ip(&["link", "set", dev, "up"])?;
                }
            }
        }
        Ok(testbed)
    }

    /// The party called `name`.
    pub fn party(&self, name: &str) -> anyhow::Result<&Party> {
        self.parties
            .get(name)
            .ok_or_else(|| anyhow!("no party {name} in the WAN testbed"))
    }

    /// Every party, the host included.
    pub fn parties(&self) -> impl Iterator<Item = &Party> {
        self.parties.values()
    }

    /// Cuts party `name` off from every other party (`true`: every packet from or
    /// to it is dropped) or joins it again (`false`).
    pub fn set_partitioned(&self, name: &str, cut: bool) -> anyhow::Result<()> {
        let port = *self
            .ports
            .get(name)
            .ok_or_else(|| anyhow!("no party {name} in the WAN testbed"))?;
        self.emulator
            .as_ref()
            .ok_or_else(|| anyhow!("the WAN testbed is torn down"))?
            .set_partitioned(port, cut)
    }

    /// The emulator's packet counts.
    pub fn counters(&self) -> Option<&emulator::Counters> {
        self.emulator.as_ref().map(Emulator::counters)
    }

    /// Stops the emulator and deletes the namespaces (also done on drop).
    pub fn teardown(&mut self) {
        self.emulator = None;
        for party in self.parties.values() {
            if let Some(ns) = &party.netns {
                let _ = ip(&["netns", "del", ns]);
            }
        }
        self.parties.clear();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why this machine cannot host a testbed, if it cannot: `ip` missing, not root,
/// or no TUN device.
pub fn unavailable_reason() -> Option<String> {
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => return Some("the `ip` command (iproute2) is not installed; install iproute2".into()),
    }
    let root = {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user.
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    if !root {
        return Some(
            "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root"
                .into(),
        );
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing: the kernel has no TUN support (CONFIG_TUN)".into());
    }
    None
}

fn preflight() -> anyhow::Result<()> {
    if let Some(why) = unavailable_reason() {
        bail!("cannot set up the WAN testbed: {why}");
    }
    // Creating a namespace is the step most often refused (a container without
    // CAP_SYS_ADMIN, a seccomp profile): try it once and say so clearly.
    let probe = format!("{NETNS_PREFIX}{}-probe", std::process::id());
    ip(&["netns", "add", &probe]).map_err(|e| {
        anyhow!("cannot set up the WAN testbed: network namespaces cannot be made here ({e})")
    })?;
    ip(&["netns", "del", &probe])?;
    Ok(())
}

/// Deletes namespaces of earlier testbeds whose process no longer runs.
pub fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The namespaces of this machine whose name starts with [`NETNS_PREFIX`] and the
/// process id `pid`.
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let prefix = format!("{NETNS_PREFIX}{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Two octets for a 198.B.C.0/24 subnet in 198.18.0.0/15 that no route of this
/// namespace uses yet, starting from one derived from `pid`, so that testbeds of
/// two processes do not collide.
fn free_subnet(pid: u32) -> anyhow::Result<(u8, u8)> {
    let routes = Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for k in 0..512u32 {
        let n = (pid + k) % 512;
        let (b, c) = (18 + (n / 256) as u8, (n % 256) as u8);
        if !routes.contains(&format!("198.{b}.{c}.")) {
            return Ok((b, c));
        }
    }
    bail!("no free /24 in 198.18.0.0/15 for the WAN testbed")
}
