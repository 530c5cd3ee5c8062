//! Parsing and normalising Segment messages: the batch envelope, per-message validation (so one
//! bad message never costs its neighbours), clock-skew correction, consent and bot flags.
//! Pure functions with no I/O; the HTTP layer is in `ingest`.

mod object;

use crate::identity::input::Reads;
use object::{Kind, Object, Piece};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Largest accepted batch, after decompression (Segment's documented limit).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Largest accepted message inside a batch.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Later than this past `receivedAt`, a timestamp is a broken clock, not an event time.
const FUTURE_TOLERANCE: Duration = Duration::minutes(5);

/// The Segment call types, which are also the single-message endpoints' names.
pub const TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

/// Why a request cannot be read at all (answered 400 with this code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    pub code: &'static str,
    pub message: String,
}

/// Why one message of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// A request body split into its messages, before validation.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// `writeKey` from the body (sendBeacon cannot set an Authorization header).
    pub write_key: Option<String>,
    /// Batch-level `sentAt`, parsed and formatted once per request; a message's own `sentAt`
    /// wins.
    pub sent_at: Option<Result<(OffsetDateTime, String), String>>,
    /// Batch-level `context`, merged under each message's own.
    pub context: Option<Map<String, Value>>,
    pub messages: Vec<RawMessage<'a>>,
}

/// One message's JSON text as sent.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    text: &'a str,
    /// The whole body of a single-message endpoint: checked already, and its `writeKey` is the
    /// request's, not the message's.
    body: bool,
}

impl<'a> RawMessage<'a> {
    /// The message as sent, for the failed-events store.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

#[derive(serde::Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
}

fn envelope_error(e: &serde_json::Error, what: &str) -> EnvelopeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => EnvelopeError {
            code: "invalid_json",
            message: format!("body is not valid JSON: {e}"),
        },
        Category::Data => EnvelopeError {
            code: "invalid_batch",
            message: format!("body is not {what}: {e}"),
        },
    }
}

fn take_write_key(v: Option<&Piece<'_>>) -> Result<Option<String>, EnvelopeError> {
    let Some(v) = v.filter(|v| v.kind() != Kind::Null) else {
        return Ok(None);
    };
    match v.as_str() {
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => Ok(Some(s.into_owned())),
        None => Err(EnvelopeError {
            code: "invalid_batch",
            message: format!("`writeKey` must be a string, not {}", v.kind()),
        }),
    }
}

/// Splits a `/v1/batch` body (`{"batch": [...], "writeKey"?, "sentAt"?, "context"?}`).
pub fn parse_batch(body: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let parsed: BatchBody<'_> = serde_json::from_str(body)
        .map_err(|e| envelope_error(&e, "a batch (`{\"batch\": [message, …]}`)"))?;
    let context = match parsed.context {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(EnvelopeError {
                code: "invalid_batch",
                message: format!(
                    "batch `context` must be an object, not {}",
                    Kind::of_value(&other)
                ),
            });
        }
    };
    let sent_at = match parsed.sent_at {
        Some(Value::String(s)) => Some(
            parse_time(&s)
                .map(|t| (t, format_time(t)))
                .map_err(|e| format!("batch `sentAt` `{s}`: {e}")),
        ),
        _ => None,
    };
    Ok(Envelope {
        write_key: take_write_key(parsed.write_key.as_ref().map(Piece::Value).as_ref())?,
        sent_at,
        context,
        messages: parsed
            .batch
            .into_iter()
            .map(|r| RawMessage {
                text: r.get(),
                body: false,
            })
            .collect(),
    })
}

/// Reads a single-message endpoint's body (`/v1/track` etc.): the body is the message.
pub fn parse_single(body: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let what = "a message (a JSON object)";
    let text = serde_json::from_str::<&RawValue>(body)
        .map_err(|e| envelope_error(&e, what))?
        .get();
    object::check(text).map_err(|e| envelope_error(&e, what))?;
    if !text.starts_with('{') {
        return Err(EnvelopeError {
            code: "invalid_batch",
            message: format!("body is not {what}: it is {}", Kind::of_text(text)),
        });
    }
    let fields = Object::parse(text).map_err(|e| envelope_error(&e, what))?;
    Ok(Envelope {
        write_key: take_write_key(fields.get("writeKey"))?,
        sent_at: None,
        context: None,
        messages: vec![RawMessage { text, body: true }],
    })
}

/// What the collector knows about the request, applied to every message. What is the same for
/// every message (texts, the bot check of the request's user agent) is worked out once here.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    received_at: OffsetDateTime,
    received_text: String,
    /// The client IP as stored (truncated if asked).
    ip_text: Option<String>,
    truncate_ip: bool,
    user_agent: Option<&'a str>,
    user_agent_is_bot: bool,
    /// The first user agent a message gave that is not the request's, with its bot check: a
    /// server library relaying one visitor's batch repeats it in every message.
    message_user_agent: OnceLock<(String, bool)>,
    /// The single-message endpoint's type (`/v1/track` → `track`); `None` for batches.
    implied_type: Option<&'static str>,
}

