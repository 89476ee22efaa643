//! `RactorMesh`: a user's own remotable actor tested across nodes, faults
//! that change what the nodes see, the name clash it reports, parallel
//! meshes that do not see each other, and a shutdown that leaves nothing.

use minotaur_testkit::mesh::{NodeCtx, RactorMesh, Topology};
use minotaur_testkit::MeshError;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use std::collections::BTreeMap;
use std::time::Duration;

/// A user's key-value store: one per node, reachable from every node.
struct Kv;

#[derive(RactorClusterMessage)]
enum KvMsg {
    Put(String, String),
    /// The value, or "" for none.
    #[rpc]
    Get(String, RpcReplyPort<String>),
}

impl Actor for Kv {
    type Msg = KvMsg;
    type State = BTreeMap<String, String>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<KvMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(BTreeMap::new())
    }

    async fn handle(
        &self,
        _: ActorRef<KvMsg>,
        msg: KvMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KvMsg::Put(k, v) => {
                state.insert(k, v);
            }
            KvMsg::Get(k, reply) => {
                let _ = reply.send(state.get(&k).cloned().unwrap_or_default());
            }
        }
        Ok(())
    }
}

async fn kv_node(node: NodeCtx) -> Result<(), MeshError> {
    node.spawn("kv", Kv, ()).await?;
    Ok(())
}

const WAIT: Duration = Duration::from_secs(10);

