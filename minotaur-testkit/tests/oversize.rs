//! Messages larger than the wire allows: refused with a typed error before
//! they are sent, never by the transport closing the link (which counted
//! both members down, failed their games over and, in a split, dropped the
//! loser's acknowledged writes).

use minotaur_cluster::{ClusterEvent, Local, NodeConfig};
use minotaur_core::codec::{CodecError, MAX_DECODE_LEN};
use minotaur_core::{Ack, EngineError, Hex, UserId};
use minotaur_testkit::fixtures::quick_failure_detection;
use minotaur_testkit::TestCluster;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;

fn fast(cfg: &mut NodeConfig) {
    quick_failure_detection(cfg);
    cfg.call_timeout = Duration::from_secs(3);
    // Games live on the node they are created through.
    cfg.placement = Arc::new(Local);
}

/// Every MemberDown among the events received so far.
fn downs(events: &mut Receiver<ClusterEvent>) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(ClusterEvent::MemberDown(id, reason)) => seen.push(format!("{id} {reason:?}")),
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return seen,
        }
    }
}

fn assert_oversize(result: Result<Ack, EngineError>, what: &str) {
    match result {
        Err(EngineError::Codec(CodecError::Oversize { len, limit })) => {
            assert!(len > limit, "{what}: len {len}, limit {limit}");
            assert_eq!(limit, MAX_DECODE_LEN, "{what}");
        }
        other => panic!(
            "{what}: expected EngineError::Codec(Oversize), got {:?}",
            other.map(|g| g.version).map_err(|e| {
                let text = e.to_string();
                text.chars().take(200).collect::<String>()
            })
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_call_is_a_typed_error_and_the_link_stays_up(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(|_, cfg| fast(cfg))
        .start()
        .await?;
    let game = cluster
        .engine("n1")?
        .create_game("HUGE", vec!["ann".into(), "bob".into()])
        .await?;
    assert_eq!(cluster.where_is(game.id).as_deref(), Some("n1"));
    let mut events = [
        cluster.node("n1")?.subscribe(),
        cluster.node("n2")?.subscribe(),
    ];

    // Through the node that does not host the game: the command must cross
    // the link, and 20 MiB is over ractor_cluster's 16 MiB frame limit.
    let via = cluster.engine("n2")?;
    let huge: UserId = "x".repeat(20 * 1024 * 1024).into();
    let started = std::time::Instant::now();
    let result = via.register_move(game.id, huge, Hex::new(1, 0)).await;
    assert_oversize(result, "a 20 MiB user name");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after a timeout: took {:?}",
        started.elapsed()
    );
    // Between the codec's limit and the frame limit: refused the same way.
    let big: UserId = "y".repeat(MAX_DECODE_LEN).into();
    assert_oversize(
        via.register_move(game.id, big, Hex::new(1, 0)).await,
        "a 4 MiB user name",
    );

    // Long enough for the failure detector (400 ms) to have counted a
    // closed link down several times over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, events) in ["n1", "n2"].iter().zip(events.iter_mut()) {
        let seen = downs(events);
        assert!(seen.is_empty(), "{name} saw members go down: {seen:?}");
    }
    assert!(!cluster.sees_down("n1", "n2")?, "n1 sees n2 down");
    assert!(!cluster.sees_down("n2", "n1")?, "n2 sees n1 down");

    // The link still carries ordinary writes, and the game never moved.
    let ann: UserId = "ann".into();
    let dir = game
        .legal_steps(&ann)
        .first()
        .copied()
        .expect("a free neighbour");
    let after = via.register_move(game.id, ann, dir).await?;
    assert_eq!(after.version, game.version + 1);
    assert_eq!(cluster.where_is(game.id).as_deref(), Some("n1"));
    for (name, events) in ["n1", "n2"].iter().zip(events.iter_mut()) {
        let seen = downs(events);
        assert!(seen.is_empty(), "{name} saw members go down: {seen:?}");
    }
    cluster.shutdown().await;
    Ok(())
}

/// A write that would grow a game past the limit (its state could no longer
/// be kept, copied, moved or sent) is refused with the same typed error, at
/// once, and changes nothing: the game stays readable from every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_growing_a_game_past_the_limit_is_a_typed_error(
) -> Result<(), Box<dyn std::error::Error>> {
    const NAME: usize = 1536 * 1024;
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(|_, cfg| {
            fast(cfg);
            // No backup copies: the game could not be copied once it grows.
            cfg.replication_factor = 0;
            cfg.game.max_user_len = 2 * NAME;
        })
        .start()
        .await?;
    let ann: UserId = format!("a{}", "n".repeat(NAME)).into();
    let bob: UserId = format!("b{}", "o".repeat(NAME)).into();
    // About 3 MiB: created, registered everywhere and readable through n2.
    let game = cluster
        .engine("n1")?
        .create_game("BIGG", vec![ann.clone(), bob])
        .await?;
    assert_eq!(cluster.where_is(game.id).as_deref(), Some("n1"));
    let via = cluster.engine("n2")?;
    cluster
        .eventually("n2 to read the game", Duration::from_secs(5), || {
            let via = via.clone();
            async move {
                via.get_game(game.id)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;

    // Ann's registered move holds her name again: the game would be over
    // the limit, so the move is refused.
    let dir = game
        .legal_steps(&ann)
        .first()
        .copied()
        .expect("a free neighbour");
    let started = std::time::Instant::now();
    let result = via.register_move(game.id, ann, dir).await;
    assert_oversize(result, "a move past the limit");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once, not after the 3 s call timeout: took {:?}",
        started.elapsed()
    );
    // Nothing changed, and the game still answers from both nodes.
    for name in ["n1", "n2"] {
        let seen = cluster.engine(name)?.get_game(game.id).await?;
        assert_eq!(seen.version, game.version, "{name}");
    }
    assert!(!cluster.sees_down("n2", "n1")?);
    cluster.shutdown().await;
    Ok(())
}
