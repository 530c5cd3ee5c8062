//! The running identity service: follows the store's committed events, keeps the graph and its
//! on-disk view current, answers profile reads, erases, and refuses suppressed identifiers.

use super::db::Db;
use super::engine::{Dropped, Engine, Merge};
use super::engine::{fnv, link_stable};
use super::ident::{IdType, Identifier, IdentifierJson, IdentityConfig};
use super::input::{EventInput, format_rfc3339, identifiers};
use crate::admission::Admission;
use crate::store::{Identifiers, PageRequest, Store, StoredEvent};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// Failures of the identity service; each becomes a 503/500 at the HTTP boundary.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity view: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Events replayed from the store per read while catching up.
const REPLAY_PAGE: usize = 2000;

/// Identity resolution and profiles over one store.
pub struct Identity {
    config: IdentityConfig,
    engine: RwLock<Engine>,
    db: Db,
    store: Arc<dyn Store>,
    suppressed: RwLock<HashSet<Identifier>>,
    /// Highest store `seq` applied to the graph.
    applied: AtomicU64,
    /// One applier at a time (the follower task, or a read catching up); holds when the
    /// graph was last saved.
    apply_lock: Mutex<Instant>,
}

/// How often changed links are saved; a crash replays at most this much from the store.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Changed links that force a save sooner.
const SAVE_DIRTY: usize = 50_000;

/// Events newest first, and the cursor of the next page.
pub type TimelinePage = (Vec<Value>, Option<String>);

