//! Round trips from this process to each node, timed as the coordinator's calls
//! are: an authenticated unary call with the coordinator's identity on an
//! established connection. On a WAN testbed this process sits at the
//! coordinator's site, so these are the coordinator's round trips to the nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quorate_transport::identity::Role;
use quorate_wire::pb;

use super::LocalNetwork;

impl LocalNetwork {
    /// The median of `samples` round trips to each node (after one call that opens
    /// the connection), by node id.
    pub async fn node_rtts(&self, samples: usize) -> anyhow::Result<BTreeMap<String, Duration>> {
        let tls = self.tls_paths(Role::Coordinator, "coordinator").load()?;
        let mut rtts = BTreeMap::new();
        for node in &self.nodes {
            let channel =
                tls.node_channel(&node.endpoint, &node.spec.id, Duration::from_secs(5))?;
            let mut client = pb::node_client::NodeClient::new(channel);
            client.get_info(pb::GetInfoRequest {}).await?;
            let mut times = Vec::with_capacity(samples.max(1));
            for _ in 0..samples.max(1) {
                let started = Instant::now();
                client.get_info(pb::GetInfoRequest {}).await?;
                times.push(started.elapsed());
            }
            times.sort();
            rtts.insert(node.spec.id.clone(), times[times.len() / 2]);
        }
        Ok(rtts)
    }
}
