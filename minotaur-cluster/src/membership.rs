//! Membership: who is in the cluster as this node sees it, and the events
//! callers can subscribe to.

use crate::protocol::RouterMsg;
use ractor::ActorRef;
use ractor_cluster::NodeSessionMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::broadcast;

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

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:016x}", self.name, self.incarnation)
    }
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
    },
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

/// One member as seen from here.
#[derive(Clone)]
pub struct Member {
    /// Its id.
    pub id: MemberId,
    /// Where it can be reached.
    pub addr: String,
    /// Up, leaving or down.
    pub status: MemberStatus,
    pub(crate) last_seen: Instant,
    pub(crate) router: Option<ActorRef<RouterMsg>>,
    pub(crate) session: Option<ActorRef<NodeSessionMessage>>,
}

/// What a completed handshake changed for its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Uplink {
    /// It was unknown, down, or in another state (up, leaving) before.
    NewlyUp,
    /// It was live over another link, which closed or is closing (both ends
    /// dialled at once): what was sent over that link may be lost.
    Relinked,
    /// Nothing: the same link again.
    Unchanged,
}

/// The members this node knows, itself included. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    this: MemberId,
    members: Arc<RwLock<BTreeMap<MemberId, Member>>>,
    events: broadcast::Sender<ClusterEvent>,
}

impl Membership {
    pub(crate) fn new(this: MemberId, addr: String) -> Self {
        let (events, _) = broadcast::channel(4096);
        let mut members = BTreeMap::new();
        members.insert(
            this.clone(),
            Member {
                id: this.clone(),
                addr,
                status: MemberStatus::Up,
                last_seen: Instant::now(),
                router: None,
                session: None,
            },
        );
        Membership {
            this,
            members: Arc::new(RwLock::new(members)),
            events,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<MemberId, Member>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<MemberId, Member>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's id.
    pub fn this(&self) -> &MemberId {
        &self.this
    }

    /// Subscribes to membership (and failover/conflict) events.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, event: ClusterEvent) {
        let _ = self.events.send(event);
    }

    /// Every member known, with its status.
    pub fn all(&self) -> Vec<(MemberId, MemberStatus)> {
        self.read()
            .values()
            .map(|m| (m.id.clone(), m.status))
            .collect()
    }

    /// Members that are up or leaving (this node included).
    pub fn live(&self) -> Vec<MemberId> {
        self.read()
            .values()
            .filter(|m| m.status != MemberStatus::Down)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Members that take new sessions (up, not leaving).
    pub fn up(&self) -> Vec<MemberId> {
        self.read()
            .values()
            .filter(|m| m.status == MemberStatus::Up)
            .map(|m| m.id.clone())
            .collect()
    }

    /// The status of `id`, if known.
    pub fn status(&self, id: &MemberId) -> Option<MemberStatus> {
        self.read().get(id).map(|m| m.status)
    }

    pub(crate) fn router(&self, id: &MemberId) -> Option<ActorRef<RouterMsg>> {
        self.read()
            .get(id)
            .filter(|m| m.status != MemberStatus::Down)
            .and_then(|m| m.router.clone())
    }

    pub(crate) fn addresses(&self) -> Vec<(MemberId, String, MemberStatus)> {
        self.read()
            .values()
            .map(|m| (m.id.clone(), m.addr.clone(), m.status))
            .collect()
    }

    /// Records a member reached over a live link. Returns what changed for
    /// it, and the older incarnations of the same name it replaces, if any.
    pub(crate) fn up_via(
        &self,
        id: MemberId,
        addr: String,
        leaving: bool,
        router: ActorRef<RouterMsg>,
        session: ActorRef<NodeSessionMessage>,
    ) -> (Uplink, Vec<MemberId>) {
        let status = if leaving {
            MemberStatus::Leaving
        } else {
            MemberStatus::Up
        };
        let mut members = self.write();
        let replaced: Vec<MemberId> = members
            .values()
            .filter(|m| m.id.name == id.name && m.id != id && m.status != MemberStatus::Down)
            .map(|m| m.id.clone())
            .collect();
        for old in &replaced {
            if let Some(m) = members.get_mut(old) {
                m.status = MemberStatus::Down;
                m.router = None;
            }
        }
        let (was, old_session) = match members.get(&id) {
            Some(m) => (Some(m.status), m.session.as_ref().map(|s| s.get_id())),
            None => (None, None),
        };
        let relinked = was.is_some_and(|s| s != MemberStatus::Down)
            && old_session.is_some_and(|s| s != session.get_id());
        members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                addr,
                status,
                last_seen: Instant::now(),
                router: Some(router),
                session: Some(session),
            },
        );
        drop(members);
        for old in &replaced {
            self.emit(ClusterEvent::MemberDown(old.clone(), DownReason::Replaced));
        }
        let newly_up = was != Some(status);
        if newly_up {
            self.emit(match status {
                MemberStatus::Leaving => ClusterEvent::MemberLeaving(id),
                _ => ClusterEvent::MemberUp(id),
            });
        }
        let change = if newly_up {
            Uplink::NewlyUp
        } else if relinked {
            Uplink::Relinked
        } else {
            Uplink::Unchanged
        };
        (change, replaced)
    }

    /// Notes that `id` was heard from.
    pub(crate) fn heard(&self, id: &MemberId) {
        if let Some(m) = self.write().get_mut(id) {
            m.last_seen = Instant::now();
        }
    }

    /// Marks `id` leaving; true if it was up.
    pub(crate) fn set_leaving(&self, id: &MemberId) -> bool {
        let changed = match self.write().get_mut(id) {
            Some(m) if m.status == MemberStatus::Up => {
                m.status = MemberStatus::Leaving;
                true
            }
            _ => false,
        };
        if changed {
            self.emit(ClusterEvent::MemberLeaving(id.clone()));
        }
        changed
    }

    /// Marks `id` down; returns its link's session (to close it) when it was
    /// not already down.
    pub(crate) fn set_down(
        &self,
        id: &MemberId,
        reason: DownReason,
    ) -> Option<Option<ActorRef<NodeSessionMessage>>> {
        let session = match self.write().get_mut(id) {
            Some(m) if m.status != MemberStatus::Down && id != &self.this => {
                m.status = MemberStatus::Down;
                m.router = None;
                Some(m.session.take())
            }
            _ => None,
        };
        if session.is_some() {
            self.emit(ClusterEvent::MemberDown(id.clone(), reason));
        }
        session
    }

    /// The member whose link is the NodeSession `session`, if any.
    pub(crate) fn by_session(&self, session: &ractor::ActorId) -> Option<MemberId> {
        self.read()
            .values()
            .find(|m| {
                m.status != MemberStatus::Down
                    && m.session.as_ref().map(|s| s.get_id()) == Some(*session)
            })
            .map(|m| m.id.clone())
    }

    /// Live peers not heard from since `deadline`.
    pub(crate) fn silent_since(&self, deadline: Instant) -> Vec<MemberId> {
        self.read()
            .values()
            .filter(|m| {
                m.id != self.this && m.status != MemberStatus::Down && m.last_seen < deadline
            })
            .map(|m| m.id.clone())
            .collect()
    }
}
