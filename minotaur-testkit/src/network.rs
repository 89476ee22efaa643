//! The in-memory network: links between a test's nodes that pass through
//! [`link::pair`](crate::link::pair), so a test can partition, stall, cut
//! one way, or slow down any link, and heal it again.
//!
//! Fault rules are kept per ordered pair of node names and applied both to
//! links that exist and to links opened later (reconnects), so a partition
//! holds until [`MemoryNetwork::heal`].

use crate::link::{pair, Direction};
use futures::future::BoxFuture;
use minotaur_cluster::Connector;
use ractor::ActorRef;
use ractor_cluster::{ClusterBidiStream, NodeServerMessage};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Link {
    from: String,
    to: String,
    forward: Direction,
    backward: Direction,
}

#[derive(Default)]
struct State {
    /// addr -> (node name, its server)
    nodes: HashMap<String, (String, ActorRef<NodeServerMessage>)>,
    links: Vec<Link>,
    /// Ordered (from, to) pairs whose bytes are held.
    held: HashSet<(String, String)>,
    latency: HashMap<(String, String), Duration>,
}

impl State {
    fn direction(&self, from: &str, to: &str) -> Direction {
        let d = Direction::new();
        let key = (from.to_string(), to.to_string());
        d.set_held(self.held.contains(&key));
        if let Some(latency) = self.latency.get(&key) {
            d.set_latency(*latency);
        }
        d
    }

    fn reapply(&mut self) {
        self.links
            .retain(|l| !(l.forward.is_closed() && l.backward.is_closed()));
        for link in &self.links {
            for (dir, from, to) in [
                (&link.forward, &link.from, &link.to),
                (&link.backward, &link.to, &link.from),
            ] {
                let key = (from.clone(), to.clone());
                dir.set_held(self.held.contains(&key));
                dir.set_latency(self.latency.get(&key).copied().unwrap_or_default());
            }
        }
    }
}

/// The in-memory network of one test cluster. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

impl MemoryNetwork {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes node `name`'s server reachable at `addr`.
    pub fn attach(&self, addr: &str, name: &str, server: ActorRef<NodeServerMessage>) {
        self.lock()
            .nodes
            .insert(addr.to_string(), (name.to_string(), server));
    }

    /// Removes `addr` and closes every link of node `name`, as a crash would.
    pub fn detach(&self, addr: &str, name: &str) {
        let mut state = self.lock();
        state.nodes.remove(addr);
        for link in state
            .links
            .iter()
            .filter(|l| l.from == name || l.to == name)
        {
            link.forward.close();
            link.backward.close();
        }
        state.reapply();
    }

    /// Holds all bytes between nodes of different groups, both ways. Nodes
    /// not named keep their links.
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut state = self.lock();
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for x in a.iter() {
                    for y in b.iter() {
                        state.held.insert((x.to_string(), y.to_string()));
                        state.held.insert((y.to_string(), x.to_string()));
                    }
                }
            }
        }
        state.reapply();
    }

    /// Holds the bytes from `from` to `to` only.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        let mut state = self.lock();
        state.held.insert((from.to_string(), to.to_string()));
        state.reapply();
    }

    /// Holds bytes both ways between `a` and `b`: a silent stall, no EOF.
    pub fn stall(&self, a: &str, b: &str) {
        self.partition(&[&[a], &[b]]);
    }

    /// Delays bytes from `from` to `to` by `latency`.
    pub fn set_latency(&self, from: &str, to: &str, latency: Duration) {
        let mut state = self.lock();
        state
            .latency
            .insert((from.to_string(), to.to_string()), latency);
        state.reapply();
    }

    /// Removes every fault; held bytes flow again.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.held.clear();
        state.latency.clear();
        state.reapply();
    }

    /// Number of links currently open.
    pub fn open_links(&self) -> usize {
        let mut state = self.lock();
        state.reapply();
        state.links.len()
    }
}

fn name_of(member: &str) -> String {
    // A member id displays as "<name>.<incarnation>".
    member
        .rsplit_once('.')
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| member.to_string())
}

impl Connector for MemoryNetwork {
    fn connect(
        &self,
        from: &str,
        addr: &str,
    ) -> BoxFuture<'static, Result<Box<dyn ClusterBidiStream>, String>> {
        let result = (|| {
            let mut state = self.lock();
            let (to, server) = state
                .nodes
                .get(addr)
                .cloned()
                .ok_or_else(|| format!("no node listens at {addr}"))?;
            let from = name_of(from);
            let forward = state.direction(&from, &to);
            let backward = state.direction(&to, &from);
            let (client, server_end) = pair(&from, &to, forward.clone(), backward.clone());
            server
                .cast(NodeServerMessage::ConnectionOpenedExternal {
                    stream: server_end,
                    is_server: true,
                })
                .map_err(|e| format!("node at {addr} is gone: {e}"))?;
            state.links.push(Link {
                from,
                to,
                forward,
                backward,
            });
            Ok(client)
        })();
        Box::pin(async move { result })
    }
}
