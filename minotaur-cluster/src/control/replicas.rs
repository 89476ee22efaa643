//! Backup copies: the write path (a session's change is copied to the
//! game's backup before it is acknowledged), keeping each game's copy on
//! its preferred member as membership changes, and the copies this node
//! keeps for others.
//!
//! One copy request per game is in flight at a time; a save arriving
//! meanwhile waits for it. So two copies of one game never race, and the
//! previous backup is told to drop its copy only once the new one is kept.
//!
//! A write is copied as its change alone when the backup holds the version
//! before and fewer than [`MAX_CHAIN`] changes on top of its last whole
//! copy; otherwise the session is asked for the whole game.

use super::games::{CopyBatch, CopyReason, Copying, Held, Owned, Phase};
use super::wire::{Corr, Msg, StaleCopy, Update};
use super::{Control, Effect, Request};
use crate::membership::MemberId;
use crate::placement::ranked;
use minotaur_core::{EngineError, GameId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Members a copy is offered to before giving up.
const COPY_TRIES: usize = 2;

/// The most game state one copy message carries, so that it stays well
/// under the codec's limit (a single game may take up to that limit).
const COPY_BYTES: usize = 1024 * 1024;

/// Changes a backup keeps on top of a game's last whole copy: they bound
/// what a failover replays, and the bytes a backup holds per game beyond
/// the whole copy.
pub const MAX_CHAIN: u32 = 32;

/// Splits copies into batches of at most `count` games and, but for a
/// single larger game, [`COPY_BYTES`] of state.
fn copy_batches(updates: Vec<Update>, count: usize) -> Vec<Vec<Update>> {
    let mut batches = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for snapshot in updates {
        let size = snapshot.size();
        if !batch.is_empty() && (batch.len() >= count.max(1) || bytes + size > COPY_BYTES) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(snapshot);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

impl Control {
    /// Backup candidates for game `id`, best first, skipping `tried`.
    fn backups(&self, id: GameId, tried: &[MemberId]) -> Vec<MemberId> {
        let this = self.this().clone();
        ranked(
            &id,
            self.members
                .up()
                .into_iter()
                .filter(|m| m != &this && !tried.contains(m)),
        )
    }

    /// Sessions' changes, to be kept before they are acknowledged: those
    /// that may be copied now go out together, one request per backup.
    pub(super) fn save(&mut self, updates: Vec<Update>) {
        let mut now = BTreeMap::new();
        for update in updates {
            if let Some(update) = self.save_one(update) {
                now.insert(update.id(), update);
            }
        }
        if !now.is_empty() {
            self.copy_many(now, CopyReason::Save, Vec::new());
        }
    }

    /// Refuses a save, queues it behind its game's copy in flight, or
    /// returns it to be copied now.
    fn save_one(&mut self, snapshot: Update) -> Option<Update> {
        let id = snapshot.id();
        if !self.owned.contains_key(&id) {
            self.effect(Effect::Saved {
                id,
                result: Err(EngineError::BetweenOwners(id)),
            });
            return None;
        }
        // A new write needs the lease; the state already acknowledged may
        // be copied again without it (to a new backup), so that a game whose
        // owner is cut off from the majority keeps a copy.
        let acknowledged = self
            .owned
            .get(&id)
            .is_some_and(|o| snapshot.version() <= o.reg.version);
        if let Some(refusal) = self.write_refusal(id).filter(|_| !acknowledged) {
            self.effect(Effect::Saved {
                id,
                result: Err(refusal),
            });
            return None;
        }
        let owned = self.owned.get_mut(&id)?;
        owned.save_waiting = true;
        if owned.copying().is_some() {
            owned.set_queued(Some(snapshot));
            return None;
        }
        Some(snapshot)
    }

    /// Sends the copy of an owned game to its best backup not yet tried;
    /// settles it at once when there is none.
    pub(super) fn copy_out(&mut self, update: Update, reason: CopyReason, tried: Vec<MemberId>) {
        let mut batch = BTreeMap::new();
        batch.insert(update.id(), update);
        self.copy_many(batch, reason, tried);
    }

    /// [`Control::copy_out`] for many games: one request per backup.
    pub(super) fn copy_many(
        &mut self,
        games: BTreeMap<GameId, Update>,
        reason: CopyReason,
        tried: Vec<MemberId>,
    ) {
        let mut by_backup: BTreeMap<MemberId, Vec<Update>> = BTreeMap::new();
        for (id, snapshot) in games {
            let target = if self.config.replication_factor == 0 || tried.len() >= COPY_TRIES {
                None
            } else {
                self.backups(id, &tried).into_iter().next()
            };
            match target {
                Some(to) if self.takes_alone(&snapshot, &to) => {
                    by_backup.entry(to).or_default().push(snapshot)
                }
                Some(_) => self.send_whole(id),
                None => {
                    // Nowhere (else) to copy to.
                    let nobody = tried.is_empty() || self.members.up().len() <= 1;
                    let version = snapshot.version();
                    self.copy_settled(id, version, reason, None, nobody);
                    if let Update::Whole(snapshot) = snapshot {
                        self.keep_uncopied(id, reason, snapshot);
                    }
                }
            }
        }
        for (to, snapshots) in by_backup {
            for batch in copy_batches(snapshots, self.config.batch) {
                self.send_copies(&to, batch, reason, &tried);
            }
        }
    }

    /// Whether `update` may go to `to`: a whole game always; a change only
    /// on top of the version before, kept there, with room in its chain.
    fn takes_alone(&self, update: &Update, to: &MemberId) -> bool {
        let Update::Delta(delta) = update else {
            return true;
        };
        self.owned.get(&delta.id).is_some_and(|o| {
            let before = delta.version.checked_sub(1);
            o.backup.as_ref().map(|(b, v)| (b, Some(*v))) == Some((to, before))
                && o.chain.is_some_and(|n| n < MAX_CHAIN)
        })
    }

    /// The change saved for game `id` cannot be copied alone: its session
    /// is asked for the whole game, which answers the save.
    fn send_whole(&mut self, id: GameId) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        owned.set_latest(None);
        if owned.save_waiting {
            owned.save_waiting = false;
            self.effect(super::Effect::SendWhole(id));
        }
    }

    /// Sends one batch of copies to `to`, as one request.
    fn send_copies(
        &mut self,
        to: &MemberId,
        updates: Vec<Update>,
        reason: CopyReason,
        tried: &[MemberId],
    ) {
        let corr = self.corr();
        let mut entries = Vec::with_capacity(updates.len());
        let mut copies = Vec::with_capacity(updates.len());
        for update in updates {
            let Some(owned) = self.owned.get_mut(&update.id()) else {
                continue;
            };
            owned.set_copying(Some(corr));
            owned.set_latest(Some(update.clone()));
            entries.push(Copying {
                id: update.id(),
                version: update.version(),
                reason,
                delta: matches!(update, Update::Delta(_)),
            });
            copies.push((owned.reg.epoch, update));
        }
        let mut tried = tried.to_vec();
        tried.push(to.clone());
        self.copy_batches.insert(
            corr,
            CopyBatch {
                to: to.clone(),
                games: entries,
                deadline: self.now + self.config.call_timeout,
                tried,
            },
        );
        let gen = self.quorum.fence_floor(to);
        if !self.send(to, Msg::Copy { corr, gen, copies }) {
            self.copy_failed(corr);
        }
    }

    pub(super) fn on_copied(
        &mut self,
        from: &MemberId,
        corr: Corr,
        stored: bool,
        behind: Vec<GameId>,
    ) {
        match self.copy_batches.get(&corr) {
            Some(batch) if &batch.to == from => {}
            _ => return,
        }
        if !stored {
            return self.copy_failed(corr);
        }
        let Some(batch) = self.copy_batches.remove(&corr) else {
            return;
        };
        for copy in batch.games {
            if self.owned.get(&copy.id).map(|o| o.copying()) != Some(Some(corr)) {
                continue;
            }
            if behind.contains(&copy.id) {
                self.copy_behind(copy.id);
            } else {
                let at = Some(batch.to.clone());
                self.copy_settled(copy.id, copy.version, copy.reason, at, true);
                if let Some(owned) = self.owned.get_mut(&copy.id) {
                    owned.chain = match copy.delta {
                        false => Some(0),
                        true => owned.chain.map(|n| n + 1),
                    };
                }
            }
        }
    }

    /// A game's change reached a backup without the version before: the
    /// next copy goes whole.
    fn copy_behind(&mut self, id: GameId) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        owned.set_copying(None);
        owned.chain = None;
        match owned.take_queued() {
            Some(next) => self.copy_out(next, CopyReason::Save, Vec::new()),
            None => self.send_whole(id),
        }
    }

    /// A copy request failed: each game is offered to its next backup.
    pub(super) fn copy_failed(&mut self, corr: Corr) {
        let Some(batch) = self.copy_batches.remove(&corr) else {
            return;
        };
        let mut retry: BTreeMap<CopyReason, BTreeMap<GameId, Update>> = BTreeMap::new();
        for Copying { id, reason, .. } in batch.games {
            let Some(owned) = self.owned.get_mut(&id) else {
                continue;
            };
            if owned.copying() != Some(corr) {
                continue;
            }
            owned.set_copying(None);
            if let Some(snapshot) = owned.take_latest() {
                retry.entry(reason).or_default().insert(id, snapshot);
            }
        }
        for (reason, games) in retry {
            self.copy_many(games, reason, batch.tried.clone());
        }
    }

    /// A restarted game whose copy found no backup keeps its state here, so
    /// the sweep can copy it as soon as a member can take it, without
    /// waiting for its session (which may be slow to start, and would be
    /// asked to save in vain meanwhile).
    fn keep_uncopied(&mut self, id: GameId, reason: CopyReason, snapshot: super::Snapshot) {
        if reason != CopyReason::Restart {
            return;
        }
        if let Some(owned) = self.owned.get_mut(&id) {
            // Not if its session saved a newer state meanwhile (settling
            // this copy sends the save that waited for it).
            let current = snapshot.version >= owned.reg.version;
            if current && owned.backup.is_none() && owned.copying().is_none() {
                owned.set_latest(Some(Update::Whole(snapshot)));
            }
        }
    }

    /// A game's copy landed on `at`, or could not be placed (`at` none;
    /// `ok` when there was nowhere to place it, which is no failure).
    fn copy_settled(
        &mut self,
        id: GameId,
        version: u64,
        reason: CopyReason,
        at: Option<MemberId>,
        ok: bool,
    ) {
        let landed = at.is_some() || ok;
        let this = self.this().clone();
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        let new_write = version > owned.reg.version;
        owned.set_copying(None);
        if at.is_some() || reason != CopyReason::Restart {
            owned.set_latest(None);
        }
        let mut drop_from = None;
        match &at {
            Some(at) => {
                if let Some((previous, _)) = &owned.backup {
                    if previous != at {
                        drop_from = Some(previous.clone());
                    }
                }
                owned.backup = Some((at.clone(), version));
                owned.retain_stale_copies(|s| !(&s.holder == at && s.owner == this));
            }
            None if ok => drop_from = owned.backup.take().map(|(previous, _)| previous),
            None => {}
        }
        if let Some(previous) = &drop_from {
            self.left_stale(id, previous.clone());
        }
        // The lease may have lapsed while the copy was on its way, or the
        // copy moved away from a backup that still holds an older one: the
        // write is then refused, and its version is not the game's.
        let refusal = if reason == CopyReason::Save && landed && new_write {
            self.write_refusal(id)
        } else {
            None
        };
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        if landed && new_write && refusal.is_none() {
            let mut reg = (*owned.reg).clone();
            reg.version = version;
            owned.reg = Arc::new(reg);
        }
        let reg = owned.reg.clone();
        let queued = owned.take_queued();
        let answer_save = reason == CopyReason::Save && owned.save_waiting && queued.is_none();
        if answer_save {
            owned.save_waiting = false;
        }
        if landed {
            self.registry.bump_version(&reg);
        }
        if let Some(previous) = drop_from {
            self.drop_ours(&previous, id, reg.epoch);
        }
        match reason {
            CopyReason::Save if answer_save => {
                let result = if let Some(refusal) = refusal {
                    Err(refusal)
                } else if landed {
                    Ok(())
                } else {
                    Err(EngineError::Unavailable(format!(
                        "state of game {id} not copied to a backup"
                    )))
                };
                self.effect(Effect::Saved { id, result });
            }
            CopyReason::Start => self.start_copied(id, landed),
            _ => {}
        }
        if let Some(next) = queued {
            self.copy_out(next, CopyReason::Save, Vec::new());
        }
    }

    /// Forgets that `member` holds our copies (it went down, or may have
    /// dropped them): the sweep places them again.
    pub(super) fn forget_backup(&mut self, member: &MemberId) {
        let left: Vec<GameId> = self
            .owned
            .iter_mut()
            .filter(|(_, o)| o.backup.as_ref().is_some_and(|(b, _)| b == member))
            .map(|(id, o)| {
                o.backup = None;
                *id
            })
            .collect();
        for id in left {
            self.left_stale(id, member.clone());
        }
    }

    /// Asks each running game whose copy is not on its preferred backup to
    /// save again, so the copy moves there.
    pub(super) fn sweep(&mut self) {
        if self.config.replication_factor == 0 {
            return;
        }
        let up: Vec<MemberId> = self
            .members
            .up()
            .into_iter()
            .filter(|m| m != self.this())
            .collect();
        if up.is_empty() {
            // Nowhere to copy to: no copy is wrong, none is right.
            let left: Vec<(GameId, MemberId)> = self
                .owned
                .iter_mut()
                .filter_map(|(id, o)| o.backup.take().map(|(b, _)| (*id, b)))
                .collect();
            for (id, backup) in left {
                self.left_stale(id, backup);
            }
            return;
        }
        let stale: Vec<GameId> = self
            .owned
            .iter()
            .filter(|(_, o)| matches!(o.phase, Phase::Running | Phase::Passive(_)))
            .filter(|(_, o)| o.copying().is_none())
            .filter(|(id, o)| {
                let best = crate::placement::best(*id, &up);
                o.backup.as_ref().map(|(b, _)| b) != best
            })
            .map(|(id, _)| *id)
            .collect();
        let mut kept = BTreeMap::new();
        for id in stale {
            let Some(owned) = self.owned.get_mut(&id) else {
                continue;
            };
            // A passive game's state is here: no session to ask.
            if let Phase::Passive(dormant) = &owned.phase {
                kept.insert(id, Update::Whole(dormant.snapshot(&owned.reg)));
                continue;
            }
            match owned.take_latest() {
                Some(whole @ Update::Whole(_)) => {
                    kept.insert(id, whole);
                }
                _ => self.effect(Effect::Resave(id)),
            }
        }
        if !kept.is_empty() {
            self.copy_many(kept, CopyReason::Restart, Vec::new());
        }
    }

    /// Tells each peer which of our games it is the backup of, so it drops
    /// any other copy of ours it still holds and counts those current.
    pub(super) fn send_holdings(&mut self) {
        let peers: Vec<MemberId> = self.members.peers().cloned().collect();
        for peer in peers {
            self.send_holdings_to(&peer);
        }
    }

    /// [`Control::send_holdings`] for one peer: also when it starts a new
    /// lease generation, so that its copies count again at once.
    pub(super) fn send_holdings_to(&mut self, peer: &MemberId) {
        let mut games: BTreeMap<GameId, u64> = BTreeMap::new();
        for (id, owned) in &self.owned {
            if let Some((backup, version)) = &owned.backup {
                if backup == peer {
                    games.insert(*id, *version);
                }
            }
            // A copy in flight is to be kept too.
            if let Some(batch) = owned.copying().and_then(|c| self.copy_batches.get(&c)) {
                if &batch.to == peer {
                    let version = batch
                        .games
                        .iter()
                        .find(|c| c.id == *id)
                        .map_or(0, |c| c.version);
                    let listed = games.entry(*id).or_insert(version);
                    *listed = (*listed).min(version);
                }
            }
        }
        let gen = self.quorum.fence_floor(peer);
        let games = games.into_iter().collect();
        self.send(peer, Msg::Holdings { gen, games });
    }

    /// The games `from` says this node is the backup of: any other copy of
    /// its is left behind, and the games of which no current copy is here
    /// are asked for again. Told for this node's current lease generation,
    /// the copies count as current in it.
    pub(super) fn on_holdings(&mut self, from: &MemberId, gen: u64, keep: Vec<(GameId, u64)>) {
        let current = (gen == self.quorum.generation()).then_some(gen);
        let missing = self.copies.confirm_of(from, &keep, current);
        if !missing.is_empty() {
            self.send(from, Msg::Missing(missing));
        }
    }

    /// The member a copy of this game is on its way to, if one is.
    pub(super) fn copying_to(&self, owned: &Owned) -> Option<&MemberId> {
        let batch = owned.copying().and_then(|c| self.copy_batches.get(&c))?;
        Some(&batch.to)
    }

    /// Asks `member` to forget this node's copy of game `id` up to `epoch`.
    pub(super) fn drop_ours(&mut self, member: &MemberId, id: GameId, epoch: u64) {
        let owner = self.this().clone();
        self.send(member, Msg::DropCopy { id, owner, epoch });
    }

    /// `from` dropped its copy of game `id` that `owner` sent it.
    pub(super) fn on_dropped(&mut self, from: &MemberId, id: GameId, owner: &MemberId) {
        if let Some(owned) = self.owned.get_mut(&id) {
            owned.retain_stale_copies(|s| !(&s.holder == from && &s.owner == owner));
        }
    }

    /// `member` can no longer take a game over from an old copy (it was
    /// fenced, or is gone for good).
    pub(super) fn stale_copies_cleared(&mut self, member: &MemberId) {
        for owned in self.owned.values_mut() {
            owned.retain_stale_copies(|s| &s.holder != member);
        }
    }

    /// Asks `member` again to drop the old copies it may still hold (it
    /// came back, or the first request was lost).
    pub(super) fn redrop(&mut self, member: &MemberId) {
        // Not ours while a copy of ours is on its way there: the drop
        // would overtake it (the copy landing takes it off the list).
        let this = self.this();
        let drops: Vec<Msg> = self
            .owned
            .iter()
            .flat_map(|(id, o)| {
                let copying_there = self.copying_to(o) == Some(member);
                o.stale_copies()
                    .iter()
                    .filter(|s| &s.holder == member)
                    .filter(move |s| !(copying_there && &s.owner == this))
                    .map(|s| Msg::DropCopy {
                        id: *id,
                        owner: s.owner.clone(),
                        epoch: s.epoch,
                    })
            })
            .collect();
        for drop in drops {
            self.send(member, drop);
        }
    }

    /// Every live member that may hold an old copy is asked again.
    pub(super) fn redrop_all(&mut self) {
        let mut members: Vec<MemberId> = self
            .owned
            .values()
            .flat_map(|o| o.stale_copies().iter().map(|s| s.holder.clone()))
            .filter(|m| self.members.is_live(m))
            .collect();
        members.sort();
        members.dedup();
        for member in members {
            self.redrop(&member);
        }
    }

    /// Records that `member`, no longer the backup of game `id`, may still
    /// hold an older copy of it (while fencing is on: without it, a
    /// majority does not decide takeovers anyway).
    fn left_stale(&mut self, id: GameId, member: MemberId) {
        if !self.quorum.fencing() {
            return;
        }
        let owner = self.this().clone();
        if let Some(owned) = self.owned.get_mut(&id) {
            let epoch = owned.reg.epoch;
            owned.note_stale(StaleCopy {
                holder: member,
                owner,
                epoch,
            });
        }
    }

    /// `from` has no copy of these games of ours: they are copied again,
    /// unless a copy is on its way.
    pub(super) fn on_missing(&mut self, from: &MemberId, ids: Vec<GameId>) {
        for id in ids {
            if let Some(owned) = self.owned.get_mut(&id) {
                let there = owned.backup.as_ref().is_some_and(|(b, _)| b == from);
                if there && owned.copying().is_none() {
                    owned.backup = None;
                }
            }
        }
        self.sweep();
    }

    /// Copies sent by a peer, to keep as their backup: all of them, or none
    /// when the sender is not a live member here (a copy from a node whose
    /// handshake with us has not finished would be orphaned if it died now,
    /// since its link closing would not count as a member going down).
    pub(super) fn on_copy(
        &mut self,
        from: &MemberId,
        corr: Corr,
        gen: u64,
        copies: Vec<(u64, Update)>,
    ) {
        let stored = self.members.is_live(from);
        let mut behind = Vec::new();
        if stored {
            let gen = gen.min(self.quorum.generation());
            for (epoch, update) in copies {
                match update {
                    Update::Whole(snapshot) => self.copies.store(
                        from.clone(),
                        Held {
                            epoch,
                            snapshot,
                            gen,
                            pinned: false,
                        },
                    ),
                    Update::Delta(delta) => {
                        let id = delta.id;
                        if !self.copies.extend(from, epoch, gen, delta) {
                            behind.push(id);
                        }
                    }
                }
            }
        }
        self.send(
            from,
            Msg::Copied {
                corr,
                stored,
                behind,
            },
        );
    }

    /// A failed session wants its backup's copy back.
    pub(super) fn fetch(&mut self, id: GameId) {
        let backup = self
            .owned
            .get(&id)
            .and_then(|o| o.backup.as_ref())
            .map(|(b, _)| b.clone());
        match backup {
            Some(backup) => {
                let corr = self.request(Request::Fetch { id });
                if !self.send(&backup, Msg::Fetch { corr, id }) {
                    self.requests.remove(&corr);
                    self.effect(Effect::Fetched { id, snapshot: None });
                }
            }
            None => self.effect(Effect::Fetched { id, snapshot: None }),
        }
    }
}