/// An erasure receipt (docs/api.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Receipt {
    pub receipt_id: String,
    pub profile_id: String,
    pub deleted_events: u64,
    pub deleted_identities: usize,
    pub suppressed: Vec<IdentifierJson>,
    pub at: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Identity {
    /// Opens the view in `dir` and rebuilds the graph from it. Blocking: call at start-up.
    pub fn open(
        dir: &Path,
        config: IdentityConfig,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Identity>, IdentityError> {
        let db = Db::open(dir)?;
        let mut engine = Engine::new(config.clone());
        let mut unreadable = 0;
        db.for_each_link(|json| {
            let restored = serde_json::from_str::<Value>(json)
                .ok()
                .and_then(|v| engine.restore(&v));
            unreadable += usize::from(restored.is_none());
        })?;
        engine.finish_restore();
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "Saved identity links skipped; their events stay in the store."
            );
        }
        let suppressed = db.suppressed()?.into_iter().collect();
        let applied = db.watermark()?;
        tracing::info!(
            profiles = engine.profile_count(),
            watermark = applied,
            "Identity graph loaded."
        );
        Ok(Arc::new(Identity {
            config,
            engine: RwLock::new(engine),
            db,
            store,
            suppressed: RwLock::new(suppressed),
            applied: AtomicU64::new(applied),
            apply_lock: Mutex::new(Instant::now()),
        }))
    }

    /// Follows the store from now on: subscribe, replay what is missing, apply each commit.
    /// Needs a tokio runtime; without it, reads still catch up on demand.
    pub fn follow(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let me = Arc::clone(self);
        let mut rx = self.store.subscribe();
        Some(handle.spawn(async move {
            if let Err(e) = me.sync().await {
                tracing::warn!(error = %e, "Identity catch-up failed; retried on the next read.");
            }
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        let me = Arc::clone(&me);
                        let done = tokio::task::spawn_blocking(move || me.apply(&batch)).await;
                        if let Ok(Err(e)) = done {
                            tracing::error!(error = %e, "Identity view write failed; replayed at start-up.");
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Err(e) = me.sync().await {
                            tracing::warn!(error = %e, "Identity catch-up failed.");
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }))
    }

    /// Applies stored events (in `seq` order) not applied yet; saves the graph now and then.
    pub fn apply(&self, events: &[StoredEvent]) -> Result<(), IdentityError> {
        let mut saved_at = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let applied = self.applied.load(Ordering::Acquire);
        let mut last = applied;
        let to_save = {
            let suppressed = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
            let mut engine = self.engine.write().unwrap_or_else(|e| e.into_inner());
            for e in events.iter().filter(|e| e.seq > applied) {
                last = last.max(e.seq);
                let input = EventInput::from_message(&e.message, &self.config);
                // Stored before its identifiers were erased, applied after: erased all the same.
                if !suppressed.is_empty() && input.ids.iter().any(|i| suppressed.contains(i)) {
                    continue;
                }
                engine.apply(&input);
            }
            self.applied.store(last, Ordering::Release);
            let due = saved_at.elapsed() >= SAVE_EVERY || engine.dirty_count() >= SAVE_DIRTY;
            (due && last > applied).then(|| engine.take_dirty())
        };
        if let Some(links) = to_save {
            *saved_at = Instant::now();
            self.db.save(&links, last)?;
        }
        Ok(())
    }

    /// Saves every change now (tests, shutdown).
    pub fn save(&self) -> Result<(), IdentityError> {
        let mut saved_at = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let links = self
            .engine
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take_dirty();
        *saved_at = Instant::now();
        self.db.save(&links, self.applied.load(Ordering::Acquire))?;
        Ok(())
    }

    /// Catches up with everything the store has committed, so a read sees every acknowledged
    /// event.
    pub async fn sync(self: &Arc<Self>) -> Result<(), IdentityError> {
        loop {
            let after = self.applied.load(Ordering::Acquire);
            let events = self.store.events_after(after, REPLAY_PAGE).await?;
            if events.is_empty() {
                return Ok(());
            }
            let full = events.len() == REPLAY_PAGE;
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || me.apply(&events))
                .await
                .expect("identity apply does not panic")?;
            if !full {
                return Ok(());
            }
        }
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    fn engine(&self) -> std::sync::RwLockReadGuard<'_, Engine> {
        self.engine.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn profile(&self, id: &Identifier) -> Option<Value> {
        self.engine().profile_json(id)
    }

    pub fn merges(&self, id: &Identifier) -> Option<(Vec<Merge>, Vec<Dropped>)> {
        self.engine().merges(id)
    }

    pub fn search(
        &self,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<Value>, Option<String>) {
        let engine = self.engine();
        match q.map(str::trim).filter(|q| !q.is_empty()) {
            // Emails are stored lower-cased; other identifiers as sent.
            Some(q) if q.contains('@') => engine.search(&q.to_lowercase(), cursor, limit),
            Some(q) => engine.search(q, cursor, limit),
            None => engine.recent(cursor, limit),
        }
    }

    /// The profile's events newest first, from the store: the events of its user and anonymous
    /// IDs that resolved to it (on a shared browser an anonymous ID's later events may belong to
    /// someone else). `None` for an unknown identifier.
    pub async fn timeline(
        &self,
        id: &Identifier,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, IdentityError> {
        let (links, ids) = {
            let engine = self.engine();
            let Some(links) = engine.profile_links(id) else {
                return Ok(None);
            };
            let ids = engine.profile_identifiers(id).unwrap_or_default();
            (links.into_iter().collect::<HashSet<i64>>(), ids)
        };
        let mut targets = Identifiers::default();
        for i in ids {
            match i.kind {
                IdType::UserId => targets.user_ids.push(i.value),
                IdType::AnonymousId => targets.anonymous_ids.push(i.value),
                _ => {}
            }
        }
        let mut events = Vec::with_capacity(limit);
        let mut cursor = cursor;
        if targets.is_empty() {
            return Ok(Some((events, None)));
        }
        // Ask only for what is still missing, so a page is always consumed whole and the
        // store's cursor stays exact.
        while events.len() < limit {
            let page = PageRequest {
                limit: limit - events.len(),
                cursor: cursor.take(),
            };
            let page = self.store.events_for(&targets, page).await?;
            for e in page.items {
                let (ids, _) = identifiers(&e.message, &self.config);
                if !ids.is_empty() && links.contains(&link_stable(&ids)) {
                    events.push(e.message);
                }
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        Ok(Some((events, cursor)))
    }

    /// Erases everything held on the person `id` belongs to and suppresses their identifiers.
    pub async fn erase(
        self: &Arc<Self>,
        id: &Identifier,
    ) -> Result<Option<Receipt>, IdentityError> {
        self.sync().await?;
        let at = format_rfc3339(now_ms());
        let erased = {
            let _one = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
            let Some(erased) = self
                .engine
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .erase(id)
            else {
                return Ok(None);
            };
            // Refuse new events from these identifiers before deleting the old ones.
            let mut sup = self.suppressed.write().unwrap_or_else(|e| e.into_inner());
            sup.extend(erased.identifiers.iter().cloned());
            erased
        };
        let receipt_id = format!("erasure_{:016x}", fnv(&[&erased.profile_id, &at]));
        let me = Arc::clone(self);
        let (links, ids, at2, rid) = (
            erased.links.clone(),
            erased.identifiers.clone(),
            at.clone(),
            receipt_id.clone(),
        );
        tokio::task::spawn_blocking(move || me.db.erase(&links, &ids, &at2, &rid))
            .await
            .expect("identity erase does not panic")?;
        let mut targets = Identifiers::default();
        for i in &erased.identifiers {
            match i.kind {
                IdType::UserId => targets.user_ids.push(i.value.clone()),
                IdType::AnonymousId => targets.anonymous_ids.push(i.value.clone()),
                _ => {}
            }
        }
        let in_store = if targets.is_empty() {
            0
        } else {
            self.store.delete_events_for(&targets).await?
        };
        let receipt = Receipt {
            receipt_id: receipt_id.clone(),
            profile_id: erased.profile_id,
            deleted_events: in_store,
            deleted_identities: erased.identifiers.len(),
            suppressed: erased
                .identifiers
                .iter()
                .map(IdentifierJson::from)
                .collect(),
            at,
        };
        let json = serde_json::to_string(&receipt).expect("a receipt serialises");
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.db.save_receipt(&receipt_id, &json))
            .await
            .expect("saving a receipt does not panic")?;
        tracing::info!(profile = %receipt.profile_id, events = receipt.deleted_events, "Profile erased.");
        Ok(Some(receipt))
    }

    /// Everything held on the person: profile, every event, merges and drops.
    pub async fn export(&self, id: &Identifier) -> Result<Option<Value>, IdentityError> {
        let Some(profile) = self.profile(id) else {
            return Ok(None);
        };
        let mut events = Vec::new();
        let mut cursor = None;
        while let Some((page, next)) = self.timeline(id, cursor, 1000).await? {
            events.extend(page);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let (merges, dropped) = self.merges(id).unwrap_or_default();
        Ok(Some(json!({
            "profile": profile,
            "events": events,
            "merges": {"merges": merges, "dropped": dropped},
        })))
    }

    pub fn is_suppressed_id(&self, id: &Identifier) -> bool {
        let sup = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
        !sup.is_empty() && sup.contains(id)
    }
}

impl Admission for Identity {
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool {
        if self
            .suppressed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return false;
        }
        let Ok(kind) = IdType::parse(id_type) else {
            return false;
        };
        self.config
            .normalise(kind, value)
            .is_some_and(|id| self.is_suppressed_id(&id))
    }
}
