//! The little JSON the core writes itself: string literals around already-serialized events.

use alloc::string::String;

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The members of a serialized object, without its braces (`""` for `{}` or a non-object).
/// Objects come from `JSON.stringify` or this crate, so there is no surrounding whitespace.
pub fn members(object: &str) -> &str {
    object
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or("")
}

/// Appends `members` (`"a":1,"b":2`, possibly empty) to `out`, after a comma when `out` already
/// has members since its last `{`.
pub fn push_members(out: &mut String, members: &str) {
    if members.is_empty() {
        return;
    }
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push_str(members);
}

/// Appends `"key":` after a comma when needed.
pub fn push_key(out: &mut String, key: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    push_str(out, key);
    out.push(':');
}

/// Appends the serialized object `event` to `out` with `"sentAt":"<sent_at>"` added as its last
/// member (straight into the batch body: no string per event).
/// `event` must be a JSON object without a `sentAt` member (the SDK writes events that way).
pub fn push_with_sent_at(out: &mut String, event: &str, sent_at: &str) {
    out.push('{');
    push_members(out, members(event));
    push_key(out, "sentAt");
    push_str(out, sent_at);
    out.push('}');
}

/// Returns `event` with the object value of its last member replaced by `object`: events end
/// with `…"categoryPreferences":{…}}}}` (see `Tracker::build`), so this restamps their consent.
pub fn with_last_object(event: &str, object: &str) -> String {
    let body = event.trim_end_matches('}');
    let start = body.rfind('{').unwrap_or(body.len());
    let mut out = String::with_capacity(event.len() + object.len());
    out.push_str(event.get(..start).unwrap_or(event));
    out.push_str(object);
    out.push_str(event.get(body.len() + 1..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn with_sent_at(event: &str, sent_at: &str) -> String {
        let mut out = String::new();
        push_with_sent_at(&mut out, event, sent_at);
        out
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn sent_at_is_added_to_each_event() {
        assert_eq!(
            with_sent_at(r#"{"type":"track"}"#, "T"),
            r#"{"type":"track","sentAt":"T"}"#
        );
        assert_eq!(with_sent_at("{}", "T"), r#"{"sentAt":"T"}"#);
    }

    #[test]
    fn the_last_object_of_an_event_is_replaced() {
        assert_eq!(
            with_last_object(r#"{"a":{"b":1},"c":{"p":{"x":false}}}"#, r#"{"x":true}"#),
            r#"{"a":{"b":1},"c":{"p":{"x":true}}}"#
        );
    }

    #[test]
    fn members_are_spliced_with_commas_only_between_them() {
        assert_eq!(members(r#"{"a":1}"#), r#""a":1"#);
        assert_eq!(members("{}"), "");
        assert_eq!(members("[1]"), "");
        let mut out = String::from("{");
        push_members(&mut out, "");
        push_members(&mut out, r#""a":1"#);
        push_key(&mut out, "b");
        out.push_str("2}");
        assert_eq!(out, r#"{"a":1,"b":2}"#);
    }
}
