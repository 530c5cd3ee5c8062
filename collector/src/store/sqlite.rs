//! The embedded engine: an append-only log as the durability point and body store, indexed
//! into SQLite off the acknowledgement path.
//!
//! The writer thread drains every queued write into one group: it checks dedup, assigns
//! `seq`s, appends the group to the log ([`super::log`]) and `fdatasync`s once, then
//! acknowledges. The indexer thread moves acknowledged groups into SQLite (WAL,
//! `synchronous=NORMAL`) in large transactions, recording the last group it applied in the same
//! transaction; about once a second (and after every erasure) one of its commits fsyncs.
//! SQLite keeps each event's identifiers and where its record lies in the log, not its body:
//! reads take the body from the log. Writing each body once instead of three times (log, WAL,
//! database) measured 14.0 → 11.6 µs of collector CPU per event in `cargo xtask bench
//! ingest`. Erasure deletes the rows, then zeroes the records in the log once that is durable.
//! Start-up finishes any zeroing a crash cut short, replays the log past the last applied
//! group, truncating a torn tail, and rebuilds dedup from the newest rows.
//!
//! Reads wait (bounded) until the indexer has reached the last group acknowledged when they
//! were called, so a write is readable once acknowledged. Subscribers get each group after it is
//! in SQLite. Erasure is a logged record too, so it applies after every earlier append. Past
//! the index-lag bound of [`Limits`] appends wait for the indexer (up to a bound, then
//! [`StoreError::Overloaded`]); past the writer-queue bound, waiting ones included, they are
//! refused at once.

use super::dedup::{self, DedupIndex};
use super::log::{self, BodyReader, EventRow, FrameBuilder, LogWriter, Position, Record};
use super::{
    Appended, BoxFuture, CommittedBatch, EventBus, FailedEvent, Identifiers, Page, PageRequest,
    ParseMessage, StoreError, StoreStats, StoredEvent, Write, parse_seq_cursor, parse_whole,
    seq_cursor,
};
use crate::metrics::{COMMIT_BUCKETS, Histogram};
use rusqlite::{Connection, OpenFlags, params, params_from_iter};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, oneshot, watch};

const DB_FILE: &str = "events.sqlite3";
const LOG_DIR: &str = "log";
/// Stop draining the queue into one group past this many events, to bound latency.
const MAX_GROUP_EVENTS: usize = 20_000;
/// Events per indexer transaction at most. Larger ones did not index faster (50,000 gave the
/// same events/s in `cargo xtask bench ingest`), but they free the lag bound in big steps, so
/// held writes waited longer: p99 at 64 connections 274 ms with 50,000, 92 ms with 5,000.
const MAX_INDEX_EVENTS: usize = 5_000;
/// SQLite limits bound parameters; identifier sets are queried in chunks of this size.
const MAX_IDS_PER_QUERY: usize = 400;
/// How often an indexer commit fsyncs, bounding how much of the log a power loss makes the next
/// start replay.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often erased events' fingerprints older than the dedup window are deleted from SQLite.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a write waits for the index to come back under its lag bound before a 503.
const LAG_WAIT: Duration = Duration::from_secs(2);
/// How long an erasure retries emptying the WAL while other connections hold it.
const ERASE_CHECKPOINT_WAIT: Duration = Duration::from_secs(5);
/// How long a read waits for the indexer before it gives up with an error.
const READ_WAIT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
-- Rows are kept small, since SQLite rewrites what each commit touches: `write_key` and
-- `message_id` are empty when the log record holds them (as it does the body), and take no
-- bytes then. `dedup` is the (write key, messageId) fingerprint, read back at start-up.
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    write_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    dedup INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    -- Empty when the body is in the log at (log_segment, log_offset, log_len); data dirs from
    -- before that kept it here.
    body TEXT NOT NULL,
    log_segment INTEGER,
    log_offset INTEGER,
    log_len INTEGER,
    -- `seq >> CHUNK_BITS`: leads the identifier indexes (see `INDEXES`).
    chunk INTEGER
);
-- Fingerprints of erased events, so that a client retrying an erased message is still told it
-- is a duplicate rather than storing it again. (Data dirs from before fingerprints were read
-- from `events` also hold every event's here, until they leave the dedup window.)
CREATE TABLE IF NOT EXISTS dedup (
    seq INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL
);
-- Refused messages; `raw` is also in the log at (log_segment, log_offset, log_len), which an
-- erasure zeroes (none for data dirs from before that).
CREATE TABLE IF NOT EXISTS failed (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    write_key TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    raw TEXT NOT NULL,
    log_segment INTEGER,
    log_offset INTEGER,
    log_len INTEGER
);
-- Log records of erased events still to be zeroed: written with the erasure, cleared once the
-- log is zeroed (see `Indexer::scrub`).
CREATE TABLE IF NOT EXISTS scrub (
    log_segment INTEGER NOT NULL,
    log_offset INTEGER NOT NULL,
    log_len INTEGER NOT NULL
);
-- `applied_group`: the last log group in SQLite; `last_seq`: the highest seq ever assigned
-- (erasing the newest events must not let their seqs be reused).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Events by identifier, as the ownership rule of [`matching`] reads them: by user ID, and by
/// anonymous ID only the events without one. Both lead with the event's chunk of
/// 2^[`CHUNK_BITS`] seqs, so new entries go into the newest chunk's small subtree instead of
/// all over a B-tree that outgrows the page cache. Keyed by identifier alone, each insert
/// dirtied a page of its own once the indexes passed SQLite's cache: appending 2 million events
/// to the store alone (no HTTP) ran at 54,000 events/s and 16.5 µs of CPU per event, against
/// 248,000 events/s and 4.2 µs with chunks (3.8 µs at 400,000 events). Reads go chunk by chunk,
/// newest first, and stop once a page is full.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_by_user_chunk ON events (chunk, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_anon_chunk ON events (chunk, anonymous_id)
    WHERE user_id IS NULL AND anonymous_id IS NOT NULL;
";

/// Seqs per chunk of the identifier indexes, as a power of two (65,536).
const CHUNK_BITS: u32 = 16;

fn chunk_of(seq: u64) -> i64 {
    (seq >> CHUNK_BITS) as i64
}

/// Bounds that keep memory and read latency finite under overload.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events waiting for the writer (or for the index to catch up) past which appends are
    /// refused at once.
    pub max_queued_events: u64,
    /// Events acknowledged but not yet in SQLite past which appends wait for the indexer, and
    /// are refused if it does not catch up within two seconds.
    pub max_index_lag_events: u64,
    /// How long the indexer gathers groups into one transaction before committing, unless a
    /// read or a held write is waiting for them, or an erasure is among them. Each commit
    /// rewrites the B-trees' edge pages whole, so at a few requests in flight a commit per
    /// group cost more SQLite CPU than the request path itself, and its writes queued ahead of
    /// the log's `fdatasync` (`cargo xtask bench ingest -- --conns 4`: 26k events/s and p99
    /// 25 ms with a commit per group, 37k and 16 ms gathering for 20 ms).
    pub index_gather: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_queued_events: 50_000,
            max_index_lag_events: 20_000,
            index_gather: Duration::from_millis(20),
        }
    }
}

