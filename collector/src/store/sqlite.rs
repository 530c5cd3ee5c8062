//! The embedded engine: SQLite in WAL mode, one writer thread with group commit.
//!
//! Every queued write is drained into one transaction, committed with `synchronous=FULL` (in
//! WAL mode the commit fsyncs the log), and only then acknowledged; so throughput does not
//! depend on one fsync per request. Keys (`seq`) are sequential integers, which keep inserts
//! appending at the end of the table's B-tree. Deduplication uses [`super::dedup::DedupIndex`]
//! in memory, rebuilt at start-up from the fingerprints stored in the newest rows.

use super::dedup::{self, DedupIndex};
use super::{
    Appended, BoxFuture, CommittedBatch, EventBus, FailedEvent, Identifiers, Page, PageRequest,
    StoreError, StoreStats, StoredEvent, Write, parse_seq_cursor, seq_cursor,
};
use rusqlite::{Connection, OpenFlags, params, params_from_iter};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, oneshot};

const DB_FILE: &str = "events.sqlite3";
/// Stop draining the queue into one transaction past this many events, to bound latency.
const MAX_GROUP_EVENTS: usize = 20_000;
/// SQLite limits bound parameters; identifier sets are queried in chunks of this size.
const MAX_IDS_PER_QUERY: usize = 400;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    write_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    dedup INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_anon ON events (anonymous_id) WHERE anonymous_id IS NOT NULL;
-- Receipt order: appended at the B-tree's right edge, and it covers the start-up dedup rebuild,
-- which then reads a few bytes per event instead of whole rows.
CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at, dedup);
CREATE TABLE IF NOT EXISTS failed (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    write_key TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    raw TEXT NOT NULL
);
";

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

struct Shared {
    path: PathBuf,
    queue_depth: AtomicU64,
    events: AtomicU64,
    readers: Mutex<Vec<Connection>>,
    bus: EventBus,
}

