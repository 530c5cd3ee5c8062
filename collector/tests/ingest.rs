//! Ingestion through the router: real clients' captured requests, every error case of the
//! contract, consent, suppression, CORS, admin reads and metrics.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use seam_collector::admission::Admission;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Collector, WRITE_KEY, basic, captures, gzip};

fn track(id: &str, user: &str) -> Value {
    json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": id,
           "properties": {"sku": "42"}})
}

#[tokio::test]
async fn captured_requests_of_real_clients_are_stored_once_even_when_replayed() {
    let collector = Collector::start();
    let captures = captures();
    let expected: usize = captures.iter().map(|c| c.message_count()).sum();
    for round in 0..2 {
        for capture in &captures {
            let answer = collector.send(capture.request()).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{} round {round}: {}",
                capture.client,
                answer.body
            );
            assert_eq!(answer.body, r#"{"success":true}"#, "{}", capture.client);
        }
        let stored = collector.events_of_user("user-1").await;
        assert_eq!(
            stored.len(),
            expected,
            "round {round}: every captured message exactly once"
        );
    }
    assert_eq!(
        collector.metric("seam_events_accepted_total").await,
        expected as f64
    );
    assert_eq!(
        collector.metric("seam_events_deduplicated_total").await,
        expected as f64
    );

    let stored = collector.events_of_user("user-1").await;
    let seqs: Vec<u64> = stored
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    for event in &stored {
        for field in ["messageId", "type", "timestamp", "receivedAt"] {
            assert!(event[field].is_string(), "{field} missing in {event}");
        }
        assert!(
            event.get("anonymousId").is_none_or(Value::is_string),
            "explicit null dropped: {event}"
        );
        assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // RudderStack's Node client: originalTimestamp + sentAt → corrected timestamp, kept original.
    let order = stored
        .iter()
        .find(|e| e["messageId"] == "60062d5a-f34f-4044-a650-a8209f4feea4")
        .expect("rudderstack order stored");
    assert_eq!(order["originalTimestamp"], "2026-11-22T22:16:28.361Z");
    assert_eq!(order["sentAt"], "2026-11-22T22:16:28.397Z");
    assert_eq!(order["event"], "Order Completed");
}

#[tokio::test]
async fn beacon_with_write_key_in_a_text_plain_body_is_accepted() {
    let collector = Collector::start();
    let body = json!({"batch": [track("m1", "u1")], "writeKey": WRITE_KEY, "sentAt": "2026-11-23T10:00:00.000Z"});
    let answer = collector
        .send(
            Request::post("/v1/batch")
                .header("content-type", "text/plain;charset=UTF-8")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(collector.events_of_user("u1").await.len(), 1);
}

/// A POST as a browser's `fetch` or `sendBeacon` sends it: a JSON text labelled `text/plain`,
/// no `Authorization` header.
fn browser_post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "text/plain")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn analytics_js_endpoint_names_are_accepted() {
    let collector = Collector::start();
    // analytics.js posts each call to the first letter of its type, and batches to `/b`.
    let calls = [
        (
            "/v1/t",
            json!({"type": "track", "event": "Clicked", "userId": "js1", "messageId": "t1"}),
        ),
        (
            "/v1/i",
            json!({"type": "identify", "userId": "js1", "messageId": "i1"}),
        ),
        (
            "/v1/p",
            json!({"type": "page", "name": "Home", "userId": "js1", "messageId": "p1"}),
        ),
        (
            "/v1/s",
            json!({"type": "screen", "name": "Cart", "userId": "js1", "messageId": "s1"}),
        ),
        (
            "/v1/g",
            json!({"type": "group", "groupId": "g1", "userId": "js1", "messageId": "g1"}),
        ),
        (
            "/v1/a",
            json!({"type": "alias", "previousId": "old", "userId": "js1", "messageId": "a1"}),
        ),
    ];
    for (path, mut body) in calls {
        body["writeKey"] = json!(WRITE_KEY);
        let answer = collector.send(browser_post(path, &body)).await;
        assert_eq!(answer.body, r#"{"success":true}"#, "{path}");
    }
    // With its batching strategy, analytics.js puts the write key in each message too.
    let with_key = |mut m: Value| {
        m["writeKey"] = json!(WRITE_KEY);
        m
    };
    let batch = json!({"writeKey": WRITE_KEY, "sentAt": "2026-11-23T10:00:00.000Z",
        "batch": [with_key(track("b1", "js1")), with_key(track("b2", "js1"))]});
    let answer = collector.send(browser_post("/v1/b", &batch)).await;
    assert_eq!(answer.body, r#"{"success":true}"#);
    let import = json!({"writeKey": WRITE_KEY, "batch": [track("im1", "js1")]});
    let answer = collector.send(browser_post("/v1/import", &import)).await;
    assert_eq!(
        answer.body, r#"{"success":true}"#,
        "the batch endpoint's old name"
    );
    let stored = collector.events_of_user("js1").await;
    assert!(
        stored.iter().all(|e| e.get("writeKey").is_none()),
        "no stored event keeps the write key: {stored:?}"
    );
    let mut types: Vec<String> = stored
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "alias", "group", "identify", "page", "screen", "track", "track", "track", "track"
        ]
    );
    // The short name implies the type as the long one does.
    let page = json!({"type": "page", "name": "x", "userId": "js1", "writeKey": WRITE_KEY});
    let answer = collector.send(browser_post("/v1/t", &page)).await;
    assert_eq!(answer.json()["rejected"][0]["code"], "invalid_type");
    let answer = collector.send(browser_post("/v1/x", &page)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_beacon_with_the_write_key_in_the_query_string_is_accepted() {
    let collector = Collector::start();
    // RudderStack's browser SDK sends its beacons this way: the key in the URL, the body a bare
    // batch.
    let body = json!({"batch": [track("q1", "beacon-user")]});
    let answer = collector
        .send(browser_post(
            &format!("/beacon/v1/batch?writeKey={WRITE_KEY}"),
            &body,
        ))
        .await;
    assert_eq!(answer.body, r#"{"success":true}"#);
    assert_eq!(collector.events_of_user("beacon-user").await.len(), 1);

    let wrong = collector
        .send(browser_post("/beacon/v1/batch?writeKey=nope%21", &body))
        .await;
    assert!(
        wrong
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized")
            .contains("nope!"),
        "the key is read percent-decoded and named"
    );
    let empty = collector
        .send(browser_post("/beacon/v1/batch?writeKey=", &body))
        .await;
    assert!(
        empty
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized")
            .contains("query parameter")
    );
    let twice = collector
        .send(browser_post(
            &format!("/beacon/v1/batch?writeKey={WRITE_KEY}&writeKey=other"),
            &body,
        ))
        .await;
    assert!(
        twice
            .assert_error(StatusCode::BAD_REQUEST, "invalid_query")
            .contains("writeKey")
    );
    assert_eq!(collector.events_of_user("beacon-user").await.len(), 1);
}

#[tokio::test]
async fn single_message_endpoints_store_their_type() {
    let collector = Collector::start();
    let answer = collector
        .post(
            "/v1/identify",
            &json!({"userId": "u9", "traits": {"email": "a@b.c"}, "messageId": "i1"}),
        )
        .await;
    assert_eq!(answer.body, r#"{"success":true}"#);
    let answer = collector
        .post("/v1/page", &json!({"anonymousId": "a9", "name": "Home", "messageId": "p1", "writeKey": "ignored-when-basic"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = collector.events_of_user("u9").await;
    assert_eq!(events[0]["type"], "identify");
    let pages = collector.events_of("anonymous_id", "a9").await;
    assert_eq!(pages[0]["type"], "page");
    assert!(
        pages[0].get("writeKey").is_none(),
        "the write key is not part of the event"
    );
    let mismatch = collector
        .post(
            "/v1/track",
            &json!({"type": "page", "userId": "u", "name": "x"}),
        )
        .await;
    assert_eq!(mismatch.json()["rejected"][0]["code"], "invalid_type");
}

#[tokio::test]
async fn unknown_or_missing_write_key_is_401_and_stores_nothing() {
    let collector = Collector::start();
    let body = json!({"batch": [track("m1", "u1")]});
    let unknown = collector
        .send(
            Request::post("/v1/batch")
                .header("authorization", basic("nope"))
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert!(
        unknown
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized")
            .contains("nope")
    );
    let missing = collector
        .send(
            Request::post("/v1/batch")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert!(
        missing
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized")
            .contains("writeKey")
    );
    let in_body = json!({"batch": [track("m1", "u1")], "writeKey": "wrong"});
    let wrong = collector
        .send(
            Request::post("/v1/batch")
                .body(Body::from(in_body.to_string()))
                .unwrap(),
        )
        .await;
    wrong.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(collector.events_of_user("u1").await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_json_or_not_a_batch_is_400_naming_the_problem() {
    let collector = Collector::start();
    let send = |body: &'static str| {
        Request::post("/v1/batch")
            .header("authorization", basic(WRITE_KEY))
            .body(Body::from(body))
            .unwrap()
    };
    let msg = collector
        .send(send("{\"batch\": ["))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert!(msg.contains("not valid JSON"), "{msg}");
    let msg = collector
        .send(send("[1,2]"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    assert!(msg.contains("batch"), "{msg}");
    let msg = collector
        .send(send("{\"events\": []}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    assert!(msg.contains("missing field `batch`"), "{msg}");
    let msg = collector
        .send(send("{\"batch\": {}}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    assert!(msg.contains("sequence"), "{msg}");
    let gz = Request::post("/v1/batch")
        .header("authorization", basic(WRITE_KEY))
        .header("content-encoding", "gzip")
        .body(Body::from("not gzip at all"))
        .unwrap();
    collector
        .send(gz)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_gzip");
    let br = Request::post("/v1/batch")
        .header("authorization", basic(WRITE_KEY))
        .header("content-encoding", "br")
        .body(Body::from("{}"))
        .unwrap();
    collector
        .send(br)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding");
}

#[tokio::test]
async fn a_batch_over_500_kb_is_413_even_when_gzip_makes_it_small() {
    let collector = Collector::start();
    let big: Vec<Value> = (0..200)
        .map(|i| {
            json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("m{i}"),
                        "properties": {"pad": "x".repeat(3000)}})
        })
        .collect();
    let body = json!({"batch": big}).to_string();
    assert!(body.len() > 500 * 1024);
    let plain = collector
        .send(
            Request::post("/v1/batch")
                .header("authorization", basic(WRITE_KEY))
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert!(
        plain
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            .contains("500 KB")
    );
    // A gzip bomb: 50 MB of zeros in about 50 KB.
    let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
    assert!(bomb.len() < 500 * 1024);
    let answer = collector
        .send(
            Request::post("/v1/batch")
                .header("authorization", basic(WRITE_KEY))
                .header("content-encoding", "gzip")
                .body(Body::from(bomb))
                .unwrap(),
        )
        .await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(collector.events_of_user("u").await.is_empty());
}

#[tokio::test]
async fn invalid_messages_are_listed_and_kept_while_their_valid_neighbours_are_stored() {
    let collector = Collector::start();
    let batch = json!({"batch": [
        track("ok-1", "u1"),
        {"event": "No Type", "userId": "u1"},
        {"type": "track", "userId": "u1"},
        {"type": "track", "event": "Nobody"},
        {"type": "track", "event": "Big", "userId": "u1", "properties": {"pad": "x".repeat(33 * 1024)}},
        {"type": "track", "event": 42, "userId": "u1"},
        {"type": "identify", "userId": "u1", "traits": "not an object"},
        {"type": "track", "event": "Clock", "userId": "u1", "timestamp": "yesterday"},
        "not an object",
        {"type": "teleport", "userId": "u1"},
        track("ok-2", "u1"),
    ]});
    let answer = collector.post("/v1/batch", &batch).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["success"], true);
    let rejected = rejected_codes(&body);
    let expected = [
        (1, "missing_type"),
        (2, "missing_event"),
        (3, "missing_identity"),
        (4, "message_too_large"),
        (5, "invalid_field"),
        (6, "invalid_field"),
        (7, "invalid_timestamp"),
        (8, "invalid_message"),
        (9, "invalid_type"),
    ];
    assert_eq!(
        rejected,
        expected
            .iter()
            .map(|(i, c)| (*i, c.to_string()))
            .collect::<Vec<_>>()
    );
    for r in body["rejected"].as_array().unwrap() {
        assert!(!r["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        message_ids_of_user(&collector, "u1").await,
        ["ok-2", "ok-1"]
    );

    // Nothing silently lost: each refused message is kept as sent.
    let failed = collector.admin_get("/v1/failed?limit=100").await.json();
    let failed = failed["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), expected.len());
    let no_event = failed
        .iter()
        .find(|f| f["code"] == "missing_event")
        .expect("kept");
    assert_eq!(
        serde_json::from_str::<Value>(no_event["raw"].as_str().unwrap()).unwrap(),
        batch["batch"][2]
    );
    assert_eq!(no_event["write_key"], WRITE_KEY);
    assert!(no_event["message"].as_str().unwrap().contains("event"));
    assert_eq!(
        collector.metric("seam_events_rejected_total").await,
        expected.len() as f64
    );
}

/// The (index, code) of each message an answer lists as rejected.
fn rejected_codes(answer: &Value) -> Vec<(u64, String)> {
    answer["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The messageIds of a user's stored events, newest first.
async fn message_ids_of_user(collector: &Collector, user: &str) -> Vec<String> {
    collector
        .events_of_user(user)
        .await
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// POSTs a batch written as text, byte for byte, with the write key as HTTP Basic user name.
async fn post_text(collector: &Collector, body: String) -> support::Answer {
    collector
        .send(
            Request::post("/v1/batch")
                .header("authorization", basic(WRITE_KEY))
                .body(Body::from(body))
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn refused_messages_are_kept_as_sent_and_one_the_parser_refuses_costs_only_itself() {
    let collector = Collector::start();
    // Written by hand: spaces and escapes as a client sent them.
    let refused = r#"{ "type" : "track",  "userId": "u1", "note": "caf\u00e9" }"#;
    let body = format!(
        r#"{{"batch": [{ok1}, {refused}, "not an object", {ok2}]}}"#,
        ok1 = track("ok-1", "u1"),
        ok2 = track("ok-2", "u1"),
    );
    let answer = post_text(&collector, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        rejected_codes(&answer.json()),
        [(1, "missing_event".into()), (2, "invalid_message".into())]
    );
    let failed = collector.admin_get("/v1/failed?limit=10").await.json();
    let raws: Vec<&str> = failed["failed"]
        .as_array()
        .expect("failed list")
        .iter()
        .map(|f| f["raw"].as_str().unwrap())
        .collect();
    assert_eq!(raws, ["\"not an object\"", refused], "kept byte for byte");

    // A number past f64 fails the parser; the other messages are stored all the same.
    let body = format!(
        r#"{{"batch": [{ok3}, {{"type": "track", "event": "E", "userId": "u1", "n": 1e400}}]}}"#,
        ok3 = track("ok-3", "u1"),
    );
    let answer = post_text(&collector, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        rejected_codes(&answer.json()),
        [(1, "invalid_message".into())]
    );
    assert_eq!(
        message_ids_of_user(&collector, "u1").await,
        ["ok-3", "ok-2", "ok-1"]
    );
}

#[tokio::test]
async fn events_without_analytics_consent_are_not_stored_but_the_consent_change_is() {
    let collector = Collector::start();
    let denied = json!({"categoryPreferences": {"analytics": false, "marketing": false}});
    let granted = json!({"categoryPreferences": {"analytics": true}});
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "p1", "context": {"consent": denied}},
        {"type": "track", "anonymousId": "a1", "event": "Consent Updated", "messageId": "c1",
         "properties": denied, "context": {"consent": denied}},
        {"type": "track", "anonymousId": "a1", "event": "Added", "messageId": "t1", "context": {"consent": granted}},
        {"type": "track", "anonymousId": "a1", "event": "No consent info", "messageId": "t2"},
    ]});
    let answer = collector.post("/v1/batch", &batch).await;
    assert_eq!(answer.body, r#"{"success":true}"#);
    let stored = collector.events_of("anonymous_id", "a1").await;
    let ids: Vec<&str> = stored
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t2", "t1", "c1"]);
    assert_eq!(
        collector.metric("seam_events_consent_dropped_total").await,
        1.0
    );
}

#[tokio::test]
async fn rudderstack_consent_that_denies_analytics_keeps_the_event_out_too() {
    let collector = Collector::start();
    // As RudderStack's SDK records consent on each event when consent management is on.
    let record = |denied: &[&str]| {
        json!({"consentManagement": {"provider": "custom", "resolutionStrategy": "and",
            "allowedConsentIds": ["necessary"], "deniedConsentIds": denied}})
    };
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "r1", "name": "Home", "messageId": "denied",
         "context": record(&["marketing", " Analytics "])},
        {"type": "track", "anonymousId": "r1", "event": "Consent Management Interaction",
         "messageId": "change", "context": record(&["analytics"])},
        {"type": "track", "anonymousId": "r1", "event": "Viewed", "messageId": "other-ids",
         "context": record(&["C0002", "marketing"])},
        {"type": "track", "anonymousId": "r1", "event": "Viewed", "messageId": "not-a-list",
         "context": {"consentManagement": {"deniedConsentIds": "analytics"}}},
    ]});
    let answer = collector.post("/v1/batch", &batch).await;
    assert_eq!(answer.body, r#"{"success":true}"#);
    let stored = collector.events_of("anonymous_id", "r1").await;
    let mut ids: Vec<&str> = stored
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["change", "not-a-list", "other-ids"]);
    assert_eq!(
        collector.metric("seam_events_consent_dropped_total").await,
        1.0
    );
}

struct Erased(&'static str, &'static str);

impl Admission for Erased {
    fn is_suppressed(&self, id_type: &str, value: &str) -> bool {
        id_type == self.0 && value == self.1
    }
}

#[tokio::test]
async fn events_of_erased_identifiers_are_refused_and_counted() {
    let mut collector = Collector::start();
    collector.state = collector
        .state
        .clone()
        .with_admission(Arc::new(Erased("email", "gone@example.com")));
    let batch = json!({"batch": [
        {"type": "identify", "userId": "u-gone", "traits": {"email": "  Gone@Example.com "}, "messageId": "i1"},
        {"type": "identify", "userId": "u-kept", "traits": {"email": "kept@example.com"}, "messageId": "i2"},
    ]});
    assert_eq!(
        collector.post("/v1/batch", &batch).await.status,
        StatusCode::OK
    );
    assert!(collector.events_of_user("u-gone").await.is_empty());
    assert_eq!(collector.events_of_user("u-kept").await.len(), 1);
    assert_eq!(collector.metric("seam_events_suppressed_total").await, 1.0);

    collector.state = collector
        .state
        .clone()
        .with_admission(Arc::new(Erased("anonymous_id", "a-gone")));
    let alias =
        json!({"type": "alias", "userId": "u-new", "previousId": "a-gone", "messageId": "al1"});
    assert_eq!(
        collector.post("/v1/alias", &alias).await.status,
        StatusCode::OK
    );
    assert!(collector.events_of_user("u-new").await.is_empty());
}

#[tokio::test]
async fn device_clock_skew_is_corrected_from_sent_at() {
    let collector = Collector::start();
    // The device clock is one hour fast: the event happened 2 s before it was sent.
    let batch = json!({"batch": [{"type": "track", "event": "E", "userId": "skew", "messageId": "s1",
        "timestamp": "2030-01-01T11:00:00.000Z"}], "sentAt": "2030-01-01T11:00:02.000Z"});
    collector.post("/v1/batch", &batch).await;
    let event = &collector.events_of_user("skew").await[0];
    let received =
        seam_collector::message::parse_time(event["receivedAt"].as_str().unwrap()).unwrap();
    let timestamp =
        seam_collector::message::parse_time(event["timestamp"].as_str().unwrap()).unwrap();
    let lag = (received - timestamp).whole_milliseconds();
    assert!(
        (2000..2500).contains(&lag),
        "timestamp {lag} ms before receipt"
    );
    assert_eq!(event["originalTimestamp"], "2030-01-01T11:00:00.000Z");
}

#[tokio::test]
async fn cors_preflight_and_origins_follow_each_sources_configuration() {
    let collector = Collector::with_shop_source();
    let preflight = |origin: &str| {
        Request::options("/v1/batch")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = collector.send(preflight("https://shop.example")).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(
        ok.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        ok.header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let evil = collector.send(preflight("https://evil.example")).await;
    evil.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");

    let post = |origin: &str| {
        Request::post("/v1/batch")
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(Body::from(
                json!({"batch": [track("c1", "cors-user")], "writeKey": "shop-key"}).to_string(),
            ))
            .unwrap()
    };
    let refused = collector.send(post("https://evil.example")).await;
    refused.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    let accepted = collector.send(post("https://shop.example")).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(
        accepted.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    // A browser SDK can only honour Retry-After (from this collector or a proxy) if it may read it.
    assert_eq!(
        accepted.header("access-control-expose-headers"),
        Some("Retry-After")
    );
}

#[tokio::test]
async fn without_configured_origins_any_site_may_send() {
    let collector = Collector::start();
    let answer = collector
        .send(
            Request::options("/v1/batch")
                .header("origin", "https://any.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://any.example")
    );
}

#[tokio::test]
async fn admin_reads_need_the_bearer_token() {
    let collector = Collector::start();
    let none = collector
        .send(
            Request::get("/v1/events?user_id=u")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    none.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = collector
        .send(
            Request::get("/v1/failed")
                .header("authorization", "Bearer guess")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    wrong.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let no_id = collector.admin_get("/v1/events").await;
    no_id.assert_error(StatusCode::BAD_REQUEST, "missing_identifier");
    let bad_cursor = collector.admin_get("/v1/events?user_id=u&cursor=zzz").await;
    bad_cursor.assert_error(StatusCode::BAD_REQUEST, "invalid_cursor");
    let bad_limit = collector.admin_get("/v1/events?user_id=u&limit=-1").await;
    assert!(
        bad_limit
            .assert_error(StatusCode::BAD_REQUEST, "invalid_limit")
            .contains("-1")
    );
}

#[tokio::test]
async fn timeline_pages_through_every_event_newest_first() {
    let collector = Collector::start();
    let batch: Vec<Value> = (0..120).map(|i| track(&format!("m{i}"), "pager")).collect();
    collector.post("/v1/batch", &json!({"batch": batch})).await;
    let events = collector.events_of_user("pager").await;
    assert_eq!(events.len(), 120);
    assert_eq!(events[0]["messageId"], "m119");
    assert_eq!(events[119]["messageId"], "m0");
}

#[tokio::test]
async fn metrics_and_health_answer() {
    let collector = Collector::start();
    collector
        .post("/v1/batch", &json!({"batch": [track("m1", "u")]}))
        .await;
    let health = collector
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(collector.metric("seam_events_accepted_total").await, 1.0);
    assert_eq!(collector.metric("seam_store_events").await, 1.0);
    assert_eq!(collector.metric("seam_writer_queue_depth").await, 0.0);
    assert!(collector.metric("seam_store_bytes").await > 0.0);
    assert_eq!(
        collector
            .metric("seam_ingest_request_duration_seconds_count")
            .await,
        1.0
    );
    assert_eq!(
        collector
            .metric("seam_store_commit_duration_seconds_count")
            .await,
        1.0,
        "the one batch was one group commit"
    );
    assert!(
        collector
            .metric("seam_store_commit_duration_seconds_sum")
            .await
            > 0.0
    );
}

#[tokio::test]
async fn the_sdk_is_served_with_content_types_caching_and_cross_origin_access() {
    let sdk = seam_collector::store::conformance::TempDir::new("sdk-dir");
    std::fs::write(sdk.0.join("seam.js"), "export {}").unwrap();
    std::fs::write(sdk.0.join("seam_sdk_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let collector = Collector::with(|mut c| {
        c.sdk_dir = sdk.0.clone();
        c
    });
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let js = collector.send(get("/sdk/seam.js")).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(js.header("access-control-allow-origin"), Some("*"));
    let wasm = collector.send(get("/sdk/seam_sdk_bg.wasm")).await;
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm.header("cache-control"), Some("public, max-age=86400"));
    assert_eq!(
        collector.send(get("/sdk/missing.js")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn past_the_index_lag_bound_requests_get_503_overloaded_with_retry_after() {
    // A bound of zero lag: the store is past it from the start.
    let collector = Collector::with_limits(seam_collector::store::sqlite::Limits {
        max_queued_events: 50_000,
        max_index_lag_events: 0,
        ..Default::default()
    });
    let answer = collector
        .post("/v1/batch", &json!({"batch": [track("m1", "u")]}))
        .await;
    let message = answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert!(message.contains("index"), "says which bound: {message}");
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(
        collector.metric("seam_requests_overloaded_total").await,
        1.0
    );
    assert_eq!(collector.metric("seam_requests_refused_total").await, 0.0);
    assert!(
        collector.events_of_user("u").await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_is_stored() {
    let collector = Collector::with(|mut c| {
        c.trusted_proxies = vec!["10.0.0.0/8".into()];
        c
    });
    // The visitor forged 1.1.1.1; the proxy appended the address it saw.
    let answer = collector
        .post_via(
            "/v1/batch",
            &json!({"batch": [track("m1", "u")]}),
            "10.0.0.2:40000",
            &["1.1.1.1, 203.0.113.5"],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let stored = collector.events_of_user("u").await;
    assert_eq!(stored[0]["context"]["ip"], "203.0.113.5");
}

#[tokio::test]
async fn without_trusted_proxies_a_forged_forwarded_for_is_ignored() {
    let collector = Collector::start();
    let answer = collector
        .post_via(
            "/v1/batch",
            &json!({"batch": [track("m1", "u")]}),
            "198.51.100.7:40000",
            &["1.1.1.1"],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let stored = collector.events_of_user("u").await;
    assert_eq!(stored[0]["context"]["ip"], "198.51.100.7");
}

fn settings_request(key: &str, host: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::get(format!("/v1/projects/{key}/settings"));
    match host {
        Some(h) => builder.header("host", h),
        None => builder,
    }
}

#[tokio::test]
async fn analytics_js_settings_point_it_at_the_collector_and_nowhere_else() {
    let collector = Collector::start();
    let answer = collector
        .send(
            settings_request(WRITE_KEY, Some("127.0.0.1:8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("private, max-age=300"));
    let settings = answer.json();
    let integrations = settings["integrations"].as_object().unwrap();
    assert_eq!(
        integrations.keys().collect::<Vec<_>>(),
        ["Segment.io"],
        "no destination besides the collector"
    );
    assert_eq!(
        settings["integrations"]["Segment.io"],
        json!({"apiKey": WRITE_KEY, "apiHost": "127.0.0.1:8080/v1", "protocol": "http"})
    );
    assert_eq!(settings["metrics"]["sampleRate"], 0);
    assert_eq!(settings["remotePlugins"], json!([]));

    // Behind a trusted proxy that says the visitor came over https; an untrusted peer saying
    // so is not believed.
    let via = |peer: &str| {
        let mut request = settings_request(WRITE_KEY, Some("cdp.shop.example"))
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
    };
    let proxied = Collector::with(|mut c| {
        c.trusted_proxies = vec!["10.0.0.0/8".into()];
        c
    });
    let trusted = proxied.send(via("10.1.2.3:5000")).await.json();
    assert_eq!(trusted["integrations"]["Segment.io"]["protocol"], "https");
    assert_eq!(
        trusted["integrations"]["Segment.io"]["apiHost"],
        "cdp.shop.example/v1"
    );
    let forged = proxied.send(via("203.0.113.9:5000")).await.json();
    assert_eq!(forged["integrations"]["Segment.io"]["protocol"], "http");
}

#[tokio::test]
async fn with_a_public_url_the_settings_name_it_whatever_the_host_header_says() {
    let collector = Collector::with(|mut c| {
        c.public_url = Some("https://cdp.shop.example/seam/".into());
        c
    });
    let answer = collector
        .send(
            settings_request(WRITE_KEY, Some("evil.example"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(
        answer.header("vary"),
        Some("Origin"),
        "a shared cache keeps one answer per origin"
    );
    assert_eq!(
        answer.json()["integrations"]["Segment.io"],
        json!({"apiKey": WRITE_KEY, "apiHost": "cdp.shop.example/seam/v1", "protocol": "https"})
    );
}

#[tokio::test]
async fn settings_refuse_unknown_keys_foreign_origins_and_hosts_that_are_not_hosts() {
    let collector = Collector::start();
    let unknown = collector
        .send(
            settings_request("no-such-key", Some("localhost"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let message = unknown.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(message.contains("no-such-key"), "{message}");
    for host in [None, Some("evil.example\"><script>")] {
        let answer = collector
            .send(
                settings_request(WRITE_KEY, host)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let message = answer.assert_error(StatusCode::BAD_REQUEST, "invalid_host");
        assert!(message.contains("--public-url"), "{message}");
    }

    let collector = Collector::with_shop_source();
    let from = |origin: &str| {
        settings_request("shop-key", Some("cdp.shop.example"))
            .header("origin", origin)
            .body(Body::empty())
            .unwrap()
    };
    let ok = collector.send(from("https://shop.example")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    collector
        .send(from("https://elsewhere.example"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
}

#[test]
fn a_bad_public_url_stops_start_up_naming_the_setting() {
    let mut config = seam_collector::Config::new("/nonexistent");
    config.public_url = Some("cdp.shop.example".into());
    let err = seam_collector::Sources::load(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("--public-url: `cdp.shop.example` does not start with http"),
        "{err}"
    );
}

#[tokio::test]
async fn rudderstack_source_config_takes_the_key_from_the_query_or_basic_auth() {
    let collector = Collector::start();
    let get = |uri: String, auth: Option<String>| {
        let mut builder = Request::get(uri);
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        builder.body(Body::empty()).unwrap()
    };
    for request in [
        get(
            format!("/sourceConfig/?p=npm&v=3.34.1&writeKey={WRITE_KEY}"),
            None,
        ),
        get("/sourceConfig".into(), Some(basic(WRITE_KEY))),
    ] {
        let answer = collector.send(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let config = answer.json();
        assert_eq!(config["source"]["writeKey"], WRITE_KEY);
        assert_eq!(config["source"]["enabled"], true);
        assert_eq!(config["source"]["destinations"], json!([]));
        assert_eq!(
            config["source"]["config"]["statsCollection"],
            json!({"errors": {"enabled": false}, "metrics": {"enabled": false}}),
            "the SDK reports nothing to RudderStack"
        );
    }
    let missing = collector.send(get("/sourceConfig/".into(), None)).await;
    let message = missing.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(message.contains("missing write key"), "{message}");
    collector
        .send(get("/sourceConfig/?writeKey=nope".into(), None))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
