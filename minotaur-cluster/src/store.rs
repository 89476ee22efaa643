//! The node's durable store ([`NodeConfig::data_dir`](crate::NodeConfig)):
//! the games this node owns, each with its registration and latest state,
//! in one redb file. A change is committed, and fsynced, before it is
//! acknowledged; the changes that arrive while one commits go in the next
//! commit together (a group commit). A node restarted with its data dir
//! registers and serves these games again.
//!
//! One thread per node writes, in the order it was asked: a game's record
//! is written when this node takes the game (`keep`), updated by its
//! session's saves (`save`) and removed when the game leaves (`forget`).

use crate::control::wire::Snapshot;
use crate::registry::Registration;
use minotaur_core::{codec, GameId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The store's file in the data dir.
pub const FILE_NAME: &str = "minotaur.redb";

/// The format this release writes; it reads this one only, and refuses a
/// store of another rather than misread it. Format 2 numbers each game's
/// events by version and remembers the version each write made.
pub const FORMAT: u64 = 2;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const GAMES: TableDefinition<u128, &[u8]> = TableDefinition::new("games");

/// Writes a commit takes at most: a bound on how long the first of them
/// waits for the last.
const MOST_PER_COMMIT: usize = 4096;

/// Why a store could not be opened, read or written. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created.
    #[error("cannot create the data dir {path}: {reason}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// Another process (or node) has the store open.
    #[error("the store {path} is in use by another process")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a store, or it is damaged (truncated, overwritten).
    #[error("the store {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was found wrong.
        reason: String,
    },
    /// The store was written by a newer release, in a format this one
    /// cannot read.
    #[error("the store {path} has format {found}; this release reads format {supported} only")]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The store's format.
        found: u64,
        /// The format this release reads.
        supported: u64,
    },
    /// The store was written by an older release, in a format this one
    /// cannot read. Its games reach this release through the cluster:
    /// run the older release and stop it gracefully (its games are handed
    /// over), then start this one with an empty data dir.
    #[error(
        "the store {path} has format {found}, from an older release; this release reads \
         format {supported} only: hand its games over with the older release, then start \
         with an empty data dir"
    )]
    OlderFormat {
        /// The file.
        path: PathBuf,
        /// The store's format.
        found: u64,
        /// The format this release reads.
        supported: u64,
    },
    /// Reading or writing failed.
    #[error("the store {path} failed: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// A game as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Record {
    reg: Registration,
    version: u64,
    state: Vec<u8>,
    changes: Vec<Vec<u8>>,
}

/// A game found in the store when it opened: its registration as last
/// kept, and its latest state.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its registration (owner, epoch) when this node last took it.
    pub reg: Registration,
    /// Its latest state.
    pub snapshot: Snapshot,
}

enum Op {
    Keep(Box<Record>),
    Save {
        id: GameId,
        version: u64,
        state: Vec<u8>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Forget(GameId),
    /// Commit what came before, then close the file.
    Close(oneshot::Sender<()>),
}

/// Told which kept games are committed (`true`) or failed to be.
pub type OnKept = Box<dyn Fn(Vec<GameId>, bool) + Send>;

/// A handle on a node's store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::UnboundedSender<Op>,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens the store in `dir` (creating both if need be) and returns it
    /// with the games it holds. `on_kept` hears when the records asked for
    /// with [`Store::keep`] are committed.
    pub fn open(dir: &Path, on_kept: OnKept) -> Result<(Store, Vec<Stored>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_when_free(&path)?;
        check_format(&db, &path)?;
        let stored = load(&db, &path)?;
        let (ops, rx) = mpsc::unbounded_channel();
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("minotaur-store".into())
            .spawn(move || write_all(db, writer_path, rx, on_kept))
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                reason: format!("writer thread: {e}"),
            })?;
        let store = Store {
            ops,
            path: Arc::new(path),
        };
        Ok((store, stored))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes game `reg.id`'s record: this node took it, in the state
    /// `snapshot`. Reported to `on_kept` once committed.
    pub fn keep(&self, reg: Registration, snapshot: Snapshot) {
        let record = Record {
            reg,
            version: snapshot.version,
            state: snapshot.state,
            changes: snapshot.changes,
        };
        let _ = self.ops.send(Op::Keep(Box::new(record)));
    }

    /// Saves game `id`'s state at `version`; resolves once committed. A
    /// game this store keeps no record of (it left meanwhile) is not
    /// written.
    pub async fn save(&self, id: GameId, version: u64, state: Vec<u8>) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let op = Op::Save {
            id,
            version,
            state,
            done,
        };
        let closed = || StoreError::Io {
            path: self.path.to_path_buf(),
            reason: "the store is closed".into(),
        };
        self.ops.send(op).map_err(|_| closed())?;
        committed.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Removes game `id`'s record: it is no longer this node's.
    pub fn forget(&self, id: GameId) {
        let _ = self.ops.send(Op::Forget(id));
    }

    /// Commits what was asked so far and closes the file, so that a node
    /// started next on the same data dir can open it; later writes fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.ops.send(Op::Close(done)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), closed).await;
        }
    }
}

