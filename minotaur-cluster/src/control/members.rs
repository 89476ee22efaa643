//! The members one node knows, as plain data: status, address, the link
//! each is reached over and when it was last heard from.

use super::LinkId;
use crate::membership::{MemberId, MemberStatus};
use crate::registry::Time;
use std::collections::BTreeMap;

/// One member as seen from here.
#[derive(Debug, Clone)]
pub struct Member {
    /// Where it can be reached.
    pub addr: String,
    /// Up, leaving or down.
    pub status: MemberStatus,
    /// When anything last arrived from it.
    pub heard: Time,
    /// The link its messages go over, while it has one.
    pub link: Option<LinkId>,
    /// Since when it has had no link while live: it is counted down once
    /// the relink grace has passed.
    pub unlinked_since: Option<Time>,
    /// Whether its registrations arrived in full (its `Sync`).
    pub synced: bool,
}

/// The members this node knows, itself included.
#[derive(Debug, Clone)]
pub struct Members {
    this: MemberId,
    all: BTreeMap<MemberId, Member>,
}

impl Members {
    /// The table of a node that knows only itself.
    pub fn new(this: MemberId, addr: String, now: Time) -> Self {
        let mut all = BTreeMap::new();
        all.insert(
            this.clone(),
            Member {
                addr,
                status: MemberStatus::Up,
                heard: now,
                link: None,
                unlinked_since: None,
                synced: true,
            },
        );
        Members { this, all }
    }

    /// This node.
    pub fn this(&self) -> &MemberId {
        &self.this
    }

    /// One member.
    pub fn get(&self, id: &MemberId) -> Option<&Member> {
        self.all.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &MemberId) -> Option<&mut Member> {
        self.all.get_mut(id)
    }

    pub(super) fn insert(&mut self, id: MemberId, member: Member) {
        self.all.insert(id, member);
    }

    /// Every member known, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&MemberId, &Member)> {
        self.all.iter()
    }

    /// The status of `id`, if known.
    pub fn status(&self, id: &MemberId) -> Option<MemberStatus> {
        self.all.get(id).map(|m| m.status)
    }

    /// Whether `id` is up or leaving.
    pub fn is_live(&self, id: &MemberId) -> bool {
        matches!(
            self.status(id),
            Some(MemberStatus::Up | MemberStatus::Leaving)
        )
    }

    /// Members up or leaving, this node included.
    pub fn live(&self) -> impl Iterator<Item = &MemberId> {
        self.all
            .iter()
            .filter(|(_, m)| m.status != MemberStatus::Down)
            .map(|(id, _)| id)
    }

    /// Live members other than this node.
    pub fn peers(&self) -> impl Iterator<Item = &MemberId> {
        self.live().filter(move |id| *id != &self.this)
    }

    /// Members that take sessions and copies (up, not leaving).
    pub fn up(&self) -> Vec<MemberId> {
        self.all
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Up)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The live member whose link is `link`.
    pub fn by_link(&self, link: LinkId) -> Option<&MemberId> {
        self.all
            .iter()
            .find(|(_, m)| m.link == Some(link) && m.status != MemberStatus::Down)
            .map(|(id, _)| id)
    }

    /// Live members of the same name as `id` but another incarnation.
    pub fn other_incarnations(&self, id: &MemberId) -> Vec<MemberId> {
        self.all
            .iter()
            .filter(|(other, m)| {
                other.name == id.name && *other != id && m.status != MemberStatus::Down
            })
            .map(|(other, _)| other.clone())
            .collect()
    }

    /// Whether every live member's registrations have arrived.
    pub fn synced(&self) -> bool {
        self.all
            .values()
            .all(|m| m.status == MemberStatus::Down || m.synced)
    }
}
