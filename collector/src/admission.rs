//! The ingest-time admission hook: a check, installed at start-up, that refuses events from
//! identifiers that must not be stored again (erased profiles).

/// Identity resolution implements this and installs it with [`crate::AppState::with_admission`].
/// Called for every message on the request path, so it must be fast and must not block.
/// Types asked: `user_id`, `anonymous_id` (also for an alias's `previousId`), and `email`
/// (from `traits.email` / `context.traits.email`, trimmed and lower-cased).
/// A refused event is counted (`seam_events_suppressed_total`) and not stored.
pub trait Admission: Send + Sync + 'static {
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool;
}

/// The default: admits everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn is_suppressed(&self, _: &str, _: &str) -> bool {
        false
    }
}
