//! The SDK's state machine behind the JavaScript API: identity (anonymousId, userId, traits),
//! session, consent gating and Segment Spec event assembly, over the delivery pipeline.
//! Events arrive as JSON text (the binding lets `JSON.stringify` serialize what the page gave)
//! and are completed here by splicing, so the wasm needs no JSON library.

use crate::consent::{ANALYTICS, Consent, Mode};
use crate::delivery::{Config, Delivery, Transport};
use crate::json::{self, members, push_key, push_members, push_str};
use crate::session::Session;
use crate::storage::{Gate, Storage};
use crate::time::{iso8601, push_num};
use crate::{LIBRARY_NAME, LIBRARY_VERSION, Random, ids};
use alloc::string::String;
use alloc::vec::Vec;

pub const AID_KEY: &str = "seam.aid";
/// The first-party cookie holding the anonymousId (mirrored in localStorage).
pub const AID_COOKIE: &str = "seam_aid";
pub const UID_KEY: &str = "seam.uid";
pub const TRAITS_KEY: &str = "seam.traits";
pub const SESSION_KEY: &str = "seam.session";
pub const CONSENT_KEY: &str = "seam.consent";

/// Everything `seam.load` configures.
pub struct Settings {
    pub write_key: String,
    pub mode: Mode,
    pub categories: Vec<String>,
    /// `navigator.globalPrivacyControl`.
    pub gpc: bool,
    pub delivery: Config,
}

pub struct Tracker<S, K, T, R> {
    pub delivery: Delivery<Gate<S>, T>,
    cookies: K,
    rng: R,
    consent: Consent,
    anonymous_id: String,
    user_id: Option<String>,
    /// The user's known traits as a serialized JSON object.
    traits: String,
    session: Session,
}

impl<S: Storage, K: Storage, T: Transport, R: Random> Tracker<S, K, T, R> {
    /// Restores identity, session and consent from `local` and `cookies`. In opt-in mode,
    /// until `analytics` is granted, nothing is written to either.
    pub fn new(settings: Settings, local: S, cookies: K, transport: T, rng: R, now: u64) -> Self {
        let mut consent = Consent::new(settings.mode, settings.categories, settings.gpc);
        if let Some(stored) = local.get(CONSENT_KEY) {
            consent.decode(&stored);
        }
        let open = settings.mode == Mode::OptOut || consent.granted(ANALYTICS);
        let store = Gate::new(local, open);
        let anonymous_id = cookies
            .get(AID_COOKIE)
            .filter(|v| !v.is_empty())
            .or_else(|| store.get(AID_KEY))
            .unwrap_or_else(|| ids::uuid_v4(&rng));
        let user_id = store.get(UID_KEY);
        let traits = store.get(TRAITS_KEY).unwrap_or_else(|| String::from("{}"));
        let session = store
            .get(SESSION_KEY)
            .and_then(|s| Session::decode(&s))
            .unwrap_or_else(|| Session::start(now));
        let tab = ids::uuid_v4(&rng);
        let mut delivery =
            Delivery::new(store, transport, settings.delivery, settings.write_key, tab);
        delivery.enabled = open && consent.granted(ANALYTICS);
        let t = Tracker {
            delivery,
            cookies,
            rng,
            consent,
            anonymous_id,
            user_id,
            traits,
            session,
        };
        t.persist();
        t
    }

