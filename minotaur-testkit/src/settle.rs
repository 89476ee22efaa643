//! Waiting for a cluster to settle after a fault.
//!
//! Minotaur's guarantees hold for one fault at a time: a second crash
//! before re-replication caught up can lose the games whose only copy was
//! on the crashed nodes. A test that injects faults one after another waits
//! for [`TestCluster::settled`] between them, the way an operator waits for
//! a green status page before restarting the next node.

use crate::cluster::{ClusterError, TestCluster};
use crate::wait::WaitError;
use minotaur_cluster::{MemberId, Node};
use minotaur_core::GameId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl TestCluster {
    /// Waits, up to `timeout`, until the cluster is settled; returns how
    /// long that took.
    ///
    /// Settled means: every running node sees exactly the running nodes,
    /// every game runs (or is passive) on exactly one node and every node's
    /// registry names
    /// that node as its owner; with majority fencing on, every node counts
    /// exactly the running nodes as voters, holds its lease and confirms no
    /// game ([`Node::vote`]); and (with replication on and two nodes or
    /// more) every game has a copy on another node that could restart it
    /// from there now. Then any single node may crash, or leave, without a
    /// game being lost.
    ///
    /// On timeout the error says what was last seen unsettled and what
    /// every node knows of the game concerned.
    ///
    /// ```
    /// use minotaur_testkit::TestCluster;
    /// use std::time::Duration;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = TestCluster::builder().nodes(3).in_memory().start().await?;
    /// let players = vec!["ann".into(), "bob".into()];
    /// let game = cluster.engine("n1")?.create_game("ABCD", players).await?;
    /// cluster.settled(Duration::from_secs(10)).await?;
    /// // One crash now loses nothing.
    /// let host = cluster.where_is(game.id).unwrap_or_default();
    /// cluster.kill_node(&host).await?;
    /// cluster.settled(Duration::from_secs(10)).await?;
    /// assert!(cluster.where_is(game.id).is_some());
    /// cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn settled(&self, timeout: Duration) -> Result<Duration, ClusterError> {
        let started = Instant::now();
        self.await_full_membership().await?;
        let left = timeout.saturating_sub(started.elapsed());
        let waited = self
            .eventually("the cluster to settle", left, || {
                let nodes = self.running();
                async move {
                    unsettled(&nodes)
                        .await
                        .map_or(Ok(()), |(seen, _)| Err(seen))
                }
            })
            .await;
        match waited {
            Ok(()) => Ok(started.elapsed()),
            Err(ClusterError::Wait(WaitError::Timeout {
                what,
                waited,
                mut last_seen,
            })) => {
                let nodes = self.running();
                if let Some((_, Some(id))) = unsettled(&nodes).await {
                    last_seen += &format!("\nwhat each node knows of game {id}:\n");
                    for node in &nodes {
                        last_seen += &node.explain(id).await;
                    }
                }
                Err(ClusterError::Wait(WaitError::Timeout {
                    what,
                    waited,
                    last_seen,
                }))
            }
            Err(e) => Err(e),
        }
    }

    fn running(&self) -> Vec<Arc<Node>> {
        self.nodes()
            .iter()
            .filter_map(|n| self.node(n).ok())
            .collect()
    }
}

/// With majority fencing on, a node whose vote has not settled: it counts
/// other voters than the running nodes, still admits one, holds no lease,
/// or still confirms games it took over.
fn unsettled_vote(nodes: &[Arc<Node>]) -> Option<String> {
    let running: BTreeSet<MemberId> = nodes.iter().map(|n| n.id().clone()).collect();
    for node in nodes {
        let vote = node.vote();
        if !vote.fencing {
            continue;
        }
        let voters: BTreeSet<MemberId> = vote.voters.iter().cloned().collect();
        let names =
            |set: &[MemberId]| -> Vec<String> { set.iter().map(|m| m.to_string()).collect() };
        if voters != running || !vote.pending.is_empty() {
            return Some(format!(
                "{} counts voters {:?} and admits {:?}",
                node.name(),
                names(&vote.voters),
                names(&vote.pending)
            ));
        }
        if !vote.holds_lease {
            return Some(format!("{} holds no lease", node.name()));
        }
        if vote.confirming > 0 {
            return Some(format!(
                "{} still confirms {} games",
                node.name(),
                vote.confirming
            ));
        }
    }
    None
}

/// What keeps `nodes`, the running members of a cluster, from being
/// settled as [`TestCluster::settled`] defines it (membership aside), or
/// `None` once they are. For clusters the testkit did not start, such as a
/// demo's own nodes.
pub async fn unsettled_among(nodes: &[Arc<Node>]) -> Option<String> {
    unsettled(nodes).await.map(|(seen, _)| seen)
}

/// The first thing found unsettled, and the game it concerns if one does.
async fn unsettled(nodes: &[Arc<Node>]) -> Option<(String, Option<GameId>)> {
    // A passive game is held by its owner as much as a running one.
    let mut hosts: HashMap<GameId, Vec<&Node>> = HashMap::new();
    for node in nodes {
        for id in node.hosted().into_iter().chain(node.passive().await) {
            hosts.entry(id).or_default().push(node);
        }
    }
    if let Some((id, h)) = hosts.iter().find(|(_, h)| h.len() > 1) {
        let names: Vec<&str> = h.iter().map(|n| n.name()).collect();
        return Some((format!("game {id} runs on {names:?}"), Some(*id)));
    }
    for node in nodes {
        let regs = node.registry().all();
        for reg in &regs {
            match hosts.get(&reg.id) {
                Some(h) if h[0].id() == &reg.owner => {}
                other => {
                    let seen = format!(
                        "{} registers game {} to {}, it runs on {:?}",
                        node.name(),
                        reg.id,
                        reg.owner,
                        other.map(|h| h[0].name())
                    );
                    return Some((seen, Some(reg.id)));
                }
            }
        }
        if regs.len() != hosts.len() {
            let registered: HashSet<GameId> = regs.iter().map(|r| r.id).collect();
            let missing = hosts.keys().find(|id| !registered.contains(id)).copied();
            let seen = format!(
                "{} registers {} games, {} run",
                node.name(),
                regs.len(),
                hosts.len()
            );
            return Some((seen, missing));
        }
    }
    if let Some(seen) = unsettled_vote(nodes) {
        return Some((seen, None));
    }
    let replicated = nodes.len() >= 2 && nodes.iter().all(|n| n.config().replication_factor > 0);
    if !replicated {
        return None;
    }
    if let Some(node) = nodes.iter().find(|n| n.unreplicated() > 0) {
        let seen = format!(
            "{} runs {} games without a copy on a member that is up",
            node.name(),
            node.unreplicated()
        );
        return Some((seen, None));
    }
    let mut copies: HashSet<(GameId, MemberId)> = HashSet::new();
    for node in nodes {
        copies.extend(node.restartable_copies().await);
    }
    let bare = hosts
        .iter()
        .find(|(id, h)| !copies.contains(&(**id, h[0].id().clone())));
    bare.map(|(id, h)| {
        let seen = format!(
            "game {id} on {} has no copy another node could restart it from",
            h[0].name()
        );
        (seen, Some(*id))
    })
}
