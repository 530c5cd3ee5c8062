//! The running identity service: follows the store's committed events, keeps the graph and its
//! on-disk view current, answers profile reads, erases, and refuses suppressed identifiers.

use super::db::Db;
use super::engine::{Dropped, Engine, Merge};
use super::ident::{IdType, Identifier, IdentifierJson, IdentityConfig};
use super::input::{EventInput, format_rfc3339};
use crate::admission::Admission;
use crate::store::{Identifiers, Store, StoredEvent};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
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
    /// One applier at a time (the follower task, or a read catching up).
    apply_lock: Mutex<()>,
}

/// Events newest first, and the `seq` cursor of the next page.
pub type TimelinePage = (Vec<Value>, Option<u64>);

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
        db.for_each_event(|_, json| {
            if let Ok(msg) = serde_json::from_str::<Value>(json) {
                engine.apply(&EventInput::from_message(&msg, &config));
            }
        })?;
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
            apply_lock: Mutex::new(()),
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

    /// Applies stored events (in `seq` order) not applied yet.
    pub fn apply(&self, events: &[StoredEvent]) -> Result<(), IdentityError> {
        let _one = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let applied = self.applied.load(Ordering::Acquire);
        let mut last = applied;
        let mut rows = Vec::with_capacity(events.len());
        {
            let suppressed = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
            let mut engine = self.engine.write().unwrap_or_else(|e| e.into_inner());
            for e in events.iter().filter(|e| e.seq > applied) {
                last = last.max(e.seq);
                let input = EventInput::from_message(&e.message, &self.config);
                // Stored before its identifiers were erased, applied after: erased all the same.
                if !suppressed.is_empty() && input.ids.iter().any(|i| suppressed.contains(i)) {
                    continue;
                }
                if let Some(link) = engine.apply(&input) {
                    rows.push((e.seq, link, e.message.to_string()));
                }
            }
        }
        if last == applied {
            return Ok(());
        }
        self.applied.store(last, Ordering::Release);
        self.db.append(&rows, last)?;
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

    /// The profile's events newest first, `seq` below `before`; `None` for an unknown identifier.
    pub fn timeline(
        &self,
        id: &Identifier,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, IdentityError> {
        let Some(links) = self.engine().profile_links(id) else {
            return Ok(None);
        };
        let mut rows = self.db.timeline(&links, before, limit + 1)?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].0);
        rows.truncate(limit);
        let events = rows
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json).ok())
            .collect();
        Ok(Some((events, next)))
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
        let receipt_id = format!(
            "erasure_{:016x}",
            super::engine::link_stable(&[Identifier {
                kind: IdType::Custom("receipt".into()),
                value: format!("{}/{at}", erased.profile_id),
            }]) as u64
        );
        let me = Arc::clone(self);
        let (links, ids, at2, rid) = (
            erased.links.clone(),
            erased.identifiers.clone(),
            at.clone(),
            receipt_id.clone(),
        );
        let mine = tokio::task::spawn_blocking(move || me.db.erase(&links, &ids, &at2, &rid))
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
            deleted_events: in_store.max(mine),
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
    pub fn export(&self, id: &Identifier) -> Result<Option<Value>, IdentityError> {
        let Some(profile) = self.profile(id) else {
            return Ok(None);
        };
        let mut events = Vec::new();
        let mut before = None;
        while let Some((page, next)) = self.timeline(id, before, 1000)? {
            events.extend(page);
            match next {
                Some(n) => before = Some(n),
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
