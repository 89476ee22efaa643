//! Which link a peer's message is handed to the control on, as plain data,
//! so the simulator runs the same rules as the driver.
//!
//! A node's router receives its peers' messages without knowing which of a
//! peer's links carried them (ractor_cluster does not say), so the driver
//! attributes them by peer: to the peer's ready link, or, for stragglers
//! sent before that link closed, to the link that closed last. A link is
//! ready only once the peer's router is found, and the peer may find ours
//! sooner: its hello over a new link can arrive before that link is ready
//! here. Handed over on the old, closed link, the hello would tie the peer
//! to a dead link and leave the new one unattributed, so that everything
//! the peer sends afterwards is ignored and it is counted down for good.
//! So a hello without a ready link, and everything after it, waits for the
//! next link of that peer to be ready.

use super::wire::Msg;
use super::LinkId;
use std::collections::BTreeMap;

/// Most peers with messages waiting, and most messages waiting per peer:
/// a peer may claim any name, so what waits is bounded.
const MAX_WAITING_PEERS: usize = 64;
const MAX_WAITING: usize = 1024;

/// The links ready per peer, and the messages waiting for one.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Each peer's link its messages are attributed to.
    current: BTreeMap<String, LinkId>,
    /// Every ready link and its peer.
    ready: BTreeMap<LinkId, String>,
    /// Each peer's link that closed last.
    closed: BTreeMap<String, LinkId>,
    /// Messages waiting for a peer's next link to be ready.
    waiting: BTreeMap<String, Vec<Msg>>,
}

impl Inbound {
    /// `link` to `peer` is ready: it carries the peer's messages from now
    /// on. Returns those that waited for it, to hand over on it in order.
    pub fn ready(&mut self, link: LinkId, peer: &str) -> Vec<Msg> {
        self.ready.insert(link, peer.to_string());
        self.current.insert(peer.to_string(), link);
        self.waiting.remove(peer).unwrap_or_default()
    }

    /// `link` closed. Another ready link of the same peer takes over.
    pub fn closed(&mut self, link: LinkId) {
        let Some(peer) = self.ready.remove(&link) else {
            return;
        };
        if self.current.get(&peer) == Some(&link) {
            self.current.remove(&peer);
            if let Some((other, _)) = self.ready.iter().find(|(_, p)| **p == peer) {
                self.current.insert(peer.clone(), *other);
            }
        }
        self.closed.insert(peer, link);
    }

    /// The link a message from `peer` is handed over on, or `None` if it
    /// waits (or is dropped, past the bounds).
    pub fn attribute(&mut self, peer: &str, msg: Msg) -> Option<(LinkId, Msg)> {
        let waits = self.waiting.contains_key(peer);
        if !waits {
            if let Some(link) = self.current.get(peer) {
                return Some((*link, msg));
            }
            if !matches!(msg, Msg::Hello(_)) {
                if let Some(link) = self.closed.get(peer) {
                    return Some((*link, msg));
                }
            }
        }
        if waits || self.waiting.len() < MAX_WAITING_PEERS {
            let waiting = self.waiting.entry(peer.to_string()).or_default();
            if waiting.len() < MAX_WAITING {
                waiting.push(msg);
            }
        }
        None
    }

    /// The link a peer's messages are attributed to now.
    pub fn link_of(&self, peer: &str) -> Option<LinkId> {
        self.current.get(peer).copied()
    }

    /// Peers with messages waiting for a link.
    pub fn waiting_peers(&self) -> Vec<&str> {
        self.waiting.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::wire::Hello;
    use crate::membership::MemberId;

    fn hello() -> Msg {
        Msg::Hello(Hello {
            from: MemberId::new("n2", 7),
            addr: "addr-n2".into(),
            leaving: false,
            min_protocol: 1,
            max_protocol: 1,
        })
    }

    #[test]
    fn a_hello_before_its_link_is_ready_waits_for_it_and_stragglers_go_to_the_closed_link() {
        let mut inbound = Inbound::default();
        assert!(inbound.ready(1, "n2").is_empty());
        inbound.closed(1);
        // Sent over link 1 before it closed.
        assert!(matches!(
            inbound.attribute("n2", Msg::Ping),
            Some((1, Msg::Ping))
        ));
        // The hello of link 2, before link 2 is ready here, and what follows.
        assert!(inbound.attribute("n2", hello()).is_none());
        assert!(inbound.attribute("n2", Msg::Ping).is_none());
        let waited = inbound.ready(2, "n2");
        assert!(matches!(waited.as_slice(), [Msg::Hello(_), Msg::Ping]));
        assert!(matches!(inbound.attribute("n2", Msg::Ping), Some((2, _))));
    }

    #[test]
    fn a_second_ready_link_takes_over_when_the_first_closes() {
        let mut inbound = Inbound::default();
        inbound.ready(1, "n2");
        inbound.ready(2, "n2");
        assert_eq!(inbound.link_of("n2"), Some(2));
        inbound.closed(2);
        assert_eq!(inbound.link_of("n2"), Some(1));
        inbound.closed(1);
        assert_eq!(inbound.link_of("n2"), None);
    }
}
