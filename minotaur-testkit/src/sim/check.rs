//! The invariants a run is held to: while it runs (one session per game
//! once membership is stable) and once it has settled after the last fault
//! (one mesh, one registry, one owner per game, a copy of every game on a
//! live non-owner and no copy left behind, every acknowledged write there).

use super::world::World;
use minotaur_cluster::control::Standing;
use minotaur_cluster::{MemberId, MemberStatus};
use minotaur_core::GameId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Each game's owner and epoch, as one node's registry has them.
type Owners = BTreeMap<GameId, (MemberId, u64)>;

/// The members that run and stay, by id.
fn staying(world: &World) -> BTreeSet<MemberId> {
    world
        .nodes
        .values()
        .filter(|n| !n.leaving)
        .map(|n| n.control.this().clone())
        .collect()
}

/// Whether every staying node sees exactly the staying members, each over a
/// link.
pub(super) fn mesh_violations(world: &World) -> Vec<String> {
    let ids = staying(world);
    let mut out = Vec::new();
    for (name, n) in world.nodes.iter().filter(|(_, n)| !n.leaving) {
        let members = n.control.members();
        let seen: BTreeSet<MemberId> = members.live().cloned().collect();
        if seen != ids {
            let seen: Vec<String> = seen.iter().map(|m| m.name.clone()).collect();
            out.push(format!("{name} sees members {seen:?}"));
            continue;
        }
        for id in ids.iter().filter(|id| *id != members.this()) {
            let m = members.get(id).expect("seen");
            if m.link.is_none() || m.status != MemberStatus::Up {
                out.push(format!(
                    "{name} has no link to {} ({:?})",
                    id.name, m.status
                ));
            }
        }
    }
    out
}

/// At most one session per game taking writes (one being stopped takes
/// none): checked while the run goes on, once membership has been stable
/// for a while.
pub(super) fn one_session_per_game(world: &World) -> Vec<String> {
    let mut hosts: BTreeMap<GameId, Vec<&str>> = BTreeMap::new();
    for (name, n) in &world.nodes {
        for (id, _) in n.sessions.iter().filter(|(_, s)| s.closing.is_empty()) {
            hosts.entry(*id).or_default().push(name);
        }
    }
    hosts
        .into_iter()
        .filter(|(_, h)| h.len() > 1)
        .map(|(id, h)| format!("game {id} runs on {h:?}"))
        .collect()
}

/// Every invariant of a settled cluster.
pub(super) fn settled(world: &World, replication: bool, failure_timeout: Duration) -> Vec<String> {
    let mut out = structure(world, replication);
    out.extend(acknowledged(world, failure_timeout));
    out
}

/// Whether every staying node holds its lease from the same voters: the
/// staying members, each admitted (a member fenced away keeps its seat for
/// a while, and is not counted here).
fn one_vote(world: &World) -> Vec<String> {
    let ids = staying(world);
    let mut out = Vec::new();
    for (name, n) in world.nodes.iter().filter(|(_, n)| !n.leaving) {
        let voters: BTreeSet<&MemberId> = n
            .control
            .quorum()
            .standing()
            .iter()
            .filter(|(m, s)| **s == Standing::Voter && !n.control.quorum().is_out(m))
            .map(|(m, _)| m)
            .collect();
        if voters != ids.iter().collect() {
            let names: Vec<&str> = voters.iter().map(|m| m.name.as_str()).collect();
            out.push(format!("{name} counts voters {names:?}"));
        } else if !n.control.holds_lease() {
            out.push(format!("{name} holds no lease"));
        }
        let suspect = n
            .control
            .owned()
            .keys()
            .filter(|id| n.control.quorum().is_suspect(**id))
            .count();
        if suspect > 0 {
            out.push(format!("{name} still confirms {suspect} game(s)"));
        }
    }
    out
}

/// No two games registered anywhere share a join code.
fn unique_join_codes(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for (name, n) in &world.nodes {
        let mut seen: BTreeMap<&minotaur_core::JoinCode, GameId> = BTreeMap::new();
        for reg in n.control.registry().iter() {
            if let Some(other) = seen.insert(&reg.join_code, reg.id) {
                out.push(format!(
                    "{name} registers games {other} and {} under join code {}",
                    reg.id, reg.join_code
                ));
            }
        }
    }
    out
}

