//! What every in-process test cluster shares, whatever its nodes run: a
//! cookie of its own, the links (TCP or the in-memory network), the fault
//! verbs, and the record of every node started, for the log dump of a
//! failing test. [`TestCluster`](crate::TestCluster) (Minotaur nodes) and
//! [`RactorMesh`](crate::RactorMesh) (plain ractor_cluster nodes) are both
//! built on it.

use crate::logs;
use crate::network::MemoryNetwork;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Which links the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Real TCP on 127.0.0.1, ports chosen by the OS.
    Tcp,
    /// In-memory streams with fault injection.
    Memory,
}

/// A fault was asked of a cluster whose links are TCP.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("fault injection needs the in-memory links (the builder's in_memory())")]
pub struct NeedsMemoryLink;

pub(crate) struct Fabric {
    /// Random per cluster, so clusters running in parallel in one test
    /// binary never link, even with the same node names.
    pub cookie: String,
    pub link: LinkKind,
    pub network: MemoryNetwork,
    /// (name, log id) of every node ever started, for the log dump.
    started: Mutex<Vec<(String, String)>>,
    /// Set by the cluster's `shutdown`: a cluster dropped without it belongs
    /// to a test that ended early, most likely with an error.
    pub shut_down: bool,
}

impl Fabric {
    pub fn new(link: LinkKind) -> Self {
        logs::install();
        Fabric {
            cookie: format!("test-{:032x}", rand_u128()),
            link,
            network: MemoryNetwork::default(),
            started: Mutex::new(Vec::new()),
            shut_down: false,
        }
    }

    /// Records a node started under `log_id` (its tracing span's `node_id`).
    pub fn started(&self, name: &str, log_id: &str) {
        lock(&self.started).push((name.to_string(), log_id.to_string()));
    }

    fn memory(&self) -> Result<&MemoryNetwork, NeedsMemoryLink> {
        match self.link {
            LinkKind::Memory => Ok(&self.network),
            LinkKind::Tcp => Err(NeedsMemoryLink),
        }
    }

    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), NeedsMemoryLink> {
        self.memory()?.partition(&[a, b]);
        Ok(())
    }

    pub fn cut_one_way(&self, from: &str, to: &str) -> Result<(), NeedsMemoryLink> {
        self.memory()?.cut_one_way(from, to);
        Ok(())
    }

    pub fn stall(&self, a: &str, b: &str) -> Result<(), NeedsMemoryLink> {
        self.memory()?.stall(a, b);
        Ok(())
    }

    pub fn set_latency(
        &self,
        from: &str,
        to: &str,
        latency: Duration,
    ) -> Result<(), NeedsMemoryLink> {
        self.memory()?.set_latency(from, to, latency);
        Ok(())
    }

    pub fn heal(&self) -> Result<(), NeedsMemoryLink> {
        self.memory()?.heal();
        Ok(())
    }

    /// Prints every node's captured lines if the test is failing: it either
    /// panics or returns its error before calling `shutdown` (the test
    /// harness shows the output only for failing tests).
    pub fn dump_if_failing(&self) {
        if std::thread::panicking() || !self.shut_down {
            let ids = std::mem::take(&mut *lock(&self.started));
            let refs: Vec<(&str, &str)> =
                ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            eprintln!("{}", logs::dump(&refs));
        }
    }
}

pub(crate) fn rand_u128() -> u128 {
    use rand::Rng;
    rand::rng().random()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
