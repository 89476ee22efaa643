//! Unit tests of single decisions; the simulator in minotaur-testkit runs
//! whole clusters of controls through faults.

use super::wire::{Delta, Hello, Msg, Refusal, Snapshot, Update};
use super::{Control, ControlConfig, Effect, Input};
use crate::membership::MemberId;
use minotaur_core::GameId;
use std::time::Duration;

fn control(name: &str) -> Control {
    Control::new(
        MemberId::new(name, 1),
        format!("addr-{name}"),
        ControlConfig::default(),
        Duration::ZERO,
    )
}

fn effects(c: &mut Control) -> Vec<Effect> {
    std::iter::from_fn(|| c.poll_effect()).collect()
}

fn hello(name: &str) -> Msg {
    Msg::Hello(Hello {
        from: MemberId::new(name, 1),
        addr: format!("addr-{name}"),
        min_protocol: super::wire::MIN_PROTOCOL_VERSION,
        max_protocol: super::wire::PROTOCOL_VERSION,
        leaving: false,
    })
}

/// Links `c` to each named member over the given link, with its hello.
fn link_to(c: &mut Control, now: Duration, peers: &[(u64, &str)]) {
    for &(link, name) in peers {
        c.handle(
            now,
            Input::LinkUp {
                link,
                peer: Some(MemberId::new(name, 1)),
            },
        );
        c.handle(
            now,
            Input::Received {
                link,
                msg: hello(name),
            },
        );
    }
}

fn snapshot(id: GameId, version: u64) -> Snapshot {
    Snapshot {
        id,
        version,
        join_code: "ABCD".parse().expect("code"),
        users: vec!["ann".into()],
        active: true,
        state: vec![1, 2, 3],
        changes: Vec::new(),
    }
}

#[test]
fn a_start_of_a_game_running_here_under_another_epoch_is_refused() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b")]);
    let id = GameId::random();
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Start {
                corr: 5,
                snapshot: snapshot(id, 0),
                epoch: 1,
                stale: Vec::new(),
                claim: false,
                passive: false,
            },
        },
    );
    let started = effects(&mut a);
    assert!(started
        .iter()
        .any(|e| matches!(e, Effect::StartSession(s) if s.id == id)));
    a.handle(now, Input::SessionStarted { id, error: None });
    effects(&mut a);
    // The same start again (a retry) is no second session; another epoch
    // is refused and the running game keeps its registration.
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Start {
                corr: 6,
                snapshot: snapshot(id, 0),
                epoch: 1,
                stale: Vec::new(),
                claim: false,
                passive: false,
            },
        },
    );
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Start {
                corr: 7,
                snapshot: snapshot(id, 9),
                epoch: 99,
                stale: Vec::new(),
                claim: false,
                passive: false,
            },
        },
    );
    let after = effects(&mut a);
    assert!(!after
        .iter()
        .any(|e| matches!(e, Effect::StartSession(_) | Effect::StopSession { .. })));
    assert!(after.iter().any(|e| matches!(
        e,
        Effect::Send {
            msg: Msg::Started {
                corr: 7,
                result: Err(Refusal::AlreadyRunning)
            },
            ..
        }
    )));
    assert_eq!(a.owned()[&id].reg.epoch, 1);
}

#[test]
fn copies_from_a_linked_peer_that_never_said_hello_are_not_kept() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    a.handle(
        now,
        Input::LinkUp {
            link: 1,
            peer: Some(MemberId::new("b", 1)),
        },
    );
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Copy {
                corr: 1,
                gen: 1,
                copies: vec![(1, Update::Whole(snapshot(GameId::random(), 3)))],
            },
        },
    );
    assert_eq!(a.copies().count(), 0);
}

#[test]
fn a_peer_of_an_incompatible_release_is_refused() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    a.handle(
        now,
        Input::LinkUp {
            link: 1,
            peer: Some(MemberId::new("b", 1)),
        },
    );
    effects(&mut a);
    let mut future = hello("b");
    if let Msg::Hello(h) = &mut future {
        h.min_protocol = 99;
        h.max_protocol = 99;
    }
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: future,
        },
    );
    let after = effects(&mut a);
    assert!(after
        .iter()
        .any(|e| matches!(e, Effect::CloseLink { link: 1 })));
    assert_eq!(a.members().live().count(), 1);
}

