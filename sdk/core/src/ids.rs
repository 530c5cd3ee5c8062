//! Identifiers: UUID v4 for `messageId`, `anonymousId` and tab IDs.

use alloc::string::String;

use crate::Random;

/// A random (version 4, RFC 4122 variant) UUID in lower-case hex.
pub fn uuid_v4(rng: &impl Random) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingRandom;
    use std::prelude::rust_2024::*;

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let rng = CountingRandom::default();
        let a = uuid_v4(&rng);
        let b = uuid_v4(&rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
