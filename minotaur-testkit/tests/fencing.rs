//! Majority fencing through the testkit: a minority partition, a silent
//! stall, a one-way cut and a 2 | 3 split of five nodes. In each, the side
//! without a majority acknowledges no write (`EngineError::NoQuorum`), the
//! majority takes the cut-off owner's games over and serves them (confirmed
//! reads too, which the cut-off side refuses), and once healed every
//! acknowledged write is in the one copy left.

use minotaur_cluster::placement::ranked;
use minotaur_cluster::MemberStatus;
use minotaur_core::{EngineError, GameEngine, GameId};
use minotaur_testkit::fixtures::{players, quick_failure_detection};
use minotaur_testkit::TestCluster;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How a fault cuts `cut` off from `rest`.
#[derive(Clone, Copy, Debug)]
enum Cut {
    Partition,
    Stall,
    /// Nothing `cut` sends arrives; it still hears the others.
    Mute,
}

fn apply(cluster: &TestCluster, how: Cut, cut: &[String], rest: &[String]) {
    let (cut_refs, rest_refs): (Vec<&str>, Vec<&str>) = (
        cut.iter().map(String::as_str).collect(),
        rest.iter().map(String::as_str).collect(),
    );
    for a in &cut_refs {
        for b in &rest_refs {
            match how {
                Cut::Partition => cluster.partition(&[a], &[b]),
                Cut::Stall => cluster.stall(a, b),
                Cut::Mute => cluster.cut_one_way(a, b),
            }
            .expect("in-memory links");
        }
    }
}

/// Every acknowledged end of round, by game: the version each returned.
type Acked = BTreeMap<GameId, Vec<u64>>;