/// A third member that sees one owner's registration of a game replaced by
/// another's tells the previous owner: the two may be cut off from each
/// other, and only the previous owner can say it holds the newer game.
/// (Found by a 10-minute chaos run: such a game ended up unregistered on
/// the third member for good.)
#[test]
fn a_replaced_owner_hears_of_its_replacement_from_a_third_member() {
    use crate::registry::Registration;
    let mut c = control("c");
    let now = Duration::from_millis(1);
    link_to(&mut c, now, &[(1, "a"), (2, "b")]);
    effects(&mut c);
    let id = GameId::random();
    let reg = |owner: &str, epoch, version| Registration {
        id,
        join_code: "ABCD".parse().expect("code"),
        users: vec!["ann".into()],
        owner: MemberId::new(owner, 1),
        epoch,
        version,
    };
    let registered = |link, reg: Registration| Input::Received {
        link,
        msg: Msg::Registered {
            corr: None,
            regs: vec![reg],
        },
    };
    c.handle(now, registered(2, reg("b", 2, 20)));
    effects(&mut c);
    // a ran the game on the other side of a split, with more writes.
    c.handle(now, registered(1, reg("a", 1, 29)));
    let told_b = effects(&mut c).into_iter().any(|e| {
        matches!(&e, Effect::Send { link: 2, msg: Msg::Registered { regs, .. } }
            if regs.iter().any(|r| r.owner.name == "a"))
    });
    assert!(told_b, "b must hear that a's registration replaced its own");
    // A plain version update of the same owner is nobody else's business.
    c.handle(now, registered(1, reg("a", 1, 30)));
    assert!(!effects(&mut c)
        .iter()
        .any(|e| matches!(e, Effect::Send { link: 2, .. })));
}

/// A session that finishes starting after its game was given up is
/// stopped: the stop decided meanwhile found no session to stop. (Found by
/// a 10-minute chaos run: a game lost in a conflict while its failover
/// session was starting ran on two members for good.)
#[test]
fn a_session_that_comes_up_after_its_game_was_lost_is_stopped() {
    use super::{SplitPolicy, StopReason};
    use crate::registry::Registration;
    // Without fencing, so that the failover follows the crash at once.
    let mut a = Control::new(
        MemberId::new("a", 1),
        "addr-a".into(),
        ControlConfig {
            split: SplitPolicy::Available,
            ..ControlConfig::default()
        },
        Duration::ZERO,
    );
    let mut now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b"), (2, "c")]);
    // a keeps b's copy of a game; b crashes and a fails the game over.
    let id = GameId::random();
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Copy {
                corr: 1,
                gen: 1,
                copies: vec![(1, Update::Whole(snapshot(id, 3)))],
            },
        },
    );
    a.handle(now, Input::LinkDown { link: 1 });
    now += Duration::from_secs(1);
    a.handle(now, Input::Tick);
    assert!(effects(&mut a)
        .iter()
        .any(|e| matches!(e, Effect::StartSession(s) if s.id == id)));
    // Before the session is up, c's newer copy of the game wins.
    a.handle(
        now,
        Input::Received {
            link: 2,
            msg: Msg::Registered {
                corr: None,
                regs: vec![Registration {
                    id,
                    join_code: "ABCD".parse().expect("code"),
                    users: vec!["ann".into()],
                    owner: MemberId::new("c", 1),
                    epoch: 1,
                    version: 9,
                }],
            },
        },
    );
    effects(&mut a);
    a.handle(now, Input::SessionStarted { id, error: None });
    let stopped = effects(&mut a).into_iter().any(
        |e| matches!(e, Effect::StopSession { id: s, reason: StopReason::NotOwned } if s == id),
    );
    assert!(stopped, "the late session is stopped");
}

