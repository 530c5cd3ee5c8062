//! The conformance suite every storage engine runs: an engine that passes it is
//! interchangeable with the others. Call [`run`] from the engine's tests with a function that
//! opens the engine on a directory (engines that ignore the directory may use it as a key).

use super::{Appended, FailedEvent, Identifiers, NewEvent, PageRequest, Store, StoredEvent, Write};
use serde_json::{Map, json};
use std::path::{Path, PathBuf};

/// Opens an engine whose data lives in (or is keyed by) the given directory.
pub type Open<'a> = &'a dyn Fn(&Path) -> Box<dyn Store>;

/// Runs every check; panics with the name of the first that fails.
pub async fn run(open: impl Fn(&Path) -> Box<dyn Store>) {
    let open: Open<'_> = &open;
    appended_events_get_growing_seqs_and_reach_subscribers_after_commit(open).await;
    a_retried_message_is_stored_once_per_write_key(open).await;
    events_and_dedup_survive_reopening(open).await;
    timeline_reads_newest_first_across_identifiers_with_cursor(open).await;
    replay_reads_everything_after_a_seq_in_order(open).await;
    erasure_deletes_every_event_of_the_identifiers(open).await;
    every_acknowledged_write_is_readable_at_once(open).await;
    a_shared_browser_s_next_user_is_neither_read_nor_erased_with_the_first(open).await;
    events_named_by_seq_are_read_and_erased_whatever_they_carry(open).await;
    failed_messages_are_kept_and_listed_newest_first(open).await;
    erasure_deletes_the_refused_messages_of_the_identifiers(open).await;
    erasure_deletes_the_refused_messages_that_hold_the_persons_email_or_phone(open).await;
    erasure_deletes_the_refused_messages_that_carry_the_persons_external_id(open).await;
    a_malformed_cursor_is_an_error(open).await;
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "seam-{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A normalised track event as the ingestion path would build it.
pub fn event(
    write_key: &str,
    message_id: &str,
    user: Option<&str>,
    anon: Option<&str>,
) -> NewEvent {
    let mut m = Map::new();
    m.insert("type".into(), json!("track"));
    m.insert("event".into(), json!("Product Viewed"));
    m.insert("messageId".into(), json!(message_id));
    if let Some(u) = user {
        m.insert("userId".into(), json!(u));
    }
    if let Some(a) = anon {
        m.insert("anonymousId".into(), json!(a));
    }
    m.insert(
        "properties".into(),
        json!({"sku": "42", "note": "ü \"quoted\""}),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    NewEvent::new(write_key, now, m)
}

pub fn write(events: Vec<NewEvent>) -> Write {
    Write {
        events,
        failed: Vec::new(),
    }
}

fn user_and_anonymous_id(user: &str, anon: &str) -> Identifiers {
    Identifiers {
        user_ids: vec![user.into()],
        anonymous_ids: vec![anon.into()],
        ..Default::default()
    }
}

pub fn message_ids(events: &[StoredEvent]) -> Vec<Option<&str>> {
    events.iter().map(StoredEvent::message_id).collect()
}

fn seqs(appended: &[Appended]) -> Vec<u64> {
    appended
        .iter()
        .map(|a| match a {
            Appended::Stored { seq } => *seq,
            Appended::Duplicate => panic!("unexpected duplicate in {appended:?}"),
        })
        .collect()
}

async fn appended_events_get_growing_seqs_and_reach_subscribers_after_commit(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let mut sub = store.subscribe();
    let a = seqs(
        &store
            .append(write(vec![
                event("k", "m1", Some("u1"), None),
                event("k", "m2", None, Some("a1")),
            ]))
            .await
            .expect("append"),
    );
    let b = seqs(
        &store
            .append(write(vec![event("k", "m3", Some("u1"), None)]))
            .await
            .expect("append"),
    );
    assert!(a[0] < a[1] && a[1] < b[0], "seqs must grow: {a:?} {b:?}");

    // Delivered soon after the append resolved, in commit order, with `seq` in the message.
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(10), sub.recv())
            .await
            .expect("committed events reach subscribers")
            .expect("subscribed");
        // A read made once a batch arrived sees its events.
        let last = batch.last().expect("a batch is never empty").seq;
        let read = store.events_after(0, 10).await.expect("read");
        assert!(
            read.iter().any(|e| e.seq == last),
            "seq {last} not readable yet"
        );
        got.extend(batch.iter().cloned());
    }
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [a[0], a[1], b[0]]
    );
    assert_eq!(got[0].message["seq"], json!(a[0]));
    assert_eq!(got[0].message_id(), Some("m1"));
    assert_eq!(got[1].anonymous_id(), Some("a1"));
    assert_eq!(got[0].message["properties"]["note"], json!("ü \"quoted\""));
    assert_eq!(got[0].write_key, "k");
    assert_eq!(store.stats().events, 3);
}