impl<'a> RequestInfo<'a> {
    pub fn new(
        received_at: OffsetDateTime,
        ip: Option<IpAddr>,
        truncate_ip: bool,
        user_agent: Option<&'a str>,
        implied_type: Option<&'static str>,
    ) -> Self {
        RequestInfo {
            received_at,
            received_text: format_time(received_at),
            ip_text: ip.map(|ip| stored_ip(ip, truncate_ip)),
            truncate_ip,
            user_agent,
            user_agent_is_bot: user_agent.is_some_and(is_bot),
            message_user_agent: OnceLock::new(),
            implied_type,
        }
    }

    /// [`is_bot`], done once per request for the user agents messages repeat.
    fn is_bot(&self, user_agent: &str) -> bool {
        if Some(user_agent) == self.user_agent {
            return self.user_agent_is_bot;
        }
        let (seen, bot) = self
            .message_user_agent
            .get_or_init(|| (user_agent.to_owned(), is_bot(user_agent)));
        if seen == user_agent {
            *bot
        } else {
            is_bot(user_agent)
        }
    }

    pub fn received_at(&self) -> OffsetDateTime {
        self.received_at
    }

    /// `received_at` as stored (`receivedAt`).
    pub fn received_text(&self) -> &str {
        &self.received_text
    }
}

/// A valid message, normalised (docs/api.md "Event (as stored)").
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    /// The message as stored, without `seq` (the store adds it).
    pub json: String,
    pub message_id: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `context.consent.categoryPreferences.analytics` is `false` and it is not the consent
    /// change itself: the collector must not store it.
    pub consent_denied: bool,
    /// What `reads` asked for of the message as stored (empty if nothing was asked):
    /// `identity::input::parse_read` of `json`, built from the fields as split.
    pub read: Map<String, Value>,
}

/// Whether RudderStack's consent record (`context.consentManagement`, which its SDK adds to
/// every event when consent management is on) lists `analytics` (in any case) among its
/// `deniedConsentIds`: the category seam's own consent calls `analytics`. Other IDs (a consent
/// platform's own, such as OneTrust's `C0002`) mean nothing here.
fn denied_by_consent_ids(record: Option<&Piece<'_>>) -> bool {
    let Some(denied) = record.and_then(|r| r.field("deniedConsentIds")) else {
        return false;
    };
    let ids: Vec<Value> = match denied {
        Piece::Raw(text) => serde_json::from_str(text).unwrap_or_default(),
        Piece::Value(Value::Array(ids)) => ids.clone(),
        _ => Vec::new(),
    };
    ids.iter()
        .filter_map(Value::as_str)
        .any(|id| id.trim().eq_ignore_ascii_case("analytics"))
}

