//! The tracker natively: Segment Spec events, identity across reset, opt-in gating, Global
//! Privacy Control and the consent record.

use seam_sdk_core::consent::{DEFAULT_CATEGORIES, Mode};
use seam_sdk_core::delivery::Config;
use seam_sdk_core::storage::{MemoryStorage, Storage};
use seam_sdk_core::testing::{CountingRandom, FakeNetwork};
use seam_sdk_core::tracker::{AID_COOKIE, Settings, Tracker};
use serde_json::Value;

struct Site {
    local: MemoryStorage,
    cookies: MemoryStorage,
    net: FakeNetwork,
}

type T = Tracker<MemoryStorage, MemoryStorage, FakeNetwork, CountingRandom>;

impl Site {
    fn new() -> Self {
        Site {
            local: MemoryStorage::default(),
            cookies: MemoryStorage::default(),
            net: FakeNetwork::default(),
        }
    }

    fn load(&self, mode: Mode, gpc: bool, seed: u64) -> T {
        let rng = CountingRandom::default();
        rng.0.set(seed);
        Tracker::new(
            Settings {
                write_key: "wk".into(),
                mode,
                categories: DEFAULT_CATEGORIES.iter().map(|c| c.to_string()).collect(),
                gpc,
                delivery: Config::default(),
            },
            self.local.clone(),
            self.cookies.clone(),
            self.net.clone(),
            rng,
            1_000_000,
        )
    }

    /// Every event sent so far, by request or beacon.
    fn sent(&self) -> Vec<Value> {
        let bodies: Vec<String> = self
            .net
            .sent
            .borrow()
            .iter()
            .map(|s| s.body.clone())
            .chain(self.net.beacons.borrow().iter().cloned())
            .collect();
        bodies
            .iter()
            .flat_map(|b| {
                let v: Value = serde_json::from_str(b).expect("JSON body");
                v["batch"].as_array().unwrap().clone()
            })
            .collect()
    }
}

const CONTEXT: &str =
    r#"{"page":{"path":"/kettles","url":"https://shop.example/kettles"},"userAgent":"UA"}"#;

fn flush(t: &mut T, now: u64) {
    t.delivery.request_flush();
    t.delivery.poll(now);
}