#[test]
fn a_member_whose_address_refuses_dials_is_down_before_the_grace() {
    use super::Event;
    use crate::membership::DownReason;
    let mut a = control("a");
    link_to(&mut a, Duration::ZERO, &[(1, "b")]);
    let ms = Duration::from_millis;
    a.handle(ms(10), Input::LinkDown { link: 1 });
    let dialled = effects(&mut a)
        .into_iter()
        .any(|e| matches!(e, Effect::Dial { addr } if addr == "addr-b"));
    assert!(dialled, "a closed link is dialled again at once");
    let down = |e: &Effect| matches!(e, Effect::Event(Event::MemberDown(m, DownReason::LinkClosed)) if m.name == "b");
    // A dial that fails otherwise (a refused handshake, a timeout) proves
    // nothing: the grace is waited out.
    a.handle(ms(20), Input::Tick);
    assert!(!effects(&mut a).iter().any(down));
    a.handle(
        ms(30),
        Input::DialRefused {
            addr: "addr-b".into(),
        },
    );
    assert!(effects(&mut a).iter().any(down), "b counted down at once");
    assert!(ms(30) < ControlConfig::default().relink_grace);
}

/// Both ends dialled at once: the peer's hello over the second link came
/// attributed to the first (the driver knows the sender of a message, not
/// the link), so only the transport says whom the second link reaches.
/// When the first closes, the second takes over; the peer stays up.
#[test]
fn a_second_link_whose_hello_went_over_the_first_takes_over_when_the_first_closes() {
    let ms = Duration::from_millis;
    let mut a = control("a");
    let b = MemberId::new("b", 1);
    link_to(&mut a, ms(1), &[(1, "b")]);
    a.handle(
        ms(2),
        Input::LinkUp {
            link: 2,
            peer: Some(b.clone()),
        },
    );
    a.handle(ms(3), Input::LinkDown { link: 1 });
    let grace = ControlConfig::default().relink_grace;
    a.handle(
        ms(4) + grace * 2,
        Input::Received {
            link: 2,
            msg: Msg::Ping,
        },
    );
    a.handle(ms(5) + grace * 2, Input::Tick);
    let member = a.members().get(&b).expect("b");
    assert_eq!(member.status, crate::membership::MemberStatus::Up);
    assert_eq!(member.link, Some(2));
    assert!(member.unlinked_since.is_none());
}

/// A registration whose `Unregistered` was lost with a link stays on a
/// peer until the owner's digests, which no longer count it, make the peer
/// ask for a sync, which drops it. (Found by a 10-minute chaos run: a new
/// game registered on three members to an owner that no longer had it.)
#[test]
fn a_registration_its_owner_no_longer_has_is_dropped_after_two_digests_and_a_sync() {
    use crate::registry::Registration;
    let mut a = control("a");
    let now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b")]);
    let id = GameId::random();
    let stale = Registration {
        id,
        join_code: "ABCD".parse().expect("code"),
        users: vec!["ann".into()],
        owner: MemberId::new("b", 1),
        epoch: 1,
        version: 0,
    };
    let from_b = |msg| Input::Received { link: 1, msg };
    a.handle(
        now,
        from_b(Msg::Registered {
            corr: None,
            regs: vec![stale],
        }),
    );
    effects(&mut a);
    let asks = |a: &mut Control| {
        effects(a).iter().any(|e| {
            matches!(
                e,
                Effect::Send {
                    link: 1,
                    msg: Msg::SyncPlease
                }
            )
        })
    };
    // b has nothing registered: one differing digest may be an
    // announcement in flight; the second asks.
    a.handle(now, from_b(Msg::Digest { count: 0, hash: 0 }));
    assert!(!asks(&mut a));
    a.handle(now, from_b(Msg::Digest { count: 0, hash: 0 }));
    assert!(asks(&mut a));
    a.handle(
        now,
        from_b(Msg::Sync {
            sync: 7,
            regs: vec![],
            last: true,
        }),
    );
    assert!(a.registry().lookup(id).is_none());
}

#[test]
fn a_backup_names_the_games_it_holds_no_copy_of() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b")]);
    // a keeps one of b's games; the other's copy it dropped (say, while it
    // counted b down).
    let (kept, lost) = (GameId::random(), GameId::random());
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Copy {
                corr: 1,
                gen: 1,
                copies: vec![(1, Update::Whole(snapshot(kept, 2)))],
            },
        },
    );
    effects(&mut a);
    a.handle(
        now,
        Input::Received {
            link: 1,
            msg: Msg::Holdings {
                gen: 0,
                games: {
                    let mut games = vec![(kept, 2), (lost, 1)];
                    games.sort();
                    games
                },
            },
        },
    );
    let missing: Vec<Vec<GameId>> = effects(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send {
                link: 1,
                msg: Msg::Missing(ids),
            } => Some(ids),
            _ => None,
        })
        .collect();
    assert_eq!(missing, vec![vec![lost]]);
}