/// Validates and normalises one message. Never panics; on error the caller keeps the raw text.
/// The fields it checks or sets are read and written one by one; every other value is copied
/// through as sent, once [`object::check`] has found the message parses as a `Value`.
pub fn normalise<'a>(
    raw: RawMessage<'a>,
    envelope: &'a Envelope<'_>,
    info: &'a RequestInfo<'_>,
    reads: Option<Reads>,
) -> Result<Normalised, Rejection> {
    let text = raw.text;
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(reject(
            "message_too_large",
            format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                text.len()
            ),
        ));
    }
    if !raw.body {
        object::check(text).map_err(|e| reject("invalid_message", e.to_string()))?;
        if !text.starts_with('{') {
            return Err(reject(
                "invalid_message",
                format!("message must be a JSON object, not {}", Kind::of_text(text)),
            ));
        }
    }
    // `context` is always rewritten: split with the message, not scanned again to split it.
    let mut m = Object::parse_nesting(text, &["context"])
        .map_err(|e| reject("invalid_message", e.to_string()))?;
    // The write key authenticated the request; it is not event data. A single-message body
    // carries it, and so does each message of analytics.js's batches (`/v1/b`).
    m.remove("writeKey");

    // Explicit nulls mean "absent" (Segment's Python client sends `"anonymousId": null`).
    m.retain(|v| v.kind() != Kind::Null);
    // `seq` is the store's to assign: a client's own would be stored beside it and, read back,
    // win over it.
    m.remove("seq");

    let ty = match (m.get("type"), info.implied_type) {
        (None, Some(t)) => t,
        (None, None) => return Err(reject("missing_type", "message has no `type`")),
        (Some(given), implied) => {
            let Some(t) = given.as_str() else {
                return Err(reject(
                    "invalid_field",
                    format!("`type` must be a string, not {}", given.kind()),
                ));
            };
            let Some(t) = TYPES.iter().find(|k| **k == t) else {
                return Err(reject(
                    "invalid_type",
                    format!("`type` `{t}` is not one of {}", TYPES.join(", ")),
                ));
            };
            if let Some(implied) = implied
                && implied != *t
            {
                return Err(reject(
                    "invalid_type",
                    format!("`type` `{t}` sent to the /v1/{implied} endpoint"),
                ));
            }
            t
        }
    };
    if m.get("type").is_none() {
        m.set("type", Piece::Str(ty.into()));
    }

    let user_id = id_field(&mut m, "userId")?;
    let anonymous_id = id_field(&mut m, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(reject(
            "missing_identity",
            "message has neither `userId` nor `anonymousId`",
        ));
    }
    let event = m.get("event").and_then(Piece::as_str);
    match ty {
        "track" => match (&event, m.get("event")) {
            (Some(e), _) if !e.trim().is_empty() => {}
            (Some(_), _) | (None, None) => {
                return Err(reject(
                    "missing_event",
                    "`track` message has no `event` name",
                ));
            }
            (None, Some(other)) => {
                return Err(reject(
                    "invalid_field",
                    format!("`event` must be a string, not {}", other.kind()),
                ));
            }
        },
        "alias" if id_field(&mut m, "previousId")?.is_none() => {
            return Err(reject(
                "missing_previous_id",
                "`alias` message has no `previousId`",
            ));
        }
        "group" if id_field(&mut m, "groupId")?.is_none() => {
            return Err(reject(
                "missing_group_id",
                "`group` message has no `groupId`",
            ));
        }
        _ => {}
    }
    for field in ["event", "name", "category"] {
        if let Some(v) = m.get(field)
            && v.kind() != Kind::String
        {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be a string, not {}", v.kind()),
            ));
        }
    }
    for field in ["properties", "traits", "context", "integrations"] {
        if let Some(v) = m.get(field)
            && v.kind() != Kind::Object
        {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be an object, not {}", v.kind()),
            ));
        }
    }
    let message_id = match m.get("messageId") {
        Some(v) if v.kind() == Kind::String => v.as_str().unwrap_or_default(),
        None => Cow::Borrowed(""),
        Some(other) => {
            return Err(reject(
                "invalid_field",
                format!("`messageId` must be a string, not {}", other.kind()),
            ));
        }
    };
    if message_id.len() > 200 {
        return Err(reject(
            "invalid_field",
            "`messageId` is longer than 200 characters",
        ));
    }
    let message_id = if message_id.is_empty() {
        // Without an ID the message cannot be deduplicated; give it one.
        let id = generated_message_id();
        m.set("messageId", Piece::Str(Cow::Owned(id.clone())));
        id
    } else {
        message_id.into_owned()
    };

    // Clock skew: the device's clock is wrong by (sentAt − receivedAt); the event happened
    // (sentAt − device time) before it was sent.
    let device_time = match timestamp_field(&m, "originalTimestamp")? {
        Some(t) => Some(t),
        None => timestamp_field(&m, "timestamp")?,
    };
    // The batch's `sentAt` comes formatted already.
    let (sent_at, sent_text) = match timestamp_field(&m, "sentAt")? {
        Some(t) => (Some(t), None),
        None => match &envelope.sent_at {
            Some(Ok((t, text))) => (Some(*t), Some(text.as_str())),
            Some(Err(e)) => return Err(reject("invalid_timestamp", e.clone())),
            None => (None, None),
        },
    };
    let received = info.received_at;
    let mut timestamp = match (device_time, sent_at) {
        // Clocks thousands of years apart put the correction outside the dates `time` holds:
        // no useful device time, so the receipt time, as for a device clock in the future.
        (Some(d), Some(s)) => received.checked_sub(s - d).unwrap_or(received),
        (Some(d), None) => d,
        (None, _) => received,
    };
    if timestamp > received + FUTURE_TOLERANCE {
        timestamp = received;
    }
    // Times already formatted for the request are copied, not formatted again per message.
    let received_text = || Piece::Str(Cow::Borrowed(info.received_text.as_str()));
    let time = |t| Piece::Str(Cow::Owned(format_time(t)));
    m.set(
        "timestamp",
        if timestamp == received {
            received_text()
        } else {
            time(timestamp)
        },
    );
    if let Some(d) = device_time {
        m.set("originalTimestamp", time(d));
    }
    match (sent_text, sent_at) {
        (Some(text), _) => m.set("sentAt", Piece::Str(Cow::Borrowed(text))),
        (None, Some(s)) => m.set("sentAt", time(s)),
        (None, None) => {}
    }
    m.set("receivedAt", received_text());

    // Context: the batch's under the message's own, then what the request tells us. `context`
    // is an object or absent, as checked above.
    let mut context = match m.remove("context") {
        Some(Piece::Object(context)) => context,
        _ => Object::default(),
    };
    if let Some(batch_context) = &envelope.context {
        context.merge_under(batch_context);
    }
    let ip = match context.get("ip").and_then(Piece::as_str) {
        Some(given) => given
            .parse::<IpAddr>()
            .ok()
            .map(|ip| stored_ip(ip, info.truncate_ip)),
        None => info.ip_text.clone(),
    };
    match ip {
        Some(ip) => context.set("ip", Piece::Str(Cow::Owned(ip))),
        None => drop(context.remove("ip")),
    }
    let bot = match context.get("userAgent") {
        // Browser SDKs repeat the header's user agent in every message: checked once.
        Some(ua) => ua.as_str().is_some_and(|ua| info.is_bot(&ua)),
        None => match info.user_agent {
            Some(ua) => {
                context.set("userAgent", Piece::Str(Cow::Borrowed(ua)));
                info.user_agent_is_bot
            }
            None => false,
        },
    };
    if bot {
        context.set("bot", Piece::Raw("true"));
    }
    let analytics = context
        .get("consent")
        .and_then(|c| c.field("categoryPreferences"))
        .and_then(|p| p.field("analytics"));
    let analytics_denied = matches!(
        analytics,
        Some(Piece::Raw("false") | Piece::Value(Value::Bool(false)))
    ) || denied_by_consent_ids(context.get("consentManagement"));
    // The consent change itself is kept, as each library names it.
    let consent_event = ty == "track"
        && matches!(
            event.as_deref(),
            Some("Consent Updated" | "Consent Management Interaction")
        );
    let consent_denied = analytics_denied && !consent_event;
    m.set("context", Piece::Object(context));

    let mut json = String::with_capacity(text.len() + 256);
    m.write(&mut json);
    Ok(Normalised {
        json,
        message_id,
        user_id,
        anonymous_id,
        consent_denied,
        read: reads.map(|r| read_of(&m, r)).unwrap_or_default(),
    })
}