enum Command {
    Append {
        write: Write,
        reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    },
    Delete {
        ids: Identifiers,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// What the indexer's queue carries: durable groups, and wake-ups from reads and held writes
/// that want the groups up to the one named indexed now.
enum IndexMsg {
    Job(IndexJob),
    Wake(u64),
}

/// A durable group on its way into SQLite.
struct IndexJob {
    group: u64,
    last_seq: u64,
    records: Vec<Record>,
    /// Replies of the group's erasures, in record order.
    deletes: Vec<oneshot::Sender<Result<u64, StoreError>>>,
}

struct Shared {
    path: PathBuf,
    log_dir: PathBuf,
    limits: Limits,
    queue_depth: AtomicU64,
    events: AtomicU64,
    /// The last group durable in the log and acknowledged.
    acked_group: AtomicU64,
    acked_seq: AtomicU64,
    indexed_seq: AtomicU64,
    /// The last group in SQLite; reads wait on it.
    indexed_group: watch::Sender<u64>,
    readers: Mutex<Vec<Connection>>,
    bus: EventBus,
    /// Log append (write and `fdatasync`) per group.
    commits: Histogram<{ COMMIT_BUCKETS.len() }>,
}

/// SQLite engine; handle to one writer thread, one indexer thread and a pool of readers.
pub struct SqliteStore {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    /// Wakes the indexer for a waiting read or write; dropped at close so the indexer can stop.
    wake_indexer: Mutex<Option<mpsc::Sender<IndexMsg>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

fn engine(e: rusqlite::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Engine(format!("{what} {}: {e}", path.display()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn meta(conn: &Connection, key: &str) -> Result<Option<u64>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE key = ?")?;
    let mut rows = stmt.query([key])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get::<_, i64>(0)? as u64),
        None => None,
    })
}

fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StoreError::Engine(format!("cannot start the {name} thread: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, which must exist, recovers what the log
    /// holds beyond SQLite, and starts the writer and the indexer.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Limits::default())
    }

    pub fn open_with(dir: &Path, limits: Limits) -> Result<Self, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Engine(format!(
                "data dir {} does not exist or is not a directory",
                dir.display()
            )));
        }
        let path = dir.join(DB_FILE);
        let log_dir = dir.join(LOG_DIR);
        std::fs::create_dir_all(&log_dir).map_err(|e| io_error("cannot create", &log_dir, e))?;
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Engine(format!("cannot open {}: {e}", path.display())))?;
        // Small pages: each commit rewrites the B-trees' partly filled edge pages whole, and
        // with bodies in the log and inserts confined to a chunk, 64 KiB pages made SQLite write
        // 1,370 bytes per event at small commits against 520 with 4 KiB, for the same CPU
        // (store-only load from 4 concurrent appenders). Only takes effect when the database is
        // created.
        conn.pragma_update(None, "page_size", 4_096)
            .map_err(engine)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(engine)?;
        // The log is the durability point; SQLite commits need not fsync (see `Indexer`).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(engine)?;
        conn.pragma_update(None, "wal_autocheckpoint", 1_024)
            .map_err(engine)?;
        // 16 MiB: with 10M events stored, 32 MiB cost 37 MB of RSS for no faster indexing
        // (bench ingest --events 10000000: 131k vs 135k events/s loading, RSS 207 vs 170 MB).
        conn.pragma_update(None, "cache_size", -16_384)
            .map_err(engine)?;
        // Erasure zeroes what it deletes instead of leaving it in free space; with the
        // truncating checkpoint after each erasure, no file in the data dir keeps it.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(engine)?;
        conn.execute_batch(SCHEMA).map_err(engine)?;
        migrate_dedup_index(&conn).map_err(engine)?;
        migrate_log_positions(&conn).map_err(engine)?;
        migrate_chunks(&conn).map_err(engine)?;
        conn.execute_batch(INDEXES).map_err(engine)?;

        let mut indexer = Indexer {
            conn,
            log_dir: log_dir.clone(),
            applied_group: 0,
            wanted_group: 0,
            last_sync: Instant::now(),
            last_prune: Instant::now(),
        };
        indexer.applied_group = meta(&indexer.conn, "applied_group")
            .map_err(engine)?
            .unwrap_or(0);
        let stored_last_seq = match meta(&indexer.conn, "last_seq").map_err(engine)? {
            Some(s) => s,
            None => indexer
                .conn
                .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(engine)? as u64,
        };
        log::remove_spares(&log_dir)
            .map_err(|e| io_error("cannot remove old spare segments in", &log_dir, e))?;
        let (replayed, last_group, last_seq) = indexer.recover(stored_last_seq)?;
        // An erasure a crash interrupted between its commit and the zeroing of the log.
        indexer.scrub()?;
        let log = LogWriter::create(&log_dir, last_group + 1)
            .map_err(|e| io_error("cannot create a log segment in", &log_dir, e))?;

        let events: u64 = indexer
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map_err(engine)? as u64;
        let dedup = rebuild_dedup(&indexer.conn)?;
        tracing::info!(
            path = %path.display(),
            events,
            last_seq,
            replayed_groups = replayed,
            remembered_message_ids = dedup.len(),
            "Store opened."
        );

        let shared = Arc::new(Shared {
            path,
            log_dir,
            limits,
            queue_depth: AtomicU64::new(0),
            events: AtomicU64::new(events),
            acked_group: AtomicU64::new(last_group),
            acked_seq: AtomicU64::new(last_seq),
            indexed_seq: AtomicU64::new(last_seq),
            indexed_group: watch::Sender::new(last_group),
            readers: Mutex::new(Vec::new()),
            bus: EventBus::new(),
            commits: Histogram::new(COMMIT_BUCKETS),
        });
        let (tx, rx) = mpsc::channel();
        let (index_tx, index_rx) = mpsc::channel();
        let writer = Writer {
            log,
            shared: shared.clone(),
            dedup,
            last_seq,
            next_group: last_group + 1,
            indexer: index_tx.clone(),
            frame_buf: Vec::new(),
        };
        let indexer_shared = shared.clone();
        let threads = vec![
            spawn("seam-writer", move || {
                crate::os::raise_thread_priority();
                writer.run(rx)
            })?,
            spawn("seam-indexer", move || {
                crate::os::lower_thread_priority();
                indexer.run(index_rx, &indexer_shared)
            })?,
        ];
        let checkpointer = start_checkpointer(&shared.path)?;
        Ok(SqliteStore {
            shared,
            commands: Mutex::new(Some(tx)),
            wake_indexer: Mutex::new(Some(index_tx)),
            threads: Mutex::new(threads),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let guard = self.commands.lock().expect("commands lock");
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(cmd).map_err(|_| StoreError::Closed)
    }

    /// Stops accepting writes, lets the writer log and the indexer apply what is queued, and
    /// waits for both.
    pub fn close(&self) {
        self.commands.lock().expect("commands lock").take();
        self.wake_indexer.lock().expect("wake lock").take();
        // The writer stops first; dropping its end of the index queue then stops the indexer.
        for handle in self.threads.lock().expect("threads lock").drain(..) {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.checkpointer.lock().expect("checkpointer lock").take() {
            drop(stop);
            let _ = handle.join();
        }
    }

    /// Why a write of `n` events would be refused now, if it would.
    fn overload(&self, n: u64) -> Option<String> {
        let queued = self.shared.queue_depth.load(Ordering::Relaxed);
        (queued > 0 && queued + n > self.shared.limits.max_queued_events)
            .then(|| format!("{queued} events are waiting for the writer"))
    }

    fn index_lag(&self) -> u64 {
        let s = &self.shared;
        s.acked_seq
            .load(Ordering::Relaxed)
            .saturating_sub(s.indexed_seq.load(Ordering::Relaxed))
    }

    /// Holds a write while the index is past its lag bound, so a burst slows to the indexer's
    /// pace instead of being refused; refused only if the index does not catch up in time.
    async fn index_room(&self) -> Result<(), StoreError> {
        let max = self.shared.limits.max_index_lag_events;
        if self.index_lag() < max {
            return Ok(());
        }
        let mut indexed = self.shared.indexed_group.subscribe();
        self.hurry_indexer();
        let caught_up = indexed.wait_for(|_| self.index_lag() < max);
        match tokio::time::timeout(LAG_WAIT, caught_up).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Overloaded(format!(
                "the index is {} events behind the log",
                self.index_lag()
            ))),
        }
    }

    /// Asks the indexer to commit what it holds up to the last acknowledged group now.
    fn hurry_indexer(&self) {
        let target = self.shared.acked_group.load(Ordering::Acquire);
        if let Some(wake) = self.wake_indexer.lock().expect("wake lock").as_ref() {
            let _ = wake.send(IndexMsg::Wake(target));
        }
    }

    /// Waits until the indexer has reached every group acknowledged before the call.
    async fn caught_up(&self) -> Result<(), StoreError> {
        let target = self.shared.acked_group.load(Ordering::Acquire);
        let mut indexed = self.shared.indexed_group.subscribe();
        if *indexed.borrow() >= target {
            return Ok(());
        }
        self.hurry_indexer();
        match tokio::time::timeout(READ_WAIT, indexed.wait_for(|g| *g >= target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Engine(format!(
                "the index has not reached log group {target} after {} s",
                READ_WAIT.as_secs()
            ))),
        }
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool, once every write
    /// acknowledged before the call is readable.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.caught_up().await?;
        self.read_now(f).await
    }

    /// Runs `f` as [`SqliteStore::read`] does, on what the index holds now.
    async fn read_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().expect("readers lock").pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &shared.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(engine)?;
                    c.pragma_update(None, "cache_size", -2_048)
                        .map_err(engine)?;
                    c
                }
            };
            let result = f(&conn);
            shared.readers.lock().expect("readers lock").push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Engine(format!("read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// How often the checkpointer starts writeback of the SQLite files (see [`start_checkpointer`]).
const WRITEBACK_EVERY: Duration = Duration::from_millis(2);
/// Writeback ticks per passive checkpoint: one every 50 ms.
const TICKS_PER_CHECKPOINT: u32 = 25;

/// A thread that runs passive checkpoints (they never block the indexer) twenty times a second,
/// so copying WAL pages into the database is not the indexer's work. Small, frequent
/// checkpoints keep each database sync short, and it is those syncs that delay the log's
/// `fdatasync` (`cargo xtask bench ingest`, 4 connections: p99 32 ms every 250 ms, 26 ms every
/// 50 ms; 64 connections: 109k events/s and p99 92 ms, against 122k and 60 ms).
///
/// Between checkpoints it starts writeback of the WAL and the database every 2 ms, so that what
/// SQLite will sync goes to the disk a little at a time: a log `fdatasync` that comes while
/// SQLite syncs a large write waits for all of it. Three alternating runs each at 4
/// connections: p99 7.9, 7.9, 8.9 ms against 9.0, 9.0, 9.2 ms without, and 58, 43, 68 group
/// commits over 5 ms in 8 s against 93, 95, 95 (at 64 connections no difference beyond the
/// noise). Stops when the sender is dropped.
fn start_checkpointer(
    path: &Path,
) -> Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>), StoreError> {
    let conn = Connection::open(path).map_err(engine)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let paths = [
        path.with_file_name(format!("{DB_FILE}-wal")),
        path.to_owned(),
    ];
    let handle = spawn("seam-checkpoint", move || {
        crate::os::lower_thread_priority();
        // Opened once both exist (the WAL appears with the first write).
        let mut files: Vec<std::fs::File> = Vec::new();
        let mut tick = 0u32;
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WRITEBACK_EVERY) {
            if files.len() < paths.len() {
                files = paths
                    .iter()
                    .filter_map(|p| std::fs::File::open(p).ok())
                    .collect();
            }
            for file in &files {
                crate::os::start_writeback(file);
            }
            tick += 1;
            if !tick.is_multiple_of(TICKS_PER_CHECKPOINT) {
                continue;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "Background checkpoint failed; the indexer's own checkpoint covers it.");
            }
        }
    })?;
    Ok((stop, handle))
}

