//! Durable event storage: the `Store` trait every engine implements, the types it speaks, and
//! the bus that hands committed events to subscribers.
//!
//! # Integration surface (identity resolution and profiles use these)
//!
//! - [`Store::subscribe`] returns a [`tokio::sync::broadcast::Receiver`] of
//!   [`CommittedBatch`]es. A batch is sent only after its transaction is durable, in commit
//!   order, so `seq` only grows; a read made after receiving it sees its events (it may wait
//!   for the engine's index). It is sent by the store's threads, never by the HTTP request, so
//!   a slow subscriber never delays an acknowledgement. The channel is bounded: a subscriber
//!   that falls behind gets `RecvError::Lagged` and catches up with [`Store::events_after`] from
//!   the last `seq` it saw. At start-up, subscribe first, then replay with
//!   `events_after(0 or your checkpoint)`, then skip live events whose `seq` you already
//!   replayed.
//! - [`Store::events_for`]: the events of a set of user IDs / anonymous IDs, newest first, one
//!   page at a time ([`PageRequest`] / [`Page`] with an opaque cursor).
//! - [`Store::events_after`]: every event with `seq` greater than a given one, oldest first.
//! - [`Store::delete_events_for`]: erasure; removes the events of a set of identifiers and
//!   returns how many went.
//! - Ownership: an event that carries a `userId` belongs to that user. Reads and erasure by
//!   anonymous ID reach it only if its `userId` is also in the set.
//!
//! An engine passes [`conformance`] to be interchangeable with the others.

pub mod conformance;
pub mod dedup;
pub mod log;
pub mod sqlite;

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Parses a stored message's JSON (see [`Store::events_after_parsed`]).
pub type ParseMessage = fn(&str) -> serde_json::Result<Value>;

/// [`ParseMessage`] of the whole message.
pub fn parse_whole(json: &str) -> serde_json::Result<Value> {
    serde_json::from_str(json)
}

/// A boxed future, so the trait can be used as `Arc<dyn Store>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event as stored: the store's key plus the normalised Segment message.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The store's time-ordered key: it grows with every commit; also `message["seq"]`.
    pub seq: u64,
    /// The write key (source) the event came in with.
    pub write_key: String,
    /// The normalised message as in docs/api.md "Event (as stored)", including `seq`.
    pub message: Value,
}

impl StoredEvent {
    pub fn message_id(&self) -> Option<&str> {
        self.message.get("messageId").and_then(Value::as_str)
    }
    pub fn user_id(&self) -> Option<&str> {
        self.message.get("userId").and_then(Value::as_str)
    }
    pub fn anonymous_id(&self) -> Option<&str> {
        self.message.get("anonymousId").and_then(Value::as_str)
    }
}

/// Events of one durable commit, in `seq` order; shared by all subscribers. Each message is
/// the [`NewEvent::message`] it was appended with, plus `seq`: with identity on, ingestion
/// keeps there only what identity reads (`identity::input::parse_read`), while reads from the
/// store give the whole message. A `Vec` behind the `Arc`, so the writer publishes what it
/// built without copying it into a slice.
pub type CommittedBatch = Arc<Vec<StoredEvent>>;

/// A message ready to be stored, built by the ingestion path with [`NewEvent::new`].
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub write_key: String,
    pub message_id: String,
    /// Milliseconds since the Unix epoch when the collector received it.
    pub received_at_ms: i64,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// The normalised message without `seq` (the store adds it), for subscribers: ingestion
    /// may cut it down to what they read, since `json` is what is stored.
    pub message: serde_json::Map<String, Value>,
    /// `message` serialised: done on the request's thread so the single writer only copies.
    pub json: String,
}

impl NewEvent {
    /// Takes `messageId`, `userId` and `anonymousId` from the message itself.
    pub fn new(
        write_key: &str,
        received_at_ms: i64,
        message: serde_json::Map<String, Value>,
    ) -> Self {
        let text = |k: &str| message.get(k).and_then(Value::as_str).map(str::to_owned);
        NewEvent {
            write_key: write_key.to_owned(),
            message_id: text("messageId").unwrap_or_default(),
            received_at_ms,
            user_id: text("userId"),
            anonymous_id: text("anonymousId"),
            json: crate::message::json_text(&message),
            message,
        }
    }

    /// The stored JSON text with `seq` spliced in front of the other fields, as the store's
    /// log writes it (tests build old rows with it).
    #[cfg(test)]
    pub(crate) fn json_with_seq(&self, seq: u64) -> String {
        let rest = self.json.strip_prefix('{').unwrap_or("}");
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"seq\":{seq}{sep}{rest}")
    }
}