/// The fields of `m` that `reads` names, parsed as [`Reads::parse`] would from `m` written out.
fn read_of(m: &Object<'_>, reads: Reads) -> Map<String, Value> {
    m.iter()
        .filter_map(|(k, v)| {
            let (name, read) = reads.field(k)?;
            let value = match v {
                Piece::Object(o) if !read.whole() => Value::Object(read_of(o, read)),
                Piece::Str(s) => Value::String(s.as_ref().to_owned()),
                Piece::Raw(text) => match v.as_str() {
                    Some(s) => Value::String(s.into_owned()),
                    None => read.parse(text).unwrap_or_default(),
                },
                other => {
                    let mut text = String::new();
                    other.write(&mut text);
                    read.parse(&text).unwrap_or_default()
                }
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

/// A normalised message as stored: byte for byte what `serde_json::to_string` writes. Nearly
/// every string needs no escaping, so a scan of eight bytes at a time lets it be copied whole
/// instead of escaped byte by byte; any other string, and every number, is still written by
/// serde_json's own code.
pub fn json_text(m: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(512);
    push_object(&mut out, m);
    out
}

fn push_object(out: &mut String, m: &Map<String, Value>) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_value(out, v);
    }
    out.push('}');
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // A Number's Display is its serialisation (itoa, or zmij for a float, always finite).
        Value::Number(n) => {
            use std::fmt::Write;
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_json_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, v);
            }
            out.push(']');
        }
        Value::Object(m) => push_object(out, m),
    }
}

fn push_json_str(out: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        out.push_str(&serde_json::to_string(s).expect("a string always serialises"));
    } else {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Whether `s` holds a byte JSON escapes: a control character, `"` or `\`.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // Whether a byte of `w` is below `n` (at most 0x80); exact ("Bit Twiddling Hacks").
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH != 0;
    let escapes = |w: u64| {
        below(w, 0x20)
            || below(w ^ (ONES * u64::from(b'"')), 1)
            || below(w ^ (ONES * u64::from(b'\\')), 1)
    };
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("eight bytes"));
    match s.len() {
        0..8 => s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'),
        // The last eight bytes cover the rest, overlapping the last whole word: copying the rest
        // into a padded word instead stalls on store forwarding.
        n => s.chunks_exact(8).any(|w| escapes(word(w))) || escapes(word(&s[n - 8..])),
    }
}

/// An identifier field: a non-empty string, or a number (some clients send numeric user IDs),
/// stored as a string. The identifier, if the message has one.
fn id_field(m: &mut Object<'_>, field: &'static str) -> Result<Option<String>, Rejection> {
    let Some(value) = m.get(field) else {
        return Ok(None);
    };
    let id = match (value.as_str(), value.number_text()) {
        (Some(s), _) if s.trim().is_empty() => {
            m.remove(field);
            return Ok(None);
        }
        (Some(s), _) => s.into_owned(),
        (None, Some(n)) => {
            m.set(field, Piece::Str(Cow::Owned(n.clone())));
            n
        }
        (None, None) => {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be a string, not {}", value.kind()),
            ));
        }
    };
    if id.len() > 1024 {
        return Err(reject(
            "invalid_field",
            format!("`{field}` is longer than 1024 bytes"),
        ));
    }
    Ok(Some(id))
}

fn timestamp_field(m: &Object<'_>, field: &str) -> Result<Option<OffsetDateTime>, Rejection> {
    let Some(value) = m.get(field) else {
        return Ok(None);
    };
    match value.as_str() {
        Some(s) => parse_time(&s)
            .map(Some)
            .map_err(|e| reject("invalid_timestamp", format!("`{field}` `{s}`: {e}"))),
        None => Err(reject(
            "invalid_timestamp",
            format!("`{field}` must be an RFC 3339 string, not {}", value.kind()),
        )),
    }
}

/// RFC 3339, or an ISO 8601 date-time without offset taken as UTC.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        // An offset can carry a time past year 9999 (or before 0) in UTC, where `time` ends.
        return t
            .checked_to_offset(UtcOffset::UTC)
            .ok_or_else(|| format!("`{s}` is outside the years 0 to 9999 in UTC"));
    }
    let local = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, local)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| "not an RFC 3339 date-time such as 2026-11-23T10:00:00.123Z".to_string())
}

/// `2026-11-23T10:00:00.123Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let mut out = String::new();
    push_time(&mut out, t);
    out
}