async fn a_retried_message_is_stored_once_per_write_key(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let first = store
        .append(write(vec![
            event("k", "m1", Some("u"), None),
            event("k", "m1", Some("u"), None),
        ]))
        .await
        .expect("append");
    assert!(matches!(first[0], Appended::Stored { .. }));
    assert_eq!(first[1], Appended::Duplicate, "same batch");
    let again = store
        .append(write(vec![
            event("k", "m1", Some("u"), None),
            event("other", "m1", Some("u"), None),
        ]))
        .await
        .expect("append");
    assert_eq!(again[0], Appended::Duplicate, "retry");
    assert!(
        matches!(again[1], Appended::Stored { .. }),
        "another write key is another source"
    );
    let ids = Identifiers {
        user_ids: vec!["u".into()],
        anonymous_ids: vec![],
        ..Default::default()
    };
    let page = store
        .events_for(&ids, PageRequest::default())
        .await
        .expect("read");
    assert_eq!(page.items.len(), 2);
}

async fn events_and_dedup_survive_reopening(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let before = {
        let store = open(&dir.0);
        seqs(
            &store
                .append(write(vec![event("k", "m1", Some("u"), None)]))
                .await
                .expect("append"),
        )
    };
    let store = open(&dir.0);
    let again = store
        .append(write(vec![
            event("k", "m1", Some("u"), None),
            event("k", "m2", Some("u"), None),
        ]))
        .await
        .expect("append");
    assert_eq!(
        again[0],
        Appended::Duplicate,
        "dedup must survive a restart"
    );
    let after = seqs(&again[1..]);
    assert!(after[0] > before[0], "seq keeps growing after restart");
    let all = store.events_after(0, 100).await.expect("replay");
    assert_eq!(message_ids(&all), [Some("m1"), Some("m2")]);
    assert_eq!(store.stats().events, 2);
}

