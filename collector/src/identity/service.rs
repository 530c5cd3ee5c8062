//! The running identity service: follows the store's committed events, keeps the graph and its
//! on-disk view current, answers profile reads, erases, and refuses suppressed identifiers.

use super::db::Db;
use super::engine::{Dropped, Engine, Merge, TimelinePlan};
use super::engine::{fnv, link_stable};
use super::ident::{IdType, Identifier, IdentifierJson, IdentityConfig};
use super::input::visit_raw_identifiers;
use super::input::{EventInput, RawKind, format_rfc3339, identifiers, identifiers_in};
use crate::admission::Admission;
use crate::store::{CommittedBatch, Identifiers, PageRequest, Store, StoredEvent};
use crate::store::{parse_seq_cursor, seq_cursor};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

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
    suppressed: RwLock<Suppressed>,
    /// Whether anything is suppressed: admission's first question, without a lock.
    any_suppressed: AtomicBool,
    /// Highest store `seq` applied to the graph.
    applied: AtomicU64,
    /// One applier at a time (the follower task, or a read catching up); holds when the
    /// graph was last saved.
    apply_lock: Mutex<Instant>,
    /// Events handed to the identity thread and not applied yet (at most [`LIVE_BACKLOG`]).
    live_backlog: AtomicUsize,
    /// Notified when `live_backlog` falls to zero.
    live_idle: tokio::sync::Notify,
    /// Replays from the store the follower started (the first at start-up).
    replays: AtomicU64,
}

/// How often changed links are saved: a crash replays at most this much from the store, and a
/// link that changes again within it (an active visitor's) is written once.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Changed links that force a save sooner.
const SAVE_DIRTY: usize = 50_000;
/// Changed links that force a save while catching up with a backlog.
const SAVE_DIRTY_BACKLOG: usize = 500_000;

/// Erased identifiers, refused at ingest and left out of resolution.
#[derive(Debug, Default)]
struct Suppressed {
    ids: HashSet<Identifier>,
    /// Their values, whatever the type: admission rules a message out by its raw values
    /// without normalising them into identifiers.
    values: HashSet<String>,
}

impl Suppressed {
    fn insert(&mut self, id: Identifier) {
        self.values.insert(id.value.clone());
        self.ids.insert(id);
    }

    fn contains(&self, id: &Identifier) -> bool {
        self.ids.contains(id)
    }

    /// Whether a raw field may normalise to a suppressed value; `false` is certain.
    fn may_hold(&self, kind: RawKind<'_>, v: &Value) -> bool {
        let s = match v {
            Value::String(s) => s.trim(),
            Value::Number(_) => return true,
            _ => return false,
        };
        match kind {
            RawKind::Email if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) => {
                self.values.contains(&s.to_lowercase())
            }
            RawKind::Phone => {
                let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                self.values.contains(&digits) || self.values.contains(&format!("+{digits}"))
            }
            _ => self.values.contains(s),
        }
    }
}

/// Committed events handed to the identity thread and not applied yet, at most; a burst
/// beyond it is replayed from the store instead of held in memory. At 64 connections a commit
/// carries about 3,200 events, so 5,000 (as this was while whole messages were held) dropped
/// to replays within two commits, and a replay reads every event again: `cargo xtask bench
/// ingest`, durable + identity at 64 connections, 62-64k events/s with 5,000 and 76-86k with
/// 15,000; peak RSS after 10M stored events 183 and 181 MB.
const LIVE_BACKLOG: usize = 15_000;
/// Wait before replaying again after a failed replay.
const SYNC_RETRY: Duration = Duration::from_secs(1);

/// Where the follower is.
enum Follow {
    /// Every commit since the last replay went to the identity thread.
    Live,
    /// Commits were dropped; replay once the identity thread has applied what it holds.
    Dropped,
    /// Replaying from the store; commits arriving meanwhile are `held` for after, unless there
    /// were too many (`overflowed`: replay again).
    Syncing {
        sync: tokio::task::JoinHandle<Result<(), IdentityError>>,
        held: Vec<CommittedBatch>,
        overflowed: bool,
    },
}

/// The identity thread's inbox.
type Applier = std::sync::mpsc::Sender<Vec<CommittedBatch>>;