/// Data dirs from before fingerprints were read from `events` at start-up had an index for
/// that reading (and later copied the fingerprints into the `dedup` table); the index goes.
fn migrate_dedup_index(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("DROP INDEX IF EXISTS events_by_received;")
}

fn has_column(conn: &Connection, table: &str, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?",
        [table, name],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Data dirs from before bodies stayed in the log: their rows keep their bodies, and new rows
/// get the log position columns. Likewise refused messages, whose log records an erasure must
/// find.
fn migrate_log_positions(conn: &Connection) -> Result<(), rusqlite::Error> {
    for (table, what) in [
        ("events", "new bodies stay in the log"),
        ("failed", "an erasure zeroes their log records"),
    ] {
        if !has_column(conn, table, "log_segment")? {
            conn.execute_batch(&format!(
                "BEGIN;
                 ALTER TABLE {table} ADD COLUMN log_segment INTEGER;
                 ALTER TABLE {table} ADD COLUMN log_offset INTEGER;
                 ALTER TABLE {table} ADD COLUMN log_len INTEGER;
                 COMMIT;"
            ))?;
            tracing::info!("Added log positions to the {table} table: {what}.");
        }
    }
    Ok(())
}

/// Data dirs from before the identifier indexes led with the chunk: the rows get their chunk,
/// and the indexes by identifier alone go (`INDEXES` then builds the new ones).
fn migrate_chunks(conn: &Connection) -> Result<(), rusqlite::Error> {
    if !has_column(conn, "events", "chunk")? {
        conn.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE events ADD COLUMN chunk INTEGER;
             UPDATE events SET chunk = seq >> {CHUNK_BITS};
             DROP INDEX IF EXISTS events_by_user;
             DROP INDEX IF EXISTS events_by_anon;
             COMMIT;"
        ))?;
        tracing::info!("Re-indexed events by chunk and identifier.");
    }
    Ok(())
}

/// How far out of seq order `received_at` may be (a clock stepped back) for the start-up
/// reading of fingerprints to still find an event received within the dedup window.
const CLOCK_SLACK_MS: i64 = 3_600_000;

/// Reads the fingerprints of the events received within the dedup window back into memory:
/// from the newest event backwards until one received before the window (less
/// [`CLOCK_SLACK_MS`]), then those of erased events.
fn rebuild_dedup(conn: &Connection) -> Result<DedupIndex, StoreError> {
    let cutoff = now_ms() - dedup::WINDOW_MS;
    let mut index = DedupIndex::new();
    let mut stmt = conn
        .prepare("SELECT dedup, received_at FROM events ORDER BY seq DESC")
        .map_err(engine)?;
    let mut rows = stmt.query([]).map_err(engine)?;
    while let Some(row) = rows.next().map_err(engine)? {
        let fp: i64 = row.get(0).map_err(engine)?;
        let at: i64 = row.get(1).map_err(engine)?;
        if at < cutoff - CLOCK_SLACK_MS {
            break;
        }
        if at >= cutoff {
            index.insert(fp as u64, at);
        }
    }
    let mut stmt = conn
        .prepare("SELECT fingerprint, received_at FROM dedup WHERE received_at >= ?")
        .map_err(engine)?;
    let mut rows = stmt.query([cutoff]).map_err(engine)?;
    while let Some(row) = rows.next().map_err(engine)? {
        let fp: i64 = row.get(0).map_err(engine)?;
        let at: i64 = row.get(1).map_err(engine)?;
        index.insert(fp as u64, at);
    }
    Ok(index)
}

struct Writer {
    log: LogWriter,
    shared: Arc<Shared>,
    dedup: DedupIndex,
    last_seq: u64,
    next_group: u64,
    indexer: mpsc::Sender<IndexMsg>,
    /// The last frame's bytes, kept for the next one (see [`FrameBuilder::with_buffer`]).
    frame_buf: Vec<u8>,
}

/// A frame buffer that grew past this (a group of large messages) is not kept.
const KEPT_FRAME_BYTES: usize = 4 << 20;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut last_expire = now_ms();
        while let Ok(first) = rx.recv() {
            let group = drain(&rx, first);
            self.commit_group(group);
            let now = now_ms();
            if now - last_expire > 60_000 {
                self.dedup.expire(now);
                last_expire = now;
            }
        }
        tracing::info!("Writer stopped: every queued write is in the log.");
    }

    /// One log frame for the whole group; all of it is durable or none of it is.
    fn commit_group(&mut self, group: Vec<Command>) {
        let queued: u64 = group.iter().map(|c| group_events(c) as u64).sum();
        let publish = self.shared.bus.has_subscribers();
        let mut frame =
            FrameBuilder::with_buffer(self.next_group, std::mem::take(&mut self.frame_buf));
        let mut records = Vec::new();
        let mut committed = Vec::new();
        let mut fresh: Vec<(u64, i64)> = Vec::new();
        let mut pending: HashSet<u64> = HashSet::new();
        let mut appends = Vec::new();
        let mut deletes = Vec::new();
        let mut seq = self.last_seq;
        for cmd in group {
            match cmd {
                Command::Append { write, reply } => {
                    let mut appended = Vec::with_capacity(write.events.len());
                    for mut event in write.events {
                        let fp = dedup::fingerprint(&event.write_key, &event.message_id);
                        if self.dedup.contains(fp) || !pending.insert(fp) {
                            appended.push(Appended::Duplicate);
                            continue;
                        }
                        seq += 1;
                        let mut row = EventRow {
                            seq,
                            received_at_ms: event.received_at_ms,
                            fingerprint: fp,
                            write_key: std::mem::take(&mut event.write_key),
                            message_id: std::mem::take(&mut event.message_id),
                            user_id: event.user_id.take(),
                            anonymous_id: event.anonymous_id.take(),
                            at: Position::default(),
                        };
                        row.at = frame.push_event(&row, &event.json);
                        if publish {
                            let mut message = if event.message.is_empty() {
                                // Freed at append time, before this subscriber came.
                                serde_json::from_str(&event.json).unwrap_or_default()
                            } else {
                                std::mem::take(&mut event.message)
                            };
                            message.insert("seq".into(), seq.into());
                            let message = serde_json::Value::Object(message);
                            committed.push(StoredEvent {
                                seq,
                                write_key: row.write_key.clone(),
                                message,
                            });
                        }
                        fresh.push((fp, row.received_at_ms));
                        records.push(Record::Event(row));
                        appended.push(Appended::Stored { seq });
                    }
                    for failed in write.failed {
                        let at = frame.push_failed(&failed);
                        records.push(Record::Failed { failed, at });
                    }
                    appends.push((reply, appended));
                }
                Command::Delete { ids, reply } => {
                    let at = frame.push_delete(&ids);
                    records.push(Record::Delete { ids, at });
                    deletes.push(reply);
                }
            }
        }

        let bytes = frame.finish();
        let result = if records.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let appended = self.log.append(&bytes);
            self.shared.commits.observe(started.elapsed());
            appended.map(|(segment, offset)| {
                for at in records.iter_mut().filter_map(Record::position_mut) {
                    at.segment = segment;
                    at.offset += offset;
                }
            })
        };
        if bytes.capacity() <= KEPT_FRAME_BYTES {
            self.frame_buf = bytes;
        }
        self.shared.queue_depth.fetch_sub(queued, Ordering::Relaxed);
        if let Err(e) = result {
            // Nothing of this group is durable, so nobody is acknowledged.
            tracing::error!(error = %e, "Log append failed; every request of the group gets an error.");
            let err = || StoreError::Engine(format!("log append failed: {e}"));
            for (reply, _) in appends {
                let _ = reply.send(Err(err()));
            }
            for reply in deletes {
                let _ = reply.send(Err(err()));
            }
            return;
        }
        if records.is_empty() {
            for (reply, appended) in appends {
                let _ = reply.send(Ok(appended));
            }
            return;
        }
        let group = self.next_group;
        self.next_group += 1;
        self.last_seq = seq;
        self.shared
            .events
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        for (fp, at) in fresh {
            self.dedup.insert(fp, at);
        }
        if self.log.is_full()
            && let Err(e) = self.log.rotate(self.next_group)
        {
            tracing::error!(error = %e, "Cannot start a new log segment; appending to the old one.");
        }
        // Published before the replies, so a read after any acknowledgement waits for this group.
        self.shared.acked_seq.store(seq, Ordering::Release);
        self.shared.acked_group.store(group, Ordering::Release);
        // Subscribers get the group once it is durable, not once it is indexed: a read they
        // make waits for the index as above, and the messages are not held through the lag.
        if !committed.is_empty() {
            self.shared.bus.publish(CommittedBatch::from(committed));
        }
        let job = IndexJob {
            group,
            last_seq: seq,
            records,
            deletes,
        };
        if self.indexer.send(IndexMsg::Job(job)).is_err() {
            tracing::error!(
                "The indexer has stopped; the log keeps this group for the next start."
            );
        }
        for (reply, appended) in appends {
            let _ = reply.send(Ok(appended));
        }
    }
}