/// How long an open waits for the store's previous holder in this process
/// (a node stopped a moment ago) to let go of it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the file, waiting up to [`LOCK_WAIT`] while another holder has
/// it: a node restarted in the same process finds its predecessor's store
/// closing. Blocks the thread meanwhile.
fn open_when_free(path: &Path) -> Result<Database, StoreError> {
    let since = std::time::Instant::now();
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if since.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(classify(path, e)),
        }
    }
}

/// The store's error for a redb error.
fn classify(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let path = path.to_path_buf();
    match e.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked { path }
        }
        redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
        redb::Error::UpgradeRequired(v) => StoreError::Corrupt {
            path,
            reason: format!("written by an older redb (file format {v})"),
        },
        redb::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Corrupt {
                path,
                reason: e.to_string(),
            }
        }
        other => StoreError::Io {
            path,
            reason: other.to_string(),
        },
    }
}

/// Marks a new store with [`FORMAT`]; refuses one of another format.
fn check_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(|e| classify(path, e))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| classify(path, e))?;
        let found = meta
            .get("format")
            .map_err(|e| classify(path, e))?
            .map(|v| v.value());
        match found {
            None => {
                meta.insert("format", FORMAT)
                    .map_err(|e| classify(path, e))?;
            }
            Some(found) if found > FORMAT => {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found,
                    supported: FORMAT,
                })
            }
            Some(found) if found < FORMAT => {
                return Err(StoreError::OlderFormat {
                    path: path.to_path_buf(),
                    found,
                    supported: FORMAT,
                })
            }
            Some(_) => {}
        }
        txn.open_table(GAMES).map_err(|e| classify(path, e))?;
    }
    txn.commit().map_err(|e| classify(path, e))
}

/// Every game the store holds.
fn load(db: &Database, path: &Path) -> Result<Vec<Stored>, StoreError> {
    let txn = db.begin_read().map_err(|e| classify(path, e))?;
    let games = txn.open_table(GAMES).map_err(|e| classify(path, e))?;
    let mut stored = Vec::new();
    for entry in games.iter().map_err(|e| classify(path, e))? {
        let (key, value) = entry.map_err(|e| classify(path, e))?;
        let id = GameId(uuid::Uuid::from_u128(key.value()));
        let record: Record = codec::decode(value.value()).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the record of game {id} does not decode: {e}"),
        })?;
        if record.reg.id != id {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("the record under game {id} is of game {}", record.reg.id),
            });
        }
        let snapshot = Snapshot {
            id,
            version: record.version,
            join_code: record.reg.join_code.clone(),
            users: record.reg.users.clone(),
            active: true,
            state: record.state,
            changes: record.changes,
        };
        stored.push(Stored {
            reg: record.reg,
            snapshot,
        });
    }
    Ok(stored)
}

