//! [`DrillCtx`]: what every drill is given, the target network and the keys its
//! load signs with, and the helpers drills share (a load over some coordinators,
//! random victims, the local network for local-only drills).

use anyhow::{bail, Context};
use rand_core::{OsRng, RngCore};

use super::load::{Load, LoadKey};
use super::target::DrillTarget;
use crate::network::LocalNetwork;

/// The EU-policy key of both testnets.
pub const EU_KEY: &str = "eu-payments";

/// Everything a drill needs.
#[derive(Debug)]
pub struct DrillCtx {
    /// The network.
    pub target: Box<dyn DrillTarget>,
    /// Keys to sign with.
    pub keys: Vec<LoadKey>,
}

impl DrillCtx {
    /// Fetches every key's public key through the first coordinator.
    pub async fn new(target: Box<dyn DrillTarget>, key_ids: &[String]) -> anyhow::Result<Self> {
        let client = target.client(0)?;
        let mut keys = Vec::new();
        for key_id in key_ids {
            let public = client
                .public_key(key_id)
                .await
                .with_context(|| format!("GetPublicKey({key_id})"))?;
            keys.push(LoadKey {
                key_id: key_id.clone(),
                ciphersuite: quorate_wire::ciphersuite_from_pb(public.ciphersuite)?,
                public_key: public.public_key,
            });
        }
        Ok(Self { target, keys })
    }

    /// Starts the load over the coordinators `which` (all when empty).
    pub fn load(&self, which: &[usize], label: &str) -> anyhow::Result<Load> {
        let indices: Vec<usize> = if which.is_empty() {
            (0..self.target.coordinator_names().len()).collect()
        } else {
            which.to_vec()
        };
        let clients = indices
            .into_iter()
            .map(|i| {
                Ok((
                    i,
                    quorate_client::Client::new(&self.target.client_config(i)?)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Load::start(&clients, &self.keys, label))
    }

    /// Starts the load with clients that know every coordinator, as a service's
    /// clients do, coordinator `i`'s listing it first (so the load runs through
    /// each): a coordinator going away is failed over by the client library.
    pub fn load_with_failover(&self, label: &str) -> anyhow::Result<Load> {
        let count = self.target.coordinator_names().len();
        let configs = (0..count)
            .map(|i| self.target.client_config(i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let clients = (0..count)
            .map(|i| {
                let mut config = configs[i].clone();
                config.coordinators = (0..count)
                    .flat_map(|k| configs[(i + k) % count].coordinators.clone())
                    .collect();
                Ok((i, quorate_client::Client::new(&config)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Load::start(&clients, &self.keys, label))
    }

    /// `count` distinct node ids picked at random (so repeated runs cover different
    /// nodes).
    pub fn pick_nodes(&self, count: usize) -> Vec<String> {
        let mut ids = self.target.node_ids();
        // Fisher-Yates over the first `count` slots.
        for i in 0..count.min(ids.len()) {
            let j = i + (OsRng.next_u32() as usize) % (ids.len() - i);
            ids.swap(i, j);
        }
        ids.truncate(count);
        ids
    }

    /// The local network, for a drill that needs local processes.
    pub fn local(&mut self) -> anyhow::Result<&mut LocalNetwork> {
        match self.target.local_network() {
            Some(n) => Ok(n),
            None => bail!("this drill needs local processes"),
        }
    }
}
