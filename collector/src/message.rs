//! Parsing and normalising Segment messages: the batch envelope, per-message validation (so one
//! bad message never costs its neighbours), clock-skew correction, consent and bot flags.
//! Pure functions with no I/O; the HTTP layer is in `ingest`.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
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

/// One message as sent: either still raw text (from a batch) or already an object (a
/// single-message endpoint's body).
#[derive(Debug)]
pub enum RawMessage<'a> {
    Raw(&'a RawValue),
    Parsed { map: Map<String, Value>, len: usize },
}

impl RawMessage<'_> {
    /// The message as text, for the failed-events store.
    pub fn text(&self) -> String {
        match self {
            RawMessage::Raw(r) => r.get().to_owned(),
            RawMessage::Parsed { map, .. } => {
                serde_json::to_string(map).expect("a JSON map always serialises")
            }
        }
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

fn take_write_key(v: Option<Value>) -> Result<Option<String>, EnvelopeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EnvelopeError {
            code: "invalid_batch",
            message: format!("`writeKey` must be a string, not {}", kind(&other)),
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
                message: format!("batch `context` must be an object, not {}", kind(&other)),
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
        write_key: take_write_key(parsed.write_key)?,
        sent_at,
        context,
        messages: parsed.batch.into_iter().map(RawMessage::Raw).collect(),
    })
}

