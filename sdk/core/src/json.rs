//! The little JSON the core writes itself: string literals around already-serialized events.

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

/// Returns the serialized object `event` with `"sentAt":"<sent_at>"` added as its last member.
/// `event` must be a JSON object without a `sentAt` member (the SDK writes events that way).
pub fn with_sent_at(event: &str, sent_at: &str) -> String {
    let body = event.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body);
    let mut out = String::with_capacity(body.len() + 40);
    out.push_str(body);
    if !body.trim_end().ends_with('{') {
        out.push(',');
    }
    out.push_str("\"sentAt\":");
    push_str(&mut out, sent_at);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
