//! What identity resolution reads from a stored Segment message, and RFC 3339 time handling.

use super::ident::{IdType, Identifier, IdentityConfig};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Orders events deterministically: event timestamp, then message ID.
pub type EventKey = (i64, String);

/// Which rule links an event's identifiers, as recorded in merge and drop logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Identify,
    Alias,
    EmailOnEvent,
    Event,
}

impl Rule {
    pub fn parse(s: &str) -> Option<Rule> {
        [Rule::Identify, Rule::Alias, Rule::EmailOnEvent, Rule::Event]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Identify => "identify",
            Rule::Alias => "alias",
            Rule::EmailOnEvent => "email_on_event",
            Rule::Event => "event",
        }
    }
}

/// The parts of one event that identity resolution and profiles use, borrowed from the message
/// so that applying an event copies only what a profile keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct EventInput<'a> {
    pub message_id: Cow<'a, str>,
    pub kind: &'a str,
    pub event: Option<&'a str>,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// Normalised identifiers, deduplicated, sorted.
    pub ids: Vec<Identifier>,
    /// Which of `ids` the store files the event under (see `store_key`).
    pub store_key: Option<usize>,
    /// The store's `seq`, when the event came from the store (0 otherwise).
    pub seq: u64,
    pub rule: Rule,
    /// Traits set by this event (identify traits, then `context.traits` not set by those).
    pub traits: Vec<(&'a str, &'a Value)>,
    pub revenue: Option<f64>,
    pub order_id: Option<Cow<'a, str>>,
    /// Category → granted, from Segment's `categoryPreferences` or, failing that, RudderStack's
    /// `context.consentManagement` (its allowed and denied consent IDs).
    pub consent: Option<Cow<'a, Map<String, Value>>>,
    /// Whether `consent` is a change the visitor made (`Consent Updated`, RudderStack's
    /// `Consent Management Interaction`), not the state an event was sent under.
    pub consent_stated: bool,
    pub referrer: Option<&'a str>,
    pub campaign: Option<&'a Map<String, Value>>,
    pub user_agent: Option<&'a str>,
    pub session: Option<Cow<'a, str>>,
}

impl<'a> EventInput<'a> {
    pub fn key(&self) -> EventKey {
        (self.ts, self.message_id.to_string())
    }

    /// Leaves out the identifiers `gone` says are gone; whether any remain.
    pub fn without(&mut self, gone: impl Fn(&Identifier) -> bool) -> bool {
        if !self.ids.iter().any(&gone) {
            return true;
        }
        let key = self.store_key.map(|k| self.ids[k].clone());
        self.ids.retain(|i| !gone(i));
        self.store_key = key.and_then(|k| self.ids.iter().position(|i| *i == k));
        !self.ids.is_empty()
    }

    pub fn is_order(&self) -> bool {
        self.event == Some("Order Completed")
    }

