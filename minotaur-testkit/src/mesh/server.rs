//! A node's `NodeServer`: started on a free loopback port, asked for its
//! sessions, and stopped with everything under it.

use ractor::{Actor, ActorCell, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};
use std::collections::BTreeMap;

/// A started `NodeServer` and the port it listens on.
pub(super) struct Server {
    pub actor: ActorRef<NodeServerMessage>,
    pub port: u16,
}

/// Starts a `NodeServer` on a free loopback port. It links only where told
/// (`Isolated`): transitive dialling would go over TCP around the
/// in-memory network.
pub(super) async fn start_server(name: &str, cookie: &str) -> Result<Server, String> {
    let mut last_error = String::new();
    // The server does not report the port it bound: probe a free one first,
    // and try again if another test took it meanwhile.
    for _ in 0..5 {
        let port = match std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr())
        {
            Ok(addr) => addr.port(),
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let server = NodeServer::new(
            port,
            cookie.to_string(),
            name.to_string(),
            "127.0.0.1".into(),
            None,
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
        match Actor::spawn(None, server, ()).await {
            Ok((actor, _)) => return Ok(Server { actor, port }),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}

/// A server's authenticated sessions, by peer node name.
pub(super) async fn sessions(
    server: &ActorRef<NodeServerMessage>,
) -> Result<BTreeMap<String, ActorRef<ractor_cluster::NodeSessionMessage>>, String> {
    let all = ractor::call_t!(server, NodeServerMessage::GetSessions, 2_000)
        .map_err(|e| format!("the NodeServer did not answer: {e}"))?;
    Ok(all
        .into_values()
        .filter_map(|info| {
            let peer = info.peer_name?.name;
            let name = peer.split('@').next().unwrap_or_default().to_string();
            Some((name, info.actor))
        })
        .collect())
}

/// Stops an actor and everything under it: a `NodeServer`'s sockets belong
/// to its sessions' children, which stopping the server alone would leave
/// running. Returns every cell stopped, to wait for.
pub(super) fn kill_tree(cell: &ActorCell) -> Vec<ActorCell> {
    let mut killed = Vec::new();
    for child in cell.get_children() {
        killed.extend(kill_tree(&child));
    }
    cell.kill();
    killed.push(cell.clone());
    killed
}