/// SQLite engine; cloneable handle to one writer thread and a pool of read connections.
pub struct SqliteStore {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

fn engine(e: rusqlite::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, which must exist, and starts the writer.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Engine(format!(
                "data dir {} does not exist or is not a directory",
                dir.display()
            )));
        }
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Engine(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(engine)?;
        // In WAL mode FULL makes every commit fsync the log: acknowledged means on disk.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(engine)?;
        // The checkpointer thread copies the WAL into the database between commits; the
        // writer's own checkpoint (every 64 MB of WAL) only finishes what is left, so the WAL
        // can restart from its beginning.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)
            .map_err(engine)?;
        conn.pragma_update(None, "cache_size", -16_384)
            .map_err(engine)?;
        conn.execute_batch(SCHEMA).map_err(engine)?;

        let events: u64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map_err(engine)? as u64;
        let last_seq: u64 = conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(engine)? as u64;
        let dedup = rebuild_dedup(&conn)?;
        tracing::info!(
            path = %path.display(),
            events,
            last_seq,
            remembered_message_ids = dedup.len(),
            "Store opened."
        );

        let shared = Arc::new(Shared {
            path,
            queue_depth: AtomicU64::new(0),
            events: AtomicU64::new(events),
            readers: Mutex::new(Vec::new()),
            bus: EventBus::new(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            shared: shared.clone(),
            dedup,
            last_seq,
        };
        let handle = std::thread::Builder::new()
            .name("seam-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = start_checkpointer(&shared.path)?;
        Ok(SqliteStore {
            shared,
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let guard = self.commands.lock().expect("commands lock");
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(cmd).map_err(|_| StoreError::Closed)
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        self.commands.lock().expect("commands lock").take();
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.checkpointer.lock().expect("checkpointer lock").take() {
            drop(stop);
            let _ = handle.join();
        }
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
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

/// A thread that runs passive checkpoints (they never block the writer) a few times a second,
/// so the copying of WAL pages into the database is off the commit path. Stops when the
/// sender is dropped.
fn start_checkpointer(
    path: &Path,
) -> Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>), StoreError> {
    let conn = Connection::open(path).map_err(engine)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("seam-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_millis(250))
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "Background checkpoint failed; the writer's own checkpoint covers it.");
                }
            }
        })
        .map_err(|e| StoreError::Engine(format!("cannot start the checkpoint thread: {e}")))?;
    Ok((stop, handle))
}

/// Reads the fingerprints of the rows received within the dedup window back into memory,
/// from the covering `events_by_received` index.
fn rebuild_dedup(conn: &Connection) -> Result<DedupIndex, StoreError> {
    let cutoff = now_ms() - dedup::WINDOW_MS;
    let mut index = DedupIndex::new();
    let mut stmt = conn
        .prepare(
            "SELECT dedup, received_at FROM events WHERE received_at >= ? ORDER BY received_at",
        )
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
    conn: Connection,
    shared: Arc<Shared>,
    dedup: DedupIndex,
    last_seq: u64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut last_expire = now_ms();
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let mut events = group_events(&group[0]);
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(cmd) => {
                        events += group_events(&cmd);
                        group.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            let now = now_ms();
            if now - last_expire > 60_000 {
                self.dedup.expire(now);
                last_expire = now;
            }
        }
        tracing::info!("Writer stopped: every queued write is committed.");
    }

    /// One transaction for the whole group; all succeed or all fail.
    fn commit_group(&mut self, group: Vec<Command>) {
        let queued: u64 = group.iter().map(|c| group_events(c) as u64).sum();
        let mut replies = Vec::with_capacity(group.len());
        let mut work = Vec::with_capacity(group.len());
        for cmd in group {
            match cmd {
                Command::Append { write, reply } => {
                    replies.push(Reply::Append(reply));
                    work.push(Work::Append(write));
                }
                Command::Delete { ids, reply } => {
                    replies.push(Reply::Delete(reply));
                    work.push(Work::Delete(ids));
                }
            }
        }
        let publish = self.shared.bus.has_subscribers();
        let mut committed: Vec<StoredEvent> = Vec::new();
        let mut fresh: Vec<(u64, i64)> = Vec::new();
        let mut deleted_total = 0u64;
        let start_seq = self.last_seq;
        let mut seq = start_seq;

        let result = (|| -> Result<Vec<Outcome>, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let mut outcomes = Vec::with_capacity(work.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (seq, write_key, message_id, dedup, received_at, user_id, anonymous_id, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let mut insert_failed = tx.prepare_cached(
                    "INSERT INTO failed (received_at, write_key, code, message, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut pending: HashSet<u64> = HashSet::new();
                for item in work {
                    match item {
                        Work::Append(write) => {
                            let mut appended = Vec::with_capacity(write.events.len());
                            for event in write.events {
                                let fp = dedup::fingerprint(&event.write_key, &event.message_id);
                                if self.dedup.contains(fp) || !pending.insert(fp) {
                                    appended.push(Appended::Duplicate);
                                    continue;
                                }
                                seq += 1;
                                let body = event.json_with_seq(seq);
                                insert.execute(params![
                                    seq as i64,
                                    event.write_key,
                                    event.message_id,
                                    fp as i64,
                                    event.received_at_ms,
                                    event.user_id,
                                    event.anonymous_id,
                                    body,
                                ])?;
                                fresh.push((fp, event.received_at_ms));
                                if publish {
                                    let mut message = event.message;
                                    message.insert("seq".into(), seq.into());
                                    committed.push(StoredEvent {
                                        seq,
                                        write_key: event.write_key,
                                        message: message.into(),
                                    });
                                }
                                appended.push(Appended::Stored { seq });
                            }
                            for f in write.failed {
                                insert_failed.execute(params![
                                    f.received_at,
                                    f.write_key,
                                    f.code,
                                    f.message,
                                    f.raw
                                ])?;
                            }
                            outcomes.push(Outcome::Append(appended));
                        }
                        Work::Delete(ids) => {
                            let n = delete_for(&tx, &ids)?;
                            deleted_total += n;
                            outcomes.push(Outcome::Delete(n));
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })();

        self.shared.queue_depth.fetch_sub(queued, Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
                self.last_seq = seq;
                let stored = fresh.len() as u64;
                for (fp, at) in fresh {
                    self.dedup.insert(fp, at);
                }
                self.shared.events.fetch_add(stored, Ordering::Relaxed);
                self.shared
                    .events
                    .fetch_sub(deleted_total, Ordering::Relaxed);
                if !committed.is_empty() {
                    self.shared.bus.publish(CommittedBatch::from(committed));
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    match (reply, outcome) {
                        (Reply::Append(tx), Outcome::Append(a)) => {
                            let _ = tx.send(Ok(a));
                        }
                        (Reply::Delete(tx), Outcome::Delete(n)) => {
                            let _ = tx.send(Ok(n));
                        }
                        _ => unreachable!("outcomes follow the order of the group"),
                    }
                }
            }
            Err(e) => {
                // Nothing of this group is durable, so nobody is acknowledged.
                tracing::error!(error = %e, "Commit failed; every request of the group gets an error.");
                for reply in replies {
                    let err = StoreError::Engine(e.to_string());
                    match reply {
                        Reply::Append(tx) => {
                            let _ = tx.send(Err(err));
                        }
                        Reply::Delete(tx) => {
                            let _ = tx.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

enum Work {
    Append(Write),
    Delete(Identifiers),
}

enum Outcome {
    Append(Vec<Appended>),
    Delete(u64),
}

enum Reply {
    Append(oneshot::Sender<Result<Vec<Appended>, StoreError>>),
    Delete(oneshot::Sender<Result<u64, StoreError>>),
}

fn group_events(cmd: &Command) -> usize {
    match cmd {
        Command::Append { write, .. } => write.events.len().max(1),
        Command::Delete { .. } => 1,
    }
}

fn delete_for(conn: &Connection, ids: &Identifiers) -> Result<u64, rusqlite::Error> {
    let mut n = 0u64;
    for chunk in ids.user_ids.chunks(MAX_IDS_PER_QUERY) {
        let sql = format!(
            "DELETE FROM events WHERE user_id IN ({})",
            placeholders(chunk.len())
        );
        n += conn.execute(&sql, params_from_iter(chunk))? as u64;
    }
    for chunk in ids.anonymous_ids.chunks(MAX_IDS_PER_QUERY) {
        let sql = format!(
            "DELETE FROM events WHERE anonymous_id IN ({}) AND user_id IS NULL",
            placeholders(chunk.len())
        );
        n += conn.execute(&sql, params_from_iter(chunk))? as u64;
    }
    Ok(n)
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

fn row_to_event(seq: i64, write_key: String, body: String) -> Result<StoredEvent, StoreError> {
    let message = serde_json::from_str(&body)
        .map_err(|e| StoreError::Engine(format!("event {seq} has a corrupt body: {e}")))?;
    Ok(StoredEvent {
        seq: seq as u64,
        write_key,
        message,
    })
}

impl super::Store for SqliteStore {
    fn append(&self, write: Write) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            let n = write.events.len().max(1) as u64;
            let (reply, rx) = oneshot::channel();
            self.shared.queue_depth.fetch_add(n, Ordering::Relaxed);
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
            let mut items = self
                .read(move |conn| {
                    // Per chunk and column, the newest `limit + 1` below the cursor; then the
                    // newest overall. The indexes end in the rowid, so each scan is ordered.
                    let mut found: Vec<(i64, String, String)> = Vec::new();
                    // An event with a `userId` belongs to that user: by anonymous ID only the
                    // events without one match (those with one of `ids.user_ids` match above).
                    let cols = [
                        ("user_id IN", &ids.user_ids),
                        ("user_id IS NULL AND anonymous_id IN", &ids.anonymous_ids),
                    ];
                    for (col, values) in cols {
                        for chunk in values.chunks(MAX_IDS_PER_QUERY) {
                            let sql = format!(
                                "SELECT seq, write_key, body FROM events WHERE {col} ({}) AND seq < ? ORDER BY seq DESC LIMIT ?",
                                placeholders(chunk.len())
                            );
                            let mut stmt = conn.prepare_cached(&sql).map_err(engine)?;
                            let mut args: Vec<rusqlite::types::Value> =
                                chunk.iter().map(|v| v.clone().into()).collect();
                            args.push(before.into());
                            args.push((limit as i64 + 1).into());
                            let rows = stmt
                                .query_map(params_from_iter(args), |r| {
                                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                                })
                                .map_err(engine)?;
                            for row in rows {
                                found.push(row.map_err(engine)?);
                            }
                        }
                    }
                    found.sort_by_key(|r| std::cmp::Reverse(r.0));
                    found.dedup_by_key(|r| r.0);
                    found.truncate(limit + 1);
                    found
                        .into_iter()
                        .map(|(seq, wk, body)| row_to_event(seq, wk, body))
                        .collect::<Result<Vec<_>, _>>()
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
        Box::pin(async move {
            self.read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, write_key, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    )
                    .map_err(engine)?;
                let rows = stmt
                    .query_map(params![after as i64, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(engine)?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, wk, body) = row.map_err(engine)?;
                    out.push(row_to_event(seq, wk, body)?);
                }
                Ok(out)
            })
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

    fn stats(&self) -> StoreStats {
        let file = |suffix: &str| {
            let mut p = self.shared.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        StoreStats {
            queue_depth: self.shared.queue_depth.load(Ordering::Relaxed),
            events: self.shared.events.load(Ordering::Relaxed),
            bytes: file("") + file("-wal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
