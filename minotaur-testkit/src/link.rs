//! In-memory network links between cluster nodes of one test process, with
//! fault injection.
//!
//! [`pair`] returns two connected [`ClusterBidiStream`]s that can be handed to
//! two `ractor_cluster` `NodeServer`s (one with
//! `NodeServerMessage::ConnectionOpenedExternal { is_server: true, .. }`, the
//! other with `ractor_cluster::client_connect_external`). Each direction of the
//! link is steered by a [`Direction`]: it can be *held* (a silent stall, as in
//! a network partition), slowed down by a fixed *latency*, or *closed* (a hard
//! cut of the whole link).
//!
//! # How it works
//!
//! Each end is one side of a `tokio::io::duplex` pipe whose other side belongs
//! to the link. One pump task per direction reads from the sender's pipe as
//! fast as bytes arrive and keeps them in an in-order queue, each chunk with the
//! instant at which it may be delivered (arrival + latency). Whenever the
//! direction is not held, due chunks are written to the receiver's pipe. The
//! pumps wake on data, on timers and on fault changes (`tokio::sync::watch`);
//! they never poll.
//!
//! # End of a link
//!
//! * [`Direction::close`] (on either direction) cuts the whole link: both pumps
//!   stop, queued bytes are dropped, and both ends read EOF (after whatever was
//!   already delivered) and get `BrokenPipe` when writing.
//! * When one end is dropped (or shuts down its writer), the direction leaving
//!   that end carries the news like a TCP FIN: once everything queued before it
//!   has been delivered, the link ends and the other end sees EOF. A *held*
//!   direction never delivers EOF by itself: the news waits for the release.
//! * When both ends are gone, the pumps exit whatever the faults: no task
//!   outlives the link.
//!
//! While a direction is held, its queue grows without bound: writers never
//! block. That is fine for test traffic; do not hold a link under bulk load.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream};
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, ReadHalf, WriteHalf,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Capacity of each in-memory pipe, in bytes.
const PIPE_CAPACITY: usize = 64 * 1024;
/// Largest chunk a pump reads at once.
const CHUNK_SIZE: usize = 16 * 1024;

/// The fault settings of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    held: bool,
    latency: Duration,
    closed: bool,
}

/// Fault settings of one direction of a link; cheap to clone, shared with the
/// pump task.
///
/// Clones control the same direction. A `Direction` may even be shared by
/// several links, which then all obey it (handy to partition a node from all of
/// its peers at once); [`close`](Direction::close) is permanent and cuts every
/// link using it.
#[derive(Clone, Debug)]
pub struct Direction {
    faults: watch::Sender<Faults>,
}

impl Default for Direction {
    fn default() -> Self {
        Self::new()
    }
}

impl Direction {
    /// A healthy direction: not held, no latency, open.
    pub fn new() -> Self {
        Self {
            faults: watch::Sender::new(Faults::default()),
        }
    }

    /// Holds (`true`) or releases (`false`) this direction.
    ///
    /// While held, bytes are accepted from the writer and buffered, but nothing
    /// is delivered: no data, no EOF, no error. On release the buffered bytes
    /// flow in order (chunks whose latency has already elapsed at once).
    pub fn set_held(&self, held: bool) {
        self.faults.send_if_modified(|f| {
            let changed = f.held != held;
            f.held = held;
            changed
        });
    }

    /// Delays every chunk written from now on by `latency` (order is
    /// preserved). Chunks already in flight keep their delivery time.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_if_modified(|f| {
            let changed = f.latency != latency;
            f.latency = latency;
            changed
        });
    }

    /// Cuts every link using this direction, in both directions: queued bytes
    /// are dropped and both ends see EOF when reading and errors when writing
    /// soon after. Permanent.
    pub fn close(&self) {
        self.faults.send_if_modified(|f| {
            let changed = !f.closed;
            f.closed = true;
            changed
        });
    }

    /// Whether this direction is currently held.
    pub fn is_held(&self) -> bool {
        self.faults.borrow().held
    }

    /// The latency currently applied to new chunks.
    pub fn latency(&self) -> Duration {
        self.faults.borrow().latency
    }

    /// Whether [`close`](Direction::close) was called.
    pub fn is_closed(&self) -> bool {
        self.faults.borrow().closed
    }
}