#[test]
fn a_backup_replays_changes_on_the_version_before_and_names_those_it_cannot() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b")]);
    let (id, other) = (GameId::random(), GameId::random());
    let delta = |id, version: u64, epoch| {
        (
            epoch,
            Update::Delta(Delta {
                id,
                version,
                active: version < 4,
                change: vec![version as u8],
            }),
        )
    };
    let copy = |corr, copies| Input::Received {
        link: 1,
        msg: Msg::Copy {
            corr,
            gen: 1,
            copies,
        },
    };
    a.handle(now, copy(1, vec![(1, Update::Whole(snapshot(id, 2)))]));
    effects(&mut a);
    // On the version before, from the same epoch: kept. A gap, another
    // epoch, or a game with no copy here: named behind.
    a.handle(
        now,
        copy(
            2,
            vec![delta(id, 3, 1), delta(id, 5, 1), delta(other, 1, 1)],
        ),
    );
    a.handle(now, copy(3, vec![delta(id, 4, 2)]));
    a.handle(now, copy(4, vec![delta(id, 4, 1)]));
    let answers: Vec<(u64, Vec<GameId>)> = effects(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send {
                msg:
                    Msg::Copied {
                        corr,
                        stored: true,
                        behind,
                    },
                ..
            } => Some((corr, behind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![(2, vec![id, other]), (3, vec![id]), (4, vec![])]
    );
    let (_, _, held) = a.copies().find(|(g, _, _)| **g == id).expect("held");
    assert_eq!(held.snapshot.version, 4);
    assert!(!held.snapshot.active);
    assert_eq!(held.snapshot.state, vec![1, 2, 3]);
    assert_eq!(held.snapshot.changes, vec![vec![3], vec![4]]);
}

/// A quorum of n1 in which n1, n2 and n3 vote.
fn three_voters() -> super::quorum::Quorum {
    use super::quorum::Quorum;
    let (n1, n2, n3) = (
        MemberId::new("n1", 1),
        MemberId::new("n2", 1),
        MemberId::new("n3", 1),
    );
    let mut q = Quorum::new(
        n1.clone(),
        crate::config::SplitPolicy::MajorityFromThree,
        Duration::from_secs(1),
        0.01,
    );
    for m in [&n2, &n3] {
        q.live(m);
    }
    for m in [&n2, &n3] {
        q.listed(m, [n1.clone(), n2.clone(), n3.clone()].into_iter());
    }
    q.admit();
    q
}

fn set(names: &[&str]) -> std::collections::BTreeSet<MemberId> {
    names.iter().map(|n| MemberId::new(*n, 1)).collect()
}

#[test]
fn a_fenced_member_keeps_its_seat_and_votes_again_when_back() {
    let mut q = three_voters();
    let n3 = MemberId::new("n3", 1);
    q.fence(&n3, 1);
    // Two of three still make the majority, one alone does not.
    assert!(q.fencing());
    assert!(q.is_majority(&set(&["n1", "n2"])));
    assert!(!q.is_majority(&set(&["n1"])));
    // Back from its partition, it votes at once: with it, n1 has a
    // majority even if n2 then fails.
    q.live(&n3);
    assert!(!q.is_out(&n3));
    assert!(q.is_majority(&set(&["n1", "n3"])));
}

#[test]
fn members_lost_to_faults_keep_fencing_on_until_replaced() {
    let mut q = three_voters();
    let n3 = MemberId::new("n3", 1);
    q.fence(&n3, 1);
    assert!(q.retire_absent(&n3));
    // Its seat is gone, but the cluster does not fall back to the
    // unfenced rules of two members: n1 alone is no majority.
    assert_eq!(q.standing().len(), 2);
    assert!(q.fencing());
    assert!(!q.is_majority(&set(&["n1"])));
    // A new incarnation of n3 replaces the absent one and waits to vote.
    let n3_again = MemberId::new("n3", 2);
    q.live(&n3_again);
    assert_eq!(q.standing().len(), 3);
    assert!(q.fencing());
}

#[test]
fn copies_kept_before_a_lapse_stay_current_unless_a_majority_may_have_fenced_them() {
    let (n2, n3) = (MemberId::new("n2", 1), MemberId::new("n3", 1));
    let ms = Duration::from_millis;
    // Generation 1 holds, then lapses: generation 2.
    let mut q = three_voters();
    let seq = q.request(ms(0));
    q.granted(&n2, seq, None, ms(10));
    assert!(q.holds(ms(500)));
    assert_eq!(q.check(ms(500), std::iter::empty()), None);
    assert_eq!(q.check(ms(1500), std::iter::empty()), Some(false));
    assert_eq!(q.generation(), 2);
    // No grant of generation 2 yet: only its own copies are current.
    assert_eq!(q.current_from(), 2);
    // n1 and n2 hold 2, n2 having witnessed no end of 1: n3 alone could
    // not have fenced 1, so copies kept in 1 are current.
    let mut clean = q.clone();
    let seq = clean.request(ms(1600));
    clean.granted(&n2, seq, None, ms(1610));
    assert_eq!(clean.current_from(), 0);
    // n2 witnessed the end of 1: with n3, a majority may have fenced 1, so
    // only copies of 2 are current.
    let seq = q.request(ms(1600));
    q.granted(&n2, seq, Some(1), ms(1610));
    assert_eq!(q.current_from(), 2);
    // With n3's clean grant, n2 alone may have witnessed the end of 1.
    q.granted(&n3, seq, None, ms(1620));
    assert_eq!(q.current_from(), 0);
    // Of four voters, two that witnessed nothing leave two that may have:
    // no majority, so copies kept in 1 stay current.
    let n4 = MemberId::new("n4", 1);
    let mut four = clean.clone();
    four.live(&n4);
    for m in [&n2, &n3, &n4] {
        let all = ["n1", "n2", "n3", "n4"].map(|n| MemberId::new(n, 1));
        four.listed(m, all.into_iter());
    }
    four.admit();
    assert_eq!(four.current_from(), 0);
}

#[test]
fn a_game_handed_over_asks_the_holders_of_older_copies_to_drop_them() {
    let mut a = control("a");
    let now = Duration::from_millis(1);
    link_to(&mut a, now, &[(1, "b"), (2, "c")]);
    // a holds its lease: b and c grant what it asked for.
    let asked: Vec<u64> = effects(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send {
                msg: Msg::Lease { seq, .. },
                ..
            } => Some(seq),
            _ => None,
        })
        .collect();
    for seq in asked {
        for link in [1, 2] {
            let msg = Msg::Granted {
                seq,
                refused_upto: None,
            };
            a.handle(now, Input::Received { link, msg });
        }
    }
    assert!(a.holds_lease());
    // b hands a game over; c may still hold b's older copy of it.
    let (b, c) = (MemberId::new("b", 1), MemberId::new("c", 1));
    let id = GameId::random();
    let stale = vec![super::wire::StaleCopy {
        holder: c.clone(),
        owner: b.clone(),
        epoch: 1,
    }];
    let msg = Msg::Start {
        corr: 9,
        snapshot: snapshot(id, 4),
        epoch: 2,
        stale,
        claim: false,
        passive: false,
    };
    a.handle(now, Input::Received { link: 1, msg });
    let asked_to_drop = effects(&mut a).into_iter().any(|e| {
        matches!(e, Effect::Send {
            link: 2,
            msg: Msg::DropCopy { id: g, owner, epoch: 1 },
        } if g == id && owner == b)
    });
    assert!(asked_to_drop, "c is asked to drop b's copy");
    // No write until c says it dropped it.
    let waits = |a: &Control| a.owned()[&id].stale_copies().iter().any(|s| s.holder == c);
    assert!(waits(&a));
    let msg = Msg::Dropped { id, owner: b };
    a.handle(now, Input::Received { link: 2, msg });
    assert!(!waits(&a));
}
