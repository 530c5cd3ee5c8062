//! The identity view on disk (`identity.sqlite` in the data dir): each applied event filed under
//! its link, the watermark of the last applied store `seq`, suppressed identifiers and erasure
//! receipts. It is derived from the event log: whatever is missing is replayed at start-up.

use super::ident::{IdType, Identifier};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, link INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_link ON events (link, seq);
CREATE TABLE IF NOT EXISTS suppressed (type TEXT NOT NULL, value TEXT NOT NULL, at TEXT NOT NULL,
    receipt_id TEXT NOT NULL, PRIMARY KEY (type, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (receipt_id TEXT PRIMARY KEY, json TEXT NOT NULL) WITHOUT ROWID;
";

/// One writer connection and a few readers (WAL lets readers run beside the writer).
pub struct Db {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

pub type DbResult<T> = Result<T, rusqlite::Error>;

impl Db {
    pub fn open(dir: &Path) -> DbResult<Db> {
        let path = dir.join("identity.sqlite");
        let conn = Connection::open(&path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path,
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> DbResult<T>) -> DbResult<T> {
        let mut c = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> DbResult<T>) -> DbResult<T> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                c.execute_batch("PRAGMA query_only = ON;")?;
                c
            }
        };
        let out = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        out
    }

    pub fn watermark(&self) -> DbResult<u64> {
        self.read(|c| {
            let w: Option<i64> = c
                .query_row("SELECT value FROM meta WHERE key = 'watermark'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(w.unwrap_or(0) as u64)
        })
    }

    /// Files applied events under their links and moves the watermark, in one transaction.
    pub fn append(&self, rows: &[(u64, i64, String)], watermark: u64) -> DbResult<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT OR REPLACE INTO events (seq, link, json) VALUES (?1, ?2, ?3)",
                )?;
                for (seq, link, json) in rows {
                    ins.execute(params![*seq as i64, link, json])?;
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('watermark', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    [watermark as i64],
                )?;
            }
            tx.commit()
        })
    }

    /// Every filed event, oldest first, for rebuilding the graph at start-up.
    pub fn for_each_event(&self, mut f: impl FnMut(u64, &str)) -> DbResult<()> {
        self.read(|c| {
            let mut st = c.prepare("SELECT seq, json FROM events ORDER BY seq")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let json: String = r
                    .get_ref(1)?
                    .as_str()
                    .map_err(rusqlite::Error::from)?
                    .to_owned();
                f(seq as u64, &json);
            }
            Ok(())
        })
    }

    /// Events of the given links, newest first, with `seq` below `before`.
    pub fn timeline(
        &self,
        links: &[i64],
        before: Option<u64>,
        limit: usize,
    ) -> DbResult<Vec<(u64, String)>> {
        if links.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = links.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT seq, json FROM events WHERE link IN ({}) AND seq < ?1 ORDER BY seq DESC LIMIT ?2",
            list.join(",")
        );
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![before.map_or(i64::MAX, |b| b as i64), limit as i64],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
            )?;
            rows.collect()
        })
    }

    /// Suppresses the identifiers and deletes the events of the given links; returns how many
    /// events were deleted. Suppression and deletion commit together.
    pub fn erase(
        &self,
        links: &[i64],
        ids: &[Identifier],
        at: &str,
        receipt_id: &str,
    ) -> DbResult<u64> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut deleted = 0;
            {
                let mut del = tx.prepare_cached("DELETE FROM events WHERE link = ?1")?;
                for l in links {
                    deleted += del.execute([l])? as u64;
                }
                let mut sup = tx.prepare_cached(
                    "INSERT OR REPLACE INTO suppressed (type, value, at, receipt_id) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for id in ids {
                    sup.execute(params![id.kind.as_str(), id.value, at, receipt_id])?;
                }
            }
            tx.commit()?;
            Ok(deleted)
        })
    }

    pub fn save_receipt(&self, receipt_id: &str, json: &str) -> DbResult<()> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO receipts (receipt_id, json) VALUES (?1, ?2)",
                params![receipt_id, json],
            )
            .map(drop)
        })
    }

    pub fn suppressed(&self) -> DbResult<Vec<Identifier>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT type, value FROM suppressed")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (t, value) = row?;
                if let Ok(kind) = IdType::parse(&t) {
                    out.push(Identifier { kind, value });
                }
            }
            Ok(out)
        })
    }
}
