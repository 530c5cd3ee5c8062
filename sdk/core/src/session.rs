//! Sessions: a new one starts after 30 minutes without activity.

use alloc::string::String;

/// Inactivity after which the next event starts a new session.
pub const TIMEOUT_MS: u64 = 30 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The session's start in ms since the epoch, which is also its ID (as Amplitude does).
    pub id: u64,
    pub last_activity: u64,
}

impl Session {
    pub fn start(now: u64) -> Self {
        Session {
            id: now,
            last_activity: now,
        }
    }

    /// Records activity at `now`, starting a new session when the last one timed out.
    pub fn touch(&mut self, now: u64) {
        if now.saturating_sub(self.last_activity) >= TIMEOUT_MS {
            *self = Session::start(now);
        } else {
            self.last_activity = self.last_activity.max(now);
        }
    }

    /// `id.last` for storage.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        crate::time::push_num(&mut s, self.id, 1);
        s.push('.');
        crate::time::push_num(&mut s, self.last_activity, 1);
        s
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (id, last) = s.split_once('.')?;
        Some(Session {
            id: crate::time::parse_num(id)?,
            last_activity: crate::time::parse_num(last)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn activity_within_thirty_minutes_keeps_the_session() {
        let mut s = Session::start(1_000);
        s.touch(1_000 + TIMEOUT_MS - 1);
        assert_eq!(s.id, 1_000);
        s.touch(1_000 + 2 * TIMEOUT_MS - 2);
        assert_eq!(s.id, 1_000, "the timeout counts from the last activity");
    }

    #[test]
    fn thirty_minutes_idle_starts_a_new_session() {
        let mut s = Session::start(1_000);
        s.touch(1_000 + TIMEOUT_MS);
        assert_eq!(s.id, 1_000 + TIMEOUT_MS);
    }

    #[test]
    fn sessions_survive_encoding() {
        let s = Session {
            id: 12,
            last_activity: 34,
        };
        assert_eq!(Session::decode(&s.encode()), Some(s));
        assert_eq!(Session::decode("x.1"), None);
    }
}