/// A message the collector refused, kept so that nothing is silently lost (`GET /v1/failed`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FailedEvent {
    /// Assigned by the store; 0 when not stored yet.
    pub id: u64,
    /// RFC 3339.
    pub received_at: String,
    pub write_key: String,
    pub code: String,
    pub message: String,
    /// The message exactly as sent (truncated to the per-message limit).
    pub raw: String,
}

/// One group of writes that commits (or fails) as a unit.
#[derive(Clone, Debug, Default)]
pub struct Write {
    pub events: Vec<NewEvent>,
    pub failed: Vec<FailedEvent>,
}

/// What became of each event of a [`Write`], in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Stored {
        seq: u64,
    },
    /// Same write key and `messageId` already stored within the dedup window.
    Duplicate,
}

/// A set of identifiers whose events to read or erase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identifiers {
    pub user_ids: Vec<String>,
    pub anonymous_ids: Vec<String>,
    /// Events named by `seq`, whatever identifiers they carry: identity resolution knows of
    /// events that belong to a person but are filed under someone else's anonymous ID (a
    /// guest checkout on a shared browser), and erasure must reach those too.
    pub seqs: Vec<u64>,
    /// The person's email addresses, trimmed and lower-cased as identity resolution keeps
    /// them. Events are never chosen by email (every stored event has a user or anonymous ID);
    /// an erasure uses them for refused messages, which are often refused for naming nobody
    /// but an email (see [`Self::own_failed`]).
    pub emails: Vec<String>,
    /// The person's phone numbers as identity resolution keeps them (digits, with `+` first
    /// when the number was written with one); used like [`Self::emails`].
    pub phones: Vec<String>,
    /// The person's external IDs, `(type, id)`, as identity resolution keeps them (the type
    /// lower-cased, the ID trimmed); used like [`Self::emails`], for refused messages that
    /// carry one in `context.externalIds`.
    pub externals: Vec<(String, String)>,
}

impl Identifiers {
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty()
            && self.anonymous_ids.is_empty()
            && self.seqs.is_empty()
            && self.emails.is_empty()
            && self.phones.is_empty()
            && self.externals.is_empty()
    }

    /// Whether a refused message (its raw text, as `GET /v1/failed` lists it) belongs to these
    /// identifiers, by the ownership rule of events: by its `userId` when it has one, otherwise
    /// by its `anonymousId` or an alias's `previousId`. A message that holds one of their
    /// [`Self::emails`] as a string anywhere (in any case, with spaces around it) is theirs
    /// too, whoever else it names: it holds their personal data; so is one that holds one of
    /// their [`Self::phones`] under a `phone` key, however its digits are spaced. Text that is
    /// not a JSON object (a message cut at the size limit) belongs to them when it holds one of
    /// their IDs as a JSON string, one of their emails anywhere, or the digits of one of their
    /// phones among its digits: an erasure then removes too much rather than too little. A
    /// message with one of their [`Self::externals`] among its `context.externalIds` is theirs
    /// (cut short: one holding the ID as a JSON string).
    pub fn own_failed(&self, raw: &str) -> bool {
        let emails: Vec<String> = self
            .emails
            .iter()
            .map(|e| e.trim().to_lowercase())
            .collect();
        let phones: Vec<String> = self
            .phones
            .iter()
            .map(|p| digits(p))
            .filter(|p| !p.is_empty())
            .collect();
        let Ok(m) = serde_json::from_str::<serde_json::Map<String, Value>>(raw) else {
            let quoted = |text: &str, id: &str| {
                json_forms(id)
                    .iter()
                    .any(|f| text.contains(&format!("\"{f}\"")))
            };
            let lower = raw.to_lowercase();
            return self
                .user_ids
                .iter()
                .chain(&self.anonymous_ids)
                .chain(self.externals.iter().map(|(_, id)| id))
                .any(|id| quoted(raw, id))
                || emails.iter().any(|e| {
                    json_forms(e)
                        .iter()
                        .any(|f| lower.contains(&f.to_lowercase()))
                })
                || (!phones.is_empty() && {
                    let all = digits(raw);
                    phones.iter().any(|p| all.contains(p.as_str()))
                });
        };
        if (!emails.is_empty() || !phones.is_empty())
            && m.iter()
                .any(|(k, v)| holds_contact(v, Some(k), &emails, &phones))
        {
            return true;
        }
        if !self.externals.is_empty() && self.holds_external(&m) {
            return true;
        }
        let field = |k: &str| match m.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match field("userId") {
            Some(user) => self.user_ids.contains(&user),
            None => [field("anonymousId"), field("previousId")]
                .into_iter()
                .flatten()
                .any(|id| self.anonymous_ids.contains(&id) || self.user_ids.contains(&id)),
        }
    }

    /// Whether `m`'s `context.externalIds` has one of [`Self::externals`], compared as identity
    /// resolution reads them: the type in any case, the ID trimmed (a number as written).
    fn holds_external(&self, m: &serde_json::Map<String, Value>) -> bool {
        let Some(Value::Array(entries)) = m.get("context").and_then(|c| c.get("externalIds"))
        else {
            return false;
        };
        entries.iter().any(|e| {
            let Some(Value::String(ty)) = e.get("type") else {
                return false;
            };
            let id = match e.get("id") {
                Some(Value::String(s)) => s.trim().to_owned(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return false,
            };
            let ty = ty.to_lowercase();
            self.externals.iter().any(|(t, v)| *t == ty && *v == id)
        })
    }

    /// Text every refused message of [`Self::own_failed`] that names these IDs contains one
    /// of, for an engine to narrow its search: each ID as JSON writes it inside a string,
    /// escaped or not (external IDs too); for the messages that hold a phone, its last digit,
    /// however the number is spaced. (For the messages that hold an email, see
    /// [`Self::failed_email_needles`].)
    pub fn failed_needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = self
            .user_ids
            .iter()
            .chain(&self.anonymous_ids)
            .chain(self.externals.iter().map(|(_, id)| id))
            .flat_map(|id| json_forms(id))
            .collect();
        // Every message holding a phone holds its last digit, however the number is spaced.
        needles.extend(
            self.phones
                .iter()
                .filter_map(|p| digits(p).pop().map(String::from)),
        );
        needles.sort_unstable();
        needles.dedup();
        needles
    }

    /// Text that every refused message of [`Self::own_failed`] holding one of the
    /// [`Self::emails`] contains once its ASCII letters are lower-cased (SQL's `lower`): the
    /// longest run of ASCII characters of each email, which JSON writes as it is whether or
    /// not it escapes the rest. An email with no ASCII character gives an empty needle, which
    /// every message contains.
    pub fn failed_email_needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = self
            .emails
            .iter()
            .map(|e| {
                e.split(|c: char| !c.is_ascii())
                    .max_by_key(|run| run.len())
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .collect();
        needles.sort_unstable();
        needles.dedup();
        needles
    }
}

