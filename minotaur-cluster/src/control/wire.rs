//! The messages one node's control sends another's. Requests carry a
//! correlation number that their answer repeats; nothing here waits: an
//! answer is just another message, and a request that gets none is given up
//! by the sender's timers.

use crate::membership::{MemberId, MemberStatus};
use crate::registry::Registration;
use minotaur_core::{GameId, JoinCode, UserId};
use serde::{Deserialize, Serialize};

/// Version of the protocol between nodes. Peers accept each other when
/// their ranges `[MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]` overlap (see
/// [`Hello`]). Version 3 adds majority fencing (leases and fences); a
/// version 2 node would grant no lease, so it cannot join. Version 5 hands
/// a moved game's older copies over with it ([`Msg::Start`]'s `stale`).
/// Version 6 answers with the engine errors `Leaving` and `BetweenOwners`,
/// which a version 5 node cannot decode. Version 7 answers writes with an
/// [`Ack`](minotaur_core::Ack) unless the caller asks for the game, sends
/// the control messages of one driver turn to a peer in one
/// `Notice::Batch`, and has a create's owner claim its join code
/// ([`Msg::Start`]'s `claim`). Version 8 copies a write to the backup as
/// its change ([`Update::Delta`]) when the backup holds the version
/// before, and carries commands and their responses in notices
/// (`Notice::Data`), batched per peer, instead of ractor calls. Version 9
/// hands passive games over without starting them ([`Msg::Start`]'s
/// `passive`). Version 10 has a grant say which of the requester's
/// generations the grantor witnessed the end of ([`Msg::Granted`]'s
/// `refused_upto`). Version 11 encodes games with their events numbered
/// by version and each remembered write with the version it made.
pub const PROTOCOL_VERSION: u32 = 11;
/// Oldest protocol version this release speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 11;

/// A request's correlation number, unique per sender.
pub type Corr = u64;

/// A member that may still hold an older copy of a game: the one `owner`
/// sent it, from `epoch` or earlier. While it could take the game over from
/// that copy, the game's owner acknowledges no write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleCopy {
    /// The member holding the copy.
    pub holder: MemberId,
    /// The member that sent it.
    pub owner: MemberId,
    /// The latest epoch the copy can be from.
    pub epoch: u64,
}

/// One game's state as the control sees it: the session's encoded state,
/// plus the few facts the control needs without decoding it.
///
/// A backup keeps the state its owner last sent whole and the changes its
/// owner sent since ([`Delta`]s): `state` is then the game at version
/// `version - changes.len()`, and replaying `changes` on it gives the game
/// at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The game.
    pub id: GameId,
    /// Its version: incremented by every accepted write.
    pub version: u64,
    /// Its join code.
    pub join_code: JoinCode,
    /// Its players.
    pub users: Vec<UserId>,
    /// Whether the game is still being played (a concluded game is not
    /// restarted by a failover).
    pub active: bool,
    /// The encoded state, opaque to the control.
    pub state: Vec<u8>,
    /// Encoded changes that follow `state`, opaque to the control.
    pub changes: Vec<Vec<u8>>,
}

impl Snapshot {
    /// Bytes of state it carries.
    pub fn size(&self) -> usize {
        self.state.len() + self.changes.iter().map(Vec::len).sum::<usize>()
    }
}

/// One accepted write of a game, to be replayed on its backup's copy at
/// the version before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The game.
    pub id: GameId,
    /// The version the write made.
    pub version: u64,
    /// Whether the game is still being played after it.
    pub active: bool,
    /// The encoded change, opaque to the control.
    pub change: Vec<u8>,
}

/// A game's change as its owner's control keeps and copies it: the whole
/// game, or only the write when the backup holds the version before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// The whole game.
    Whole(Snapshot),
    /// One write on top of the version before.
    Delta(Delta),
}

impl Update {
    /// The game.
    pub fn id(&self) -> GameId {
        match self {
            Update::Whole(s) => s.id,
            Update::Delta(d) => d.id,
        }
    }

    /// The version it brings the game to.
    pub fn version(&self) -> u64 {
        match self {
            Update::Whole(s) => s.version,
            Update::Delta(d) => d.version,
        }
    }

    /// Bytes of state it carries.
    pub fn size(&self) -> usize {
        match self {
            Update::Whole(s) => s.size(),
            Update::Delta(d) => d.change.len(),
        }
    }
}

/// Who a node is and whom it knows: the first message over a new link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Why a start request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The receiver is leaving the cluster: place the game elsewhere.
    Leaving,
    /// The game already runs on the receiver under another epoch.
    AlreadyRunning,
    /// A new game could not be copied to a backup.
    NotReplicated,
    /// The session did not start.
    SessionFailed(String),
    /// The receiver cannot prove it belongs to a majority of the cluster.
    NoQuorum,
    /// Another game holds the new game's join code.
    CodeTaken(JoinCode),
}

