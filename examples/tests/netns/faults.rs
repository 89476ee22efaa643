//! The faults, one at a time: each is applied to one node, held, then
//! healed, and the cluster is given time to recover (every member up,
//! every game copied) before the next. One at a time is what the cluster's
//! guarantees cover with one backup copy per game.

use super::net::{Impairment, Network};
use super::nodes::NodeProcess;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::fmt;
use std::time::Duration;

/// What happens to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Delay, jitter, loss and reordering on its interface.
    Impaired,
    /// Cut off from every other node, both ways (the harness still
    /// reaches it).
    Partition,
    /// Hears nothing from the other nodes, while they still hear it.
    OneWay,
    /// Drops every packet, then is killed: a host that vanished, leaving
    /// its peers' connections open and unanswered. Restarted at heal.
    Vanish,
    /// SIGSTOP; SIGCONT at heal.
    Pause,
    /// SIGKILL; restarted at heal.
    Crash,
    /// SIGTERM: a graceful leave; restarted (re-joins) at heal.
    Leave,
}

const ALL: [Kind; 7] = [
    Kind::Impaired,
    Kind::Partition,
    Kind::OneWay,
    Kind::Vanish,
    Kind::Pause,
    Kind::Crash,
    Kind::Leave,
];

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: Kind,
    /// The node's index (from 1).
    pub node: usize,
    /// How long it is held before healing.
    pub hold: Duration,
    impairment: Impairment,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on n{} for {:?}", self.kind, self.node, self.hold)?;
        if self.kind == Kind::Impaired {
            let n = self.impairment;
            write!(
                f,
                " (delay {} ms ± {} ms, loss {} %, reorder {} %)",
                n.delay_ms, n.jitter_ms, n.loss_pct, n.reorder_pct
            )?;
        }
        Ok(())
    }
}

/// A fault on a random node of `hosts`, of `kind`, held `hold`.
pub fn fault(rng: &mut SmallRng, kind: Kind, hosts: usize, hold: Duration) -> Fault {
    Fault {
        kind,
        node: rng.random_range(1..=hosts),
        hold,
        impairment: Impairment {
            delay_ms: rng.random_range(5..60),
            jitter_ms: rng.random_range(0..20),
            loss_pct: rng.random_range(1..8),
            reorder_pct: rng.random_range(5..30),
        },
    }
}

/// The short schedule: every kind once, in a random order.
pub fn every_kind_once(rng: &mut SmallRng, hosts: usize, hold: Duration) -> Vec<Fault> {
    let mut kinds = ALL.to_vec();
    kinds.shuffle(rng);
    kinds
        .into_iter()
        .map(|kind| fault(rng, kind, hosts, hold))
        .collect()
}

/// A random fault for the long schedule, held 2 to 15 s.
pub fn any(rng: &mut SmallRng, hosts: usize) -> Fault {
    let kind = ALL[rng.random_range(0..ALL.len())];
    let hold = Duration::from_millis(rng.random_range(2_000..15_000));
    fault(rng, kind, hosts, hold)
}

/// The other hosts than `i`.
fn others(i: usize, hosts: usize) -> Vec<usize> {
    (1..=hosts).filter(|&j| j != i).collect()
}

/// Applies `fault`.
pub async fn apply(fault: &Fault, net: &Network, nodes: &mut [NodeProcess]) -> Result<(), String> {
    let i = fault.node;
    let hosts = nodes.len();
    let node = &mut nodes[i - 1];
    match fault.kind {
        Kind::Impaired => net.impair(i, fault.impairment),
        Kind::Partition => net.cut(i, &others(i, hosts), false),
        Kind::OneWay => net.cut(i, &others(i, hosts), true),
        Kind::Vanish => {
            net.blackhole(i)?;
            // Its peers' connections stay open: nothing is sent to close them.
            tokio::time::sleep(Duration::from_secs(1)).await;
            node.kill().await;
            Ok(())
        }
        Kind::Pause => node.signal(libc::SIGSTOP),
        Kind::Crash => {
            node.kill().await;
            Ok(())
        }
        Kind::Leave => node.terminate(Duration::from_secs(60)).await,
    }
}

/// Heals `fault`: the rules and delays go, a stopped node continues, a
/// node that is gone starts again (a new incarnation, joining its seeds).
pub async fn heal(
    fault: &Fault,
    net: &Network,
    nodes: &mut [NodeProcess],
    cookie: &str,
) -> Result<(), String> {
    let i = fault.node;
    let hosts = nodes.len();
    net.heal(i)?;
    let node = &mut nodes[i - 1];
    match fault.kind {
        Kind::Pause => node.signal(libc::SIGCONT),
        _ if !node.running() => node.start(net, hosts, cookie).await,
        _ => Ok(()),
    }
}