    pub fn anonymous_id(&self) -> &str {
        &self.anonymous_id
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// Known traits as serialized JSON.
    pub fn traits(&self) -> &str {
        &self.traits
    }

    /// `{"anonymousId":…,"userId":…|null,"traits":{…}}`, what `seam.user()` returns.
    pub fn user_json(&self) -> String {
        let mut o = String::from("{");
        push_key(&mut o, "anonymousId");
        push_str(&mut o, &self.anonymous_id);
        push_key(&mut o, "userId");
        match &self.user_id {
            Some(u) => push_str(&mut o, u),
            None => o.push_str("null"),
        }
        push_key(&mut o, "traits");
        o.push_str(&self.traits);
        o.push('}');
        o
    }

    /// Records an identified user and their (already merged) traits.
    pub fn set_user(&mut self, user_id: Option<String>, traits: Option<String>) {
        if user_id.is_some() {
            self.user_id = user_id;
        }
        if let Some(t) = traits {
            self.traits = t;
        }
        self.persist();
    }

    /// Logout: forgets the user, rotates the anonymousId and starts a new session, so the next
    /// person on a shared device starts fresh.
    pub fn reset(&mut self, now: u64) {
        self.user_id = None;
        self.traits = String::from("{}");
        self.anonymous_id = ids::uuid_v4(&self.rng);
        self.session = Session::start(now);
        self.persist();
    }

    /// Whether events are recorded now (held in memory while opt-in consent is pending).
    fn recording(&self) -> bool {
        self.consent.granted(ANALYTICS)
            || (!self.delivery.store.is_open() && !self.consent.analytics_decided())
    }

    /// Completes and queues an event. `fields` is a serialized object with the type's own
    /// members (`event`, `properties`, `name`, `traits`, …); `context` one with what the page
    /// knows (`page`, `userAgent`, `locale`, `timezone`, `screen`, `campaign`). Returns the
    /// messageId when the event was queued, and whether a batch is now due.
    pub fn record(&mut self, kind: &str, fields: &str, context: &str, at: u64) -> Option<bool> {
        if !self.recording() {
            return None;
        }
        let before = self.session;
        let (id, json) = self.build(kind, fields, context, at);
        // The session is stored when it changes or every 10 s of activity, not per event: one
        // storage write per event is the queue's. Leaving the page stores it exactly.
        if before.id != self.session.id || before.last_activity / 10_000 != at / 10_000 {
            self.delivery.store.set(SESSION_KEY, &self.session.encode());
        }
        Some(self.delivery.enqueue(at, &id, &json))
    }

    /// The page is being hidden: stores the session's last activity and hands the queue to a
    /// beacon (see `Delivery::on_page_hide`).
    pub fn page_hide(&mut self, now: u64, unloading: bool) {
        self.delivery.store.set(SESSION_KEY, &self.session.encode());
        self.delivery.on_page_hide(now, unloading);
    }

    fn build(&mut self, kind: &str, fields: &str, context: &str, at: u64) -> (String, String) {
        self.session.touch(at);
        let id = ids::uuid_v4(&self.rng);
        let mut e = String::with_capacity(fields.len() + context.len() + self.traits.len() + 400);
        e.push('{');
        push_key(&mut e, "type");
        push_str(&mut e, kind);
        push_key(&mut e, "messageId");
        push_str(&mut e, &id);
        push_key(&mut e, "anonymousId");
        push_str(&mut e, &self.anonymous_id);
        // An alias names its own userId among its fields.
        if let Some(u) = self.user_id.as_ref().filter(|_| kind != "alias") {
            push_key(&mut e, "userId");
            push_str(&mut e, u);
        }
        push_key(&mut e, "timestamp");
        push_str(&mut e, &iso8601(at));
        push_members(&mut e, members(fields));
        push_key(&mut e, "context");
        e.push('{');
        push_members(&mut e, members(context));
        push_key(&mut e, "library");
        e.push('{');
        push_key(&mut e, "name");
        push_str(&mut e, LIBRARY_NAME);
        push_key(&mut e, "version");
        push_str(&mut e, LIBRARY_VERSION);
        e.push('}');
        push_key(&mut e, "session");
        e.push('{');
        push_key(&mut e, "id");
        push_num(&mut e, self.session.id, 1);
        push_key(&mut e, "start");
        push_str(&mut e, &iso8601(self.session.id));
        e.push('}');
        push_key(&mut e, "traits");
        e.push('{');
        push_members(&mut e, members(&self.traits));
        e.push('}');
        push_key(&mut e, "consent");
        e.push('{');
        push_key(&mut e, "categoryPreferences");
        e.push_str(&self.preferences());
        e.push_str("}}}");
        (id, e)
    }

    /// `{"necessary":true,"analytics":false,…}`
    pub fn preferences(&self) -> String {
        let mut o = String::from("{");
        for (name, granted) in self.consent.preferences() {
            push_key(&mut o, name);
            o.push_str(if granted { "true" } else { "false" });
        }
        o.push('}');
        o
    }

    /// Applies the visitor's choices; returns unknown category names. A grant of `analytics`
    /// in opt-in mode starts storing (what waited in memory moves to storage, with its original
    /// timestamps); a denial before any grant discards it. Every change that may be recorded
    /// is sent as a `Consent Updated` track event.
    pub fn set_consent(
        &mut self,
        choices: &[(String, bool)],
        context: &str,
        at: u64,
    ) -> Vec<String> {
        let unknown = self.consent.set(choices);
        if self.consent.granted(ANALYTICS) && !self.delivery.store.is_open() {
            // What waited in memory was stamped with the consent of its time (analytics not
            // granted, which the collector drops); it goes out under the consent just given.
            let preferences = self.preferences();
            self.delivery
                .rewrite(|event| json::with_last_object(event, &preferences));
            self.delivery.store.open();
            self.delivery.reload();
        }
        if !self.delivery.store.is_open() {
            self.delivery.store.discard();
            self.delivery.reload();
            return unknown;
        }
        self.delivery.enabled = true;
        self.delivery.store.set(CONSENT_KEY, &self.consent.encode());
        self.persist();
        let mut fields = String::from("{\"event\":\"Consent Updated\",\"properties\":{");
        push_key(&mut fields, "categoryPreferences");
        fields.push_str(&self.preferences());
        fields.push_str("}}");
        let (id, json) = self.build("track", &fields, context, at);
        self.delivery.enqueue(at, &id, &json);
        self.delivery.request_flush();
        unknown
    }

    /// Writes identity and session; before consent in opt-in mode this reaches only memory and
    /// the cookie is left alone.
    fn persist(&self) {
        let s = &self.delivery.store;
        s.set(AID_KEY, &self.anonymous_id);
        match &self.user_id {
            Some(u) => {
                s.set(UID_KEY, u);
            }
            None => s.remove(UID_KEY),
        }
        s.set(TRAITS_KEY, &self.traits);
        s.set(SESSION_KEY, &self.session.encode());
        if s.is_open() {
            self.cookies.set(AID_COOKIE, &self.anonymous_id);
        }
    }
}
