//! The wire protocol between nodes.
//!
//! Each node has exactly one remotable actor, its router, whose message has
//! two variants that carry opaque bytes: a one-way [`Notice`] and a
//! [`Request`] answered by a [`Response`]. The bytes are an [`Envelope`]
//! encoded with the core codec, so a decode failure is a value, never a
//! panic, and ractor's variant-name tags never change between releases.
//! New variants are added at the end of the enums; a peer that cannot decode
//! one answers [`Response::Refused`].

use crate::membership::MemberId;
use crate::registry::Registration;
use minotaur_core::codec::{self, CodecError};
use minotaur_core::{Command, EngineError, GameId, JoinCode, OpId, Reply};
use ractor::RpcReplyPort;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of this protocol. Peers accept each other when their ranges
/// `[MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]` overlap.
pub const PROTOCOL_VERSION: u32 = 1;
/// Oldest protocol version this release still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// The router's message: the only type that crosses the wire.
#[derive(ractor_cluster::RactorClusterMessage)]
pub enum RouterMsg {
    /// A one-way [`Notice`], encoded.
    Notice(Vec<u8>),
    /// A [`Request`], encoded; answered with an encoded [`Response`].
    #[rpc]
    Request(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// Every payload is wrapped with the sender's protocol version.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The message.
    pub body: T,
}

/// Room left in a cluster frame for ractor_cluster's own wrapping of a
/// sealed message (actor id, variant name, reply port, length prefix): a
/// few dozen bytes in practice.
pub const FRAME_OVERHEAD: usize = 64 * 1024;

// A sealed message is at most `MAX_DECODE_LEN` bytes, and must fit in the
// frames ractor_cluster accepts (nodes keep its default limit): a frame
// over it makes the receiving end close the link, which counts both
// members down.
const _: () = assert!(
    codec::MAX_DECODE_LEN as u64 + FRAME_OVERHEAD as u64
        <= ractor_cluster::DEFAULT_MAX_INBOUND_FRAME_SIZE
);

/// Encodes `body` in an envelope. A message whose encoding would be over
/// [`codec::MAX_DECODE_LEN`] is refused with [`CodecError::Oversize`]
/// before anything is sent: a peer could not decode it, and one over
/// ractor_cluster's frame limit would close the link.
pub fn seal<T: Serialize>(body: T) -> Result<Vec<u8>, CodecError> {
    codec::encode(&Envelope {
        protocol: PROTOCOL_VERSION,
        body,
    })
}

/// Decodes an envelope's body.
pub fn open<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode::<Envelope<T>>(bytes).map(|e| e.body)
}

/// Who a node is and whom it knows: exchanged when a link comes up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The sender.
    pub from: MemberId,
    /// Where the sender can be reached.
    pub addr: String,
    /// Oldest protocol version the sender speaks.
    pub min_protocol: u32,
    /// Newest protocol version the sender speaks.
    pub max_protocol: u32,
    /// Whether the sender is leaving the cluster.
    pub leaving: bool,
    /// Members the sender sees up, with their addresses.
    pub members: Vec<(MemberId, String)>,
}

/// A request to a peer's router.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Introduce the sender.
    Hello(Hello),
    /// Deliver a command to a game hosted by the receiver.
    Command {
        /// The game.
        id: GameId,
        /// The command.
        command: Command,
    },
    /// Start a session for a new or continued game on the receiver.
    Start {
        /// The encoded `Game`.
        snapshot: Vec<u8>,
        /// Registration epoch the session starts with.
        epoch: u64,
    },
    /// Reserve a join code for a game (the receiver is the code's home).
    ClaimCode {
        /// The code.
        code: JoinCode,
        /// The game that wants it.
        id: GameId,
    },
    /// Keep this copy of a game's state as its backup.
    Replicate {
        /// The game's owner.
        owner: MemberId,
        /// The owner's registration epoch.
        epoch: u64,
        /// The encoded `Game`.
        snapshot: Vec<u8>,
    },
    /// Send back the backup copy of a game.
    Fetch {
        /// The game.
        id: GameId,
    },
    /// Record this registration; answered once it is applied, so a game is
    /// visible everywhere by the time its creation is acknowledged.
    Register(Registration),
    /// Apply write `op` to game `id` at most once; answered like
    /// [`Request::Command`]. Safe to send again when an attempt's fate is
    /// unknown.
    Write {
        /// The game.
        id: GameId,
        /// The write's identity.
        op: OpId,
        /// The write.
        command: Command,
    },
    /// [`Request::Replicate`] for many games of one owner (a failover).
    /// Answered [`Response::Stored`] when every copy is kept; otherwise
    /// none is.
    ReplicateMany {
        /// The games' owner.
        owner: MemberId,
        /// Each game's registration epoch and encoded `Game`.
        copies: Vec<(u64, Vec<u8>)>,
    },
    /// [`Request::Register`] for many games (a failover).
    RegisterMany(Vec<Registration>),
}

/// A router's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello(Hello),
    /// The session's answer to [`Request::Command`].
    Command(Result<Reply, EngineError>),
    /// The game moved to this member: ask it.
    Moved(MemberId),
    /// The receiver does not host the game (it may be moving): look again.
    NotHere,
    /// Answer to [`Request::Start`].
    Started(Result<Registration, EngineError>),
    /// Answer to [`Request::ClaimCode`].
    Claimed(Result<(), EngineError>),
    /// The replica is stored.
    Stored,
    /// Answer to [`Request::Fetch`]: the encoded copy, if held.
    Snapshot(Option<Vec<u8>>),
    /// The request could not be understood or is not accepted.
    Refused(String),
    /// Answer to [`Request::Start`] from a member that is leaving: nothing
    /// was started, place the game on another member. (Earlier releases
    /// answer `Started(Err(EngineError::Unavailable(..)))` instead.)
    Leaving(MemberId),
}

/// One-way messages between routers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Notice {
    /// The sender is alive.
    Ping {
        /// The sender.
        from: MemberId,
    },
    /// The sender now owns this game.
    Registered(Registration),
    /// The game's session ended for good.
    Unregistered {
        /// The game.
        id: GameId,
        /// Its last owner.
        owner: MemberId,
    },
    /// All registrations the sender owns (sent when a link comes up).
    Sync {
        /// The sender.
        from: MemberId,
        /// Its registrations.
        entries: Vec<Registration>,
    },
    /// The sender is draining and takes no new sessions.
    Leaving {
        /// The sender.
        from: MemberId,
    },
    /// The sender has handed everything over and is stopping.
    Bye {
        /// The sender.
        from: MemberId,
    },
    /// Forget the backup copy of this game: its backup moved elsewhere.
    DropReplica {
        /// The game.
        id: GameId,
        /// The owner whose copy it was.
        owner: MemberId,
    },
    /// The members the sender sees up or leaving, with their addresses.
    /// Sent to every live peer every few heartbeats and whenever a member
    /// comes up, so that members that joined through the same peer at once
    /// learn of each other: the receiver dials those it does not know.
    Members {
        /// The sender.
        from: MemberId,
        /// Its live members (itself included) and their addresses.
        members: Vec<(MemberId, String)>,
    },
    /// A message of the control state machine (nodes whose control plane
    /// is [`control::Control`](crate::control::Control)).
    Control {
        /// The sender.
        from: MemberId,
        /// The message.
        msg: crate::control::wire::Msg,
    },
}