/// Appends `t` as [`format_time`] writes it. Called several times per message, so the usual
/// shape is written directly rather than through `time`'s format description, which costs
/// several times more; years outside 0–9999 take the description.
fn push_time(out: &mut String, t: OffsetDateTime) {
    let t = t.to_offset(UtcOffset::UTC);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match t.format(fmt) {
            Ok(s) => out.push_str(&s),
            Err(_) => out.push_str(&t.unix_timestamp().to_string()),
        }
        return;
    }
    let (hour, minute, second, nanos) = t.to_hms_nano();
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, u8::from(t.month()).into());
    put(8, 2, t.day().into());
    put(11, 2, hour.into());
    put(14, 2, minute.into());
    put(17, 2, second.into());
    put(20, 3, nanos / 1_000_000);
    out.push_str(std::str::from_utf8(&b).expect("ASCII digits"));
}

fn stored_ip(ip: IpAddr, truncate_ip: bool) -> String {
    if truncate_ip { truncate(ip) } else { ip }.to_string()
}

/// IPv4 to its /24, IPv6 to its /48.
fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Known crawler and preview-bot user agents (matched case-insensitively).
const BOT_MARKERS: [&str; 14] = [
    "googlebot",
    "bingbot",
    "yandexbot",
    "baiduspider",
    "duckduckbot",
    "slurp",
    "facebookexternalhit",
    "twitterbot",
    "linkedinbot",
    "applebot",
    "ahrefsbot",
    "semrushbot",
    "crawler",
    "spider",
];

/// One of these is in every marker (and in `bot/`, `bot;`): a user agent without any, which is
/// nearly every one, is no bot, found in one pass without lower-casing a copy.
const BOT_ANCHORS: [&[u8]; 5] = [
    b"bot",
    b"spider",
    b"slurp",
    b"facebookexternalhit",
    b"crawler",
];

pub fn is_bot(user_agent: &str) -> bool {
    let bytes = user_agent.as_bytes();
    let anchored = (0..bytes.len()).any(|i| {
        matches!(bytes[i].to_ascii_lowercase(), b'b' | b's' | b'c' | b'f')
            && BOT_ANCHORS.iter().any(|a| {
                bytes
                    .get(i..i + a.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(a))
            })
    });
    if !anchored {
        return false;
    }
    let ua = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|m| ua.contains(m)) || ua.contains("bot/") || ua.contains("bot;")
}