async fn timeline_reads_newest_first_across_identifiers_with_cursor(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let mut expected = Vec::new();
    for i in 0..7 {
        let (u, a) = match i % 3 {
            0 => (Some("u1"), None),
            1 => (None, Some("a1")),
            _ => (Some("u1"), Some("a1")),
        };
        let s = seqs(
            &store
                .append(write(vec![event("k", &format!("m{i}"), u, a)]))
                .await
                .expect("append"),
        );
        expected.push(s[0]);
        // Noise that must not show up.
        store
            .append(write(vec![event(
                "k",
                &format!("n{i}"),
                Some("u2"),
                Some("a2"),
            )]))
            .await
            .expect("append");
    }
    expected.reverse();
    let ids = user_and_anonymous_id("u1", "a1");
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .events_for(
                &ids,
                PageRequest {
                    limit: 3,
                    cursor: cursor.clone(),
                },
            )
            .await
            .expect("page");
        assert!(page.items.len() <= 3);
        got.extend(page.items.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, expected, "newest first, each once, nothing else");
    let none = store
        .events_for(
            &Identifiers {
                user_ids: vec!["nobody".into()],
                anonymous_ids: vec![],
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .expect("read");
    assert!(none.items.is_empty() && none.next_cursor.is_none());
}

async fn replay_reads_everything_after_a_seq_in_order(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let batch: Vec<NewEvent> = (0..10)
        .map(|i| event("k", &format!("m{i}"), Some("u"), None))
        .collect();
    let s = seqs(&store.append(write(batch)).await.expect("append"));
    let tail = store.events_after(s[3], 4).await.expect("replay");
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        s[4..8].to_vec()
    );
    assert_eq!(tail[0].message["messageId"], json!("m4"));
    assert!(
        store
            .events_after(s[9], 10)
            .await
            .expect("replay")
            .is_empty()
    );
}

async fn erasure_deletes_every_event_of_the_identifiers(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    store
        .append(write(vec![
            event("k", "m1", Some("u1"), None),
            event("k", "m2", None, Some("a1")),
            event("k", "m3", Some("u1"), Some("a1")),
            event("k", "m4", Some("u2"), None),
        ]))
        .await
        .expect("append");
    let ids = user_and_anonymous_id("u1", "a1");
    assert_eq!(store.delete_events_for(&ids).await.expect("delete"), 3);
    assert!(
        store
            .events_for(&ids, PageRequest::default())
            .await
            .expect("read")
            .items
            .is_empty()
    );
    let left = store.events_after(0, 100).await.expect("replay");
    assert_eq!(message_ids(&left), [Some("m4")]);
    assert_eq!(store.stats().events, 1);
    assert_eq!(store.delete_events_for(&ids).await.expect("delete"), 0);
}

async fn a_shared_browser_s_next_user_is_neither_read_nor_erased_with_the_first(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    // One browser (anonymous ID `shared`): anonymous browsing, u1 logs in, then u2 logs in.
    store
        .append(write(vec![
            event("k", "anon", None, Some("shared")),
            event("k", "first", Some("u1"), Some("shared")),
            event("k", "next", Some("u2"), Some("shared")),
        ]))
        .await
        .expect("append");
    let first = user_and_anonymous_id("u1", "shared");
    let timeline = store
        .events_for(&first, PageRequest::default())
        .await
        .expect("read");
    assert_eq!(
        message_ids(&timeline.items),
        [Some("first"), Some("anon")],
        "u2's event on the shared browser is not u1's"
    );
    assert_eq!(store.delete_events_for(&first).await.expect("delete"), 2);
    let left = store.events_after(0, 100).await.expect("replay");
    assert_eq!(
        message_ids(&left),
        [Some("next")],
        "erasing u1 keeps u2's event"
    );
}

async fn events_named_by_seq_are_read_and_erased_whatever_they_carry(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    // A guest order on someone else's browser: filed under that browser's anonymous ID.
    let s = seqs(
        &store
            .append(write(vec![
                event("k", "owner", None, Some("kiosk")),
                event("k", "guest-order", None, Some("kiosk")),
                event("k", "later", Some("u9"), Some("elsewhere")),
            ]))
            .await
            .expect("append"),
    );
    let guest = Identifiers {
        user_ids: vec!["u9".into()],
        seqs: vec![s[1]],
        ..Default::default()
    };
    let timeline = store
        .events_for(&guest, PageRequest::default())
        .await
        .expect("read");
    assert_eq!(
        message_ids(&timeline.items),
        [Some("later"), Some("guest-order")],
        "an event named by seq is read beside the identifiers' events"
    );
    assert_eq!(store.delete_events_for(&guest).await.expect("delete"), 2);
    let left = store.events_after(0, 100).await.expect("replay");
    assert_eq!(
        message_ids(&left),
        [Some("owner")],
        "erasure by seq takes the guest's order and leaves the kiosk owner's event"
    );
    drop(store);
    let store = open(&dir.0);
    let left = store
        .events_after(0, 100)
        .await
        .expect("replay after reopening");
    assert_eq!(left.len(), 1, "the erasure by seq survives reopening");
}

async fn every_acknowledged_write_is_readable_at_once(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    for i in 0..20 {
        let big: Vec<NewEvent> = (0..500)
            .map(|j| event("k", &format!("m{i}-{j}"), Some("u"), Some(&format!("a{i}"))))
            .collect();
        let s = seqs(&store.append(write(big)).await.expect("append"));
        // Each read right after its ack sees the whole write, by every read path.
        let replay = store.events_after(s[0] - 1, 1_000).await.expect("replay");
        assert_eq!(replay.len(), 500, "write {i}: replay after ack");
        let anon = Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec![format!("a{i}")],
            ..Default::default()
        };
        let newest = store
            .events_for(
                &anon,
                PageRequest {
                    limit: 1,
                    cursor: None,
                },
            )
            .await
            .expect("timeline");
        assert_eq!(newest.items[0].seq, s[499], "write {i}: timeline after ack");
    }
    store
        .append(Write {
            events: Vec::new(),
            failed: vec![FailedEvent {
                id: 0,
                received_at: "2026-11-23T10:00:00.000Z".into(),
                write_key: "k".into(),
                code: "missing_type".into(),
                message: "no type".into(),
                raw: "{}".into(),
            }],
        })
        .await
        .expect("append");
    let failed = store.failed(PageRequest::default()).await.expect("failed");
    assert_eq!(
        failed.items.len(),
        1,
        "a refused message is listed once acknowledged"
    );
    let erased = store
        .delete_events_for(&Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec![],
            ..Default::default()
        })
        .await
        .expect("erase");
    assert_eq!(erased, 10_000, "erasure comes after every earlier append");
}

