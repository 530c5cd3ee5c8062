//! When to try again after a failed send, and what a response status means for the batch.

use crate::Random;

/// What to do with a batch after an attempt to send it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The collector stored it (2xx).
    Accepted,
    /// The collector will never accept it (4xx other than 408/429): drop with a warning.
    Rejected(u16),
    /// 5xx, 408 or 429: send again later; `after_ms` from `Retry-After`.
    Retry { after_ms: Option<u64> },
    /// No response: a network error, or the page going away under the request. Sent again
    /// later, unless the page had handed the request off on unload (see `Delivery`).
    NoResponse,
}

impl Outcome {
    /// Classifies an HTTP status; `retry_after` is the `Retry-After` header in seconds.
    /// Status 0 stands for a network error (no response at all).
    pub fn from_status(status: u16, retry_after: Option<&str>) -> Self {
        match status {
            200..=299 => Outcome::Accepted,
            0 => Outcome::NoResponse,
            408 | 429 | 500..=599 => Outcome::Retry {
                after_ms: retry_after
                    .and_then(|s| crate::time::parse_num(s.trim()))
                    .map(|s| s.saturating_mul(1000)),
            },
            other => Outcome::Rejected(other),
        }
    }
}

/// Exponential backoff with jitter: attempt n waits between half and all of
/// `min(cap, base * 2^n)`, so many browsers recovering at once do not retry in lockstep.
pub fn delay_ms(attempt: u32, rng: &impl Random) -> u64 {
    const BASE_MS: u64 = 500;
    const CAP_MS: u64 = 60_000;
    let full = BASE_MS.saturating_mul(1u64 << attempt.min(20)).min(CAP_MS);
    let half = full / 2;
    half + (half as f64 * rng.unit()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingRandom;
    use std::prelude::rust_2024::*;

    #[test]
    fn server_errors_throttling_and_timeouts_are_retried() {
        assert_eq!(Outcome::from_status(0, None), Outcome::NoResponse);
        for status in [408, 429, 500, 502, 503] {
            assert!(matches!(
                Outcome::from_status(status, None),
                Outcome::Retry { .. }
            ));
        }
        assert_eq!(
            Outcome::from_status(429, Some("7")),
            Outcome::Retry {
                after_ms: Some(7000)
            }
        );
    }

    #[test]
    fn client_errors_are_never_retried() {
        assert_eq!(Outcome::from_status(400, None), Outcome::Rejected(400));
        assert_eq!(Outcome::from_status(401, None), Outcome::Rejected(401));
        assert_eq!(Outcome::from_status(200, None), Outcome::Accepted);
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_a_cap() {
        let rng = CountingRandom::default();
        let d0 = delay_ms(0, &rng);
        assert!((250..=500).contains(&d0), "{d0}");
        let d3 = delay_ms(3, &rng);
        assert!((2000..=4000).contains(&d3), "{d3}");
        let d30 = delay_ms(30, &rng);
        assert!((30_000..=60_000).contains(&d30), "{d30}");
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| delay_ms(5, &rng)).collect();
        assert!(spread.len() > 1, "jitter varies the delay");
    }
}