fn generated_message_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
        bytes = t.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("seam-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn info(received: &str) -> RequestInfo<'static> {
        info_truncating(received, false)
    }

    fn info_truncating(received: &str, truncate_ip: bool) -> RequestInfo<'static> {
        RequestInfo::new(
            parse_time(received).unwrap(),
            Some("203.0.113.77".parse().unwrap()),
            truncate_ip,
            Some("Mozilla/5.0 test"),
            None,
        )
    }

    /// The message as stored, when it is accepted.
    fn stored(message: Value, received: &str) -> Map<String, Value> {
        parsed(&one(message, received).expect("accepted"))
    }

    /// The stored text, read back.
    fn parsed(n: &Normalised) -> Map<String, Value> {
        serde_json::from_str(&n.json).expect("stored text is JSON")
    }

    fn one(message: Value, received: &str) -> Result<Normalised, Rejection> {
        let body = json!({ "batch": [message] }).to_string();
        let mut envelope = parse_batch(&body).unwrap();
        let raw = envelope.messages.remove(0);
        normalise(raw, &envelope, &info(received), None)
    }

    #[test]
    fn a_fast_device_clock_is_corrected_and_the_device_time_kept() {
        let m = stored(
            json!({"type": "track", "event": "E", "userId": "u",
                   "originalTimestamp": "2026-11-23T12:00:00.000Z", "sentAt": "2026-11-23T12:00:05.000Z"}),
            "2026-11-23T10:00:10.000Z",
        );
        assert_eq!(m["timestamp"], "2026-11-23T10:00:05.000Z");
        assert_eq!(m["originalTimestamp"], "2026-11-23T12:00:00.000Z");
        assert_eq!(m["receivedAt"], "2026-11-23T10:00:10.000Z");
    }

    #[test]
    fn a_timestamp_far_in_the_future_is_clamped_to_receipt() {
        let m = stored(
            json!({"type": "track", "event": "E", "userId": "u", "timestamp": "2099-01-01T00:00:00Z"}),
            "2026-11-23T10:00:00.000Z",
        );
        assert_eq!(m["timestamp"], "2026-11-23T10:00:00.000Z");
        // Python clients send microseconds and +00:00.
        let m = stored(
            json!({"type": "track", "event": "E", "userId": "u", "timestamp": "2026-11-22T22:16:28.814074+00:00"}),
            "2026-11-23T10:00:00.000Z",
        );
        assert_eq!(m["timestamp"], "2026-11-22T22:16:28.814Z");
    }

    #[test]
    fn a_time_whose_offset_takes_it_past_year_9999_is_refused_by_name() {
        for field in ["timestamp", "originalTimestamp", "sentAt"] {
            let err = one(
                json!({"type": "track", "event": "E", "userId": "u", field: "9999-12-31T23:30:00-01:00"}),
                "2026-11-23T10:00:00.000Z",
            )
            .expect_err("outside the dates time holds");
            assert_eq!(err.code, "invalid_timestamp", "{field}");
            assert!(
                err.message.contains("9999-12-31T23:30:00-01:00"),
                "{field}: {}",
                err.message
            );
        }
    }

    #[test]
    fn a_client_s_own_seq_is_dropped() {
        let m = stored(
            json!({"type": "track", "event": "E", "userId": "u", "seq": 5}),
            "2026-11-23T10:00:00.000Z",
        );
        assert!(!m.contains_key("seq"), "{m:?}");
    }

    #[test]
    fn a_correction_past_the_dates_time_holds_falls_back_to_receipt() {
        // Sent 10,000 years before it happened: received − (sentAt − timestamp) is past 9999.
        let m = stored(
            json!({"type": "track", "event": "E", "userId": "u",
                "timestamp": "9999-12-31T00:00:00Z", "sentAt": "0000-01-01T00:00:00Z"}),
            "2026-11-23T10:00:00.000Z",
        );
        assert_eq!(m["timestamp"], "2026-11-23T10:00:00.000Z");
        assert_eq!(m["originalTimestamp"], "9999-12-31T00:00:00.000Z");
    }

    #[test]
    fn the_request_adds_ip_user_agent_and_bot_flag_and_ips_can_be_truncated() {
        let m = stored(
            json!({"type": "page", "anonymousId": "a"}),
            "2026-11-23T10:00:00Z",
        );
        assert_eq!(m["context"]["ip"], "203.0.113.77");
        assert_eq!(m["context"]["userAgent"], "Mozilla/5.0 test");
        assert!(m["context"].get("bot").is_none());
        assert!(m["messageId"].as_str().unwrap().starts_with("seam-"));

        let body = json!({"batch": [{"type": "page", "anonymousId": "a",
            "context": {"userAgent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}}]})
        .to_string();
        let mut envelope = parse_batch(&body).unwrap();
        let raw = envelope.messages.remove(0);
        let request = info_truncating("2026-11-23T10:00:00Z", true);
        let m = parsed(&normalise(raw, &envelope, &request, None).unwrap());
        assert_eq!(m["context"]["bot"], true);
        assert_eq!(m["context"]["ip"], "203.0.113.0");
    }

    #[test]
    fn the_batch_sent_at_corrects_the_clock_and_is_stored_formatted() {
        let body = json!({"sentAt": "2026-11-23T12:00:05Z", "batch": [
            {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-11-23T12:00:00Z"},
            {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-11-23T12:00:00Z",
             "sentAt": "2026-11-23T12:00:01Z"}]})
        .to_string();
        let mut envelope = parse_batch(&body).unwrap();
        let request = info("2026-11-23T10:00:10Z");
        let own =
            parsed(&normalise(envelope.messages.remove(1), &envelope, &request, None).unwrap());
        let batch =
            parsed(&normalise(envelope.messages.remove(0), &envelope, &request, None).unwrap());
        assert_eq!(batch["sentAt"], "2026-11-23T12:00:05.000Z");
        assert_eq!(batch["timestamp"], "2026-11-23T10:00:05.000Z");
        assert_eq!(
            own["sentAt"], "2026-11-23T12:00:01.000Z",
            "a message's own wins"
        );
        assert_eq!(own["timestamp"], "2026-11-23T10:00:09.000Z");
    }

    #[test]
    fn a_message_repeating_the_request_s_user_agent_gets_its_bot_flag() {
        let bot = "Mozilla/5.0 (compatible; Googlebot/2.1)";
        let request = RequestInfo::new(
            parse_time("2026-11-23T10:00:00Z").unwrap(),
            None,
            false,
            Some(bot),
            None,
        );
        for (ua, expected) in [(bot, true), ("Mozilla/5.0 (X11; Linux x86_64)", false)] {
            let body = json!({"batch": [{"type": "page", "anonymousId": "a",
                "context": {"userAgent": ua}}]})
            .to_string();
            let mut envelope = parse_batch(&body).unwrap();
            let raw = envelope.messages.remove(0);
            let m = parsed(&normalise(raw, &envelope, &request, None).unwrap());
            assert_eq!(
                m["context"].get("bot") == Some(&json!(true)),
                expected,
                "{ua}"
            );
        }
    }

    #[test]
    fn each_message_s_own_user_agent_is_checked_whatever_came_before() {
        let request = info("2026-11-23T10:00:00Z");
        let bot = "Mozilla/5.0 (compatible; Googlebot/2.1)";
        let browser = "Mozilla/5.0 (X11; Linux x86_64)";
        let agents = [browser, bot, browser, bot, "curl/8.0"];
        let batch: Vec<Value> = agents
            .iter()
            .map(|ua| json!({"type": "page", "anonymousId": "a", "context": {"userAgent": ua}}))
            .collect();
        let body = json!({ "batch": batch }).to_string();
        let mut envelope = parse_batch(&body).unwrap();
        let flags: Vec<bool> = std::mem::take(&mut envelope.messages)
            .into_iter()
            .map(|raw| {
                let m = parsed(&normalise(raw, &envelope, &request, None).unwrap());
                m["context"].get("bot") == Some(&json!(true))
            })
            .collect();
        assert_eq!(flags, agents.map(is_bot));
        assert_eq!(flags, [false, true, false, true, false]);
    }

    #[test]
    fn numeric_user_ids_become_strings_and_nulls_are_absent() {
        let m = stored(
            json!({"type": "identify", "userId": 42, "anonymousId": null, "traits": null}),
            "2026-11-23T10:00:00Z",
        );
        assert_eq!(m["userId"], "42");
        assert!(m.get("anonymousId").is_none() && m.get("traits").is_none());
    }

    /// Normalises each message of a batch written as text.
    fn batch_text(messages: &[&str]) -> Vec<Result<Normalised, Rejection>> {
        let body = format!("{{\"batch\":[{}]}}", messages.join(","));
        let mut envelope = parse_batch(&body).expect("a batch");
        let request = info("2026-11-23T10:00:00Z");
        std::mem::take(&mut envelope.messages)
            .into_iter()
            .map(|raw| normalise(raw, &envelope, &request, None))
            .collect()
    }

    #[test]
    fn fields_the_normaliser_does_not_know_are_stored_as_their_values_were_sent() {
        let got = batch_text(&[r#"{ "type" : "track", "event":"E", "userId":"u",
            "properties": { "price" : 1e3, "name": "caf\u00e9 \ud83d\ude00", "n": [1, {"a": null}] },
            "properties": {"later": "wins", "big": 123456789012345678901234567890},
            "tr\u0061its": {"x": "\"quoted\" \\ /"},
            "context": {"page": {"url": "https://x.example/?a=1&b"}, "page": {"path": "/p"},
                        "k\"ey": 1}, "extra": -0.5e-2 }"#]);
        let m = parsed(got[0].as_ref().expect("accepted"));
        assert_eq!(
            m["properties"],
            json!({"later": "wins", "big": 123456789012345678901234567890.0})
        );
        assert_eq!(m["traits"], json!({"x": "\"quoted\" \\ /"}));
        assert_eq!(m["context"]["page"], json!({"path": "/p"}));
        assert_eq!(m["context"]["k\"ey"], json!(1));
        assert_eq!(m["extra"], json!(-0.005));
        assert_eq!(m["context"]["ip"], "203.0.113.77");
    }

    #[test]
    fn a_message_a_value_cannot_hold_is_refused_by_name_and_costs_no_neighbour() {
        let deep = format!(
            r#"{{"type":"page","userId":"u","properties":{{"d":{}1{}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        let got = batch_text(&[
            r#"{"type":"page","userId":"u","properties":{"n":1e400}}"#,
            r#"{"type":"page","userId":"u","traits":{"s":"\ud800"}}"#,
            &deep,
            r#"{"type":"page","userId":"ok","properties":{"s":"\ud83d\ude00","n":1e300}}"#,
        ]);
        for (got, says) in got[..3]
            .iter()
            .zip(["number out of range", "escape", "recursion limit"])
        {
            let err = got.as_ref().expect_err("refused");
            assert_eq!(err.code, "invalid_message");
            assert!(err.message.contains(says), "{}", err.message);
        }
        let m = parsed(got[3].as_ref().expect("accepted"));
        assert_eq!(m["properties"], json!({"s": "\u{1F600}", "n": 1e300}));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9 :.TZ-]{0,30}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("event".to_string()),
                        Just("userId".to_string()),
                        Just("anonymousId".to_string()),
                        Just("timestamp".to_string()),
                        Just("sentAt".to_string()),
                        Just("context".to_string()),
                        Just("consent".to_string()),
                        "[a-zA-Z]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
            "[a-z\"\\\\\\x00-\\x1f\\x7f\u{e9}\u{1F600}]{0,8}".prop_map(Value::String),
            "[a-z\u{e9}\u{1F600}]{0,20}[\"\\\\\\x00-\\x1f]?[a-z\u{e9}]{0,20}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn times_are_formatted_as_the_format_description_writes_them(
            secs in -377_705_116_800i64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + Duration::nanoseconds(nanos.into());
            let fmt = format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            prop_assert_eq!(format_time(t), t.format(fmt).unwrap());
        }

        #[test]
        fn bots_are_found_as_by_lower_casing_and_searching_every_marker(
            ua in "([a-zA-Z0-9 ;/().-]{0,12}(Bot|bOT|Spider|slurp|Crawler|facebookexternalhit|Googlebot|baiduSPIDER|YandexBot)?){0,4}",
        ) {
            let lower = ua.to_ascii_lowercase();
            let expected = BOT_MARKERS.iter().any(|m| lower.contains(m))
                || lower.contains("bot/")
                || lower.contains("bot;");
            prop_assert_eq!(is_bot(&ua), expected);
        }

        #[test]
        fn stored_text_is_what_serde_json_writes(
            m in prop::collection::btree_map("\\PC{0,6}|[\"\\\\\\x00-\\x1f\\x7f]{1,3}", any_json(), 0..6),
        ) {
            let m: Map<String, Value> = m.into_iter().collect();
            prop_assert_eq!(json_text(&m), serde_json::to_string(&m).unwrap());
        }

        #[test]
        fn escapes_are_found_eight_bytes_at_a_time_as_one_by_one(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20)], 0..40),
        ) {
            let expected = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            prop_assert_eq!(needs_escape(&bytes), expected);
        }

        #[test]
        fn the_check_accepts_exactly_what_a_value_parse_accepts(
            v in any_json(),
            how in 0u8..6,
            depth in 90usize..135,
            digits in 290usize..320,
        ) {
            let text = serde_json::to_string(&v).unwrap();
            let text = match how {
                0 => text,
                1 => format!("[{text},1e400,-1E-400]"),
                2 => format!("[{text},\"\\ud800\",\"\\udc00\\ud800\"]"),
                3 => format!("{}{text}{}", "[".repeat(depth), "]".repeat(depth)),
                4 => format!("{{\"k\\u00e9\":{text},\"n\":-12.5E-3,\"s\":\"\\ud83d\\ude00\"}}"),
                _ => format!("[{text},{}]", "9".repeat(digits)),
            };
            let by_value = serde_json::from_str::<Value>(&text).map(|_| ()).map_err(|e| e.to_string());
            prop_assert_eq!(object::check(&text).map_err(|e| e.to_string()), by_value);
        }

        #[test]
        fn copied_fields_read_back_as_the_values_sent(
            properties in prop::collection::btree_map("\\PC{0,6}", any_json(), 0..5),
            extra in any_json(),
            spaced in any::<bool>(),
        ) {
            let message = json!({"type": "track", "event": "E", "userId": "u",
                "properties": properties, "zextra": extra});
            let text = serde_json::to_string_pretty(&message).unwrap();
            let text = if spaced { text } else { serde_json::to_string(&message).unwrap() };
            let got = batch_text(&[&text]);
            let m = parsed(got[0].as_ref().expect("accepted"));
            // As the text sent reads: serde_json parses some floats a last bit off.
            let sent: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&m["properties"], &sent["properties"]);
            // A null at the top is absent.
            prop_assert_eq!(m.get("zextra"), Some(&sent["zextra"]).filter(|v| !v.is_null()));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_envelope_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_batch(text);
                let _ = parse_single(text);
            }
        }

        #[test]
        fn arbitrary_messages_are_accepted_or_rejected_with_a_code_and_stay_bounded(
            messages in prop::collection::vec(json_value(), 0..8),
            sent_at in prop_oneof![Just(Value::Null), "[0-9T:.Z-]{0,24}".prop_map(Value::String)],
        ) {
            let body = json!({"batch": messages, "sentAt": sent_at}).to_string();
            let mut envelope = parse_batch(&body).expect("a batch array always parses");
            let raws = std::mem::take(&mut envelope.messages);
            prop_assert_eq!(raws.len(), messages.len());
            for raw in raws {
                let len = raw.text().len();
                match normalise(raw, &envelope, &info("2026-11-23T10:00:00Z"), Some(Reads::MESSAGE)) {
                    Ok(n) => {
                        // What identity reads, picked from the split fields, is what a replay
                        // parses from the stored text.
                        let replayed = crate::identity::input::parse_read(&n.json).unwrap();
                        prop_assert_eq!(&Value::Object(n.read.clone()), &replayed);
                        // Output grows by a bounded amount: added timestamps, ID and context.
                        let out = n.json.len();
                        prop_assert!(out <= len + 400, "{} bytes from {}", out, len);
                        let m = parsed(&n);
                        prop_assert!(m["type"].is_string());
                        prop_assert!(m.get("userId").or(m.get("anonymousId")).is_some());
                    }
                    Err(r) => prop_assert!(!r.code.is_empty() && !r.message.is_empty()),
                }
            }
        }
    }
}