async fn failed_messages_are_kept_and_listed_newest_first(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let failed = |i: u32| FailedEvent {
        id: 0,
        received_at: "2026-11-23T10:00:00.000Z".into(),
        write_key: "k".into(),
        code: "missing_event".into(),
        message: format!("message {i}: track without `event`"),
        raw: format!("{{\"type\":\"track\",\"n\":{i}}}"),
    };
    let out = store
        .append(Write {
            events: vec![event("k", "ok", Some("u"), None)],
            failed: vec![failed(0), failed(1), failed(2)],
        })
        .await
        .expect("append");
    assert_eq!(out.len(), 1);
    let first = store
        .failed(PageRequest {
            limit: 2,
            cursor: None,
        })
        .await
        .expect("list");
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.items[0].raw, "{\"type\":\"track\",\"n\":2}");
    assert!(first.items[0].id > first.items[1].id);
    let rest = store
        .failed(PageRequest {
            limit: 2,
            cursor: first.next_cursor,
        })
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].code, "missing_event");
    assert!(rest.next_cursor.is_none());
}

/// A refused message as `GET /v1/failed` keeps it.
pub fn failed_message(raw: &str) -> FailedEvent {
    FailedEvent {
        id: 0,
        received_at: "2026-11-23T10:00:00.000Z".into(),
        write_key: "k".into(),
        code: "missing_event".into(),
        message: "`track` message has no `event` name".into(),
        raw: raw.into(),
    }
}

async fn erasure_deletes_the_refused_messages_of_the_identifiers(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let raws = [
        r#"{"type":"track","userId":"u1"}"#,
        r#"{"type":"track","anonymousId":"a1"}"#,
        // The next user on the shared browser keeps theirs.
        r#"{"type":"track","userId":"u2","anonymousId":"a1"}"#,
        r#"{"type":"track","userId":"u3","properties":{"note":"u1"}}"#,
        // Cut at the size limit: not JSON, but it names u1.
        r#"{"type":"track","userId":"u1","properties":{"note":"#,
    ];
    let events = vec![event("k", "m1", Some("u1"), Some("a1"))];
    let ids = user_and_anonymous_id("u1", "a1");
    let (deleted, left) = erase_among_refused(&*store, events, &raws, &ids).await;
    assert_eq!(deleted, 1);
    assert_eq!(left, [raws[2], raws[3]]);
}