/// `first` and whatever else is queued, until the group holds [`MAX_GROUP_EVENTS`].
fn drain(rx: &mpsc::Receiver<Command>, first: Command) -> Vec<Command> {
    let mut n = group_events(&first);
    let mut group = vec![first];
    while n < MAX_GROUP_EVENTS {
        match rx.try_recv() {
            Ok(cmd) => {
                n += group_events(&cmd);
                group.push(cmd);
            }
            Err(_) => break,
        }
    }
    group
}

fn group_events(cmd: &Command) -> usize {
    match cmd {
        Command::Append { write, .. } => write.events.len().max(1),
        Command::Delete { .. } => 1,
    }
}

/// Moves logged groups into SQLite and owns its write connection.
struct Indexer {
    conn: Connection,
    log_dir: PathBuf,
    applied_group: u64,
    /// The newest group a read or a held write has asked for; the indexer commits as soon as
    /// it holds it instead of gathering for [`Limits::index_gather`].
    wanted_group: u64,
    last_sync: Instant,
    last_prune: Instant,
}

impl Indexer {
    /// Applies the log's groups past `applied_group` and drops a torn tail. Returns how many
    /// groups were replayed, the last group and the last seq.
    fn recover(&mut self, stored_last_seq: u64) -> Result<(u64, u64, u64), StoreError> {
        let segments =
            log::segments(&self.log_dir).map_err(|e| io_error("cannot list", &self.log_dir, e))?;
        let mut last_group = self.applied_group;
        let mut last_seq = stored_last_seq;
        let mut replayed = 0;
        let firsts: Vec<u64> = segments.iter().map(|s| s.0).collect();
        for (i, (_, path)) in segments.into_iter().enumerate() {
            if firsts
                .get(i + 1)
                .is_some_and(|next| *next <= self.applied_group + 1)
            {
                continue; // wholly in SQLite already
            }
            let read = log::read_segment(&path, firsts[i], self.applied_group)
                .map_err(|e| io_error("cannot read", &path, e))?;
            let len = std::fs::metadata(&path)
                .map_err(|e| io_error("cannot read", &path, e))?
                .len();
            if let Some(&next) = firsts.get(i + 1) {
                // Only the newest segment can end in a torn write.
                if read.last_group != Some(next - 1) {
                    return Err(StoreError::Engine(format!(
                        "log segment {} is corrupt at byte {}: its groups end at {:?} but the next segment starts at {next}; restore it or move it away",
                        path.display(),
                        read.valid_len,
                        read.last_group
                    )));
                }
            } else if read.valid_len < len {
                // A torn write or a reused file's old frames: never acknowledged either way.
                tracing::info!(path = %path.display(), at = read.valid_len,
                    "Log tail after the last whole frame dropped.");
                log::truncate(&path, read.valid_len)
                    .map_err(|e| io_error("cannot truncate", &path, e))?;
            }
            let jobs: Vec<IndexJob> = read
                .frames
                .into_iter()
                .filter(|f| f.group > self.applied_group)
                .map(|f| {
                    let seq = f
                        .records
                        .iter()
                        .filter_map(|r| match r {
                            Record::Event(e) => Some(e.seq),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    last_seq = last_seq.max(seq);
                    last_group = last_group.max(f.group);
                    IndexJob {
                        group: f.group,
                        last_seq,
                        records: f.records,
                        deletes: Vec::new(),
                    }
                })
                .collect();
            replayed += jobs.len() as u64;
            if !jobs.is_empty() {
                self.apply(&jobs, true).map_err(engine)?;
            }
        }
        Ok((replayed, last_group, last_seq))
    }

    fn run(mut self, rx: mpsc::Receiver<IndexMsg>, shared: &Shared) {
        while let Some(jobs) = self.gather(&rx, shared) {
            self.index(jobs, shared);
        }
        self.trim_at_exit();
        tracing::info!("Indexer stopped: every logged group is in SQLite.");
    }

    /// The next jobs to apply in one transaction: what arrives within [`Limits::index_gather`]
    /// of the first, up to [`MAX_INDEX_EVENTS`]; sooner when an erasure is among them or someone
    /// waits for a group they hold. `None` once the queue is closed and empty.
    fn gather(&mut self, rx: &mpsc::Receiver<IndexMsg>, shared: &Shared) -> Option<Vec<IndexJob>> {
        let mut jobs = Vec::new();
        let mut events = 0;
        let mut deadline: Option<Instant> = None;
        loop {
            let msg = match deadline {
                None => rx.recv().ok()?,
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(msg) => msg,
                    Err(_) => return Some(jobs),
                },
            };
            match msg {
                IndexMsg::Job(job) => {
                    events += job_events(&job);
                    let erases = !job.deletes.is_empty();
                    jobs.push(job);
                    deadline.get_or_insert_with(|| Instant::now() + shared.limits.index_gather);
                    if erases || events >= MAX_INDEX_EVENTS {
                        return Some(jobs);
                    }
                }
                IndexMsg::Wake(group) => self.wanted_group = self.wanted_group.max(group),
            }
            if let Some(last) = jobs.last()
                && self.wanted_group > self.applied_group
                && self.wanted_group <= last.group
            {
                return Some(jobs);
            }
        }
    }

    /// A last checkpoint, so the next start opens a small WAL.
    fn trim_at_exit(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "Final checkpoint failed; the next start replays the WAL.")
        }
    }

    /// Zeroes the log records of erased events ([`log::scrub`]) listed in the `scrub` table,
    /// then clears it. Runs once the erasure's commit is durable (the log frames it zeroes are
    /// then never replayed), and at start-up for an erasure a crash interrupted.
    fn scrub(&mut self) -> Result<usize, StoreError> {
        let positions = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT log_segment, log_offset, log_len FROM scrub")
                .map_err(engine)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Position {
                        segment: r.get::<_, i64>(0)? as u64,
                        offset: r.get::<_, i64>(1)? as u64,
                        len: r.get::<_, i64>(2)? as u32,
                    })
                })
                .map_err(engine)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(engine)?
        };
        if positions.is_empty() {
            return Ok(0);
        }
        log::scrub(&self.log_dir, &positions)
            .map_err(|e| io_error("cannot zero erased events in", &self.log_dir, e))?;
        self.conn.execute("DELETE FROM scrub", []).map_err(engine)?;
        Ok(positions.len())
    }

    /// Applies jobs, retrying a failed transaction a few times; the log keeps them regardless.
    fn index(&mut self, jobs: Vec<IndexJob>, shared: &Shared) {
        let erases = jobs.iter().any(|j| !j.deletes.is_empty());
        let sync = erases || self.last_sync.elapsed() >= SYNC_EVERY;
        let mut attempt = 0;
        let deleted = loop {
            match self.apply(&jobs, sync) {
                Ok(deleted) => break Some(deleted),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::error!(error = %e, attempt, "Indexing failed; retrying.");
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
                Err(e) => {
                    tracing::error!(error = %e, "Indexing failed; the groups stay in the log and are replayed at the next start.");
                    break None;
                }
            }
        };
        let last = jobs.last().expect("at least one job");
        let (group, seq) = (last.group, last.last_seq);
        let Some(deleted) = deleted else {
            for job in jobs {
                for reply in job.deletes {
                    let _ = reply.send(Err(StoreError::Engine("indexing failed".into())));
                }
            }
            return;
        };
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            let cutoff = now_ms() - dedup::WINDOW_MS;
            if let Err(e) = self
                .conn
                .execute("DELETE FROM dedup WHERE received_at < ?", [cutoff])
            {
                tracing::warn!(error = %e, "Cannot prune old dedup fingerprints; retried later.");
            }
        }
        if sync {
            self.last_sync = Instant::now();
        }
        if erases {
            if let Err(e) = self.scrub() {
                tracing::error!(error = %e, "Cannot zero erased events in the log; retried at the next erasure and start.");
            }
            if let Err(e) = self.empty_wal() {
                tracing::warn!(error = %e, "Cannot empty the WAL after an erasure; the next checkpoints overwrite it.");
            }
        }
        shared.indexed_seq.store(seq, Ordering::Release);
        shared.indexed_group.send_replace(group);
        let mut counts = deleted.into_iter();
        for job in jobs {
            for reply in job.deletes {
                let n = counts.next().unwrap_or(0);
                shared.events.fetch_sub(n, Ordering::Relaxed);
                let _ = reply.send(Ok(n));
            }
        }
    }

    /// After an erasure the WAL still holds the pages as they were before it: copies the zeroed
    /// ones into the database and empties the WAL. A checkpoint another connection is running
    /// (the background one, or a reader's snapshot) makes SQLite answer "busy" rather than
    /// wait, with nothing copied, so it is retried until it completes.
    fn empty_wal(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + ERASE_CHECKPOINT_WAIT;
        loop {
            let busy = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| e.to_string())?;
            if busy == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the WAL was still in use after {} s",
                    ERASE_CHECKPOINT_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// One transaction for the jobs; `sync` makes its commit fsync (and with it every earlier
    /// commit). Returns the number of events each erasure deleted, in order.
    fn apply(&mut self, jobs: &[IndexJob], sync: bool) -> Result<Vec<u64>, rusqlite::Error> {
        if sync {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let result = (|| {
            let tx = self.conn.transaction()?;
            let mut deleted = Vec::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (seq, write_key, message_id, dedup, received_at, user_id, anonymous_id, body, log_segment, log_offset, log_len, chunk)
                     VALUES (?1, '', '', ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, ?9)",
                )?;
                let mut insert_failed = tx.prepare_cached(
                    "INSERT INTO failed (received_at, write_key, code, message, raw, log_segment, log_offset, log_len)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for record in jobs.iter().flat_map(|j| &j.records) {
                    match record {
                        Record::Event(e) => {
                            insert.execute(params![
                                e.seq as i64,
                                e.fingerprint as i64,
                                e.received_at_ms,
                                e.user_id,
                                e.anonymous_id,
                                e.at.segment as i64,
                                e.at.offset as i64,
                                i64::from(e.at.len),
                                chunk_of(e.seq),
                            ])?;
                        }
                        Record::Failed { failed: f, at } => {
                            insert_failed.execute(params![
                                f.received_at,
                                f.write_key,
                                f.code,
                                f.message,
                                f.raw,
                                at.segment as i64,
                                at.offset as i64,
                                i64::from(at.len),
                            ])?;
                        }
                        Record::Delete { ids, at } => {
                            deleted.push(delete_for(&tx, ids)?);
                            scrub_later(&tx, *at)?;
                        }
                    }
                }
                let last = jobs.last().expect("at least one job");
                let mut set = tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?;
                set.execute(params!["applied_group", last.group as i64])?;
                set.execute(params!["last_seq", last.last_seq as i64])?;
            }
            tx.commit()?;
            Ok(deleted)
        })();
        if sync {
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        if result.is_ok() {
            self.applied_group = jobs.last().expect("at least one job").group;
        }
        result
    }
}