/// Creates a connected pair of streams. Bytes written to `a` arrive at `b`
/// under `a_to_b`'s faults, and vice versa.
///
/// The labels name the two ends for diagnostics: `a` reports `a_label` as its
/// local label and `b_label` as its peer label (ractor_cluster shows the peer
/// label as the session's peer address).
///
/// # Panics
///
/// Must be called from within a Tokio runtime (it spawns the two pump tasks).
pub fn pair(
    a_label: &str,
    b_label: &str,
    a_to_b: Direction,
    b_to_a: Direction,
) -> (Box<dyn ClusterBidiStream>, Box<dyn ClusterBidiStream>) {
    let (a, b, _pumps) = spawn_link(a_label, b_label, a_to_b, b_to_a);
    (Box::new(a), Box::new(b))
}

/// Which end of a link.
const SIDE_A: usize = 0;
const SIDE_B: usize = 1;

/// State shared by the two pumps of one link.
#[derive(Clone, Copy, Debug, Default)]
struct LinkState {
    /// `gone[side]`: that end will write no more (dropped or shut down).
    gone: [bool; 2],
    /// The link is over; both pumps must stop.
    ended: bool,
}

/// Builds a link and returns its two ends and its two pump tasks.
fn spawn_link(
    a_label: &str,
    b_label: &str,
    a_to_b: Direction,
    b_to_a: Direction,
) -> (LinkEnd, LinkEnd, [JoinHandle<()>; 2]) {
    let (a_user, a_link) = tokio::io::duplex(PIPE_CAPACITY);
    let (b_user, b_link) = tokio::io::duplex(PIPE_CAPACITY);
    let (a_link_read, a_link_write) = tokio::io::split(a_link);
    let (b_link_read, b_link_write) = tokio::io::split(b_link);
    let state = watch::Sender::new(LinkState::default());
    let name = format!("{a_label}<->{b_label}");

    let a_pump = Pump {
        name: format!("{a_label}->{b_label}"),
        src: a_link_read,
        dst: b_link_write,
        src_side: SIDE_A,
        direction: a_to_b,
        state: state.clone(),
    };
    let b_pump = Pump {
        name: format!("{b_label}->{a_label}"),
        src: b_link_read,
        dst: a_link_write,
        src_side: SIDE_B,
        direction: b_to_a,
        state,
    };
    let handles = [tokio::spawn(a_pump.run()), tokio::spawn(b_pump.run())];
    tracing::debug!(link = %name, "in-memory link opened");

    let a = LinkEnd {
        stream: a_user,
        local: a_label.to_owned(),
        peer: b_label.to_owned(),
    };
    let b = LinkEnd {
        stream: b_user,
        local: b_label.to_owned(),
        peer: a_label.to_owned(),
    };
    (a, b, handles)
}

/// One end of a link.
#[derive(Debug)]
struct LinkEnd {
    stream: DuplexStream,
    local: String,
    peer: String,
}

impl ClusterBidiStream for LinkEnd {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.stream);
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.clone())
    }

    fn local_label(&self) -> Option<String> {
        Some(self.local.clone())
    }
}

impl AsyncRead for LinkEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LinkEnd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Moves the bytes of one direction.
struct Pump {
    name: String,
    /// The link's side of the sender's pipe.
    src: ReadHalf<DuplexStream>,
    /// The link's side of the receiver's pipe.
    dst: WriteHalf<DuplexStream>,
    src_side: usize,
    /// Kept so that the faults channel never closes while the pump runs.
    direction: Direction,
    state: watch::Sender<LinkState>,
}

/// Why a pump stopped.
#[derive(Debug, Clone, Copy)]
enum PumpEnd {
    Closed,
    OtherPumpEnded,
    BothEndsGone,
    SenderFinished,
}