/// The ASCII digits of `s`, in order.
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `v`, the value of field `key`, holds at any depth a string that is one of `emails`
/// once trimmed and lower-cased, or a `phone` field (or a list under one) with the digits of
/// one of `phones`.
fn holds_contact(v: &Value, key: Option<&str>, emails: &[String], phones: &[String]) -> bool {
    let phone = key == Some("phone");
    match v {
        Value::String(s) => {
            let s = s.trim();
            (s.contains('@') && emails.contains(&s.to_lowercase()))
                || (phone && phones.contains(&digits(s)))
        }
        Value::Number(n) => phone && phones.contains(&digits(&n.to_string())),
        Value::Array(items) => items.iter().any(|v| holds_contact(v, key, emails, phones)),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| holds_contact(v, Some(k), emails, phones)),
        _ => false,
    }
}

/// How `s` can appear between the quotes of a JSON string: as most clients write it, and with
/// every non-ASCII character escaped (`\u00e9`), as Python's `json.dumps` does by default.
fn json_forms(s: &str) -> Vec<String> {
    let plain = serde_json::to_string(s).expect("a string always serialises");
    let plain = plain[1..plain.len() - 1].to_owned();
    let mut ascii = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    if ascii == plain {
        vec![plain]
    } else {
        vec![plain, ascii]
    }
}

/// Paging through results newest first: `cursor` is the `next_cursor` of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of results and the cursor of the next one (`None` on the last page).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cheap, synchronous figures for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    /// Writes waiting for the writer.
    pub queue_depth: u64,
    /// Events acknowledged but not yet readable (engines that index after the ack).
    pub index_lag: u64,
    /// Events stored since start-up plus those found at start-up.
    pub events: u64,
    /// Bytes the engine occupies on disk (0 when unknown).
    pub bytes: u64,
    /// The highest `seq` acknowledged.
    pub last_seq: u64,
    /// How long group commits took to become durable, for engines that commit in groups.
    pub commit_latency: Option<crate::metrics::CommitLatency>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine failed: {0}")]
    Engine(String),
    #[error("the writer has stopped")]
    Closed,
    /// Refused to keep memory and latency bounded; the client should retry shortly.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("invalid cursor `{0}`")]
    InvalidCursor(String),
}