fn job_events(job: &IndexJob) -> usize {
    job.records.len().max(1)
}

/// Deletes the events of `ids`, listing their log records in `scrub` to be zeroed.
fn delete_for(conn: &Connection, ids: &Identifiers) -> Result<u64, rusqlite::Error> {
    let found = find_events(conn, ids, i64::MAX, usize::MAX)?;
    let mut keep_fingerprint = conn.prepare_cached(
        "INSERT OR REPLACE INTO dedup (seq, received_at, fingerprint)
         SELECT seq, received_at, dedup FROM events WHERE seq = ?",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM events WHERE seq = ?")?;
    let mut n = 0u64;
    for event in found {
        if let Some(at) = event.at {
            scrub_later(conn, at)?;
        }
        keep_fingerprint.execute([event.seq])?;
        n += delete.execute([event.seq])? as u64;
    }
    delete_failed_for(conn, ids)?;
    Ok(n)
}

/// Lists a log record in `scrub`, to be zeroed once the erasure's commit is durable.
fn scrub_later(conn: &Connection, at: Position) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("INSERT INTO scrub (log_segment, log_offset, log_len) VALUES (?1, ?2, ?3)")?
        .execute(params![
            at.segment as i64,
            at.offset as i64,
            i64::from(at.len)
        ])
        .map(drop)
}

/// Deletes the refused messages of `ids` ([`Identifiers::own_failed`]), listing their log
/// records in `scrub` to be zeroed; returns how many went.
fn delete_failed_for(conn: &Connection, ids: &Identifiers) -> Result<u64, rusqlite::Error> {
    let mut owned: BTreeMap<i64, Option<Position>> = BTreeMap::new();
    // One pass over the table per chunk of needles, not one per needle: it has no index to use.
    // Emails are matched in any case (`lower` folds ASCII letters, which the needles keep).
    let needles: Vec<(&str, String)> = ids
        .failed_needles()
        .into_iter()
        .map(|n| ("instr(raw, ?) > 0", n))
        .chain(
            ids.failed_email_needles()
                .into_iter()
                .map(|n| ("instr(lower(raw), ?) > 0", n)),
        )
        .collect();
    for needles in needles.chunks(MAX_IDS_PER_QUERY) {
        let any = needles
            .iter()
            .map(|(test, _)| *test)
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut candidates = conn.prepare(&format!(
            "SELECT id, raw, log_segment, log_offset, log_len FROM failed WHERE {any}"
        ))?;
        let rows = candidates.query_map(params_from_iter(needles.iter().map(|(_, n)| n)), |r| {
            let at = match r.get::<_, Option<i64>>(2)? {
                Some(segment) => Some(Position {
                    segment: segment as u64,
                    offset: r.get::<_, i64>(3)? as u64,
                    len: r.get::<_, i64>(4)? as u32,
                }),
                None => None,
            };
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, at))
        })?;
        for row in rows {
            let (id, raw, at) = row?;
            if ids.own_failed(&raw) {
                owned.insert(id, at);
            }
        }
    }
    let mut delete = conn.prepare_cached("DELETE FROM failed WHERE id = ?")?;
    let mut n = 0;
    for (id, at) in owned {
        if let Some(at) = at {
            scrub_later(conn, at)?;
        }
        n += delete.execute([id])? as u64;
    }
    Ok(n)
}

/// The events of `ids` as SQL conditions, each completed by a `(?, …)` list of its values and
/// whether it is looked up chunk by chunk (through [`INDEXES`]): the one ownership rule of
/// [`super::Store::events_for`], shared by reads and erasure. An event with a `userId` belongs
/// to that user, so by anonymous ID only the events without one match (those with one of
/// `ids.user_ids` match by user ID).
fn matching(ids: &Identifiers) -> [(&'static str, Vec<rusqlite::types::Value>, bool); 3] {
    [
        ("user_id IN", texts(&ids.user_ids), true),
        (
            "user_id IS NULL AND anonymous_id IN",
            texts(&ids.anonymous_ids),
            true,
        ),
        ("seq IN", integers(&ids.seqs), false),
    ]
}

/// The query of [`find_events`] for one condition of [`matching`]: its values, then (for a
/// condition looked up by chunk, after the chunk) the seq bound and the limit.
fn select_sql(condition: &str, by_chunk: bool) -> String {
    let chunk = if by_chunk { "chunk = ? AND " } else { "" };
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {chunk}{condition} AND seq < ? ORDER BY seq DESC LIMIT ?"
    )
}

/// The events of `ids` with seqs below `before`, newest first: for each condition of
/// [`matching`] at least its newest `limit` (all when there are fewer), so the newest `limit`
/// overall are among them. Identifier conditions go chunk by chunk from the newest and stop at
/// the first chunk after which they have `limit`.
fn find_events(
    conn: &Connection,
    ids: &Identifiers,
    before: i64,
    limit: usize,
) -> Result<Vec<EventRef>, rusqlite::Error> {
    // Two subqueries: SQLite answers a lone min() or max() of the rowid from the B-tree's edge,
    // but both in one query scan the table.
    let (first, last): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT (SELECT min(seq) FROM events), (SELECT max(seq) FROM events)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut found: Vec<EventRef> = Vec::new();
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(found);
    };
    let newest = chunk_of(last.min(before.saturating_sub(1)).max(0) as u64);
    let oldest = chunk_of(first.max(0) as u64);
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    for (col, values, by_chunk) in matching(ids) {
        for part in values.chunks(MAX_IDS_PER_QUERY) {
            let condition = format!("{col} ({})", placeholders(part.len()));
            let query = |stmt: &mut rusqlite::CachedStatement<'_>,
                         chunk: Option<i64>,
                         found: &mut Vec<EventRef>|
             -> Result<usize, rusqlite::Error> {
                let mut args: Vec<rusqlite::types::Value> =
                    chunk.into_iter().map(Into::into).collect();
                args.extend(part.iter().cloned());
                args.push(before.into());
                args.push(sql_limit.into());
                let before_len = found.len();
                for row in stmt.query_map(params_from_iter(args), event_ref)? {
                    found.push(row?);
                }
                Ok(found.len() - before_len)
            };
            let mut stmt = conn.prepare_cached(&select_sql(&condition, by_chunk))?;
            if by_chunk {
                let mut got = 0;
                for chunk in (oldest..=newest).rev() {
                    got += query(&mut stmt, Some(chunk), &mut found)?;
                    if got >= limit {
                        break;
                    }
                }
            } else {
                query(&mut stmt, None, &mut found)?;
            }
        }
    }
    found.sort_by_key(|r| std::cmp::Reverse(r.seq));
    found.dedup_by_key(|r| r.seq);
    Ok(found)
}