impl Pump {
    async fn run(self) {
        let Pump {
            name,
            mut src,
            mut dst,
            src_side,
            direction,
            state,
        } = self;
        let mut faults_rx = direction.faults.subscribe();
        let mut state_rx = state.subscribe();
        let mut buf = vec![0u8; CHUNK_SIZE];
        // Chunks not yet delivered, with the instant they become due.
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        // Bytes of the front chunk already delivered.
        let mut offset = 0;
        let mut src_open = true;
        let mut dst_open = true;

        let end = loop {
            let faults = *faults_rx.borrow_and_update();
            let link = *state_rx.borrow_and_update();
            if faults.closed {
                break PumpEnd::Closed;
            }
            if link.ended {
                break PumpEnd::OtherPumpEnded;
            }
            if link.gone.iter().all(|gone| *gone) {
                break PumpEnd::BothEndsGone;
            }
            if !src_open && !faults.held && (queue.is_empty() || !dst_open) {
                break PumpEnd::SenderFinished;
            }

            let due = match queue.front() {
                Some((at, chunk)) if dst_open && !faults.held => Some((*at, &chunk[offset..])),
                _ => None,
            };
            tokio::select! {
                biased;
                changed = faults_rx.changed() => {
                    // Cannot fail: `direction` keeps the sender alive.
                    if changed.is_err() {
                        break PumpEnd::Closed;
                    }
                }
                changed = state_rx.changed() => {
                    // Cannot fail: `state` keeps the sender alive.
                    if changed.is_err() {
                        break PumpEnd::OtherPumpEnded;
                    }
                }
                written = deliver(&mut dst, due), if due.is_some() => match written {
                    Ok(n) if n > 0 => {
                        offset += n;
                        if queue.front().is_some_and(|(_, chunk)| offset >= chunk.len()) {
                            queue.pop_front();
                            offset = 0;
                        }
                    }
                    // The receiving end is gone: nobody will read any more.
                    _ => {
                        dst_open = false;
                        queue.clear();
                        offset = 0;
                    }
                },
                read = src.read(&mut buf), if src_open => match read {
                    Ok(n) if n > 0 => {
                        if dst_open {
                            let at = Instant::now() + faults.latency;
                            queue.push_back((at, buf[..n].to_vec()));
                        }
                    }
                    _ => {
                        src_open = false;
                        state.send_modify(|s| s.gone[src_side] = true);
                    }
                },
            }
        };

        state.send_modify(|s| s.ended = true);
        // EOF for the receiving end (after what was already delivered); the
        // pipes are closed for good when both pumps have dropped their halves.
        let _ = dst.shutdown().await;
        tracing::debug!(direction = %name, reason = ?end, "in-memory link pump stopped");
    }
}