/// Stores `events` and `raws` as refused messages, erases `ids`, and gives how many events
/// that deleted and the refused messages left, sorted.
async fn erase_among_refused(
    store: &dyn Store,
    events: Vec<NewEvent>,
    raws: &[&str],
    ids: &Identifiers,
) -> (u64, Vec<String>) {
    store
        .append(Write {
            events,
            failed: raws.iter().map(|r| failed_message(r)).collect(),
        })
        .await
        .expect("append");
    let deleted = store.delete_events_for(ids).await.expect("erase");
    let left = store.failed(PageRequest::default()).await.expect("list");
    let mut left: Vec<String> = left.items.into_iter().map(|f| f.raw).collect();
    left.sort_unstable();
    (deleted, left)
}

async fn erasure_deletes_the_refused_messages_that_hold_the_persons_email_or_phone(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let raws = [
        // Refused for naming nobody but an email, in another case and with spaces.
        r#"{"type":"identify","traits":{"email":" Ana.Lima@Example.COM "}}"#,
        // Someone else's message that holds the email is erased too: it is her data.
        r#"{"type":"track","userId":"u9","event":"x","properties":{"to":["ana.lima@example.com"]}}"#,
        // Escaped as Python writes non-ASCII, and cut short (not JSON).
        r#"{"type":"identify","traits":{"email":"jürgen@example.com","#,
        // Her phone, spaced another way, in a phone field.
        r#"{"type":"identify","context":{"traits":{"phone":"+1 (555) 010-0199"}}}"#,
        // Other people's emails and phones, a string that only contains her email, and her
        // phone's digits outside a phone field, are kept.
        r#"{"type":"identify","traits":{"email":"ana.lima@example.co"}}"#,
        r#"{"type":"identify","traits":{"note":"cc ana.lima@example.com please"}}"#,
        r#"{"type":"identify","traits":{"phone":"+1 555 010 0198"}}"#,
        r#"{"type":"identify","traits":{"order":"15550100199"}}"#,
    ];
    let ids = Identifiers {
        emails: vec!["ana.lima@example.com".into(), "jürgen@example.com".into()],
        phones: vec!["+15550100199".into()],
        ..Default::default()
    };
    let (deleted, left) = erase_among_refused(&*store, Vec::new(), &raws, &ids).await;
    assert_eq!(deleted, 0, "no event is chosen by email or phone");
    let mut kept = raws[4..].to_vec();
    kept.sort_unstable();
    assert_eq!(left, kept);
}

async fn erasure_deletes_the_refused_messages_that_carry_the_persons_external_id(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let raws = [
        // Her CRM ID, its type in another case and the ID with spaces, as identity reads them.
        r#"{"type":"identify","context":{"externalIds":[{"id":" crm-42 ","type":"CRM_ID","collection":"users"}]}}"#,
        // A numeric loyalty ID.
        r#"{"type":"identify","context":{"externalIds":[{"id":4242,"type":"loyalty"}]}}"#,
        // Cut short (not JSON) but holding her CRM ID as a string.
        r#"{"type":"track","context":{"externalIds":[{"id":"crm-42","ty"#,
        // The same ID under another type, or outside `externalIds`, is not hers.
        r#"{"type":"identify","context":{"externalIds":[{"id":"crm-42","type":"shopify_id"}]}}"#,
        r#"{"type":"identify","traits":{"note":"crm-42"}}"#,
    ];
    let ids = Identifiers {
        externals: vec![
            ("crm_id".into(), "crm-42".into()),
            ("loyalty".into(), "4242".into()),
        ],
        ..Default::default()
    };
    let (deleted, left) = erase_among_refused(&*store, Vec::new(), &raws, &ids).await;
    assert_eq!(deleted, 0);
    let mut kept = raws[3..].to_vec();
    kept.sort_unstable();
    assert_eq!(left, kept);
}

async fn a_malformed_cursor_is_an_error(open: Open<'_>) {
    let dir = TempDir::new("conformance");
    let store = open(&dir.0);
    let ids = Identifiers {
        user_ids: vec!["u".into()],
        anonymous_ids: vec![],
        ..Default::default()
    };
    let err = store
        .events_for(
            &ids,
            PageRequest {
                limit: 10,
                cursor: Some("not-a-cursor".into()),
            },
        )
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("not-a-cursor"), "{err}");
}
