//! Link events: what the transport reports about its sessions, turned
//! into driver inputs. A link is ready once the peer's router is found;
//! connections that never authenticate are closed, since ractor_cluster
//! has no handshake timeout of its own.

use crate::driver::ToDriver;
use crate::plane::Plane;
use crate::transport::{self, LinkEvent};
use ractor_cluster::NodeServerMessage;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Turns the transport's session events into driver inputs.
pub(crate) async fn run_link_events(
    plane: Arc<Plane>,
    mut events: mpsc::UnboundedReceiver<LinkEvent>,
) {
    let deadline = transport::handshake_deadline(&plane.config);
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Opened(info) => {
                // ractor_cluster has no handshake timeout: a peer that never
                // authenticates is closed here.
                let server = plane.server.clone();
                plane.tasks.spawn(async move {
                    tokio::time::sleep(deadline).await;
                    let id = info.actor.get_id();
                    if let Ok(sessions) =
                        ractor::call_t!(server, NodeServerMessage::GetSessions, 1000)
                    {
                        if !sessions.values().any(|s| s.actor.get_id() == id) {
                            tracing::info!(peer = %info.peer_addr, "closing a connection that did not authenticate in time");
                            transport::close_session(&info.actor);
                        }
                    }
                });
            }
            LinkEvent::Ready(info) => {
                let driver = plane.driver.clone();
                let patience = plane.config.call_timeout;
                plane.tasks.spawn(async move {
                    let Some(peer) = info.peer_name.as_ref().map(|p| p.name.clone()) else {
                        return;
                    };
                    let peer = peer.split('@').next().unwrap_or_default().to_string();
                    let name = transport::router_name_of(&peer);
                    match transport::find_router(&info, &name, patience).await {
                        Some(router) => {
                            let _ = driver.send(ToDriver::LinkReady {
                                session: info.actor.clone(),
                                router,
                                peer,
                            });
                        }
                        None => {
                            tracing::warn!(%peer, "peer has no Minotaur router; closing the link");
                            transport::close_session(&info.actor);
                        }
                    }
                });
            }
            LinkEvent::Closed(info) => {
                let _ = plane.driver.send(ToDriver::LinkClosed(info.actor.get_id()));
            }
        }
    }
}

/// Hands the driver the transport's authenticated sessions, now and then,
/// so it can close those that never become links.
pub(crate) async fn poll_sessions(plane: Arc<Plane>) {
    let period = transport::handshake_deadline(&plane.config) / 2;
    loop {
        tokio::time::sleep(period).await;
        if let Ok(sessions) = ractor::call_t!(plane.server, NodeServerMessage::GetSessions, 1000) {
            let sessions = sessions.into_values().map(|s| s.actor).collect();
            let _ = plane.driver.send(ToDriver::Sessions(sessions));
        }
    }
}