/// The worked example: the store of n3, written and read from n1, through a
/// partition and a crash of n3.
#[tokio::test]
async fn a_users_actor_is_reached_across_a_partition_and_a_restart() -> Result<(), MeshError> {
    let mesh = RactorMesh::builder()
        .nodes(3)
        .in_memory()
        .on_start(kv_node)
        .start()
        .await?;
    let kv = mesh.remote::<KvMsg>("n1", "n3", "kv").await?;
    kv.cast(KvMsg::Put("score".into(), "7".into()))
        .expect("cast");
    let get = |kv: ActorRef<KvMsg>, ms| async move {
        ractor::call_t!(kv, KvMsg::Get, ms, "score".to_string())
    };
    assert_eq!(get(kv.clone(), 1_000).await.expect("get"), "7");

    // Partitioned: no answer; healed: the answer, and nothing was lost.
    mesh.partition(&["n1", "n2"], &["n3"])?;
    assert!(
        get(kv.clone(), 200).await.is_err(),
        "n3 answered through a partition"
    );
    mesh.heal()?;
    assert_eq!(get(kv.clone(), 1_000).await.expect("get"), "7");

    // Crashed: n1 loses its link; restarted: a fresh, empty store.
    mesh.kill_node("n3").await?;
    mesh.eventually("n1 to lose its link to n3", WAIT, || async {
        match mesh.peers("n1").await {
            Ok(peers) if peers == ["n2"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    mesh.add_node("n3").await?;
    let kv = mesh.remote::<KvMsg>("n1", "n3", "kv").await?;
    assert_eq!(get(kv, 1_000).await.expect("get"), "");
    mesh.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn faults_change_what_each_node_sees() -> Result<(), MeshError> {
    let mesh = RactorMesh::builder()
        .nodes(2)
        .in_memory()
        .on_start(kv_node)
        .start()
        .await?;
    let there = mesh.remote::<KvMsg>("n1", "n2", "kv").await?;
    let back = mesh.remote::<KvMsg>("n2", "n1", "kv").await?;
    let answers = |kv: &ActorRef<KvMsg>, ms| {
        let kv = kv.clone();
        async move { ractor::call_t!(kv, KvMsg::Get, ms, "k".to_string()).is_ok() }
    };

    // One way: n1's requests are held, so neither call completes (n2's
    // answers to n2's own call are held too); the link stays up.
    mesh.cut_one_way("n1", "n2")?;
    assert!(!answers(&there, 200).await);
    assert!(!answers(&back, 200).await);
    assert_eq!(mesh.peers("n1").await?, ["n2"]);
    mesh.heal()?;
    assert!(answers(&there, 1_000).await && answers(&back, 1_000).await);

    // A silent stall holds both ways, no link closes.
    mesh.stall("n1", "n2")?;
    assert!(!answers(&there, 200).await);
    assert_eq!(mesh.peers("n2").await?, ["n1"]);
    mesh.heal()?;
    assert!(answers(&there, 1_000).await);

    // Latency: a call takes at least the round trip.
    mesh.set_latency("n1", "n2", Duration::from_millis(100))?;
    let started = tokio::time::Instant::now();
    assert!(answers(&there, 2_000).await);
    assert!(started.elapsed() >= Duration::from_millis(100));
    mesh.heal()?;
    mesh.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_nodes_registering_one_name_fail_with_a_clear_error() -> Result<(), MeshError> {
    let name = format!("shared-{}", std::process::id());
    let hook_name = name.clone();
    let started = RactorMesh::builder()
        .nodes(2)
        .in_memory()
        .on_start(move |node: NodeCtx| {
            let name = hook_name.clone();
            async move {
                // The mistake: one process-wide name for every node.
                node.spawn_as(&name, Kv, ()).await?;
                Ok(())
            }
        })
        .start()
        .await;
    match started {
        Err(MeshError::NameTaken {
            node,
            name: taken,
            holder,
        }) => {
            assert_eq!(node, "n2");
            assert_eq!(taken, name);
            assert_eq!(holder.as_deref(), Some("n1"));
        }
        Err(e) => panic!("expected NameTaken, got {e}"),
        Ok(_) => panic!("two nodes registered {name:?}"),
    }
    // The failed mesh left nothing registered.
    assert!(ractor::registry::where_is(name).is_none());
    Ok(())
}

#[tokio::test]
async fn parallel_meshes_with_the_same_names_do_not_see_each_other() -> Result<(), MeshError> {
    let start = || {
        RactorMesh::builder()
            .nodes(2)
            .in_memory()
            .on_start(kv_node)
            .start()
    };
    let (a, b) = (start().await?, start().await?);
    a.remote::<KvMsg>("n1", "n2", "kv")
        .await?
        .cast(KvMsg::Put("k".into(), "a".into()))
        .expect("cast");
    b.remote::<KvMsg>("n1", "n2", "kv")
        .await?
        .cast(KvMsg::Put("k".into(), "b".into()))
        .expect("cast");
    for (mesh, want) in [(&a, "a"), (&b, "b")] {
        assert_eq!(mesh.peers("n1").await?, ["n2"]);
        // (Through the same link as the write, which it follows.)
        let kv = mesh.remote::<KvMsg>("n1", "n2", "kv").await?;
        let got = ractor::call_t!(kv, KvMsg::Get, 1_000, "k".to_string()).expect("get");
        assert_eq!(got, want);
        let local = mesh.local::<KvMsg>("n2", "kv")?;
        let got = ractor::call_t!(local, KvMsg::Get, 1_000, "k".to_string()).expect("get");
        assert_eq!(got, want);
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_manual_mesh_links_only_what_the_test_links_over_tcp() -> Result<(), MeshError> {
    let mesh = RactorMesh::builder()
        .nodes(3)
        .topology(Topology::Manual)
        .on_start(kv_node)
        .start()
        .await?;
    assert!(mesh.peers("n1").await?.is_empty());
    mesh.link("n1", "n2").await?;
    mesh.link("n3", "n2").await?;
    assert_eq!(mesh.peers("n2").await?, ["n1", "n3"]);
    assert_eq!(mesh.peers("n1").await?, ["n2"]);
    let kv = mesh.remote::<KvMsg>("n3", "n2", "kv").await?;
    let got = ractor::call_t!(kv, KvMsg::Get, 1_000, "k".to_string()).expect("get over TCP");
    assert_eq!(got, "");
    assert!(matches!(
        mesh.partition(&["n1"], &["n2"]),
        Err(MeshError::NeedsMemoryLink(_))
    ));
    mesh.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_leaves_no_task_behind() -> Result<(), MeshError> {
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let mesh = RactorMesh::builder()
        .nodes(3)
        .in_memory()
        .on_start(kv_node)
        .start()
        .await?;
    mesh.remote::<KvMsg>("n1", "n3", "kv").await?;
    mesh.partition(&["n1"], &["n2", "n3"])?;
    assert!(tasks() > before);
    mesh.shutdown().await;
    minotaur_testkit::wait_until("every task of the mesh to end", WAIT, || async {
        tasks() <= before
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_leaves_no_actor_name_or_port_behind() -> Result<(), MeshError> {
    let mesh = RactorMesh::builder()
        .nodes(2)
        .on_start(kv_node)
        .start()
        .await?;
    let names: Vec<String> = ["n1", "n2"]
        .iter()
        .map(|n| mesh.actor_name(n, "kv"))
        .collect();
    let addrs: Vec<String> = ["n1", "n2"]
        .iter()
        .map(|n| mesh.addr(n))
        .collect::<Result<_, _>>()?;
    assert!(names
        .iter()
        .all(|n| ractor::registry::where_is(n.clone()).is_some()));
    mesh.shutdown().await;
    for name in names {
        assert!(
            ractor::registry::where_is(name.clone()).is_none(),
            "{name} still registered"
        );
    }
    for addr in addrs {
        std::net::TcpListener::bind(&addr).unwrap_or_else(|e| panic!("{addr} still taken: {e}"));
    }
    Ok(())
}

#[tokio::test]
async fn a_node_with_the_wrong_cookie_is_never_linked() -> Result<(), MeshError> {
    let mesh = RactorMesh::builder()
        .nodes(2)
        .in_memory()
        .cookie("right")
        .node_cookie("n3", "wrong")
        .wait(Duration::from_millis(500))
        .start()
        .await?;
    match mesh.add_node("n3").await {
        Err(MeshError::Wait(_)) => {}
        other => panic!("n3 linked with the wrong cookie: {other:?}"),
    }
    assert_eq!(mesh.nodes(), ["n1", "n2"]);
    assert_eq!(mesh.peers("n1").await?, ["n2"]);
    mesh.shutdown().await;
    Ok(())
}
