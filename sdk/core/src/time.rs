//! RFC 3339 timestamps in UTC with milliseconds, without `format!` (keeps the wasm small).

use alloc::string::String;

/// `2026-11-23T10:00:00.123Z` for `ms` milliseconds since the Unix epoch.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let mut s = String::with_capacity(24);
    push_num(&mut s, y as u64, 4);
    s.push('-');
    push_num(&mut s, mo as u64, 2);
    s.push('-');
    push_num(&mut s, d as u64, 2);
    s.push('T');
    push_num(&mut s, sod / 3600, 2);
    s.push(':');
    push_num(&mut s, sod / 60 % 60, 2);
    s.push(':');
    push_num(&mut s, sod % 60, 2);
    s.push('.');
    push_num(&mut s, ms % 1000, 3);
    s.push('Z');
    s
}

/// Appends `n` in decimal, zero-padded to `width` digits.
pub fn push_num(s: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (digits.len() - i)..width {
        s.push('0');
    }
    for &d in &digits[i..] {
        s.push(d as char);
    }
}

/// Parses a non-negative decimal integer; `None` on anything else.
pub fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_428_000_123), "2026-11-23T10:00:00.123Z");
        assert_eq!(iso8601(951_782_400_007), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn numbers_parse_only_when_all_digits() {
        assert_eq!(parse_num("120"), Some(120));
        assert_eq!(parse_num(""), None);
        assert_eq!(parse_num("1.5"), None);
        assert_eq!(parse_num("-3"), None);
    }
}