/// A message between two nodes' controls. The sender is the member at the
/// other end of the link it arrives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Introduces the sender (first message over every link).
    Hello(Hello),
    /// The sender is alive.
    Ping,
    /// The members the sender counts live, with their addresses: the
    /// receiver links to those it does not know, so the cluster becomes a
    /// full mesh whatever order nodes joined in.
    Members(Vec<(MemberId, String, MemberStatus)>),
    /// Every game the sender owns (sent to a member newly linked), in
    /// parts of at most [`ControlConfig::batch`](super::ControlConfig::batch)
    /// registrations, so no message nears the frame limit.
    Sync {
        /// Which sync of the sender's this part belongs to: two may be in
        /// flight at once, over two links.
        sync: Corr,
        /// This part's registrations.
        regs: Vec<Registration>,
        /// Whether this is the last part (the receiver then forgets the
        /// sender's registrations no part of this sync listed).
        last: bool,
    },
    /// The sender now owns these games; answered with [`Msg::RegisteredAck`]
    /// when `corr` is set.
    Registered {
        /// Set when the sender waits for the answer.
        corr: Option<Corr>,
        /// The registrations.
        regs: Vec<Registration>,
    },
    /// Answer to [`Msg::Registered`]: applied.
    RegisteredAck(Corr),
    /// The game's session ended for good.
    Unregistered {
        /// The game.
        id: GameId,
        /// Its last owner.
        owner: MemberId,
    },
    /// Reserve a join code for a game (the receiver is the code's home).
    Claim {
        /// Repeated in the answer.
        corr: Corr,
        /// The code.
        code: JoinCode,
        /// The game that wants it.
        id: GameId,
    },
    /// Answer to [`Msg::Claim`]: whether the code is the game's.
    Claimed {
        /// The request's number.
        corr: Corr,
        /// Whether the claim holds.
        ok: bool,
    },
    /// Run a game here under `epoch`. A repeat of a start that is running or
    /// ran (same game, same epoch) gets the same answer.
    Start {
        /// Repeated in the answer.
        corr: Corr,
        /// The game's state.
        snapshot: Snapshot,
        /// The epoch its registration takes.
        epoch: u64,
        /// Members that may still hold an older copy of the game (the
        /// sender's, when it hands the game over): the receiver takes no
        /// write until each dropped it or is fenced.
        stale: Vec<StaleCopy>,
        /// A new game: the receiver claims its join code at the code's
        /// home (while the session starts and its first copy is made)
        /// and announces it only once the claim holds.
        claim: bool,
        /// The game was passive on the sender: the receiver keeps it
        /// passive (no session starts until a command comes for it).
        passive: bool,
    },
    /// Answer to [`Msg::Start`].
    Started {
        /// The request's number.
        corr: Corr,
        /// The registration, or why not.
        result: Result<Registration, Refusal>,
    },
    /// Keep these copies of the sender's games as their backup.
    Copy {
        /// Repeated in the answer.
        corr: Corr,
        /// The receiver's lease generation as the sender last saw it: a
        /// copy sent before a lapse the receiver went through counts as
        /// current only once confirmed by a [`Msg::Holdings`].
        gen: u64,
        /// Each game's registration epoch and its state or change.
        copies: Vec<(u64, Update)>,
    },
    /// Answer to [`Msg::Copy`]: every copy is kept (`true`), or none is
    /// (the receiver does not count the sender a live member).
    Copied {
        /// The request's number.
        corr: Corr,
        /// Whether the copies are kept.
        stored: bool,
        /// Games whose [`Delta`] was not kept: the receiver holds no copy
        /// of the version before. They must be sent whole.
        behind: Vec<GameId>,
    },
    /// Forget `owner`'s copy of game `id` if it is from `epoch` or
    /// earlier: the game's copy moved away from the receiver, or the game
    /// itself moved on. Answered with [`Msg::Dropped`].
    DropCopy {
        /// The game.
        id: GameId,
        /// Whose copy: the sender's own, or an earlier owner's.
        owner: MemberId,
        /// The latest epoch of a copy to forget; a newer one is kept.
        epoch: u64,
    },
    /// The receiver holds no copy of game `id` from `owner` up to the
    /// epoch a [`Msg::DropCopy`] named.
    Dropped {
        /// The game.
        id: GameId,
        /// Whose copy.
        owner: MemberId,
    },
    /// The games of the sender's that the receiver is the backup of; the
    /// receiver forgets any other copy from the sender (one left behind by a
    /// lost [`Msg::DropCopy`]).
    Holdings {
        /// The receiver's lease generation as the sender last saw it: the
        /// listed copies are current in that generation.
        gen: u64,
        /// Each game, sorted, with the version the receiver holds of it.
        games: Vec<(GameId, u64)>,
    },
    /// Send back the copy held of this game (a session failed and restarts).
    Fetch {
        /// Repeated in the answer.
        corr: Corr,
        /// The game.
        id: GameId,
    },
    /// Answer to [`Msg::Fetch`].
    Fetched {
        /// The request's number.
        corr: Corr,
        /// The copy, if held.
        snapshot: Option<Snapshot>,
    },
    /// The sender is draining and takes no new sessions.
    Leaving,
    /// The sender has handed everything over and is stopping.
    Bye,
    /// A digest of the games registered to the sender, as it sees them
    /// (`Table::digest_of`), sent every
    /// sweep: a receiver whose view differs twice in a row asks for a
    /// [`Msg::Sync`].
    Digest {
        /// How many games.
        count: u64,
        /// The hash of their ids and epochs.
        hash: u64,
    },
    /// Send me a [`Msg::Sync`]: my view of your games differs from yours.
    SyncPlease,
    /// The games of a [`Msg::Holdings`] of which the receiver has no copy
    /// here (dropped while it was counted down, say): copy them again.
    Missing(Vec<GameId>),
    /// Renew the sender's lease: answered with [`Msg::Granted`] unless the
    /// receiver counts the sender down or witnessed the end of generation
    /// `gen` of its leases.
    Lease {
        /// Repeated in the answer.
        seq: u64,
        /// The sender's lease generation.
        gen: u64,
    },
    /// Answer to [`Msg::Lease`]: granted.
    Granted {
        /// The request's `seq`.
        seq: u64,
        /// The newest of the requester's generations the grantor witnessed
        /// the end of (or learnt fenced) before this grant, if any: copies
        /// the requester kept in a later generation were never fenced by a
        /// majority that includes the grantor.
        refused_upto: Option<u64>,
    },
    /// The sender counts `member` down and has granted it nothing for
    /// longer than any lease of generation `gen` lasts, and never will.
    Expired {
        /// The silent member.
        member: MemberId,
        /// The generation of its leases that ended.
        gen: u64,
    },
    /// A majority witnessed the end of `member`'s leases of generation
    /// `gen`: its games may be taken over.
    Fenced {
        /// The fenced member.
        member: MemberId,
        /// Its generation that ended.
        gen: u64,
    },
    /// Send me a [`Msg::Sync`], then [`Msg::SyncedFor`]: my lease lapsed in
    /// generation `gen - 1`, and my games wait to learn whether another
    /// member took them over meanwhile.
    SyncFor(u64),
    /// Every game the sender owns was sent just before this, in answer to
    /// [`Msg::SyncFor`] of the given generation.
    SyncedFor(u64),
    /// Part of the answer to [`Msg::SyncFor`]: the copies the sender holds
    /// of other members' games, with their epochs and versions. A copy of a
    /// game newer than the asker's state of it (a takeover by a member since
    /// fenced, or a copy a failed-over game was not restarted from) means
    /// the asker's game stays unconfirmed.
    HeldFor {
        /// The generation asked for.
        gen: u64,
        /// Each game, its copy's epoch and its version.
        copies: Vec<(GameId, u64, u64)>,
    },
}

