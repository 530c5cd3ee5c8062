//! The ingest-time admission hook: a check, installed at start-up, that refuses events from
//! identifiers that must not be stored again (erased profiles).

use crate::identity::input::{RawKind, visit_raw_identifiers};
use serde_json::{Map, Value};

/// Identity resolution implements this and installs it with [`crate::AppState::with_admission`].
/// Called for every message on the request path, so it must be fast and must not block.
/// A refused event is counted (`seam_events_suppressed_total`) and not stored.
pub trait Admission: Send + Sync + 'static {
    /// Whether one identifier is suppressed. Types asked by the default [`Admission::refuses`]:
    /// `user_id`, `anonymous_id` (also for a `previousId`), and `email` (trimmed and
    /// lower-cased), from the fields [`visit_raw_identifiers`] lists.
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool;

    /// Whether no message is ever refused: ingest then skips parsing what [`Admission::refuses`]
    /// would read.
    fn admits_all(&self) -> bool {
        false
    }

    /// Whether the message carries any suppressed identifier. Ingest asks this once per
    /// message, with the fields identity resolution reads (`identity::input::parse_read`); an
    /// implementation that knows more identifier types (phone, external IDs) overrides it.
    fn refuses(&self, m: &Map<String, Value>) -> bool {
        if let Some(prev) = m.get("previousId").and_then(Value::as_str)
            && (self.is_suppressed("user_id", prev) || self.is_suppressed("anonymous_id", prev))
        {
            return true;
        }
        // The fields are identity resolution's one list of them.
        let mut refused = false;
        visit_raw_identifiers(m, |kind, v| {
            let Some(v) = v.as_str().filter(|_| !refused) else {
                return;
            };
            refused = match kind {
                RawKind::UserId => self.is_suppressed("user_id", v),
                RawKind::AnonymousId => self.is_suppressed("anonymous_id", v),
                RawKind::Email => self.is_suppressed("email", &v.trim().to_lowercase()),
                _ => false,
            };
        });
        refused
    }
}

/// The default: admits everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admits_all(&self) -> bool {
        true
    }

    fn is_suppressed(&self, _: &str, _: &str) -> bool {
        false
    }

    fn refuses(&self, _: &Map<String, Value>) -> bool {
        false
    }
}
