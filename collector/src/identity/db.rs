//! The identity view on disk (`identity.sqlite` in the data dir): the saved links of the graph
//! (identifiers, earliest event, aggregate), the watermark of the store `seq` they include,
//! suppressed identifiers and erasure receipts. It is derived from the event log: events after
//! the watermark are replayed from the store at start-up, so it is saved lazily.

use super::ident::{IdType, Identifier};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (stable INTEGER PRIMARY KEY, json TEXT NOT NULL);
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
        // An erased person's links are zeroed, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
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

    /// Saves changed links and moves the watermark, in one transaction.
    pub fn save(&self, links: &[(i64, String)], watermark: u64) -> DbResult<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            save_links(&tx, links, watermark)?;
            tx.commit()
        })
    }

    /// Every saved link, for rebuilding the graph at start-up.
    pub fn for_each_link(&self, mut f: impl FnMut(&str)) -> DbResult<()> {
        self.read(|c| {
            let mut st = c.prepare("SELECT json FROM links")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                f(r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?);
            }
            Ok(())
        })
    }

    /// Suppresses the identifiers, deletes the given links and saves the rewritten ones (with
    /// the watermark they include), together.
    pub fn erase(
        &self,
        links: &[i64],
        rewritten: &[(i64, String)],
        watermark: u64,
        ids: &[Identifier],
        at: &str,
        receipt_id: &str,
    ) -> DbResult<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut del = tx.prepare_cached("DELETE FROM links WHERE stable = ?1")?;
                for l in links {
                    del.execute([l])?;
                }
                let mut sup = tx.prepare_cached(
                    "INSERT OR REPLACE INTO suppressed (type, value, at, receipt_id) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for id in ids {
                    sup.execute(params![id.kind.as_str(), id.value, at, receipt_id])?;
                }
            }
            save_links(&tx, rewritten, watermark)?;
            tx.commit()
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

fn save_links(
    tx: &rusqlite::Transaction<'_>,
    links: &[(i64, String)],
    watermark: u64,
) -> DbResult<()> {
    let mut ins =
        tx.prepare_cached("INSERT OR REPLACE INTO links (stable, json) VALUES (?1, ?2)")?;
    for (stable, json) in links {
        ins.execute(params![stable, json])?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('watermark', ?1)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [watermark as i64],
    )?;
    Ok(())
}
