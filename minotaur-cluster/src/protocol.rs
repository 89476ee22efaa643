//! The wire protocol between nodes.
//!
//! Each node has exactly one remotable actor, its router, whose one message
//! carries opaque bytes: a one-way [`Notice`]. Control messages travel in
//! notices, and so does the data plane: [`Request`]s numbered by their
//! sender and the [`Response`]s that repeat the number
//! ([`Notice::Data`]). The bytes are an [`Envelope`] encoded with the core
//! codec, so a decode failure is a value, never a panic, and ractor's
//! variant-name tags never change between releases. A notice that does not
//! decode is dropped and logged.

use crate::control::wire::Msg;
use crate::membership::MemberId;
use minotaur_core::codec::{self, CodecError};
use minotaur_core::{Answer, Command, EngineError, GameId, OpId, Reply};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::control::wire::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// The router's message: the only type that crosses the wire.
#[derive(ractor_cluster::RactorClusterMessage)]
pub enum RouterMsg {
    /// A one-way [`Notice`], encoded.
    Notice(Vec<u8>),
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

/// A request to a peer's router: the data plane, a command to a game the
/// peer hosts. Answered by a [`Response`] with the request's number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Deliver a command to a game hosted by the receiver.
    Command {
        /// The game.
        id: GameId,
        /// The command.
        command: Command,
    },
    /// Apply write `op` to game `id` at most once; answered like
    /// [`Request::Command`], with what `answer` asks for. Safe to send
    /// again when an attempt's fate is unknown.
    Write {
        /// The game.
        id: GameId,
        /// The write's identity.
        op: OpId,
        /// The write.
        command: Command,
        /// What the write answers with.
        answer: Answer,
    },
}

/// A router's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The session's answer.
    Command(Result<Reply, EngineError>),
    /// The game moved to this member: ask it.
    Moved(MemberId),
    /// The receiver does not host the game (it may be moving or starting):
    /// look again.
    NotHere,
    /// The request is not accepted.
    Refused(String),
}

/// One-way messages between routers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Notice {
    /// A message of the control state machine
    /// ([`Control`](crate::control::Control)).
    Control {
        /// The sender.
        from: MemberId,
        /// The message.
        msg: Msg,
    },
    /// Control messages from one sender, in the order it sent them: what
    /// its control had to tell the receiver during one turn of its driver,
    /// in one frame instead of one each.
    Batch {
        /// The sender.
        from: MemberId,
        /// The messages, oldest first.
        msgs: Vec<Msg>,
    },
    /// The data plane: the sender's requests, each with a number its
    /// response repeats, and its responses to the receiver's requests.
    /// Whatever the sender had queued for the receiver goes in one frame.
    Data {
        /// The sender.
        from: MemberId,
        /// Requests, oldest first.
        requests: Vec<(u64, Request)>,
        /// Responses to the receiver's requests, by their numbers.
        responses: Vec<(u64, Response)>,
    },
}
