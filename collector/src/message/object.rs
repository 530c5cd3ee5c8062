//! A JSON object held as its fields' text as sent. The normaliser reads and rewrites the few
//! fields it knows and copies every other one through unparsed, instead of building a tree of
//! every value and serialising it again: that tree was most of the request threads' work.

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// Whether `text` parses as a [`Value`], with the error `serde_json::from_str::<Value>` gives
/// if not. Text only split by [`Object::parse`] is checked for syntax alone: numbers out of
/// `f64`'s range, unpaired UTF-16 surrogates and nesting past serde_json's limit pass that, and
/// stored, would make the event unreadable.
pub(super) fn check(text: &str) -> serde_json::Result<()> {
    if plainly_valid(text.as_bytes()) {
        return Ok(());
    }
    serde_json::from_str::<Checked>(text).map(|_| ())
}

/// Whether JSON text, given that its syntax is sound, parses as a [`Value`] for certain, found
/// by a scan several times cheaper than parsing it: it has no escape (the only way to write an
/// unpaired surrogate), no number with an exponent or with 300 digits in a row (the only ones
/// outside `f64`'s range), and it nests less than 100 deep (serde_json stops at 128). Nearly
/// every message sent is so; any other takes the parse.
fn plainly_valid(text: &[u8]) -> bool {
    if text.contains(&b'\\') {
        return false;
    }
    let (mut depth, mut digits) = (0u32, 0u32);
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        i += 1;
        match b {
            // Without escapes a string ends at the next quote.
            b'"' => match next_quote(&text[i..]) {
                Some(len) => i += len + 1,
                None => return false,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth >= 100 {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'0'..=b'9' => {
                digits += 1;
                if digits >= 300 {
                    return false;
                }
                continue;
            }
            b'e' | b'E' if digits > 0 => return false,
            _ => {}
        }
        digits = 0;
    }
    true
}

/// Where the first `"` in `s` is, eight bytes at a time.
fn next_quote(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = ONES * b'"' as u64;
    let mut words = s.chunks_exact(8);
    for (n, w) in words.by_ref().enumerate() {
        let x = u64::from_le_bytes(w.try_into().expect("eight bytes")) ^ QUOTES;
        // The lowest bit set marks the first zero byte of `x` exactly ("Bit Twiddling Hacks").
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(n * 8 + zero.trailing_zeros() as usize / 8);
        }
    }
    let rest = words.remainder();
    rest.iter()
        .position(|&b| b == b'"')
        .map(|p| s.len() - rest.len() + p)
}

/// Accepts what [`Value`] accepts, building nothing: serde_json parses every number, string
/// and key in full, as for a `Value`.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// A field's value in an [`Object`].
#[derive(Debug)]
pub(super) enum Piece<'a> {
    /// JSON text as sent, whole (a string keeps its quotes).
    Raw(&'a str),
    /// A string the collector wrote, escaped when written out.
    Str(Cow<'a, str>),
    /// A value the collector holds parsed already (the batch's context).
    Value(&'a Value),
    /// A value parsed where its text was not kept (a `context` that is not an object).
    Parsed(Value),
    Object(Object<'a>),
}

impl<'a> Piece<'a> {
    pub(super) fn kind(&self) -> Kind {
        match self {
            Piece::Raw(r) => Kind::of_text(r),
            Piece::Str(_) => Kind::String,
            Piece::Value(v) => Kind::of_value(v),
            Piece::Parsed(v) => Kind::of_value(v),
            Piece::Object(_) => Kind::Object,
        }
    }

    /// The string, unescaped; `None` for any other kind.
    pub(super) fn as_str(&self) -> Option<Cow<'a, str>> {
        match self {
            Piece::Raw(r) if r.starts_with('"') => match r.get(1..r.len() - 1) {
                // Without an escape, a string's text between its quotes is the string.
                Some(inner) if !inner.as_bytes().contains(&b'\\') => Some(Cow::Borrowed(inner)),
                _ => serde_json::from_str::<Text<'_>>(r).ok().map(|t| t.0),
            },
            Piece::Raw(_) | Piece::Object(_) => None,
            Piece::Str(s) => Some(s.clone()),
            Piece::Value(v) => v.as_str().map(Cow::Borrowed),
            Piece::Parsed(v) => v.as_str().map(|s| Cow::Owned(s.to_owned())),
        }
    }

    /// A number as a `Value` writes it (`1e3` is `1000.0`); `None` for any other kind.
    pub(super) fn number_text(&self) -> Option<String> {
        match self {
            Piece::Raw(r) if Kind::of_text(r) == Kind::Number => {
                serde_json::from_str::<serde_json::Number>(r)
                    .ok()
                    .map(|n| n.to_string())
            }
            Piece::Value(Value::Number(n)) | Piece::Parsed(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The field `key` of an object; `None` for any other kind, or if it has none.
    pub(super) fn field(&self, key: &str) -> Option<Piece<'a>> {
        match self {
            Piece::Raw(r) if r.starts_with('{') => Object::parse(r).ok()?.remove(key),
            Piece::Value(v) => v.get(key).map(Piece::Value),
            _ => None,
        }
    }

    pub(super) fn write(&self, out: &mut String) {
        match self {
            Piece::Raw(r) => out.push_str(r),
            Piece::Str(s) => super::push_json_str(out, s),
            Piece::Value(v) => super::push_value(out, v),
            Piece::Parsed(v) => super::push_value(out, v),
            Piece::Object(o) => o.write(out),
        }
    }
}

/// A JSON value's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The kind of valid JSON text, from its first byte.
    pub(super) fn of_text(text: &str) -> Kind {
        match text.as_bytes().first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Boolean,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    pub(super) fn of_value(v: &Value) -> Kind {
        match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }
}

/// The kind named for error messages: "not a string".
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Boolean => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        })
    }
}