impl Msg {
    /// The message's kind, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Ping => "Ping",
            Msg::Members { .. } => "Members",
            Msg::Sync { .. } => "Sync",
            Msg::Registered { .. } => "Registered",
            Msg::RegisteredAck { .. } => "RegisteredAck",
            Msg::Unregistered { .. } => "Unregistered",
            Msg::Claim { .. } => "Claim",
            Msg::Claimed { .. } => "Claimed",
            Msg::Start { .. } => "Start",
            Msg::Started { .. } => "Started",
            Msg::Copy { .. } => "Copy",
            Msg::Copied { .. } => "Copied",
            Msg::DropCopy { .. } => "DropCopy",
            Msg::Dropped { .. } => "Dropped",
            Msg::Holdings { .. } => "Holdings",
            Msg::Fetch { .. } => "Fetch",
            Msg::Fetched { .. } => "Fetched",
            Msg::Leaving => "Leaving",
            Msg::Bye => "Bye",
            Msg::Digest { .. } => "Digest",
            Msg::SyncPlease => "SyncPlease",
            Msg::Missing { .. } => "Missing",
            Msg::Lease { .. } => "Lease",
            Msg::Granted { .. } => "Granted",
            Msg::Expired { .. } => "Expired",
            Msg::Fenced { .. } => "Fenced",
            Msg::SyncFor { .. } => "SyncFor",
            Msg::SyncedFor { .. } => "SyncedFor",
            Msg::HeldFor { .. } => "HeldFor",
        }
    }
}