fn texts(values: &[String]) -> Vec<rusqlite::types::Value> {
    values.iter().map(|v| v.clone().into()).collect()
}

fn integers(values: &[u64]) -> Vec<rusqlite::types::Value> {
    values.iter().map(|&v| (v as i64).into()).collect()
}

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// The columns reads select: `seq`, then the write key and body as kept in SQLite before they
/// stayed in the log, then where the log record is.
const EVENT_COLUMNS: &str = "seq, write_key, body, log_segment, log_offset, log_len";

/// An event row as read, its body not yet taken from the log.
struct EventRef {
    seq: i64,
    /// The write key and body kept in SQLite by data dirs from before they stayed in the log.
    write_key: String,
    body: String,
    at: Option<Position>,
}

fn event_ref(r: &rusqlite::Row<'_>) -> Result<EventRef, rusqlite::Error> {
    let segment: Option<i64> = r.get(3)?;
    Ok(EventRef {
        seq: r.get(0)?,
        write_key: r.get(1)?,
        body: r.get(2)?,
        at: match segment {
            Some(segment) => Some(Position {
                segment: segment as u64,
                offset: r.get::<_, i64>(4)? as u64,
                len: r.get::<_, i64>(5)? as u32,
            }),
            None => None,
        },
    })
}

/// Reads the bodies of `rows` from the log through `bodies` and parses them. An event an erasure
/// zeroed since its row was read is left out.
fn load_events(
    bodies: &mut BodyReader,
    rows: Vec<EventRef>,
    parse: ParseMessage,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.seq as u64;
        let (write_key, body) = match row.at {
            None => (row.write_key, row.body),
            Some(at) => match bodies.read(seq, at) {
                Ok(Some(logged)) => (logged.write_key, logged.body),
                Ok(None) => continue,
                Err(e) => {
                    return Err(StoreError::Engine(format!(
                        "cannot read event {seq} from the log: {e}"
                    )));
                }
            },
        };
        let message = parse(&body)
            .map_err(|e| StoreError::Engine(format!("event {seq} has a corrupt body: {e}")))?;
        out.push(StoredEvent {
            seq,
            write_key,
            message,
        });
    }
    Ok(out)
}

/// Up to `limit` events with `seq > after` that the index holds, oldest first.
fn page_after(
    conn: &Connection,
    log_dir: &Path,
    after: u64,
    limit: usize,
    parse: ParseMessage,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .map_err(engine)?;
    let mut bodies = BodyReader::sequential(log_dir);
    let mut out = Vec::new();
    let mut from = after as i64;
    // An erasure can zero a record after its row was read, leaving the event out; the page is
    // then topped up, since a short page means the end to a replay.
    while out.len() < limit {
        let want = limit - out.len();
        let rows = stmt
            .query_map(params![from, want as i64], event_ref)
            .map_err(engine)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine)?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        let got = rows.len();
        out.extend(load_events(&mut bodies, rows, parse)?);
        if got < want {
            break;
        }
        from = last;
    }
    Ok(out)
}

impl super::Store for SqliteStore {
    fn append(&self, write: Write) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            let n = write.events.len().max(1) as u64;
            if let Some(why) = self.overload(n) {
                return Err(StoreError::Overloaded(why));
            }
            let mut write = write;
            // Without subscribers the parsed messages are not needed: freeing them here, on the
            // request's thread, keeps that work off the single writer.
            if !self.shared.bus.has_subscribers() {
                for event in &mut write.events {
                    drop(std::mem::take(&mut event.message));
                }
            }
            let (reply, rx) = oneshot::channel();
            // Counted as queued while it waits for room, so the queue bound covers waiters too.
            self.shared.queue_depth.fetch_add(n, Ordering::Relaxed);
            if let Err(e) = self.index_room().await {
                self.shared.queue_depth.fetch_sub(n, Ordering::Relaxed);
                return Err(e);
            }
            if let Err(e) = self.send(Command::Append { write, reply }) {
                self.shared.queue_depth.fetch_sub(n, Ordering::Relaxed);
                return Err(e);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn events_for<'a>(
        &'a self,
        ids: &'a Identifiers,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<StoredEvent>, StoreError>> {
        Box::pin(async move {
            let before = parse_seq_cursor(&page.cursor)?.unwrap_or(i64::MAX as u64) as i64;
            let limit = page.limit.max(1);
            let ids = ids.clone();
            let log_dir = self.shared.log_dir.clone();
            let mut items = self
                .read(move |conn| {
                    let mut found = find_events(conn, &ids, before, limit + 1).map_err(engine)?;
                    found.truncate(limit + 1);
                    load_events(&mut BodyReader::new(&log_dir), found, parse_whole)
                })
                .await?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|e| seq_cursor(e.seq))
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
    }

    fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        self.events_after_parsed(after, limit, parse_whole)
    }

    fn events_after_parsed(
        &self,
        after: u64,
        limit: usize,
        parse: ParseMessage,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        Box::pin(async move {
            let log_dir = self.shared.log_dir.clone();
            // The index holds a prefix of the log (whole groups, in order), so a full page read
            // from it as it is now is the page. Only a short one, which ends a replay, waits
            // for every acknowledged write to be indexed: a replay far behind no longer makes
            // the indexer commit early, and waits for it, at every page. A page the indexed
            // seqs cannot fill is not tried first.
            let indexed = self.shared.indexed_seq.load(Ordering::Acquire);
            if indexed.saturating_sub(after) >= limit as u64 {
                let dir = log_dir.clone();
                let now = self
                    .read_now(move |conn| page_after(conn, &dir, after, limit, parse))
                    .await?;
                if now.len() == limit {
                    return Ok(now);
                }
            }
            self.read(move |conn| page_after(conn, &log_dir, after, limit, parse))
                .await
        })
    }