/// Reads a single-message endpoint's body (`/v1/track` etc.): the body is the message.
pub fn parse_single(body: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let mut map: Map<String, Value> =
        serde_json::from_str(body).map_err(|e| envelope_error(&e, "a message (a JSON object)"))?;
    let write_key = take_write_key(map.remove("writeKey"))?;
    Ok(Envelope {
        write_key,
        sent_at: None,
        context: None,
        messages: vec![RawMessage::Parsed {
            map,
            len: body.len(),
        }],
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
    pub message: Map<String, Value>,
    /// `context.consent.categoryPreferences.analytics` is `false` and it is not the consent
    /// change itself: the collector must not store it.
    pub consent_denied: bool,
}

/// Validates and normalises one message. Never panics; on error the caller keeps the raw text.
pub fn normalise(
    raw: RawMessage<'_>,
    envelope: &Envelope<'_>,
    info: &RequestInfo<'_>,
) -> Result<Normalised, Rejection> {
    let mut m = match raw {
        RawMessage::Raw(r) => {
            if r.get().len() > MAX_MESSAGE_BYTES {
                return Err(reject(
                    "message_too_large",
                    format!(
                        "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                        r.get().len()
                    ),
                ));
            }
            match serde_json::from_str::<Value>(r.get()) {
                Ok(Value::Object(m)) => m,
                Ok(other) => {
                    return Err(reject(
                        "invalid_message",
                        format!("message must be a JSON object, not {}", kind(&other)),
                    ));
                }
                Err(e) => return Err(reject("invalid_message", e.to_string())),
            }
        }
        RawMessage::Parsed { map, len } => {
            if len > MAX_MESSAGE_BYTES {
                return Err(reject(
                    "message_too_large",
                    format!("message is {len} bytes; the limit is {MAX_MESSAGE_BYTES}"),
                ));
            }
            map
        }
    };

    // Explicit nulls mean "absent" (Segment's Python client sends `"anonymousId": null`).
    m.retain(|_, v| !v.is_null());
    // `seq` is the store's to assign: a client's own would be stored beside it and, read back,
    // win over it.
    m.remove("seq");

    let ty = match (m.get("type"), info.implied_type) {
        (None, Some(t)) => t,
        (None, None) => return Err(reject("missing_type", "message has no `type`")),
        (Some(Value::String(t)), implied) => {
            let Some(t) = TYPES.iter().find(|k| **k == t.as_str()) else {
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
        (Some(other), _) => {
            return Err(reject(
                "invalid_field",
                format!("`type` must be a string, not {}", kind(other)),
            ));
        }
    };
    if !m.contains_key("type") {
        m.insert("type".into(), Value::String(ty.into()));
    }

    let has_user_id = id_field(&mut m, "userId")?;
    let has_anonymous_id = id_field(&mut m, "anonymousId")?;
    if !has_user_id && !has_anonymous_id {
        return Err(reject(
            "missing_identity",
            "message has neither `userId` nor `anonymousId`",
        ));
    }
    match ty {
        "track" => match m.get("event") {
            Some(Value::String(e)) if !e.trim().is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(reject(
                    "missing_event",
                    "`track` message has no `event` name",
                ));
            }
            Some(other) => {
                return Err(reject(
                    "invalid_field",
                    format!("`event` must be a string, not {}", kind(other)),
                ));
            }
        },
        "alias" if !id_field(&mut m, "previousId")? => {
            return Err(reject(
                "missing_previous_id",
                "`alias` message has no `previousId`",
            ));
        }
        "group" if !id_field(&mut m, "groupId")? => {
            return Err(reject(
                "missing_group_id",
                "`group` message has no `groupId`",
            ));
        }
        _ => {}
    }
    for field in ["event", "name", "category"] {
        if let Some(v) = m.get(field)
            && !v.is_string()
        {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be a string, not {}", kind(v)),
            ));
        }
    }
    for field in ["properties", "traits", "context", "integrations"] {
        if let Some(v) = m.get(field)
            && !v.is_object()
        {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be an object, not {}", kind(v)),
            ));
        }
    }
    match m.get("messageId") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => {}
        Some(Value::String(s)) if s.len() > 200 => {
            return Err(reject(
                "invalid_field",
                "`messageId` is longer than 200 characters",
            ));
        }
        Some(Value::String(_)) | None => {
            // Without an ID the message cannot be deduplicated; give it one.
            m.insert("messageId".into(), Value::String(generated_message_id()));
        }
        Some(other) => {
            return Err(reject(
                "invalid_field",
                format!("`messageId` must be a string, not {}", kind(other)),
            ));
        }
    }

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
    if timestamp == received {
        set_text(&mut m, "timestamp", &info.received_text);
    } else {
        set_time(&mut m, "timestamp", timestamp);
    }
    if let Some(d) = device_time {
        set_time(&mut m, "originalTimestamp", d);
    }
    match (sent_text, sent_at) {
        (Some(text), _) => set_text(&mut m, "sentAt", text),
        (None, Some(s)) => set_time(&mut m, "sentAt", s),
        (None, None) => {}
    }
    set_text(&mut m, "receivedAt", &info.received_text);

    // Context: the batch's under the message's own, then what the request tells us. Edited in
    // place: `context` is an object or absent, as checked above.
    if !matches!(m.get("context"), Some(Value::Object(_))) {
        m.insert("context".into(), Value::Object(Map::new()));
    }
    let Some(Value::Object(context)) = m.get_mut("context") else {
        unreachable!("`context` was just made an object");
    };
    if let Some(batch_context) = &envelope.context {
        for (k, v) in batch_context {
            if !context.contains_key(k) {
                context.insert(k.clone(), v.clone());
            }
        }
    }
    let ip = match context.get("ip").and_then(Value::as_str) {
        Some(given) => given
            .parse::<IpAddr>()
            .ok()
            .map(|ip| stored_ip(ip, info.truncate_ip)),
        None => info.ip_text.clone(),
    };
    match ip {
        Some(ip) => {
            context.insert("ip".into(), Value::String(ip));
        }
        None => {
            context.remove("ip");
        }
    }
    let bot = match context.get("userAgent") {
        // Browser SDKs repeat the header's user agent in every message: checked once.
        Some(ua) => ua.as_str().is_some_and(|ua| info.is_bot(ua)),
        None => match info.user_agent {
            Some(ua) => {
                context.insert("userAgent".into(), Value::String(ua.to_owned()));
                info.user_agent_is_bot
            }
            None => false,
        },
    };
    if bot {
        context.insert("bot".into(), Value::Bool(true));
    }
    let analytics_denied = context
        .get("consent")
        .and_then(|c| c.get("categoryPreferences"))
        .and_then(|p| p.get("analytics"))
        == Some(&Value::Bool(false));
    let consent_denied = analytics_denied
        && !(ty == "track" && m.get("event").and_then(Value::as_str) == Some("Consent Updated"));

    Ok(Normalised {
        message: m,
        consent_denied,
    })
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
/// stored as a string. Whether the message has it.
fn id_field(m: &mut Map<String, Value>, field: &str) -> Result<bool, Rejection> {
    let Some(value) = m.get_mut(field) else {
        return Ok(false);
    };
    let len = match value {
        Value::String(s) if s.trim().is_empty() => {
            m.remove(field);
            return Ok(false);
        }
        Value::String(s) => s.len(),
        Value::Number(n) => {
            let text = n.to_string();
            let len = text.len();
            *value = Value::String(text);
            len
        }
        other => {
            return Err(reject(
                "invalid_field",
                format!("`{field}` must be a string, not {}", kind(other)),
            ));
        }
    };
    if len > 1024 {
        return Err(reject(
            "invalid_field",
            format!("`{field}` is longer than 1024 bytes"),
        ));
    }
    Ok(true)
}

