//! Membership: who is in the cluster as this node sees it, and the events
//! callers can subscribe to.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's identity: its name plus the incarnation of the process that
/// runs it, so a node restarted under the same name is a new member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId {
    /// The node's name.
    pub name: String,
    /// Random per start of the node.
    pub incarnation: u64,
}

impl MemberId {
    /// Builds an id.
    pub fn new(name: impl Into<String>, incarnation: u64) -> Self {
        MemberId {
            name: name.into(),
            incarnation,
        }
    }
}

impl std::str::FromStr for MemberId {
    type Err = String;

    /// Parses what [`Display`](fmt::Display) writes: `name.incarnation`,
    /// the incarnation in hex.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, incarnation) = s
            .rsplit_once('.')
            .ok_or_else(|| format!("{s:?} is not name.incarnation"))?;
        let incarnation = u64::from_str_radix(incarnation, 16)
            .map_err(|e| format!("{s:?}: bad incarnation: {e}"))?;
        Ok(MemberId::new(name, incarnation))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:016x}", self.name, self.incarnation)
    }
}

/// One node's part in majority fencing, as it last published it (about
/// every 50 ms): see [`Node::vote`](crate::Node::vote).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vote {
    /// Whether majority fencing is on (see
    /// [`SplitPolicy`](crate::SplitPolicy)).
    pub fencing: bool,
    /// The members whose grants make a majority here, this one included
    /// (members fenced and away are left out).
    pub voters: Vec<MemberId>,
    /// Members known here that wait to be admitted to the vote.
    pub pending: Vec<MemberId>,
    /// Whether this node holds its lease from a majority, so it may
    /// acknowledge writes.
    pub holds_lease: bool,
    /// Games owned here that wait for confirmation that no other member
    /// took them over (after this node's lease lapsed, or a takeover).
    pub confirming: usize,
}

/// A member's state as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Takes sessions.
    Up,
    /// Draining: hands its sessions over, takes no new ones.
    Leaving,
    /// Gone: crashed, cut off, or left.
    Down,
}

/// Why a member was marked down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Its link closed.
    LinkClosed,
    /// Nothing heard from it within the failure timeout.
    Timeout,
    /// It left gracefully.
    Left,
    /// A newer incarnation of the same node joined.
    Replaced,
}

/// Something that changed in the cluster.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    /// A member joined (or came back).
    MemberUp(MemberId),
    /// A member started draining.
    MemberLeaving(MemberId),
    /// A member is gone.
    MemberDown(MemberId, DownReason),
    /// Sessions of a down member were restarted here from their replicas.
    FailedOver {
        /// The member that went down.
        from: MemberId,
        /// Sessions restarted here.
        sessions: usize,
        /// How long after this node last heard from the member: how long
        /// those games were out of reach, as their players saw it.
        after: std::time::Duration,
    },
    /// This node, leaving, handed all its games over.
    HandedOver {
        /// Games handed over (running and passive).
        games: usize,
        /// Since the leave began.
        took: std::time::Duration,
    },
    /// This node lost its lease from a majority (a split, a stall): it
    /// acknowledges no write until it holds one again.
    QuorumLost,
    /// This node holds its lease again and confirmed the games it kept:
    /// it acknowledges writes again.
    QuorumRegained,
    /// Two sessions of one game met (e.g. after a split healed); the one
    /// with the higher version was kept everywhere.
    ConflictResolved {
        /// The game.
        id: minotaur_core::GameId,
        /// Owner of the kept copy.
        winner: MemberId,
        /// Owner of the dropped copy.
        loser: MemberId,
        /// The dropped copy's state, when this node hosted it.
        loser_state: Option<Box<minotaur_core::Game>>,
    },
}