    /// Extracts what identity needs from a normalised Segment message.
    pub fn from_message(msg: &'a Value, config: &IdentityConfig) -> EventInput<'a> {
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or_default();
        let event = msg.get("event").and_then(Value::as_str);
        let context = msg.get("context");
        let ctx = |k: &str| context.and_then(|c| c.get(k));
        let ts = msg
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .unwrap_or(0);

        let (ids, emails) = identifiers(msg, config);
        let store_key = store_key(msg, &ids);
        let traits_obj = msg
            .get("traits")
            .and_then(Value::as_object)
            .filter(|_| kind == "identify");
        let ctx_traits = ctx("traits").and_then(Value::as_object);
        let props = msg.get("properties").and_then(Value::as_object);

        let rule = match kind {
            "identify" => Rule::Identify,
            "alias" => Rule::Alias,
            _ if emails => Rule::EmailOnEvent,
            _ => Rule::Event,
        };
        let mut traits: Vec<(&str, &Value)> = Vec::new();
        if let Some(t) = traits_obj {
            traits.extend(t.iter().map(|(k, v)| (k.as_str(), v)));
        }
        if let Some(t) = ctx_traits {
            traits.extend(
                t.iter()
                    .filter(|(k, _)| traits_obj.is_none_or(|o| !o.contains_key(*k)))
                    .map(|(k, v)| (k.as_str(), v)),
            );
        }
        let num = |v: Option<&Value>| -> Option<f64> {
            match v? {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let (revenue, order_id) = match props {
            Some(p) if event == Some("Order Completed") => (
                num(p.get("revenue")).or_else(|| num(p.get("total"))),
                text(p.get("order_id")),
            ),
            _ => (None, None),
        };
        // A `Consent Updated` event states the new choice in its properties; every other event
        // carries the state it was sent under in its context.
        let stated = props
            .filter(|_| event == Some("Consent Updated"))
            .and_then(|p| p.get("categoryPreferences"))
            .and_then(Value::as_object);
        let consent = stated
            .or_else(|| {
                ctx("consent")
                    .and_then(|c| c.get("categoryPreferences"))
                    .and_then(Value::as_object)
            })
            .map(Cow::Borrowed)
            .or_else(|| {
                ctx("consentManagement")
                    .and_then(consent_ids)
                    .map(Cow::Owned)
            });
        let consent_stated = stated.is_some()
            || (consent.is_some() && event == Some("Consent Management Interaction"));
        let session = ctx("session").and_then(|v| match v {
            Value::Object(o) => text(o.get("id")),
            other => text(Some(other)),
        });
        EventInput {
            message_id: text(msg.get("messageId")).unwrap_or_default(),
            kind,
            event,
            ts,
            ids,
            store_key,
            seq: msg.get("seq").and_then(Value::as_u64).unwrap_or(0),
            rule,
            traits,
            revenue: revenue.filter(|r| r.is_finite()),
            order_id,
            consent,
            consent_stated,
            referrer: ctx("page")
                .and_then(|p| p.get("referrer"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty()),
            campaign: ctx("campaign").and_then(Value::as_object),
            user_agent: ctx("userAgent").and_then(Value::as_str),
            session,
        }
    }
}

/// Which fields of a JSON value identity reads: the whole value, or of an object only the named
/// fields, each with its own `Reads` (anything but an object is always kept whole).
#[derive(Clone, Copy)]
pub enum Reads {
    All,
    Fields(&'static [(&'static str, Reads)]),
}

/// Every field [`EventInput::from_message`] and [`visit_raw_identifiers`] read. A field read
/// there must be listed here: `pruned_messages_read_as_whole_ones` checks both.
const READ: Reads = Reads::Fields(&[
    ("type", Reads::All),
    ("event", Reads::All),
    ("messageId", Reads::All),
    ("userId", Reads::All),
    ("anonymousId", Reads::All),
    ("previousId", Reads::All),
    ("timestamp", Reads::All),
    ("seq", Reads::All),
    ("traits", Reads::All),
    (
        "properties",
        Reads::Fields(&[
            ("email", Reads::All),
            ("phone", Reads::All),
            ("revenue", Reads::All),
            ("total", Reads::All),
            ("order_id", Reads::All),
            ("categoryPreferences", Reads::All),
        ]),
    ),
    (
        "context",
        Reads::Fields(&[
            ("traits", Reads::All),
            ("consent", Reads::All),
            ("consentManagement", Reads::All),
            ("page", Reads::Fields(&[("referrer", Reads::All)])),
            ("campaign", Reads::All),
            ("userAgent", Reads::All),
            ("session", Reads::All),
            ("externalIds", Reads::All),
        ]),
    ),
]);

impl Reads {
    /// What identity reads of a message: for ingestion to pick those fields out of a message
    /// it holds split into fields already, where [`parse_read`] would parse it again.
    pub const MESSAGE: Reads = READ;

    /// Whether the value is read whole; if not, only the fields [`Reads::field`] names are,
    /// when it is an object.
    pub fn whole(self) -> bool {
        matches!(self, Reads::All)
    }

    /// The field `name` of an object read so, with what is read of it; `None` if it is not.
    pub fn field(self, name: &str) -> Option<(&'static str, Reads)> {
        match self {
            Reads::All => None,
            Reads::Fields(f) => f.iter().find(|(k, _)| *k == name).copied(),
        }
    }

    /// Parses JSON text, keeping what is read of it.
    pub fn parse(self, json: &str) -> serde_json::Result<Value> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_str(json);
        let v = self.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

/// Parses a message with only the fields identity reads ([`READ`]), skipping the others
/// without building them: replays from the store read these, where whole messages cost most of
/// identity's time to build and free.
pub fn parse_read(json: &str) -> serde_json::Result<Value> {
    READ.parse(json)
}

impl<'de> serde::de::DeserializeSeed<'de> for Reads {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        use serde::Deserialize;
        match self {
            Reads::All => Value::deserialize(d),
            Reads::Fields(_) => d.deserialize_any(self),
        }
    }
}

/// A key of an object read as `Reads`: the field it names there, if one, without copying it.
struct FieldOf(Reads);

impl<'de> serde::de::DeserializeSeed<'de> for FieldOf {
    type Value = Option<(&'static str, Reads)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldOf {
    type Value = Option<(&'static str, Reads)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.field(v))
    }
}

/// An object keeps the fields read; any other value is built whole.
impl<'de> serde::de::Visitor<'de> for Reads {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(field) = map.next_key_seed(FieldOf(self))? {
            match field {
                Some((name, read)) => {
                    out.insert(name.to_owned(), map.next_value_seed(read)?);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A JSON string or number as text.
fn text(v: Option<&Value>) -> Option<Cow<'_, str>> {
    match v? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Where an identifier's raw value was found, before normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind<'a> {
    UserId,
    AnonymousId,
    /// An alias's `previousId`.
    PreviousId,
    Email,
    Phone,
    /// A `context.externalIds` entry's `type`, as sent.
    External(&'a str),
}

/// Calls `f` with every field identity links on: `userId`, `anonymousId`, an alias's
/// `previousId`, `email` and `phone` in `traits`, `context.traits` and `properties`, and
/// `context.externalIds`. The one list of those places, for resolution and admission alike.
pub fn visit_raw_identifiers<'a>(
    m: &'a Map<String, Value>,
    mut f: impl FnMut(RawKind<'a>, &'a Value),
) {
    if let Some(v) = m.get("userId") {
        f(RawKind::UserId, v);
    }
    if let Some(v) = m.get("anonymousId") {
        f(RawKind::AnonymousId, v);
    }
    let context = m.get("context").and_then(Value::as_object);
    let sources = [
        m.get("traits"),
        context.and_then(|c| c.get("traits")),
        m.get("properties"),
    ];
    for src in sources.into_iter().flatten().filter_map(Value::as_object) {
        if let Some(v) = src.get("email") {
            f(RawKind::Email, v);
        }
        if let Some(v) = src.get("phone") {
            f(RawKind::Phone, v);
        }
    }
    if m.get("type").and_then(Value::as_str) == Some("alias")
        && let Some(v) = m.get("previousId")
    {
        f(RawKind::PreviousId, v);
    }
    if let Some(Value::Array(ext)) = context.and_then(|c| c.get("externalIds")) {
        for e in ext {
            if let (Some(Value::String(t)), Some(v)) = (e.get("type"), e.get("id")) {
                f(RawKind::External(t), v);
            }
        }
    }
}

/// RudderStack's consent record (`{"allowedConsentIds": [...], "deniedConsentIds": [...]}`) as
/// categories: each allowed ID granted, each denied one not (denied wins for an ID in both).
/// `None` when it names no ID.
fn consent_ids(record: &Value) -> Option<Map<String, Value>> {
    let mut categories = Map::new();
    for (field, granted) in [("allowedConsentIds", true), ("deniedConsentIds", false)] {
        let Some(Value::Array(ids)) = record.get(field) else {
            continue;
        };
        for id in ids.iter().filter_map(Value::as_str).map(str::trim) {
            if !id.is_empty() {
                categories.insert(id.to_owned(), Value::Bool(granted));
            }
        }
    }
    (!categories.is_empty()).then_some(categories)
}

/// The type a raw field's value takes as an identifier.
pub fn raw_kind_type(kind: RawKind<'_>) -> Option<IdType> {
    Some(match kind {
        RawKind::UserId => IdType::UserId,
        // The Segment spec does not type previousId; it is usually the pre-login anonymous ID.
        RawKind::AnonymousId | RawKind::PreviousId => IdType::AnonymousId,
        RawKind::Email => IdType::Email,
        RawKind::Phone => IdType::Phone,
        RawKind::External(t) => IdType::parse(&t.to_lowercase()).ok()?,
    })
}

/// The normalised identifiers a message carries (sorted, deduplicated), and whether it carried
/// an email anywhere; cheaper than [`EventInput::from_message`] when only these are needed.
pub fn identifiers(msg: &Value, config: &IdentityConfig) -> (Vec<Identifier>, bool) {
    match msg.as_object() {
        Some(m) => identifiers_in(m, config),
        None => (Vec::new(), false),
    }
}

/// [`identifiers`] of a message object.
pub fn identifiers_in(m: &Map<String, Value>, config: &IdentityConfig) -> (Vec<Identifier>, bool) {
    let mut ids = Vec::new();
    let mut emails = false;
    visit_raw_identifiers(m, |kind, v| {
        emails |= kind == RawKind::Email;
        let Some(t) = raw_kind_type(kind) else { return };
        let id = match v {
            Value::String(s) => config.normalise(t, s),
            Value::Number(n) => config.normalise(t, &n.to_string()),
            _ => None,
        };
        ids.extend(id);
    });
    ids.sort();
    ids.dedup();
    (ids, emails)
}

/// The identifier the store files an event under (its `userId`, else its `anonymousId`), as an
/// index into `ids`; `None` when that raw value is not itself an identifier (blocked, or changed
/// by normalisation), so no identifier's store lookup finds the event by it.
fn store_key(msg: &Value, ids: &[Identifier]) -> Option<usize> {
    let (kind, raw) = match msg.get("userId") {
        Some(u) => (IdType::UserId, u),
        None => (IdType::AnonymousId, msg.get("anonymousId")?),
    };
    // A raw value that normalises to something else, or to nothing, is not among `ids`.
    let raw = raw.as_str()?;
    ids.iter().position(|i| i.kind == kind && i.value == raw)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2026-11-23T10:00:00.123Z`, offsets allowed) to Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, sec) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 => {
            let oh = n(i + 1..i + 3)?;
            let om = n(i + 4..i + 6)?;
            let o = oh * 60 + om;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Formats Unix milliseconds as the collector stores times (`2026-11-23T10:00:00.123Z`, by
/// [`crate::message::format_time`]); a time outside the years `time` holds as its number.
pub fn format_rfc3339(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => crate::message::format_time(t),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_round_trip_and_offsets_are_applied() {
        let t = parse_rfc3339("2026-11-23T10:00:00.123Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-23T10:00:00.123Z");
        // One formatter for stored times and profiles, negative years included.
        assert_eq!(
            format_rfc3339(-62_198_755_199_999),
            "-0001-01-01T00:00:00.001Z"
        );
        assert_eq!(format_rfc3339(i64::MAX), i64::MAX.to_string());
        assert_eq!(parse_rfc3339("2026-11-23T11:00:00.123+01:00"), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn guest_checkout_links_anonymous_id_and_email_with_revenue() {
        let msg = json!({
            "type": "track", "event": "Order Completed", "messageId": "m1",
            "anonymousId": "a-1", "timestamp": "2026-11-23T10:00:00.000Z",
            "properties": {"email": " Guest@Shop.Example ", "total": "59.90", "order_id": "o-9"},
            "context": {"userAgent": "UA", "consent": {"categoryPreferences": {"analytics": true}}}
        });
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        assert_eq!(e.rule, Rule::EmailOnEvent);
        let ids: Vec<String> = e.ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["email:guest@shop.example", "anonymous_id:a-1"]);
        assert_eq!(e.revenue, Some(59.9));
        assert_eq!(e.order_id.as_deref(), Some("o-9"));
        assert!(e.consent.is_some());
    }

    #[test]
    fn consent_updated_reads_the_new_choice_from_its_properties() {
        let msg = json!({
            "type": "track", "event": "Consent Updated", "messageId": "m3", "anonymousId": "a-3",
            "properties": {"categoryPreferences": {"analytics": true, "marketing": true}},
            "context": {"consent": {"categoryPreferences": {"analytics": true, "marketing": false}}}
        });
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        assert_eq!(e.consent.unwrap().get("marketing"), Some(&json!(true)));
    }

    #[test]
    fn rudderstack_consent_ids_are_read_as_categories() {
        let record = |event: &str| {
            json!({
                "type": "track", "event": event, "messageId": "m4", "anonymousId": "a-4",
                "context": {"consentManagement": {"provider": "custom",
                    "allowedConsentIds": ["analytics", " necessary "],
                    "deniedConsentIds": ["marketing"]}}
            })
        };
        let msg = record("Viewed");
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        assert_eq!(
            e.consent.as_deref(),
            json!({"analytics": true, "necessary": true, "marketing": false}).as_object()
        );
        assert!(!e.consent_stated, "the state the event was sent under");
        let msg = record("Consent Management Interaction");
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        assert!(e.consent_stated, "the visitor's change");
        // Segment's preferences win when both are there; an empty record is no consent.
        let msg = json!({"type": "track", "event": "x", "anonymousId": "a-5",
            "context": {"consent": {"categoryPreferences": {"analytics": false}},
                        "consentManagement": {"allowedConsentIds": ["analytics"]}}});
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        assert_eq!(e.consent.unwrap().get("analytics"), Some(&json!(false)));
        let msg = json!({"type": "track", "event": "x", "anonymousId": "a-6",
            "context": {"consentManagement": {"allowedConsentIds": [], "deniedConsentIds": [1]}}});
        assert!(
            EventInput::from_message(&msg, &IdentityConfig::default())
                .consent
                .is_none()
        );
    }

    #[test]
    fn blocked_user_ids_and_external_ids_are_read() {
        let msg = json!({
            "type": "identify", "messageId": "m2", "userId": "undefined", "anonymousId": "a-2",
            "traits": {"email": "x@y.z", "name": "X"},
            "context": {"externalIds": [{"type": "crm_id", "id": "C-1", "collection": "users"}]}
        });
        let e = EventInput::from_message(&msg, &IdentityConfig::default());
        let ids: Vec<String> = e.ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["email:x@y.z", "anonymous_id:a-2", "crm_id:C-1"]);
        assert_eq!(
            e.traits,
            [("email", &json!("x@y.z")), ("name", &json!("X"))]
        );
    }

    #[test]
    fn a_replay_parse_matches_escaped_keys_and_rejects_what_is_not_json() {
        let json = r#"{"us\u0065rId":"u-1","context":{"page":{"referrer":"r","url":"x"}},
            "junk":[1,{"a":null}],"seq":3}"#;
        assert_eq!(
            parse_read(json).expect("parse"),
            json!({"userId": "u-1", "context": {"page": {"referrer": "r"}}, "seq": 3})
        );
        assert!(parse_read(r#"{"userId":"u"} trailing"#).is_err());
        assert!(parse_read(r#"{"junk":[1,}"#).is_err());
    }

    #[test]
    fn pruned_messages_read_as_whole_ones() {
        let everything = json!({
            "type": "track", "event": "Order Completed", "messageId": "m-1", "seq": 42,
            "userId": "u-1", "anonymousId": "a-1", "timestamp": "2026-11-23T10:00:00.123Z",
            "receivedAt": "2026-11-23T10:00:01.000Z", "sentAt": "2026-11-23T10:00:00.900Z",
            "traits": {"email": "T@x.example", "phone": "+1 555 0100", "plan": "pro"},
            "properties": {"email": "P@x.example", "phone": "+1 555 0101", "revenue": 12.5,
                "total": "13", "order_id": 77, "sku": "SKU-1",
                "categoryPreferences": {"analytics": true}},
            "context": {
                "traits": {"email": "C@x.example", "name": "C"},
                "consent": {"categoryPreferences": {"analytics": true, "marketing": false}},
                "page": {"referrer": "https://ref.example/", "url": "https://shop.example/"},
                "campaign": {"source": "news", "medium": "email"},
                "userAgent": "UA/1", "session": {"id": 9}, "ip": "203.0.113.7",
                "library": {"name": "seam", "version": "0.1.0"},
                "externalIds": [{"type": "crm_id", "id": "C-1", "collection": "users"}]
            },
            "integrations": {"All": true}
        });
        let mut messages = vec![everything.clone()];
        for (kind, event) in [
            ("identify", None),
            ("alias", None),
            ("track", Some("Consent Updated")),
            ("page", None),
        ] {
            let mut m = everything.clone();
            m["type"] = json!(kind);
            match event {
                Some(e) => m["event"] = json!(e),
                None => drop(m.as_object_mut().expect("object").remove("event")),
            }
            m["previousId"] = json!("a-0");
            m["context"]["session"] = json!("s-1");
            messages.push(m);
        }
        // Fields of the wrong kind are kept as they are, as identity reads them (not at all).
        messages.push(json!({
            "type": "track", "event": "E", "messageId": "m-9", "anonymousId": "a-9",
            "context": "not an object", "properties": [1, {"email": "x@y.z"}], "traits": null
        }));
        let config = IdentityConfig::default();
        for whole in messages {
            let pruned = parse_read(&whole.to_string()).expect("parse");
            assert_eq!(
                EventInput::from_message(&pruned, &config),
                EventInput::from_message(&whole, &config),
                "{whole}"
            );
            assert_eq!(identifiers(&pruned, &config), identifiers(&whole, &config));
            for gone in [
                "/receivedAt",
                "/integrations",
                "/properties/sku",
                "/context/library",
                "/context/ip",
                "/context/page/url",
            ] {
                assert!(pruned.pointer(gone).is_none(), "{gone} is kept in {pruned}");
            }
        }
    }
}