    fn delete_events_for<'a>(
        &'a self,
        ids: &'a Identifiers,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(0);
            }
            let (reply, rx) = oneshot::channel();
            self.shared.queue_depth.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.send(Command::Delete {
                ids: ids.clone(),
                reply,
            }) {
                self.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Err(e);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn failed(&self, page: PageRequest) -> BoxFuture<'_, Result<Page<FailedEvent>, StoreError>> {
        Box::pin(async move {
            let before = parse_seq_cursor(&page.cursor)?.unwrap_or(i64::MAX as u64) as i64;
            let limit = page.limit.max(1);
            let mut items = self
                .read(move |conn| {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT id, received_at, write_key, code, message, raw FROM failed
                             WHERE id < ? ORDER BY id DESC LIMIT ?",
                        )
                        .map_err(engine)?;
                    let rows = stmt
                        .query_map(params![before, limit as i64 + 1], |r| {
                            Ok(FailedEvent {
                                id: r.get::<_, i64>(0)? as u64,
                                received_at: r.get(1)?,
                                write_key: r.get(2)?,
                                code: r.get(3)?,
                                message: r.get(4)?,
                                raw: r.get(5)?,
                            })
                        })
                        .map_err(engine)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(engine)
                })
                .await?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|f| seq_cursor(f.id))
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<CommittedBatch> {
        self.shared.bus.subscribe()
    }

    fn overloaded(&self) -> Option<String> {
        self.overload(1)
    }

    fn stats(&self) -> StoreStats {
        let file = |suffix: &str| {
            let mut p = self.shared.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        let log_bytes = log::segments(&self.shared.log_dir)
            .unwrap_or_default()
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>();
        let s = &self.shared;
        StoreStats {
            queue_depth: s.queue_depth.load(Ordering::Relaxed),
            index_lag: self.index_lag(),
            events: s.events.load(Ordering::Relaxed),
            bytes: file("") + file("-wal") + log_bytes,
            last_seq: s.acked_seq.load(Ordering::Acquire),
            commit_latency: Some(s.commits.snapshot()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;
    use crate::store::Store as _;
    use crate::store::conformance::{TempDir, event, failed_message, message_ids, write};

    /// Appends `events` as one write; `what` names the step if it fails.
    async fn append(store: &SqliteStore, events: Vec<NewEvent>, what: &str) -> Vec<Appended> {
        store.append(write(events)).await.expect(what)
    }

    /// An event of a user about to be erased (`m1`) and one of a user who stays (`m2`).
    fn gone_and_kept() -> Vec<NewEvent> {
        vec![
            event("k", "m1", Some("gone-user"), None),
            event("k", "m2", Some("kept-user"), None),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_engine_passes_the_conformance_suite() {
        super::super::conformance::run(|dir| {
            Box::new(SqliteStore::open(dir).expect("open sqlite store"))
                as Box<dyn super::super::Store>
        })
        .await;
    }

    #[test]
    fn a_missing_data_dir_is_refused_with_its_path() {
        let err = SqliteStore::open(Path::new("/nonexistent/seam-data"))
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("/nonexistent/seam-data"), "{err}");
    }

    /// Writes a log segment by hand, as a crash leaves it: groups SQLite never saw, then half
    /// of a group whose write was cut short.
    fn crashed_log(dir: &Path, first_group: u64, rows: &[(u64, &str)]) {
        let log_dir = dir.join(LOG_DIR);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let mut log = LogWriter::create(&log_dir, first_group).expect("segment");
        for (i, (seq, message_id)) in rows.iter().enumerate() {
            let e = event("k", message_id, Some("u"), None);
            let mut frame = FrameBuilder::new(first_group + i as u64);
            frame.push_event(
                &EventRow {
                    seq: *seq,
                    received_at_ms: e.received_at_ms,
                    fingerprint: dedup::fingerprint("k", message_id),
                    write_key: e.write_key.clone(),
                    message_id: e.message_id.clone(),
                    user_id: e.user_id.clone(),
                    anonymous_id: e.anonymous_id.clone(),
                    at: Position::default(),
                },
                &e.json,
            );
            log.append(&frame.finish()).expect("append");
        }
        let mut torn = FrameBuilder::new(first_group + rows.len() as u64);
        torn.push_delete(&Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec![],
            ..Default::default()
        });
        let torn = torn.finish();
        let (_, path) = log::segments(&log_dir)
            .expect("list")
            .pop()
            .expect("segment");
        let mut data = std::fs::read(&path).expect("read");
        data.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, data).expect("write");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_replays_acknowledged_groups_sqlite_missed_and_drops_a_torn_tail() {
        let dir = TempDir::new("sqlite-recovery");
        let first = {
            let store = SqliteStore::open(&dir.0).expect("open");
            append(
                &store,
                vec![event("k", "indexed", Some("u"), None)],
                "append",
            )
            .await
        };
        assert_eq!(first, [Appended::Stored { seq: 1 }]);
        // Groups 2 and 3 reached the log but not SQLite; group 4 (an erasure) was torn.
        crashed_log(&dir.0, 2, &[(2, "logged-1"), (3, "logged-2")]);

        let store = SqliteStore::open(&dir.0).expect("reopen");
        let all = store.events_after(0, 10).await.expect("replay");
        assert_eq!(
            all.iter()
                .map(|e| (e.seq, e.message_id()))
                .collect::<Vec<_>>(),
            [
                (1, Some("indexed")),
                (2, Some("logged-1")),
                (3, Some("logged-2"))
            ],
            "the torn erasure was never acknowledged, so it must not apply"
        );
        let again = append(
            &store,
            vec![
                event("k", "logged-2", Some("u"), None),
                event("k", "new", Some("u"), None),
            ],
            "append",
        )
        .await;
        assert_eq!(
            again,
            [Appended::Duplicate, Appended::Stored { seq: 4 }],
            "dedup knows replayed events and seqs go on after them"
        );
        assert_eq!(store.stats().events, 4);
        let commits = store.stats().commit_latency.expect("commit latency");
        assert_eq!(
            commits.count, 1,
            "one group committed since start-up; replaying is not a commit"
        );
        assert_eq!(commits.buckets.iter().sum::<u64>(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_dir_from_before_the_dedup_table_still_recognises_retries() {
        let dir = TempDir::new("sqlite-migrate");
        {
            let old = Connection::open(dir.0.join(DB_FILE)).expect("old db");
            old.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, write_key TEXT NOT NULL,
                    message_id TEXT NOT NULL, dedup INTEGER NOT NULL, received_at INTEGER NOT NULL,
                    user_id TEXT, anonymous_id TEXT, body TEXT NOT NULL);
                 CREATE INDEX events_by_received ON events (received_at, dedup);
                 CREATE TABLE failed (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL,
                    write_key TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
                    raw TEXT NOT NULL);
                 INSERT INTO failed VALUES (1, '2026-11-23T10:00:00.000Z', 'k', 'missing_event',
                    'no event', '{\"type\":\"track\",\"userId\":\"u\"}');",
            )
            .expect("old schema");
            let e = event("k", "before-upgrade", Some("u"), None);
            old.execute(
                "INSERT INTO events VALUES (1, 'k', 'before-upgrade', ?1, ?2, 'u', NULL, ?3)",
                params![
                    dedup::fingerprint("k", "before-upgrade") as i64,
                    e.received_at_ms,
                    e.json_with_seq(1)
                ],
            )
            .expect("old row");
        }
        let store = SqliteStore::open(&dir.0).expect("open");
        let again = append(
            &store,
            vec![event("k", "before-upgrade", Some("u"), None)],
            "append",
        )
        .await;
        assert_eq!(again, [Appended::Duplicate]);
        append(
            &store,
            vec![event("k", "after-upgrade", Some("u"), None)],
            "append",
        )
        .await;
        // The old row keeps its body in SQLite, the new one is read from the log; both are
        // found through the re-built identifier index.
        let ids = Identifiers {
            user_ids: vec!["u".into()],
            ..Default::default()
        };
        let page = store
            .events_for(
                &ids,
                PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .expect("read");
        assert_eq!(
            message_ids(&page.items),
            [Some("after-upgrade"), Some("before-upgrade")]
        );
        // Refused messages from before and after the upgrade both go with an erasure.
        store
            .append(Write {
                events: Vec::new(),
                failed: vec![failed_message(r#"{"type":"track","userId":"u","n":2}"#)],
            })
            .await
            .expect("append refused");
        let listed = || async {
            let page = store.failed(PageRequest::default()).await.expect("failed");
            page.items.len()
        };
        assert_eq!(listed().await, 2);
        assert_eq!(store.delete_events_for(&ids).await.expect("erase"), 2);
        assert_eq!(listed().await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_erasure_cross_chunk_boundaries() {
        let dir = TempDir::new("sqlite-chunks");
        drop(SqliteStore::open(&dir.0).expect("open"));
        // Seqs go on from the highest ever assigned: start three short of a chunk boundary.
        let conn = Connection::open(dir.0.join(DB_FILE)).expect("db");
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_seq', ?1)",
            [(1i64 << CHUNK_BITS) - 3],
        )
        .expect("meta");
        drop(conn);
        let store = SqliteStore::open(&dir.0).expect("reopen");
        for b in 0..4 {
            append(
                &store,
                vec![
                    event("k", &format!("u{b}"), Some("u"), Some("a")),
                    event("k", &format!("a{b}"), None, Some("a")),
                    event("k", &format!("x{b}"), Some("other"), None),
                ],
                "append",
            )
            .await;
        }
        let first = (1u64 << CHUNK_BITS) - 2;
        let last = first + 11;
        assert!(
            chunk_of(first) < chunk_of(last),
            "the events straddle two chunks"
        );
        let ids = Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec!["a".into()],
            ..Default::default()
        };
        // Two per page, newest first, across the boundary.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .events_for(&ids, PageRequest { limit: 2, cursor })
                .await
                .expect("page");
            seen.extend(
                page.items
                    .iter()
                    .map(|e| e.message_id().unwrap_or_default().to_owned()),
            );
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["a3", "u3", "a2", "u2", "a1", "u1", "a0", "u0"]);
        assert_eq!(store.delete_events_for(&ids).await.expect("erase"), 8);
        let left = store.events_after(0, 100).await.expect("read");
        assert_eq!(
            message_ids(&left),
            [Some("x0"), Some("x1"), Some("x2"), Some("x3")]
        );
    }

    #[test]
    fn identifier_lookups_go_through_the_chunk_indexes() {
        let dir = TempDir::new("sqlite-plan");
        drop(SqliteStore::open(&dir.0).expect("open"));
        let conn = Connection::open(dir.0.join(DB_FILE)).expect("db");
        let ids = Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec!["a".into()],
            seqs: vec![1],
            ..Default::default()
        };
        for (col, _, by_chunk) in matching(&ids) {
            let sql = select_sql(&format!("{col} (?)"), by_chunk);
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan")
                .query_map(
                    params_from_iter(vec![0i64; 3 + usize::from(by_chunk)]),
                    |r| r.get::<_, String>(3),
                )
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join("; ");
            let expected = match col {
                "user_id IN" => "USING INDEX events_by_user_chunk (chunk=? AND user_id=?",
                "seq IN" => "USING INTEGER PRIMARY KEY (rowid=?)",
                _ => "USING INDEX events_by_anon_chunk (chunk=? AND anonymous_id=?",
            };
            assert!(plan.contains(expected), "{col}: {plan}");
        }
    }

    /// Every file of the data dir and its log, as text, for looking for erased bytes.
    fn data_dir_text(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut files = vec![dir.join(DB_FILE), dir.join(format!("{DB_FILE}-wal"))];
        files.extend(
            log::segments(&dir.join(LOG_DIR))
                .expect("list")
                .into_iter()
                .map(|s| s.1),
        );
        files
            .into_iter()
            .map(|f| {
                let text =
                    String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
                (f, text)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_erasure_leaves_no_byte_of_the_events_and_the_log_still_replays() {
        let dir = TempDir::new("sqlite-erase");
        let gone = Identifiers {
            user_ids: vec!["gone-user".into()],
            anonymous_ids: vec![],
            ..Default::default()
        };
        {
            let store = SqliteStore::open(&dir.0).expect("open");
            append(&store, gone_and_kept(), "append").await;
            store
                .append(Write {
                    events: Vec::new(),
                    failed: vec![
                        failed_message(r#"{"type":"track","userId":"gone-user"}"#),
                        failed_message(r#"{"type":"track","userId":"kept-user"}"#),
                    ],
                })
                .await
                .expect("append refused messages");
            assert_eq!(store.delete_events_for(&gone).await.expect("erase"), 1);
            for (file, text) in data_dir_text(&dir.0) {
                assert!(
                    !text.contains("gone-user"),
                    "{} keeps erased bytes",
                    file.display()
                );
            }
            append(
                &store,
                vec![event("k", "m3", Some("kept-user"), None)],
                "append after the erasure",
            )
            .await;
        }
        // The zeroed frame is stepped over at start-up; what is left reads back.
        let store = SqliteStore::open(&dir.0).expect("reopen");
        let failed = store.failed(PageRequest::default()).await.expect("failed");
        assert_eq!(
            failed
                .items
                .iter()
                .map(|f| f.raw.as_str())
                .collect::<Vec<_>>(),
            [r#"{"type":"track","userId":"kept-user"}"#]
        );
        let all = store.events_after(0, 10).await.expect("read");
        assert_eq!(
            all.iter()
                .map(|e| (e.seq, e.message_id()))
                .collect::<Vec<_>>(),
            [(2, Some("m2")), (3, Some("m3"))]
        );
        // The erased message's fingerprint outlives its row: a retry is still a duplicate.
        let retry = append(&store, gone_and_kept(), "retry").await;
        assert_eq!(retry, [Appended::Duplicate, Appended::Duplicate]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_page_racing_an_erasure_is_still_full() {
        let dir = TempDir::new("sqlite-erase-race");
        let store = SqliteStore::open(&dir.0).expect("open");
        let events = (1..=4)
            .map(|i| event("k", &format!("m{i}"), Some("u"), None))
            .collect();
        append(&store, events, "append").await;
        store.caught_up().await.expect("indexed");
        // What a reader sees when an erasure zeroes a record between its row and its body.
        let at = store
            .read(|conn| {
                conn.query_row(
                    "SELECT log_segment, log_offset, log_len FROM events WHERE seq = 2",
                    [],
                    |r| {
                        Ok(Position {
                            segment: r.get::<_, i64>(0)? as u64,
                            offset: r.get::<_, i64>(1)? as u64,
                            len: r.get::<_, i64>(2)? as u32,
                        })
                    },
                )
                .map_err(engine)
            })
            .await
            .expect("position");
        log::scrub(&store.shared.log_dir, &[at]).expect("zero");
        let page = store.events_after(0, 2).await.expect("read");
        assert_eq!(
            message_ids(&page),
            [Some("m1"), Some("m3")],
            "a short page would end a replay early"
        );
        let rest = store.events_after(3, 2).await.expect("read");
        assert_eq!(message_ids(&rest), [Some("m4")]);
        // A replay's own parser gets each stored message's JSON, for the same events.
        let parsed = store
            .events_after_parsed(0, 3, |json| Ok(serde_json::json!({ "bytes": json.len() })))
            .await
            .expect("read");
        let seqs = |events: &[StoredEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&parsed), [seqs(&page), seqs(&rest)].concat());
        assert!(
            parsed
                .iter()
                .all(|e| e.message["bytes"].as_u64() > Some(20)),
            "{parsed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_erasure_cut_short_before_the_log_was_zeroed_is_finished_at_start_up() {
        let dir = TempDir::new("sqlite-erase-crash");
        {
            let store = SqliteStore::open(&dir.0).expect("open");
            append(&store, gone_and_kept(), "append").await;
        }
        // What an erasure commits before it zeroes the log, and nothing after.
        let conn = Connection::open(dir.0.join(DB_FILE)).expect("db");
        conn.execute_batch(
            "PRAGMA secure_delete = ON;
             INSERT INTO scrub SELECT log_segment, log_offset, log_len FROM events WHERE user_id = 'gone-user';
             DELETE FROM events WHERE user_id = 'gone-user';
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .expect("half an erasure");
        drop(conn);
        assert!(
            data_dir_text(&dir.0)
                .iter()
                .any(|(_, t)| t.contains("gone-user")),
            "the log still holds the event"
        );
        let store = SqliteStore::open(&dir.0).expect("reopen");
        for (file, text) in data_dir_text(&dir.0) {
            assert!(
                !text.contains("gone-user"),
                "{} keeps erased bytes",
                file.display()
            );
        }
        let all = store.events_after(0, 10).await.expect("read");
        assert_eq!(message_ids(&all), [Some("m2")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_past_the_queue_bound_are_refused_and_the_rest_stored() {
        let dir = TempDir::new("sqlite-overload");
        let limits = Limits {
            max_queued_events: 10,
            max_index_lag_events: 1_000_000,
            ..Limits::default()
        };
        let store = SqliteStore::open_with(&dir.0, limits).expect("open");
        let batch = |b: usize| {
            write(
                (0..10)
                    .map(|i| event("k", &format!("m{b}-{i}"), Some("u"), None))
                    .collect(),
            )
        };
        let results = futures_join_all((0..20).map(|b| store.append(batch(b))).collect()).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Overloaded(_))))
            .count();
        let stored: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|a| a.len())
            .sum();
        assert!(refused > 0, "a burst past the bound must be refused");
        assert_eq!(
            refused + stored / 10,
            20,
            "every write is stored or refused"
        );
        let all = store.events_after(0, 1_000).await.expect("replay");
        assert_eq!(all.len(), stored, "what was acknowledged is stored");
        // Once the queue has drained, writes are taken again.
        store
            .append(batch(99))
            .await
            .expect("accepted after the burst");
    }

    /// An indexer that would gather for an hour: only the wake-ups (and shutdown) get anything
    /// into SQLite before then.
    fn gathering_for_an_hour() -> Limits {
        Limits {
            index_gather: Duration::from_secs(3600),
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn a_read_after_an_acknowledged_write_does_not_wait_out_the_gathering() {
        let dir = TempDir::new("sqlite-gather-read");
        let store = SqliteStore::open_with(&dir.0, gathering_for_an_hour()).expect("open");
        append(&store, vec![event("k", "m1", Some("u1"), None)], "first").await;
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let ids = Identifiers {
                user_ids: vec!["u1".into()],
                ..Identifiers::default()
            };
            store
                .events_for(&ids, PageRequest::default())
                .await
                .expect("read")
        });
        let page = read.await.expect("the read woke the indexer");
        assert_eq!(page.items.len(), 1);
        // A second write, read by seq this time, is hurried as well.
        append(&store, vec![event("k", "m2", Some("u1"), None)], "second").await;
        let all = tokio::time::timeout(Duration::from_secs(5), store.events_after(0, 10))
            .await
            .expect("the replay woke the indexer")
            .expect("replay");
        assert_eq!(all.len(), 2);
        // An erasure is applied at once, not after the gathering.
        let erased = tokio::time::timeout(
            Duration::from_secs(5),
            store.delete_events_for(&Identifiers {
                user_ids: vec!["u1".into()],
                ..Identifiers::default()
            }),
        )
        .await
        .expect("the erasure was applied without waiting")
        .expect("erase");
        assert_eq!(erased, 2);
    }

    #[tokio::test]
    async fn a_full_replay_page_is_read_from_the_index_as_it_is_and_a_short_one_waits() {
        let dir = TempDir::new("sqlite-gather-replay");
        let store = SqliteStore::open_with(&dir.0, gathering_for_an_hour()).expect("open");
        let first = vec![
            event("k", "m1", Some("u1"), None),
            event("k", "m2", Some("u1"), None),
        ];
        append(&store, first, "first").await;
        assert_eq!(store.events_after(0, 10).await.expect("read").len(), 2);
        append(&store, vec![event("k", "m3", Some("u1"), None)], "second").await;
        assert_eq!(store.index_lag(), 1, "the second write is still gathered");
        let page = store.events_after(0, 2).await.expect("read");
        assert_eq!(message_ids(&page), [Some("m1"), Some("m2")]);
        assert_eq!(
            store.index_lag(),
            1,
            "a page the index could fill did not hurry the indexer"
        );
        let tail = store.events_after(2, 2).await.expect("read");
        assert_eq!(
            message_ids(&tail),
            [Some("m3")],
            "a short page waits for it"
        );
        assert_eq!(store.index_lag(), 0);
    }

    #[tokio::test]
    async fn writes_the_indexer_is_still_gathering_are_in_sqlite_after_close() {
        let dir = TempDir::new("sqlite-gather-close");
        {
            let store = SqliteStore::open_with(&dir.0, gathering_for_an_hour()).expect("open");
            for i in 0..5 {
                append(
                    &store,
                    vec![event("k", &format!("m{i}"), Some("u"), None)],
                    "w",
                )
                .await;
            }
            store.close();
        }
        let conn = Connection::open(dir.0.join(DB_FILE)).expect("open db");
        let indexed: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .expect("count");
        assert_eq!(indexed, 5, "close applies what the indexer held");
    }

    /// Polls every future once before any can finish, like a burst of concurrent requests.
    async fn futures_join_all<T>(futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
        let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
        let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (slot, fut) in out.iter_mut().zip(futures.iter_mut()) {
                if let Some(f) = fut {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            *slot = Some(v);
                            *fut = None;
                        }
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|v| v.expect("ready")).collect()
    }
}