fn event_count(batches: &[CommittedBatch]) -> usize {
    batches.iter().map(|b| b.len()).sum()
}

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
            let restored = engine.restore(json);
            unreadable += usize::from(restored.is_none());
        })?;
        engine.finish_restore();
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "Saved identity links skipped; their events stay in the store."
            );
        }
        let mut suppressed = Suppressed::default();
        for id in db.suppressed()? {
            suppressed.insert(id);
        }
        let any_suppressed = AtomicBool::new(!suppressed.ids.is_empty());
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
            any_suppressed,
            applied: AtomicU64::new(applied),
            apply_lock: Mutex::new(Instant::now()),
            live_backlog: AtomicUsize::new(0),
            live_idle: tokio::sync::Notify::new(),
            replays: AtomicU64::new(0),
        }))
    }

    /// Follows the store from now on: subscribe, replay what is missing, apply each commit.
    /// Needs a tokio runtime; without it, reads still catch up on demand.
    ///
    /// Live commits go to a thread of their own (see [`Identity::start_applier`]). What it has
    /// not applied yet is bounded by [`LIVE_BACKLOG`] events: past that, commits are dropped
    /// rather than held (they are durable), and once the thread has caught up they are replayed
    /// from the store, while the commits arriving meanwhile wait, bounded alike, to be applied
    /// after.
    pub fn follow(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let me = Arc::clone(self);
        let rx = self.store.subscribe();
        let applier = self.start_applier();
        Some(handle.spawn(async move { me.follow_loop(rx, applier).await }))
    }

    async fn follow_loop(
        self: Arc<Self>,
        mut rx: tokio::sync::broadcast::Receiver<CommittedBatch>,
        applier: Applier,
    ) {
        // Start as if commits had been dropped: what the store holds beyond the watermark is
        // replayed first.
        let mut state = Follow::Dropped;
        let mut retry_at = tokio::time::Instant::now();
        loop {
            if matches!(state, Follow::Dropped) && self.live_backlog() == 0 {
                let now = tokio::time::Instant::now();
                if now >= retry_at {
                    self.replays.fetch_add(1, Ordering::Relaxed);
                    let me = Arc::clone(&self);
                    let sync = tokio::spawn(async move { me.sync().await });
                    state = Follow::Syncing {
                        sync,
                        held: Vec::new(),
                        overflowed: false,
                    };
                }
            }
            let received = match &mut state {
                Follow::Live => rx.recv().await,
                Follow::Dropped => tokio::select! {
                    r = rx.recv() => r,
                    () = self.live_idle.notified() => continue,
                    () = tokio::time::sleep_until(retry_at), if self.live_backlog() == 0 => {
                        continue
                    }
                },
                Follow::Syncing { sync, .. } => tokio::select! {
                    r = rx.recv() => r,
                    done = sync => {
                        let Follow::Syncing { held, overflowed, .. } =
                            std::mem::replace(&mut state, Follow::Dropped)
                        else {
                            unreachable!("matched above")
                        };
                        match done.expect("identity catch-up does not panic") {
                            Err(e) => {
                                tracing::warn!(error = %e, "Identity catch-up failed; retried.");
                                retry_at = tokio::time::Instant::now() + SYNC_RETRY;
                            }
                            // Something was dropped while replaying: replay again.
                            Ok(()) if overflowed => {}
                            Ok(()) => {
                                if !held.is_empty() && !self.hand_over(&applier, held) {
                                    return;
                                }
                                state = Follow::Live;
                            }
                        }
                        continue;
                    }
                },
            };
            // Whatever else has committed meanwhile goes in one hand-over, up to a gap the
            // channel dropped.
            let mut batches = match received {
                Ok(batch) => vec![batch],
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => return,
            };
            let mut lagged = batches.is_empty();
            while !lagged {
                match rx.try_recv() {
                    Ok(more) => batches.push(more),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            let events = event_count(&batches);
            match &mut state {
                Follow::Live if lagged || self.live_backlog() + events > LIVE_BACKLOG => {
                    state = Follow::Dropped;
                }
                Follow::Live => {
                    if !self.hand_over(&applier, batches) {
                        return;
                    }
                }
                Follow::Dropped => {}
                Follow::Syncing {
                    held, overflowed, ..
                } => {
                    if lagged || *overflowed || event_count(held) + events > LIVE_BACKLOG {
                        *overflowed = true;
                        held.clear();
                    } else {
                        held.append(&mut batches);
                    }
                }
            }
        }
    }

    /// The thread that applies live commits, off the tokio workers so a long batch never delays
    /// a request. Ends when the sender is dropped.
    fn start_applier(self: &Arc<Self>) -> Applier {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<CommittedBatch>>();
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("seam-identity".into())
            .spawn(move || {
                while let Ok(batches) = rx.recv() {
                    if let Err(e) = me.apply_batches(batches.iter().map(|b| &b[..]), false) {
                        tracing::error!(error = %e, "Identity view write failed; replayed at start-up.");
                    }
                    let events = event_count(&batches);
                    drop(batches);
                    if me.live_backlog.fetch_sub(events, Ordering::AcqRel) == events {
                        me.live_idle.notify_one();
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the thread live commits are not applied; reads still catch up on demand.
            tracing::error!(error = %e, "Could not start the identity thread.");
        }
        tx
    }

    fn live_backlog(&self) -> usize {
        self.live_backlog.load(Ordering::Acquire)
    }

    /// Hands batches to the identity thread; `false` once the thread is gone.
    fn hand_over(&self, applier: &Applier, batches: Vec<CommittedBatch>) -> bool {
        self.live_backlog
            .fetch_add(event_count(&batches), Ordering::AcqRel);
        applier.send(batches).is_ok()
    }

    /// Applies stored events (in `seq` order) not applied yet; saves the graph now and then.
    pub fn apply(&self, events: &[StoredEvent]) -> Result<(), IdentityError> {
        self.apply_batches([events], false)
    }

    /// Applies batches under one lock. In a `backlog` (catching up with a large store) saves
    /// wait until many links changed: a crash then replays from the store anyway, and saving
    /// every second would rewrite the same links again and again.
    fn apply_batches<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a [StoredEvent]>,
        backlog: bool,
    ) -> Result<(), IdentityError> {
        let mut saved_at = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let applied = self.applied.load(Ordering::Acquire);
        let mut last = applied;
        let to_save = {
            let suppressed = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
            let mut engine = self.engine.write().unwrap_or_else(|e| e.into_inner());
            let events = batches.into_iter().flatten();
            for e in events.filter(|e| e.seq > applied) {
                last = last.max(e.seq);
                let mut input = EventInput::from_message(&e.message, &self.config);
                // Erased identifiers are no one's: an event that also names someone else (the
                // next person on a shared browser) counts for them without the erased ones.
                if !suppressed.ids.is_empty() && !input.without(|i| suppressed.contains(i)) {
                    continue;
                }
                engine.apply(&input);
            }
            self.applied.store(last, Ordering::Release);
            let due = if backlog {
                engine.dirty_count() >= SAVE_DIRTY_BACKLOG
            } else {
                saved_at.elapsed() >= SAVE_EVERY || engine.dirty_count() >= SAVE_DIRTY
            };
            (due && engine.dirty_count() > 0).then(|| engine.take_dirty())
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
    /// A long backlog is read one page ahead of the one being applied.
    pub async fn sync(self: &Arc<Self>) -> Result<(), IdentityError> {
        let read = |after: u64| {
            let store = Arc::clone(&self.store);
            tokio::spawn(async move {
                store
                    .events_after_parsed(after, REPLAY_PAGE, super::input::parse_read)
                    .await
            })
        };
        let mut next = read(self.applied.load(Ordering::Acquire));
        let mut backlog = false;
        loop {
            let events = next.await.expect("a store read does not panic")?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let full = events.len() == REPLAY_PAGE;
            backlog |= full;
            let ahead = full.then(|| read(last));
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || me.apply_batches([&events[..]], full))
                .await
                .expect("identity apply does not panic")?;
            match ahead {
                Some(read) => next = read,
                None => break,
            }
        }
        if backlog {
            // What the backlog left unsaved goes on the usual timer.
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || me.apply(&[]))
                .await
                .expect("identity apply does not panic")?;
        }
        Ok(())
    }

    pub fn stats(&self) -> crate::metrics::IdentityStats {
        crate::metrics::IdentityStats {
            applied_seq: self.applied.load(Ordering::Acquire),
            backlog: self.live_backlog() as u64,
            replays: self.replays.load(Ordering::Relaxed),
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

    /// The profile's events newest first. Most come from the store's lookup by the profile's
    /// user and anonymous IDs, kept when they resolved to this profile (on a shared browser an
    /// anonymous ID's later events may be someone else's); the few the store files under
    /// another person's identifier, or none, are read by `seq`. The cursor is a `seq`.
    /// `None` for an unknown identifier.
    pub async fn timeline(
        &self,
        id: &Identifier,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, IdentityError> {
        let Some(plan) = self.engine().timeline_plan(id) else {
            return Ok(None);
        };
        let before = parse_seq_cursor(&cursor)?.unwrap_or(u64::MAX);
        let limit = limit.max(1);
        let targets = Identifiers {
            user_ids: plan.user_ids.clone(),
            anonymous_ids: plan.anonymous_ids.clone(),
            ..Default::default()
        };
        // The newest `limit + 1` of the profile's events the store finds below `before`, or all
        // of them; `floor` is the seq down to which that is complete.
        let mut found: Vec<(u64, Value)> = Vec::with_capacity(limit + 1);
        let mut floor = 0;
        if !targets.is_empty() {
            let mut below = before;
            loop {
                let page = PageRequest {
                    limit: limit + 1 - found.len(),
                    cursor: (below != u64::MAX).then(|| seq_cursor(below)),
                };
                let page = self.store.events_for(&targets, page).await?;
                for e in page.items {
                    below = e.seq;
                    if self.owns(&plan, &e.message) {
                        found.push((e.seq, e.message));
                    }
                }
                if page.next_cursor.is_none() {
                    break;
                }
                if found.len() > limit {
                    floor = below;
                    break;
                }
            }
        }
        // The strays in range, in one lookup by seq (deleted ones are simply not found).
        let seqs: Vec<u64> = plan
            .extra
            .iter()
            .copied()
            .filter(|s| (floor..before).contains(s))
            .collect();
        if !seqs.is_empty() {
            let page = PageRequest {
                limit: seqs.len(),
                cursor: (before != u64::MAX).then(|| seq_cursor(before)),
            };
            let strays = Identifiers {
                seqs,
                ..Default::default()
            };
            let page = self.store.events_for(&strays, page).await?;
            found.extend(page.items.into_iter().map(|e| (e.seq, e.message)));
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.0));
        found.dedup_by_key(|e| e.0);
        let next = (found.len() > limit).then(|| seq_cursor(found[limit - 1].0));
        found.truncate(limit);
        Ok(Some((found.into_iter().map(|e| e.1).collect(), next)))
    }

    /// Whether a stored event the store found by the profile's identifiers resolved to it.
    fn owns(&self, plan: &TimelinePlan, msg: &Value) -> bool {
        let (mut ids, _) = identifiers(msg, &self.config);
        if self.any_suppressed.load(Ordering::Acquire) {
            let sup = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
            ids.retain(|i| !sup.contains(i));
        }
        !ids.is_empty() && plan.links.contains(&link_stable(&ids))
    }

    /// Erases everything held on the person `id` belongs to and suppresses their identifiers.
    pub async fn erase(
        self: &Arc<Self>,
        id: &Identifier,
    ) -> Result<Option<Receipt>, IdentityError> {
        self.sync().await?;
        let at = format_rfc3339(now_ms());
        let (erased, rewritten, watermark) = {
            let _one = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut engine = self.engine.write().unwrap_or_else(|e| e.into_inner());
            let Some(erased) = engine.erase(id) else {
                return Ok(None);
            };
            // Refuse new events from these identifiers before deleting the old ones.
            let mut sup = self.suppressed.write().unwrap_or_else(|e| e.into_inner());
            for i in &erased.identifiers {
                sup.insert(i.clone());
            }
            self.any_suppressed.store(true, Ordering::Release);
            // Saved with the erasure, so the view never holds a link under its old identifiers.
            let rewritten = engine.take_dirty();
            (erased, rewritten, self.applied.load(Ordering::Acquire))
        };
        let receipt_id = format!("erasure_{:016x}", fnv(&[&erased.profile_id, &at]));
        let me = Arc::clone(self);
        let (links, ids, at2, rid) = (
            erased.links.clone(),
            erased.identifiers.clone(),
            at.clone(),
            receipt_id.clone(),
        );
        tokio::task::spawn_blocking(move || {
            me.db.erase(&links, &rewritten, watermark, &ids, &at2, &rid)
        })
        .await
        .expect("identity erase does not panic")?;
        // Events filed under someone else's identifier, or none, are named by seq.
        let mut targets = Identifiers {
            seqs: erased.unreachable.clone(),
            ..Default::default()
        };
        for i in &erased.identifiers {
            match &i.kind {
                IdType::UserId => targets.user_ids.push(i.value.clone()),
                IdType::AnonymousId => targets.anonymous_ids.push(i.value.clone()),
                IdType::Email => targets.emails.push(i.value.clone()),
                IdType::Phone => targets.phones.push(i.value.clone()),
                IdType::Custom(ty) => targets.externals.push((ty.clone(), i.value.clone())),
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
        self.any_suppressed.load(Ordering::Acquire)
            && self
                .suppressed
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id)
    }
}

impl Admission for Identity {
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool {
        if !self.any_suppressed.load(Ordering::Acquire) {
            return false;
        }
        let Ok(kind) = IdType::parse(id_type) else {
            return false;
        };
        self.config
            .normalise(kind, value)
            .is_some_and(|id| self.is_suppressed_id(&id))
    }

    /// Every identifier resolution links on, and an alias's `previousId` as a user ID too.
    /// Nothing suppressed costs one atomic load; otherwise raw values are looked up as they
    /// are, and only a message with a possible hit is normalised into identifiers.
    fn refuses(&self, m: &Map<String, Value>) -> bool {
        if !self.any_suppressed.load(Ordering::Acquire) {
            return false;
        }
        let sup = self.suppressed.read().unwrap_or_else(|e| e.into_inner());
        let mut maybe = m
            .get("previousId")
            .is_some_and(|v| sup.may_hold(RawKind::UserId, v));
        visit_raw_identifiers(m, |kind, v| maybe = maybe || sup.may_hold(kind, v));
        if !maybe {
            return false;
        }
        let prev = m.get("previousId").and_then(Value::as_str);
        let prev_ids = [IdType::UserId, IdType::AnonymousId]
            .into_iter()
            .filter_map(|t| self.config.normalise(t, prev?));
        identifiers_in(m, &self.config)
            .0
            .into_iter()
            .chain(prev_ids)
            .any(|i| sup.contains(&i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use crate::store::conformance::{TempDir, event, write};

    /// Appends one write of `n` events, each of its own user, and returns the last `seq`.
    async fn append_users(store: &SqliteStore, from: usize, n: usize) -> u64 {
        let events = (from..from + n)
            .map(|i| event("k", &format!("m{i}"), Some(&format!("u{i}")), None))
            .collect();
        let appended = store.append(write(events)).await.expect("append");
        match appended.last().copied() {
            Some(crate::store::Appended::Stored { seq }) => seq,
            other => panic!("not stored: {other:?}"),
        }
    }

    async fn wait_applied(identity: &Identity, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while identity.applied.load(Ordering::Acquire) < seq {
            assert!(
                Instant::now() < deadline,
                "the follower never applied seq {seq}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_identity_thread_holds_a_bounded_backlog_and_misses_nothing() {
        let dir = TempDir::new("identity-backlog");
        let store = Arc::new(SqliteStore::open(&dir.0).expect("open store"));
        let identity = Identity::open(
            &dir.0,
            IdentityConfig::default(),
            Arc::clone(&store) as Arc<dyn Store>,
        )
        .expect("open identity");
        identity.follow().expect("a runtime");
        let first = append_users(&store, 0, 1).await;
        wait_applied(&identity, first).await;

        // Stall the identity thread (and any replay) while commits keep coming.
        let (release, stalled) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let holder = Arc::clone(&identity);
        let stall = std::thread::spawn(move || {
            let _guard = holder.apply_lock.lock().unwrap();
            locked.send(()).unwrap();
            stalled.recv().unwrap();
        });
        is_locked.recv().unwrap();
        let users = 1 + 4 * LIVE_BACKLOG;
        let mut last = first;
        let mut peak = 0;
        for from in (1..users).step_by(1000) {
            last = append_users(&store, from, 1000.min(users - from)).await;
            peak = peak.max(identity.live_backlog.load(Ordering::Acquire));
        }
        // Let the follower see the last commits before looking at what it holds.
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(identity.live_backlog.load(Ordering::Acquire));
        assert!(peak > 0, "the identity thread was handed nothing");
        assert!(
            peak <= LIVE_BACKLOG,
            "{peak} events held for the identity thread"
        );

        release.send(()).unwrap();
        stall.join().unwrap();
        // The follower alone catches up: no read asks for a replay.
        wait_applied(&identity, last).await;
        assert_eq!(identity.engine().profile_count(), users);
        assert_eq!(identity.live_backlog.load(Ordering::Acquire), 0);
    }
}