#[test]
fn events_carry_the_segment_spec_fields_and_the_known_user() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, false, 1);
    t.record(
        "track",
        r#"{"event":"Product Viewed","properties":{"sku":"KC-1"}}"#,
        CONTEXT,
        1_000_100,
    );
    t.set_user(Some("user-42".into()), Some(r#"{"email":"a@b.c"}"#.into()));
    t.record(
        "identify",
        r#"{"traits":{"email":"a@b.c"}}"#,
        CONTEXT,
        1_000_200,
    );
    flush(&mut t, 1_000_300);
    let events = site.sent();
    assert_eq!(events.len(), 2);
    let (track, identify) = (&events[0], &events[1]);
    assert_eq!(track["type"], "track");
    assert_eq!(track["event"], "Product Viewed");
    assert_eq!(track["properties"]["sku"], "KC-1");
    assert_eq!(track["timestamp"], "1970-01-01T00:16:40.100Z");
    assert_eq!(track["sentAt"], "1970-01-01T00:16:40.300Z");
    assert!(track.get("userId").is_none());
    assert_eq!(identify["userId"], "user-42");
    assert_eq!(identify["anonymousId"], track["anonymousId"]);
    assert_ne!(identify["messageId"], track["messageId"]);
    let ctx = &identify["context"];
    assert_eq!(ctx["page"]["path"], "/kettles");
    assert_eq!(ctx["userAgent"], "UA");
    assert_eq!(ctx["library"]["name"], "seam.js");
    assert_eq!(ctx["session"]["id"], 1_000_000);
    assert_eq!(ctx["traits"]["email"], "a@b.c");
    assert_eq!(ctx["consent"]["categoryPreferences"]["analytics"], true);
}

#[test]
fn identity_survives_a_reload_and_reset_starts_a_new_visitor() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, false, 1);
    let aid = t.anonymous_id().to_owned();
    assert_eq!(site.cookies.get(AID_COOKIE).as_deref(), Some(aid.as_str()));
    t.set_user(Some("user-42".into()), Some(r#"{"name":"Ada"}"#.into()));
    drop(t);
    let mut t = site.load(Mode::OptOut, false, 2);
    assert_eq!(t.anonymous_id(), aid);
    assert_eq!(t.user_id(), Some("user-42"));
    assert_eq!(t.traits(), r#"{"name":"Ada"}"#);
    t.reset(2_000_000);
    assert_ne!(t.anonymous_id(), aid);
    assert_eq!(t.user_id(), None);
    assert_eq!(t.traits(), "{}");
    assert_eq!(
        site.cookies.get(AID_COOKIE).as_deref(),
        Some(t.anonymous_id())
    );
}

#[test]
fn opt_in_holds_events_in_memory_then_sends_them_with_their_timestamps_on_grant() {
    let site = Site::new();
    let mut t = site.load(Mode::OptIn, false, 1);
    t.record("track", r#"{"event":"Early"}"#, CONTEXT, 1_000_100);
    flush(&mut t, 1_000_200);
    t.delivery.on_page_hide(1_000_300, true);
    assert!(
        site.local.is_empty(),
        "nothing stored: {:?}",
        site.local.keys()
    );
    assert!(site.cookies.is_empty());
    assert!(site.sent().is_empty());

    t.set_consent(&[("analytics".into(), true)], CONTEXT, 1_005_000);
    flush(&mut t, 1_005_000);
    let events = site.sent();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Early", "Consent Updated"]);
    assert_eq!(events[0]["timestamp"], "1970-01-01T00:16:40.100Z");
    assert_eq!(
        events[0]["context"]["consent"]["categoryPreferences"]["analytics"], true,
        "an event held before the grant goes out under the consent granted"
    );
    assert_eq!(
        events[1]["properties"]["categoryPreferences"]["analytics"],
        true
    );
    assert!(site.cookies.get(AID_COOKIE).is_some());
}

#[test]
fn opt_in_denial_discards_what_waited_and_sends_nothing() {
    let site = Site::new();
    let mut t = site.load(Mode::OptIn, false, 1);
    t.record("track", r#"{"event":"Early"}"#, CONTEXT, 1_000_100);
    t.set_consent(&[("analytics".into(), false)], CONTEXT, 1_000_200);
    t.record("track", r#"{"event":"Later"}"#, CONTEXT, 1_000_300);
    flush(&mut t, 1_000_400);
    t.delivery.on_page_hide(1_000_500, true);
    assert!(site.sent().is_empty());
    assert!(site.local.is_empty() && site.cookies.is_empty());
}

#[test]
fn opt_out_denial_is_recorded_once_then_tracking_stops() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, false, 1);
    t.set_consent(&[("analytics".into(), false)], CONTEXT, 1_000_100);
    t.record("track", r#"{"event":"After Opt Out"}"#, CONTEXT, 1_000_200);
    flush(&mut t, 1_000_300);
    let events = site.sent();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event"], "Consent Updated");
    assert_eq!(
        events[0]["properties"]["categoryPreferences"]["analytics"],
        false
    );
    drop(t);
    let mut t = site.load(Mode::OptOut, false, 2);
    t.record("track", r#"{"event":"Next Visit"}"#, CONTEXT, 1_100_000);
    flush(&mut t, 1_100_100);
    assert_eq!(site.sent().len(), 1, "the denial is remembered");
}

#[test]
fn global_privacy_control_denies_marketing_on_every_event() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, true, 1);
    t.set_consent(&[("marketing".into(), true)], CONTEXT, 1_000_100);
    flush(&mut t, 1_000_200);
    let events = site.sent();
    assert_eq!(
        events[0]["context"]["consent"]["categoryPreferences"]["marketing"],
        false
    );
    assert_eq!(
        t.preferences(),
        r#"{"necessary":true,"analytics":true,"marketing":false,"personalization":true}"#
    );
}

#[test]
fn a_new_session_starts_after_thirty_minutes_idle() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, false, 1);
    t.record("track", r#"{"event":"A"}"#, CONTEXT, 1_000_000);
    t.record(
        "track",
        r#"{"event":"B"}"#,
        CONTEXT,
        1_000_000 + 31 * 60 * 1000,
    );
    flush(&mut t, 3_000_000);
    let events = site.sent();
    assert_eq!(events[0]["context"]["session"]["id"], 1_000_000);
    assert_eq!(
        events[1]["context"]["session"]["id"],
        1_000_000 + 31 * 60 * 1000
    );
}

#[test]
fn alias_names_its_own_user_id_once() {
    let site = Site::new();
    let mut t = site.load(Mode::OptOut, false, 1);
    t.set_user(Some("old".into()), None);
    t.record(
        "alias",
        r#"{"userId":"new","previousId":"old"}"#,
        CONTEXT,
        1_000_100,
    );
    flush(&mut t, 1_000_200);
    let body = site.net.sent.borrow()[0].body.clone();
    assert_eq!(body.matches("\"userId\"").count(), 1, "{body}");
    assert_eq!(site.sent()[0]["userId"], "new");
}
