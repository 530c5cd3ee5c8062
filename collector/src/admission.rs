//! The ingest-time admission hook: a check, installed at start-up, that refuses events from
//! identifiers that must not be stored again (erased profiles).

use serde_json::{Map, Value};

/// Identity resolution implements this and installs it with [`crate::AppState::with_admission`].
/// Called for every message on the request path, so it must be fast and must not block.
/// A refused event is counted (`seam_events_suppressed_total`) and not stored.
pub trait Admission: Send + Sync + 'static {
    /// Whether one identifier is suppressed. Types asked by the default [`Admission::refuses`]:
    /// `user_id`, `anonymous_id` (also for an alias's `previousId`), and `email` (from
    /// `traits.email` / `context.traits.email`, trimmed and lower-cased).
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool;

    /// Whether the message carries any suppressed identifier. Ingest asks this once per
    /// message; an implementation that knows more identifier types (phone, external IDs)
    /// overrides it.
    fn refuses(&self, m: &Map<String, Value>) -> bool {
        let check = |ty: &str, v: Option<&Value>| {
            v.and_then(Value::as_str)
                .is_some_and(|v| self.is_suppressed(ty, v))
        };
        if check("user_id", m.get("userId")) || check("anonymous_id", m.get("anonymousId")) {
            return true;
        }
        if let Some(prev) = m.get("previousId").and_then(Value::as_str)
            && (self.is_suppressed("user_id", prev) || self.is_suppressed("anonymous_id", prev))
        {
            return true;
        }
        let emails = [
            m.get("traits").and_then(|t| t.get("email")),
            m.get("context")
                .and_then(|c| c.get("traits"))
                .and_then(|t| t.get("email")),
        ];
        emails.into_iter().flatten().any(|e| {
            e.as_str()
                .is_some_and(|e| self.is_suppressed("email", &e.trim().to_lowercase()))
        })
    }
}

/// The default: admits everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn is_suppressed(&self, _: &str, _: &str) -> bool {
        false
    }

    fn refuses(&self, _: &Map<String, Value>) -> bool {
        false
    }
}