/// The cluster's shape once settled: one mesh and vote, one registry, one
/// running owner per game, a current copy of each on a live non-owner and
/// none left behind, no node still leaving.
pub(super) fn structure(world: &World, replication: bool) -> Vec<String> {
    let mut out = mesh_violations(world);
    out.extend(one_vote(world));
    for (name, _) in world.nodes.iter().filter(|(_, n)| n.leaving) {
        out.push(format!("{name} is still leaving"));
    }
    out.extend(one_session_per_game(world));
    out.extend(unique_join_codes(world));
    let ids = staying(world);
    let nodes: BTreeMap<MemberId, &super::world::Node> = world
        .nodes
        .values()
        .map(|n| (n.control.this().clone(), n))
        .collect();

    // One registry, the same everywhere.
    let view = |n: &super::world::Node| -> Owners {
        n.control
            .registry()
            .iter()
            .map(|r| (r.id, (r.owner.clone(), r.epoch)))
            .collect()
    };
    let mut reference: Option<(String, Owners)> = None;
    for (name, n) in world.nodes.iter().filter(|(_, n)| !n.leaving) {
        let v = view(n);
        match &reference {
            None => reference = Some((name.clone(), v)),
            Some((first, r)) if *r != v => {
                let diff: Vec<String> = r
                    .iter()
                    .filter(|(id, e)| v.get(id) != Some(e))
                    .map(|(id, (o, e))| {
                        format!(
                            "{id}: {}@{e} vs {:?}",
                            o.name,
                            v.get(id).map(|(o, e)| (o.name.clone(), e))
                        )
                    })
                    .chain(
                        v.keys()
                            .filter(|id| !r.contains_key(id))
                            .map(|id| format!("{id}: only on {name}")),
                    )
                    .take(3)
                    .collect();
                out.push(format!(
                    "registry of {name} differs from {first}'s: {diff:?}"
                ));
            }
            _ => {}
        }
    }
    let registry = reference.map(|(_, r)| r).unwrap_or_default();

    // One owner per game, running its session or holding it passive.
    let held = world.games_held();
    for (id, (owner, _)) in &registry {
        let holds = |n: &super::world::Node| {
            held.get(id)
                .is_some_and(|h| h.iter().any(|(name, _)| *name == owner.name))
                && n.control.owned().contains_key(id)
        };
        match nodes.get(owner) {
            Some(n) if holds(n) => {}
            Some(_) => out.push(format!(
                "game {id} is registered to {} which does not run it",
                owner.name
            )),
            None => out.push(format!(
                "game {id} is registered to {}, which is gone",
                owner.name
            )),
        }
    }
    for (name, n) in &world.nodes {
        for id in n.sessions.keys() {
            if registry.get(id).map(|(o, _)| o) != Some(n.control.this()) {
                out.push(format!("{name} runs game {id} without owning it"));
            }
        }
        for id in n.control.owned().keys() {
            if registry.get(id).map(|(o, _)| o) != Some(n.control.this()) {
                let phase = format!("{:?}", n.control.owned()[id].phase);
                let phase: String = phase.chars().take(40).collect();
                out.push(format!(
                    "{name} owns game {id} ({phase}) registered elsewhere"
                ));
            }
        }
    }

    // A copy of every game on a live non-owner; no copy left behind.
    if replication && ids.len() >= 2 {
        for (owner, n) in &nodes {
            for (id, owned) in n.control.owned() {
                let version = held.get(id).and_then(|h| {
                    h.iter()
                        .find(|(name, _)| *name == owner.name)
                        .map(|(_, ops)| ops.len() as u64)
                });
                // (A copy its holder could not restart from counts as none.)
                let held = owned.backup.as_ref().and_then(|(b, _)| {
                    nodes.get(b).and_then(|bn| {
                        let gen = bn.control.quorum().generation();
                        bn.control
                            .copies()
                            .find(|(g, o, h)| *g == id && *o == owner && h.current(gen))
                            .map(|(_, _, h)| h.snapshot.version)
                    })
                });
                // A copy may be one write ahead of the session: a write whose
                // copy landed as the owner's lease lapsed is refused, not
                // acknowledged, and its copy stays until the next write.
                if held.is_none() || held < version {
                    out.push(format!(
                        "game {id} of {} has no current copy (backup {:?}, copy v{held:?}, session v{version:?})",
                        owner.name,
                        owned.backup.as_ref().map(|(b, v)| (b.name.clone(), *v))
                    ));
                }
            }
        }
    }
    for (holder, n) in &nodes {
        for (id, owner, _) in n.control.copies() {
            let kept = nodes.get(owner).is_some_and(|o| {
                o.control
                    .owned()
                    .get(id)
                    .is_some_and(|g| g.backup.as_ref().map(|(b, _)| b) == Some(holder))
            });
            if !kept {
                out.push(format!(
                    "{} holds a copy of game {id} left behind by {}",
                    holder.name, owner.name
                ));
            }
        }
    }

    out
}

/// Every acknowledged create and write is there, for the faults covered.
fn acknowledged(world: &World, failure_timeout: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let grace = failure_timeout * 2 + Duration::from_millis(500);
    let covered = |t: Duration| {
        !world
            .uncovered
            .iter()
            .any(|(from, to)| t >= *from && t <= to.saturating_add(grace))
    };
    // A game's state is what its registered owner holds (any other
    // holder is a structure violation, reported apart).
    let owner_of = |id: &GameId| {
        world.nodes.values().find_map(|n| {
            n.control
                .registry()
                .lookup(*id)
                .map(|r| r.owner.name.clone())
        })
    };
    let sessions: BTreeMap<GameId, Vec<u64>> = world
        .games_held()
        .into_iter()
        .filter_map(|(id, mut h)| {
            let owner = owner_of(&id);
            let at = h
                .iter()
                .position(|(name, _)| Some(*name) == owner.as_deref());
            let held = match at {
                Some(at) => h.swap_remove(at),
                None => h.pop()?,
            };
            Some((id, held.1))
        })
        .collect();
    for (id, at) in &world.created {
        if covered(*at) && !sessions.contains_key(id) {
            out.push(format!("game {id}, created at {at:?}, is lost"));
        }
    }
    for (id, op, at) in &world.acked {
        if !covered(*at) {
            continue;
        }
        match sessions.get(id) {
            Some(ops) if ops.contains(op) => {}
            Some(_) => out.push(format!(
                "write {op} to game {id}, acknowledged at {at:?}, is lost"
            )),
            None if world.created.get(id).is_some_and(|t| covered(*t)) => {}
            None => out.push(format!(
                "write {op} to game {id}, acknowledged at {at:?}, is lost with its game"
            )),
        }
    }
    out
}