/// Ends a round of each game through `engine` until `until`; returns the
/// versions acknowledged and how many were refused for want of a majority.
async fn write_until(engine: &GameEngine, games: &[GameId], until: Instant) -> (Acked, usize) {
    let mut acked = Acked::new();
    let mut refused = 0;
    while Instant::now() < until {
        for id in games {
            match engine.end_round(*id).await {
                Ok(game) => acked.entry(*id).or_default().push(game.version),
                Err(EngineError::NoQuorum(_)) => refused += 1,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, refused)
}

/// A call on the cut-off side is refused: `NoQuorum` where the node itself
/// is cut off; on a muted node it may be routed to the majority's new owner,
/// unreachable from there, so any error.
fn assert_refused_on_cut_side<T: std::fmt::Debug>(
    how: Cut,
    what: &str,
    result: &Result<T, EngineError>,
) {
    match how {
        Cut::Partition | Cut::Stall => assert!(
            matches!(result, Err(EngineError::NoQuorum(_))),
            "{how:?}: {what} on the cut-off side answered {result:?}"
        ),
        Cut::Mute => assert!(
            result.is_err(),
            "{how:?}: {what} on the cut-off side answered {result:?}"
        ),
    }
}

/// Runs one split: `cut` nodes cut off from the rest by `how` for `hold`,
/// with writes through both sides; then heals and checks every
/// acknowledged write survived, and each version was acknowledged once.
async fn split(nodes: usize, cut_count: usize, how: Cut) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(nodes)
        .in_memory()
        .configure(|_, cfg| quick_failure_detection(cfg))
        .start()
        .await?;
    let names = cluster.nodes();
    let creator = cluster.engine(&names[0])?;
    let mut games = Vec::new();
    for i in 0..(nodes * 4) {
        games.push(
            creator
                .create_game(&format!("F{i:03}"), players())
                .await?
                .id,
        );
    }
    // The cut-off side: the owner of the first game, and more nodes for a
    // larger minority.
    let first_owner = cluster.where_is(games[0]).expect("hosted");
    let mut cut: Vec<String> = vec![first_owner.clone()];
    cut.extend(
        names
            .iter()
            .filter(|n| **n != first_owner)
            .take(cut_count - 1)
            .cloned(),
    );
    let rest: Vec<String> = names.iter().filter(|n| !cut.contains(n)).cloned().collect();
    // Games the majority can take over: a copy is on its side. (A game
    // whose owner and backup are both cut off waits for the heal.)
    let members: Vec<_> = cluster
        .node(&names[0])?
        .members()
        .into_iter()
        .filter(|(_, s)| *s == MemberStatus::Up)
        .map(|(id, _)| id)
        .collect();
    let mut takeable = BTreeSet::new();
    for id in &games {
        let owner = cluster.where_is(*id).expect("hosted");
        let backup = ranked(id, members.iter().filter(|m| m.name != owner).cloned())
            .into_iter()
            .next()
            .expect("a backup")
            .name;
        if !cut.contains(&owner) || !cut.contains(&backup) {
            takeable.insert(*id);
        }
    }
    let cut_off: Vec<GameId> = games
        .iter()
        .copied()
        .filter(|id| cut.contains(&cluster.where_is(*id).expect("hosted")))
        .collect();
    assert!(!cut_off.is_empty());

    apply(&cluster, how, &cut, &rest);
    let started = Instant::now();
    let hold = Duration::from_secs(3);
    let minority = cluster.engine(&cut[0])?;
    let majority = cluster.engine(&rest[0])?;
    let served: Vec<GameId> = takeable.iter().copied().collect();
    let ((minority_acked, refused), (majority_acked, _)) = tokio::join!(
        write_until(&minority, &cut_off, started + hold),
        write_until(&majority, &served, started + hold),
    );
    // The majority serves every game it holds a copy of, the cut-off
    // owner's included.
    for id in takeable.iter().filter(|id| cut_off.contains(id)) {
        let acked = majority_acked.get(id).map_or(0, Vec::len);
        assert!(acked > 0, "{how:?}: the majority never served game {id}");
    }
    assert!(
        refused > 0,
        "{how:?}: the cut-off side never refused a write"
    );
    // A confirmed read on the cut-off side is refused too: its owner there
    // cannot prove the majority did not take the game over. (A plain read
    // may answer from the cut-off session: a stale read.)
    let confirmed = minority.get_game_confirmed(games[0]).await;
    assert_refused_on_cut_side(how, "a confirmed read", &confirmed);
    // So is a create through it, after the engine tried it again until
    // its call timeout.
    let created = minority.create_game("XCUT", players()).await;
    assert_refused_on_cut_side(how, "a create", &created);
    let on_majority = majority.get_game_confirmed(games[0]).await;
    if takeable.contains(&games[0]) {
        assert!(
            on_majority.is_ok(),
            "{how:?}: a confirmed read through the majority failed: {on_majority:?}"
        );
    }
    cluster.heal()?;
    cluster.await_full_membership().await?;
    // Whole again, the formerly cut-off node creates games: a lease still
    // being renewed delays the create, it does not refuse it.
    minority.create_game("XHEL", players()).await?;

    let mut acked = minority_acked;
    for (id, versions) in majority_acked {
        acked.entry(id).or_default().extend(versions);
    }
    for id in &games {
        let versions = acked.get(id).cloned().unwrap_or_default();
        let distinct: BTreeSet<u64> = versions.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            versions.len(),
            "{how:?}: game {id}: a version was acknowledged twice (two owners): {versions:?}"
        );
        let newest = distinct.last().copied().unwrap_or(0);
        let engines: Vec<GameEngine> = names
            .iter()
            .map(|n| cluster.engine(n))
            .collect::<Result<_, _>>()?;
        cluster
            .eventually(
                &format!("game {id} on one node, with every acknowledged write"),
                Duration::from_secs(10),
                || {
                    let hosts = cluster.where_is_all(*id);
                    let engines = engines.clone();
                    let id = *id;
                    async move {
                        let mut seen = Vec::new();
                        for engine in &engines {
                            let g = engine.get_game(id).await.map_err(|e| e.to_string())?;
                            seen.push(g.version);
                        }
                        if hosts.len() == 1 && seen.iter().all(|v| *v >= newest) {
                            Ok(())
                        } else {
                            Err(format!(
                                "hosts {hosts:?}, versions seen {seen:?}, newest acknowledged {newest}"
                            ))
                        }
                    }
                },
            )
            .await?;
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_partition_acknowledges_nothing_and_the_majority_serves(
) -> Result<(), Box<dyn std::error::Error>> {
    split(3, 1, Cut::Partition).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stall_acknowledges_nothing_and_the_majority_serves(
) -> Result<(), Box<dyn std::error::Error>> {
    split(3, 1, Cut::Stall).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_node_acknowledges_nothing_and_the_majority_serves(
) -> Result<(), Box<dyn std::error::Error>> {
    split(3, 1, Cut::Mute).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_three_split_of_five_loses_nothing_and_the_three_serve(
) -> Result<(), Box<dyn std::error::Error>> {
    split(5, 2, Cut::Partition).await
}