/// Waits until the chunk is due, then writes (part of) it. Cancel safe: if
/// the future is dropped before completing, nothing was written.
async fn deliver(
    dst: &mut WriteHalf<DuplexStream>,
    due: Option<(Instant, &[u8])>,
) -> std::io::Result<usize> {
    match due {
        Some((at, bytes)) => {
            tokio::time::sleep_until(at).await;
            dst.write(bytes).await
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    const SHORT: Duration = Duration::from_secs(1);

    /// With the paused clock, an `Err` here means "nothing arrived, ever":
    /// the runtime only jumps forward when every task is idle.
    async fn read_some(end: &mut LinkEnd, within: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(within, end.read(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            Ok(Err(err)) => panic!("read failed: {err}"),
            Err(_elapsed) => None,
        }
    }

    async fn read_exactly(end: &mut LinkEnd, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(SHORT, end.read_exact(&mut buf))
            .await
            .expect("bytes should arrive")
            .expect("read should succeed");
        buf
    }

    async fn join_pumps(pumps: [JoinHandle<()>; 2]) {
        for pump in pumps {
            tokio::time::timeout(SHORT, pump)
                .await
                .expect("pump should stop")
                .expect("pump should not panic");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_flow_both_ways() {
        let (mut a, mut b, _pumps) = spawn_link("a", "b", Direction::new(), Direction::new());
        a.write_all(b"hello").await.expect("write a");
        assert_eq!(read_exactly(&mut b, 5).await, b"hello");
        b.write_all(b"world!").await.expect("write b");
        assert_eq!(read_exactly(&mut a, 6).await, b"world!");
    }

    #[tokio::test(start_paused = true)]
    async fn large_transfers_keep_order() {
        let (mut a, mut b, _pumps) = spawn_link("a", "b", Direction::new(), Direction::new());
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.expect("write a");
            a
        });
        assert_eq!(read_exactly(&mut b, payload.len()).await, payload);
        writer.await.expect("writer task");
    }

    #[tokio::test(start_paused = true)]
    async fn held_bytes_are_delivered_in_order_after_release() {
        let a_to_b = Direction::new();
        let (mut a, mut b, _pumps) = spawn_link("a", "b", a_to_b.clone(), Direction::new());
        a_to_b.set_held(true);
        assert!(a_to_b.is_held());

        a.write_all(b"one").await.expect("write");
        a.write_all(b"two").await.expect("write");
        assert_eq!(read_some(&mut b, Duration::from_secs(60)).await, None);

        // The other direction still flows.
        b.write_all(b"back").await.expect("write");
        assert_eq!(read_exactly(&mut a, 4).await, b"back");

        a_to_b.set_held(false);
        assert!(!a_to_b.is_held());
        assert_eq!(read_exactly(&mut b, 6).await, b"onetwo");
        a.write_all(b"three").await.expect("write");
        assert_eq!(read_exactly(&mut b, 5).await, b"three");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_delivery() {
        let a_to_b = Direction::new();
        let latency = Duration::from_millis(100);
        a_to_b.set_latency(latency);
        assert_eq!(a_to_b.latency(), latency);
        let (mut a, mut b, _pumps) = spawn_link("a", "b", a_to_b, Direction::new());

        let start = Instant::now();
        a.write_all(b"ping").await.expect("write");
        // Let the pump take the bytes before moving the clock by hand.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(read_some(&mut b, Duration::ZERO).await, None);

        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(read_exactly(&mut b, 4).await, b"ping");
        assert_eq!(start.elapsed(), latency);

        // Order is preserved across chunks, each delayed from its own write.
        let start = Instant::now();
        a.write_all(b"x").await.expect("write");
        // The paused clock only jumps once every task is idle, so the pump
        // has taken `x` at `start`.
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.write_all(b"y").await.expect("write");
        assert_eq!(read_exactly(&mut b, 1).await, b"x");
        assert_eq!(start.elapsed(), latency);
        assert_eq!(read_exactly(&mut b, 1).await, b"y");
        assert_eq!(start.elapsed(), latency + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn held_bytes_already_due_flow_at_once_on_release() {
        let a_to_b = Direction::new();
        a_to_b.set_latency(Duration::from_millis(100));
        a_to_b.set_held(true);
        let (mut a, mut b, _pumps) = spawn_link("a", "b", a_to_b.clone(), Direction::new());
        a.write_all(b"late").await.expect("write");
        assert_eq!(read_some(&mut b, Duration::from_secs(1)).await, None);
        let released = Instant::now();
        a_to_b.set_held(false);
        assert_eq!(read_exactly(&mut b, 4).await, b"late");
        assert_eq!(released.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn close_gives_eof_on_both_sides() {
        let a_to_b = Direction::new();
        let (mut a, mut b, pumps) = spawn_link("a", "b", a_to_b.clone(), Direction::new());
        a.write_all(b"before").await.expect("write");
        assert_eq!(read_exactly(&mut b, 6).await, b"before");

        a_to_b.close();
        assert!(a_to_b.is_closed());
        assert_eq!(read_some(&mut a, SHORT).await, Some(vec![]));
        assert_eq!(read_some(&mut b, SHORT).await, Some(vec![]));
        join_pumps(pumps).await;
        for end in [&mut a, &mut b] {
            let err = end
                .write_all(b"after")
                .await
                .expect_err("write after close");
            assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn close_cuts_a_held_link_too() {
        let (a_to_b, b_to_a) = (Direction::new(), Direction::new());
        let (mut a, mut b, pumps) = spawn_link("a", "b", a_to_b.clone(), b_to_a.clone());
        a_to_b.set_held(true);
        b_to_a.set_held(true);
        a.write_all(b"lost").await.expect("write");
        b_to_a.close();
        assert_eq!(read_some(&mut a, SHORT).await, Some(vec![]));
        assert_eq!(read_some(&mut b, SHORT).await, Some(vec![]));
        join_pumps(pumps).await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_one_end_gives_eof_after_pending_bytes() {
        let (mut a, mut b, pumps) = spawn_link("a", "b", Direction::new(), Direction::new());
        a.write_all(b"last words").await.expect("write");
        drop(a);
        assert_eq!(read_exactly(&mut b, 10).await, b"last words");
        assert_eq!(read_some(&mut b, SHORT).await, Some(vec![]));
        join_pumps(pumps).await;
    }

    #[tokio::test(start_paused = true)]
    async fn held_direction_never_delivers_eof_by_itself() {
        let a_to_b = Direction::new();
        let (a, mut b, pumps) = spawn_link("a", "b", a_to_b.clone(), Direction::new());
        a_to_b.set_held(true);
        drop(a);
        assert_eq!(read_some(&mut b, Duration::from_secs(60)).await, None);
        assert!(!pumps[0].is_finished());

        a_to_b.set_held(false);
        assert_eq!(read_some(&mut b, SHORT).await, Some(vec![]));
        join_pumps(pumps).await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_both_ends_stops_the_pumps() {
        let (a, b, pumps) = spawn_link("a", "b", Direction::new(), Direction::new());
        drop(a);
        drop(b);
        join_pumps(pumps).await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_both_ends_of_a_held_link_stops_the_pumps() {
        let (a_to_b, b_to_a) = (Direction::new(), Direction::new());
        a_to_b.set_held(true);
        b_to_a.set_held(true);
        let (mut a, mut b, pumps) = spawn_link("a", "b", a_to_b.clone(), b_to_a.clone());
        a.write_all(b"queued").await.expect("write");
        b.write_all(b"queued").await.expect("write");
        drop(a);
        drop(b);
        join_pumps(pumps).await;
        // The directions outlive the link and stay usable.
        assert!(a_to_b.is_held() && b_to_a.is_held());
    }

    #[tokio::test(start_paused = true)]
    async fn pair_streams_split_for_ractor_cluster() {
        let (a, b) = pair("node-a", "node-b", Direction::new(), Direction::new());
        assert_eq!(a.local_label().as_deref(), Some("node-a"));
        assert_eq!(a.peer_label().as_deref(), Some("node-b"));
        assert_eq!(b.local_label().as_deref(), Some("node-b"));
        assert_eq!(b.peer_label().as_deref(), Some("node-a"));

        let (mut a_read, mut a_write) = a.split();
        let (mut b_read, mut b_write) = b.split();
        a_write.write_all(&7u64.to_be_bytes()).await.expect("write");
        let got = tokio::time::timeout(SHORT, b_read.read_u64()).await;
        assert_eq!(got.expect("in time").expect("read"), 7);
        b_write.write_all(b"ok").await.expect("write");
        let mut buf = [0u8; 2];
        tokio::time::timeout(SHORT, a_read.read_exact(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&buf, b"ok");

        // Dropping both halves of `a` ends the link for `b`.
        drop(a_read);
        drop(a_write);
        let eof = tokio::time::timeout(SHORT, b_read.read(&mut buf)).await;
        assert_eq!(eof.expect("in time").expect("read"), 0);
    }
}