/// An object's fields sorted by key, each key once (the last one sent wins, as in a `Value`),
/// so it is written in the order serde_json writes a `Map`.
#[derive(Debug, Default)]
pub(super) struct Object<'a> {
    /// A borrowed key is written without escaping: serde_json lends a key only when the text
    /// has no escape in it, and the collector's own names and [`Object::merge_under`] lend
    /// none that needs one.
    fields: Vec<(Cow<'a, str>, Piece<'a>)>,
}

impl<'a> Object<'a> {
    /// Splits an object's text (checked by [`check`]) into its fields, their values unparsed.
    pub(super) fn parse(text: &'a str) -> serde_json::Result<Object<'a>> {
        Object::parse_nesting(text, &[])
    }

    /// [`Object::parse`], splitting the fields named in `nested` too.
    pub(super) fn parse_nesting(
        text: &'a str,
        nested: &'static [&'static str],
    ) -> serde_json::Result<Object<'a>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let Fields(fields) = (&mut de).deserialize_map(FieldsOf { nested })?;
        de.end()?;
        Ok(Object::sorted(fields))
    }

    fn sorted(mut fields: Vec<(Cow<'a, str>, Piece<'a>)>) -> Object<'a> {
        fields.sort_by(|a, b| key_order(&a.0, &b.0));
        // A stable sort leaves repeats in the order sent; the last one's value is kept.
        fields.dedup_by(|later, kept| {
            let repeat = later.0 == kept.0;
            if repeat {
                std::mem::swap(later, kept);
            }
            repeat
        });
        Object { fields }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.fields.binary_search_by(|(k, _)| key_order(k, key))
    }

    pub(super) fn get(&self, key: &str) -> Option<&Piece<'a>> {
        self.find(key).ok().map(|i| &self.fields[i].1)
    }

    pub(super) fn set(&mut self, key: &'static str, value: Piece<'a>) {
        match self.find(key) {
            Ok(i) => self.fields[i].1 = value,
            Err(i) => self.fields.insert(i, (Cow::Borrowed(key), value)),
        }
    }

    /// Adds the fields of `under` this object does not have.
    pub(super) fn merge_under(&mut self, under: &'a serde_json::Map<String, Value>) {
        for (k, v) in under {
            if let Err(i) = self.find(k) {
                let key = if super::needs_escape(k.as_bytes()) {
                    Cow::Owned(k.clone())
                } else {
                    Cow::Borrowed(k.as_str())
                };
                self.fields.insert(i, (key, Piece::Value(v)));
            }
        }
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<Piece<'a>> {
        self.find(key).ok().map(|i| self.fields.remove(i).1)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Piece<'a>)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Piece<'a>) -> bool) {
        self.fields.retain(|(_, v)| keep(v));
    }

    /// The object as JSON text.
    pub(super) fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match k {
                Cow::Borrowed(k) => {
                    out.push('"');
                    out.push_str(k);
                    out.push('"');
                }
                Cow::Owned(k) => super::push_json_str(out, k),
            }
            out.push(':');
            v.write(out);
        }
        out.push('}');
    }
}

/// `a.cmp(b)`, byte by byte: keys are short and nearly always differ in their first bytes,
/// where a call to `memcmp` for each comparison cost more than the comparing (`perf`).
fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// An object's fields in the order sent; the values of fields named in `nested` split too,
/// if objects.
struct Fields<'a>(Vec<(Cow<'a, str>, Piece<'a>)>);

struct FieldsOf {
    nested: &'static [&'static str],
}

impl<'de> Visitor<'de> for FieldsOf {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Text(key)) = map.next_key()? {
            let value = if self.nested.contains(&key.as_ref()) {
                map.next_value_seed(Nested)?
            } else {
                Piece::Raw(map.next_value::<&'de RawValue>()?.get())
            };
            fields.push((key, value));
        }
        Ok(Fields(fields))
    }
}

/// A value split into its fields if it is an object, or else held parsed: for the fields the
/// normaliser rewrites whole, which would otherwise be scanned once to split the message and
/// again to split them.
struct Nested;

impl<'de> DeserializeSeed<'de> for Nested {
    type Value = Piece<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Piece<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested {
    type Value = Piece<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Piece<'de>, A::Error> {
        let Fields(fields) = FieldsOf { nested: &[] }.visit_map(map)?;
        Ok(Piece::Object(Object::sorted(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Piece<'de>, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Piece::Parsed)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Piece<'de>, E> {
        Ok(Piece::Parsed(Value::Null))
    }
}

/// A string, borrowed from the text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct Of;
        impl<'de> Visitor<'de> for Of {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Of)
    }
}