/// Sets `field` to `t` as [`format_time`] writes it, in the string already there if any.
fn set_time(m: &mut Map<String, Value>, field: &str, t: OffsetDateTime) {
    set_string(m, field, |s| push_time(s, t));
}

fn set_text(m: &mut Map<String, Value>, field: &str, text: &str) {
    set_string(m, field, |s| s.push_str(text));
}

/// Sets `field` to the string `write` writes, reusing the string already there.
fn set_string(m: &mut Map<String, Value>, field: &str, write: impl FnOnce(&mut String)) {
    if let Some(Value::String(s)) = m.get_mut(field) {
        s.clear();
        write(s);
    } else {
        let mut s = String::new();
        write(&mut s);
        m.insert(field.into(), Value::String(s));
    }
}

fn timestamp_field(
    m: &Map<String, Value>,
    field: &str,
) -> Result<Option<OffsetDateTime>, Rejection> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .map_err(|e| reject("invalid_timestamp", format!("`{field}` `{s}`: {e}"))),
        Some(other) => Err(reject(
            "invalid_timestamp",
            format!("`{field}` must be an RFC 3339 string, not {}", kind(other)),
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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
        one(message, received).expect("accepted").message
    }

    fn one(message: Value, received: &str) -> Result<Normalised, Rejection> {
        let body = json!({ "batch": [message] }).to_string();
        let mut envelope = parse_batch(&body).unwrap();
        let raw = envelope.messages.remove(0);
        normalise(raw, &envelope, &info(received))
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
        let m = normalise(raw, &envelope, &request).unwrap().message;
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
        let own = normalise(envelope.messages.remove(1), &envelope, &request)
            .unwrap()
            .message;
        let batch = normalise(envelope.messages.remove(0), &envelope, &request)
            .unwrap()
            .message;
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
            let m = normalise(raw, &envelope, &request).unwrap().message;
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
                let m = normalise(raw, &envelope, &request).unwrap().message;
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
                match normalise(raw, &envelope, &info("2026-11-23T10:00:00Z")) {
                    Ok(n) => {
                        // Output grows by a bounded amount: added timestamps, ID and context.
                        let out = serde_json::to_string(&n.message).unwrap().len();
                        prop_assert!(out <= len + 400, "{} bytes from {}", out, len);
                        prop_assert!(n.message["type"].is_string());
                        prop_assert!(n.message.get("userId").or(n.message.get("anonymousId")).is_some());
                    }
                    Err(r) => prop_assert!(!r.code.is_empty() && !r.message.is_empty()),
                }
            }
        }
    }
}