/// The writer thread: commits what is asked, in order, as many writes per
/// commit as are waiting.
fn write_all(db: Database, path: PathBuf, mut ops: mpsc::UnboundedReceiver<Op>, on_kept: OnKept) {
    let mut closing = None;
    while let Some(first) = ops.blocking_recv() {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(op) = next.take() {
            if let Op::Close(done) = op {
                closing = Some(done);
                break;
            }
            batch.push(op);
            if batch.len() < MOST_PER_COMMIT {
                next = ops.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_and_tell(&db, &path, batch, &on_kept);
        }
        if closing.is_some() {
            break;
        }
    }
    // Closed (or every handle dropped): the file is free for the next node.
    drop(db);
    ops.close();
    while let Ok(op) = ops.try_recv() {
        if let Op::Save { done, .. } = op {
            let _ = done.send(Err(StoreError::Io {
                path: path.clone(),
                reason: "the store is closed".into(),
            }));
        }
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Commits `batch` and tells each writer how it went.
fn commit_and_tell(db: &Database, path: &Path, mut batch: Vec<Op>, on_kept: &OnKept) {
    let result = commit(db, path, &mut batch);
    if let Err(e) = &result {
        tracing::error!(error = %e, "store commit failed");
    }
    let mut kept = Vec::new();
    for op in batch {
        match op {
            Op::Keep(record) => kept.push(record.reg.id),
            Op::Save { done, .. } => {
                let _ = done.send(result.clone());
            }
            Op::Forget(_) | Op::Close(_) => {}
        }
    }
    if !kept.is_empty() {
        on_kept(kept, result.is_ok());
    }
}

fn commit(db: &Database, path: &Path, batch: &mut [Op]) -> Result<(), StoreError> {
    let fail = |e: redb::Error| classify(path, e);
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    {
        let mut games = txn.open_table(GAMES).map_err(|e| fail(e.into()))?;
        for op in batch.iter_mut() {
            match op {
                Op::Keep(record) => {
                    let bytes = codec::encode(&**record).map_err(|e| StoreError::Io {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                    games
                        .insert(record.reg.id.0.as_u128(), bytes.as_slice())
                        .map_err(|e| fail(e.into()))?;
                }
                Op::Save {
                    id, version, state, ..
                } => {
                    let key = id.0.as_u128();
                    let old = games.get(key).map_err(|e| fail(e.into()))?;
                    let Some(old) = old.map(|v| codec::decode::<Record>(v.value())) else {
                        continue; // not ours any more
                    };
                    let mut record = old.map_err(|e| StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("the record of game {id} does not decode: {e}"),
                    })?;
                    if *version < record.version {
                        continue;
                    }
                    record.version = *version;
                    record.state = std::mem::take(state);
                    record.changes.clear();
                    let bytes = codec::encode(&record).map_err(|e| StoreError::Io {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                    games
                        .insert(key, bytes.as_slice())
                        .map_err(|e| fail(e.into()))?;
                }
                Op::Forget(id) => {
                    games.remove(id.0.as_u128()).map_err(|e| fail(e.into()))?;
                }
                Op::Close(_) => {}
            }
        }
    }
    txn.commit().map_err(|e| fail(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemberId;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    fn reg(id: GameId, epoch: u64) -> Registration {
        Registration {
            id,
            join_code: "STOR".parse().unwrap(),
            users: vec!["ann".into(), "bob".into()],
            owner: MemberId::new("n1", 7),
            epoch,
            version: 0,
        }
    }

    fn snapshot(id: GameId, version: u64, state: &[u8]) -> Snapshot {
        Snapshot {
            id,
            version,
            join_code: "STOR".parse().unwrap(),
            users: vec!["ann".into(), "bob".into()],
            active: true,
            state: state.to_vec(),
            changes: Vec::new(),
        }
    }

    /// The commits of kept games, as reported.
    type Commits = std_mpsc::Receiver<(Vec<GameId>, bool)>;

    /// Opens the store in `dir`, with the commits of kept games reported on
    /// the returned channel.
    fn open(dir: &Path) -> Result<(Store, Vec<Stored>, Commits), StoreError> {
        let (tx, rx) = std_mpsc::channel();
        let on_kept = Box::new(move |ids, ok| {
            let _ = tx.send((ids, ok));
        });
        let (store, stored) = Store::open(dir, on_kept)?;
        Ok((store, stored, rx))
    }

    fn kept(rx: &Commits) -> (Vec<GameId>, bool) {
        rx.recv_timeout(Duration::from_secs(10)).expect("a commit")
    }

    #[tokio::test]
    async fn a_store_reopened_holds_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (GameId::random(), GameId::random());
        {
            let (store, stored, rx) = open(dir.path()).unwrap();
            assert!(stored.is_empty());
            store.keep(reg(a, 3), snapshot(a, 5, b"a at 5"));
            store.keep(reg(b, 1), snapshot(b, 0, b"b at 0"));
            let mut ids = kept(&rx).0;
            while ids.len() < 2 {
                ids.extend(kept(&rx).0);
            }
            store.save(a, 6, b"a at 6".to_vec()).await.unwrap();
            store.forget(b);
            // A save of a game the store no longer holds writes nothing.
            store.save(b, 1, b"b at 1".to_vec()).await.unwrap();
        }
        let (_store, stored, _) = open(dir.path()).unwrap();
        assert_eq!(stored.len(), 1);
        let game = &stored[0];
        assert_eq!((game.reg.id, game.reg.epoch), (a, 3));
        assert_eq!(
            (game.snapshot.version, &game.snapshot.state[..]),
            (6, &b"a at 6"[..])
        );
    }

    #[test]
    fn a_file_that_is_no_store_is_reported_corrupt_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        let err = open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_truncated_store_is_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _, rx) = open(dir.path()).unwrap();
            for _ in 0..200 {
                let id = GameId::random();
                store.keep(reg(id, 1), snapshot(id, 1, &[7; 300]));
            }
            let mut n = 0;
            while n < 200 {
                n += kept(&rx).0.len();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let path = dir.path().join(FILE_NAME);
        let len = std::fs::metadata(&path).unwrap().len();
        for cut in [len / 2, len / 5, 100] {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            match open(dir.path()) {
                Err(e) => {
                    assert!(
                        matches!(e, StoreError::Corrupt { .. }),
                        "cut at {cut}: {e:?}"
                    );
                    assert!(e.to_string().contains(FILE_NAME), "{e}");
                }
                // redb may repair a store whose last commit is cut off:
                // what it returns is then a state it committed.
                Ok((_, stored, _)) => assert!(stored.len() <= 200),
            }
        }
    }

    #[test]
    fn a_second_node_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _, _) = open(dir.path()).unwrap();
        let err = open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        for found in [FORMAT + 1, FORMAT - 1] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FILE_NAME);
            {
                let db = Database::create(&path).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(META)
                    .unwrap()
                    .insert("format", found)
                    .unwrap();
                txn.commit().unwrap();
            }
            let err = open(dir.path()).err().expect("refused");
            let expected = if found > FORMAT {
                StoreError::NewerFormat {
                    path,
                    found,
                    supported: FORMAT,
                }
            } else {
                StoreError::OlderFormat {
                    path,
                    found,
                    supported: FORMAT,
                }
            };
            assert_eq!(err, expected);
        }
    }
}