/// A storage engine. Object-safe; held as `Arc<dyn Store>`.
pub trait Store: Send + Sync + 'static {
    /// Stores the write durably (events deduplicated per write key by `messageId`) and resolves
    /// only once it is on disk. Committed events then go to subscribers.
    fn append(&self, write: Write) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>>;

    /// The events of the identifiers, newest first. An event with a `userId` belongs to that
    /// user: it matches when its `user_id` is in `ids.user_ids`, or when its `anonymous_id` is
    /// in `ids.anonymous_ids` and its `user_id` is absent or in `ids.user_ids`. So the next
    /// person on a shared browser (same anonymous ID, another user ID) is not included.
    fn events_for<'a>(
        &'a self,
        ids: &'a Identifiers,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<StoredEvent>, StoreError>>;

    /// Up to `limit` events with `seq > after`, oldest first (replay): fewer only when no more
    /// are stored, so a short page marks the end.
    fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>>;

    /// [`Store::events_after`], each message parsed from its stored JSON by `parse`, for a
    /// replay that reads a few fields of many events (identity's). An engine that holds
    /// messages parsed already may give them whole instead, as this default does.
    fn events_after_parsed(
        &self,
        after: u64,
        limit: usize,
        parse: ParseMessage,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        let _ = parse;
        self.events_after(after, limit)
    }

    /// Deletes the events of the identifiers, matched as in [`Store::events_for`] (another
    /// user's events on a shared anonymous ID stay); returns how many were deleted. Ordered
    /// after every append that resolved before the call.
    fn delete_events_for<'a>(
        &'a self,
        ids: &'a Identifiers,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Refused messages, newest first.
    fn failed(&self, page: PageRequest) -> BoxFuture<'_, Result<Page<FailedEvent>, StoreError>>;

    /// Committed events from now on; see the module documentation.
    fn subscribe(&self) -> broadcast::Receiver<CommittedBatch>;

    /// Why an append would be refused with [`StoreError::Overloaded`] now, if it would; lets
    /// ingestion refuse before reading and parsing a body.
    fn overloaded(&self) -> Option<String> {
        None
    }

    fn stats(&self) -> StoreStats;
}

/// Fan-out of committed batches; engines own one and call [`EventBus::publish`] after commit.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<CommittedBatch>,
}

impl EventBus {
    /// Batches a subscriber may fall behind by before it must catch up from the store.
    pub const CAPACITY: usize = 256;

    pub fn new() -> Self {
        EventBus {
            sender: broadcast::channel(Self::CAPACITY).0,
        }
    }
    pub fn subscribe(&self) -> broadcast::Receiver<CommittedBatch> {
        self.sender.subscribe()
    }
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }
    pub fn publish(&self, batch: CommittedBatch) {
        // No subscriber is not an error: the events are durable and can be replayed.
        let _ = self.sender.send(batch);
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses a cursor made by [`seq_cursor`].
pub fn parse_seq_cursor(cursor: &Option<String>) -> Result<Option<u64>, StoreError> {
    match cursor {
        None => Ok(None),
        Some(c) => c
            .parse::<u64>()
            .map(Some)
            .map_err(|_| StoreError::InvalidCursor(c.clone())),
    }
}

pub fn seq_cursor(seq: u64) -> String {
    seq.to_string()
}

#[cfg(test)]
mod tests {
    use super::Identifiers;

    fn ids(users: &[&str], anons: &[&str]) -> Identifiers {
        Identifiers {
            user_ids: users.iter().map(|s| s.to_string()).collect(),
            anonymous_ids: anons.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_refused_message_belongs_to_its_user_else_to_its_anonymous_or_previous_id() {
        let erased = ids(&["42", "zoë"], &["a1"]);
        for (raw, owned) in [
            (r#"{"userId":42}"#, true),
            (r#"{"userId":"42"}"#, true),
            (r#"{"userId":"7","anonymousId":"a1"}"#, false),
            (r#"{"userId":"","anonymousId":"a1"}"#, true),
            (r#"{"userId":null,"anonymousId":"a1"}"#, true),
            (r#"{"type":"alias","previousId":"a1"}"#, true),
            (r#"{"type":"alias","previousId":"zoë"}"#, true),
            (r#"{"userId":"zo\u00eb"}"#, true),
            (r#"{"anonymousId":"a2","traits":{"id":"42"}}"#, false),
            // Not an object (cut short, or refused for that): any of the IDs as a JSON string,
            // escaped or not.
            (r#"["42"]"#, true),
            (r#"[42]"#, false),
            (r#"{"userId":"zo\u00eb","properties":{"#, true),
            (r#"{"userId":"zoë","properties":{"#, true),
            (r#"{"userId":42,"properties":{"#, false),
            (r#"{"userId":"a1x","#, false),
        ] {
            assert_eq!(erased.own_failed(raw), owned, "{raw}");
        }
    }

    #[test]
    fn needles_cover_every_form_an_id_takes_in_json() {
        let erased = ids(&["zoë", "q\"t"], &["a1", "a1"]);
        assert_eq!(
            erased.failed_needles(),
            ["a1", "q\\\"t", "zo\\u00eb", "zoë"]
        );
        let emoji = ids(&["🙂"], &[]);
        assert_eq!(emoji.failed_needles(), ["\\ud83d\\ude42", "🙂"]);
    }
}
