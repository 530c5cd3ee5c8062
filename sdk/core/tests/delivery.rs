//! Delivery rules, natively: batching, retries, beacons, tabs, and the property that no event
//! is lost or duplicated under any interleaving of enqueue, flush, failure and reload.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use seam_sdk_core::backoff::Outcome;
use seam_sdk_core::delivery::{Config, Delivery, Warning};
use seam_sdk_core::storage::{MemoryStorage, Storage};
use seam_sdk_core::testing::{CountingRandom, FakeNetwork};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

type Tab = Delivery<MemoryStorage, FakeNetwork>;

fn tab(store: &MemoryStorage, net: &FakeNetwork, name: &str) -> Tab {
    Delivery::new(
        store.clone(),
        net.clone(),
        Config::default(),
        "wk".into(),
        name.into(),
    )
}

fn event(id: &str) -> String {
    format!(r#"{{"type":"track","event":"E","messageId":"{id}"}}"#)
}

/// The messageIds in a request body, checking its shape on the way.
fn ids_in(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("body is JSON");
    assert_eq!(v["writeKey"], "wk");
    let sent_at = v["sentAt"].as_str().expect("sentAt");
    v["batch"]
        .as_array()
        .expect("batch array")
        .iter()
        .map(|e| {
            assert_eq!(e["sentAt"], sent_at, "every event carries the send time");
            e["messageId"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Queues `count` events `m0…` of about `kb` KB each, at time 0.
fn enqueue_padded(t: &mut Tab, count: usize, kb: usize) {
    let pad = "x".repeat(kb * 1024);
    for i in 0..count {
        t.enqueue(
            0,
            &format!("m{i}"),
            &format!(r#"{{"messageId":"m{i}","p":"{pad}"}}"#),
        );
    }
}

fn take_sent(net: &FakeNetwork) -> Vec<(u64, Vec<String>)> {
    net.sent
        .borrow_mut()
        .drain(..)
        .map(|s| (s.request, ids_in(&s.body)))
        .collect()
}

#[test]
fn twenty_events_go_out_as_one_batch_without_waiting() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    let mut due = false;
    for i in 0..20 {
        due = t.enqueue(1_000, &format!("m{i}"), &event(&format!("m{i}")));
    }
    assert!(due, "the 20th event makes a batch due");
    assert_eq!(t.poll(1_000), None);
    let sent = take_sent(&net);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.len(), 20);
}

#[test]
fn a_lone_event_waits_for_the_flush_interval() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    t.enqueue(1_000, "m1", &event("m1"));
    assert_eq!(t.poll(1_500), Some(3_000));
    assert!(take_sent(&net).is_empty());
    t.poll(3_000);
    assert_eq!(take_sent(&net)[0].1, ["m1"]);
}

#[test]
fn accepted_events_leave_storage_and_retried_ones_keep_their_message_id() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let rng = CountingRandom::default();
    let mut t = tab(&store, &net, "a");
    t.enqueue(0, "m1", &event("m1"));
    t.request_flush();
    t.poll(0);
    let (req, ids) = take_sent(&net).remove(0);
    t.on_outcome(10, req, Outcome::from_status(503, None), &rng);
    let wake = t.poll(10).expect("a retry is scheduled");
    assert!(
        (260..=510).contains(&wake),
        "first backoff is 250..500 ms: {wake}"
    );
    t.poll(wake);
    let (req2, ids2) = take_sent(&net).remove(0);
    assert_eq!(ids, ids2, "a retry keeps the messageId");
    t.on_outcome(wake, req2, Outcome::Accepted, &rng);
    assert!(store.is_empty(), "nothing left once acknowledged");
}

#[test]
fn retry_after_is_honoured() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let rng = CountingRandom::default();
    let mut t = tab(&store, &net, "a");
    t.enqueue(0, "m1", &event("m1"));
    t.request_flush();
    t.poll(0);
    let (req, _) = take_sent(&net).remove(0);
    t.on_outcome(100, req, Outcome::from_status(429, Some("30")), &rng);
    assert_eq!(t.poll(200), Some(30_100));
    assert!(take_sent(&net).is_empty());
}

#[test]
fn a_batch_the_collector_refuses_is_dropped_with_a_warning() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let rng = CountingRandom::default();
    let mut t = tab(&store, &net, "a");
    t.enqueue(0, "m1", &event("m1"));
    t.request_flush();
    t.poll(0);
    let (req, _) = take_sent(&net).remove(0);
    t.on_outcome(1, req, Outcome::from_status(400, None), &rng);
    assert!(store.is_empty());
    assert_eq!(t.take_warnings(), [Warning::Rejected(400, 1)]);
    assert_eq!(t.poll(5_000), None, "and never sent again");
}

#[test]
fn an_event_over_32_kb_is_rejected_and_the_others_still_go() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    let big = format!(r#"{{"p":"{}"}}"#, "x".repeat(33 * 1024));
    t.enqueue(0, "big", &big);
    t.enqueue(0, "m1", &event("m1"));
    assert!(matches!(t.take_warnings()[..], [Warning::EventTooLarge(_)]));
    t.request_flush();
    t.poll(0);
    assert_eq!(take_sent(&net)[0].1, ["m1"]);
}

#[test]
fn batches_stay_under_500_kb() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    enqueue_padded(&mut t, 19, 30);
    t.request_flush();
    t.poll(0);
    let sent = net.sent.borrow();
    assert!(sent[0].body.len() < 500 * 1024);
    assert!(!sent[0].keepalive, "bodies over 64 KB cannot use keepalive");
    assert_eq!(ids_in(&sent[0].body).len(), 16);
}

#[test]
fn a_full_queue_drops_its_oldest_event_with_a_warning() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = Delivery::new(
        store.clone(),
        net.clone(),
        Config {
            max_queue: 3,
            ..Config::default()
        },
        "wk".into(),
        "a".into(),
    );
    for i in 0..6 {
        t.enqueue(i, &format!("m{i}"), &event(&format!("m{i}")));
    }
    assert_eq!(
        t.take_warnings(),
        [Warning::QueueFull],
        "one warning for the run of drops, not one per event"
    );
    t.request_flush();
    t.poll(10);
    assert_eq!(take_sent(&net)[0].1, ["m3", "m4", "m5"]);
}

#[test]
fn leaving_the_page_sends_the_queue_by_beacon() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    for i in 0..3 {
        t.enqueue(0, &format!("m{i}"), &event(&format!("m{i}")));
    }
    t.on_page_hide(5, true);
    let beacons = net.beacons.borrow();
    assert_eq!(beacons.len(), 1);
    assert_eq!(ids_in(&beacons[0]), ["m0", "m1", "m2"]);
    assert!(store.is_empty());
}

#[test]
fn a_refused_beacon_leaves_the_events_for_the_next_page() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    net.refuse_beacons.set(true);
    let mut t = tab(&store, &net, "a");
    t.enqueue(0, "m1", &event("m1"));
    t.on_page_hide(5, true);
    drop(t);
    let mut next = tab(&store, &net, "b");
    next.request_flush();
    next.poll(10);
    assert_eq!(take_sent(&net)[0].1, ["m1"]);
}

#[test]
fn a_beacon_stays_under_64_kb_and_the_rest_waits_for_the_next_page() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    enqueue_padded(&mut t, 5, 20);
    t.on_page_hide(1, true);
    {
        let beacons = net.beacons.borrow();
        assert_eq!(beacons.len(), 1);
        assert!(beacons[0].len() <= 64 * 1024);
        assert_eq!(ids_in(&beacons[0]), ["m0", "m1", "m2"]);
    }
    drop(t);
    let mut next = tab(&store, &net, "b");
    next.request_flush();
    next.poll(2);
    assert_eq!(take_sent(&net)[0].1, ["m3", "m4"]);
}

#[test]
fn a_batch_too_large_for_keepalive_in_flight_at_unload_is_sent_by_the_next_page_at_once() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    enqueue_padded(&mut t, 3, 30);
    t.request_flush();
    t.poll(0);
    assert!(!net.sent.borrow()[0].keepalive, "over 64 KB: no keepalive");
    net.refuse_beacons.set(true);
    t.on_page_hide(1, true);
    drop(t);
    let next_net = FakeNetwork::default();
    let mut next = tab(&store, &next_net, "b");
    next.request_flush();
    next.poll(2);
    assert_eq!(
        take_sent(&next_net)[0].1,
        ["m0", "m1", "m2"],
        "not held back by the unloaded tab's lease"
    );
}

#[test]
fn two_tabs_do_not_send_the_same_stored_event() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut a = tab(&store, &net, "a");
    for i in 0..5 {
        a.enqueue(0, &format!("m{i}"), &event(&format!("m{i}")));
    }
    let mut b = tab(&store, &net, "b");
    a.request_flush();
    b.request_flush();
    a.poll(1);
    b.poll(1);
    b.on_page_hide(2, true);
    let sent = take_sent(&net);
    assert_eq!(sent.len(), 1, "b found every event claimed by a");
    assert!(net.beacons.borrow().is_empty());
}

/// A store that counts what it is asked, to show what a call costs.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStorage,
    writes: Rc<Cell<usize>>,
    listings: Rc<Cell<usize>>,
}

impl Storage for Counting {
    fn get(&self, key: &str) -> Option<String> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &str) -> bool {
        self.writes.set(self.writes.get() + 1);
        self.inner.set(key, value)
    }
    fn remove(&self, key: &str) {
        self.inner.remove(key)
    }
    fn keys(&self) -> Vec<String> {
        self.listings.set(self.listings.get() + 1);
        self.inner.keys()
    }
}

#[test]
fn queueing_an_event_is_one_storage_write_however_full_the_queue() {
    let store = Counting::default();
    let mut t = Delivery::new(
        store.clone(),
        FakeNetwork::default(),
        Config {
            max_queue: 50,
            ..Config::default()
        },
        "wk".into(),
        "a".into(),
    );
    t.enabled = false;
    for i in 0..200 {
        t.enqueue(i, &format!("m{i}"), &event(&format!("m{i}")));
    }
    assert_eq!(store.writes.get(), 200);
    assert_eq!(store.listings.get(), 1, "storage is listed once, at load");
    assert_eq!(store.inner.len(), 50, "the oldest were dropped");
}

#[test]
fn events_another_tab_queues_are_sent_once_the_tab_hears_of_them() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut a = tab(&store, &net, "a");
    let other = FakeNetwork::default();
    let mut b = tab(&store, &other, "b");
    b.enqueue(0, "m1", &event("m1"));
    for k in store.keys() {
        a.note(&k, true);
    }
    drop(b);
    a.request_flush();
    a.poll(70_000);
    assert_eq!(take_sent(&net)[0].1, ["m1"]);
}

#[test]
fn nothing_is_sent_while_delivery_is_disabled() {
    let (store, net) = (MemoryStorage::default(), FakeNetwork::default());
    let mut t = tab(&store, &net, "a");
    t.enabled = false;
    t.enqueue(0, "m1", &event("m1"));
    t.request_flush();
    assert_eq!(t.poll(10_000), None);
    t.on_page_hide(10_000, true);
    assert!(take_sent(&net).is_empty() && net.beacons.borrow().is_empty());
}

/// What can happen to a page and its network, in any order.
#[derive(Clone, Debug)]
enum Step {
    Track(usize),
    Flush(usize),
    Poll(usize),
    /// The oldest open request of a tab gets this status (0 = network error).
    Respond(usize, u16),
    Hide(usize),
    /// pagehide, then the tab's page is replaced by a fresh load.
    Reload(usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize).prop_map(Step::Track),
        1 => (0..2usize).prop_map(Step::Flush),
        2 => (0..2usize).prop_map(Step::Poll),
        3 => (0..2usize, prop::sample::select(vec![200u16, 0, 500, 503, 429, 408]))
            .prop_map(|(t, s)| Step::Respond(t, s)),
        1 => (0..2usize).prop_map(Step::Hide),
        1 => (0..2usize).prop_map(Step::Reload),
        2 => (1..5_000u64).prop_map(Step::Wait),
    ]
}

/// A tab: its delivery state and its own view of the network (each tab has its own requests).
struct Page {
    d: Tab,
    net: FakeNetwork,
}

struct World {
    store: MemoryStorage,
    pages: Vec<Page>,
    loads: usize,
    now: u64,
    tracked: Vec<String>,
    /// messageId → how many times the collector stored it.
    received: BTreeMap<String, usize>,
    rng: CountingRandom,
}

impl World {
    fn page(&mut self) -> Page {
        self.loads += 1;
        let net = FakeNetwork::default();
        Page {
            d: tab(&self.store, &net, &format!("tab{}", self.loads)),
            net,
        }
    }

    fn receive(&mut self, body: &str) {
        for id in ids_in(body) {
            *self.received.entry(id).or_default() += 1;
        }
    }

    /// Beacons a page sent reach the collector.
    fn deliver_beacons(&mut self, i: usize) {
        let beacons: Vec<String> = self.pages[i].net.beacons.borrow_mut().drain(..).collect();
        for b in beacons {
            self.receive(&b);
        }
    }

    fn respond(&mut self, i: usize, status: u16) {
        let open = {
            let mut sent = self.pages[i].net.sent.borrow_mut();
            if sent.is_empty() {
                None
            } else {
                Some(sent.remove(0))
            }
        };
        if let Some(req) = open {
            let outcome = Outcome::from_status(status, None);
            if outcome == Outcome::Accepted {
                self.receive(&req.body);
            }
            let now = self.now;
            self.pages[i]
                .d
                .on_outcome(now, req.request, outcome, &self.rng);
            self.pages[i].d.poll(now);
        }
    }

    fn run(&mut self, s: &Step) {
        let now = self.now;
        match *s {
            Step::Track(i) => {
                let id = format!("e{}", self.tracked.len());
                if self.pages[i].d.enqueue(now, &id, &event(&id)) {
                    self.pages[i].d.poll(now);
                }
                self.tracked.push(id);
            }
            Step::Flush(i) => {
                self.pages[i].d.request_flush();
                self.pages[i].d.poll(now);
            }
            Step::Poll(i) => {
                self.pages[i].d.poll(now);
            }
            Step::Respond(i, status) => self.respond(i, status),
            Step::Hide(i) => {
                self.pages[i].d.on_page_hide(now, false);
                self.deliver_beacons(i);
            }
            Step::Reload(i) => {
                self.pages[i].d.on_page_hide(now, true);
                self.deliver_beacons(i);
                // A keepalive request outlives its page; one without keepalive is aborted
                // before the collector stores it.
                let open: Vec<_> = self.pages[i].net.sent.borrow_mut().drain(..).collect();
                for req in open {
                    if req.keepalive {
                        self.receive(&req.body);
                    }
                }
                self.pages[i] = self.page();
            }
            Step::Wait(ms) => {
                // The binding aborts a request after half the lease: a network error.
                self.now += ms;
                for i in 0..self.pages.len() {
                    let open = self.pages[i].net.sent.borrow().len();
                    for _ in 0..open {
                        self.respond(i, 0);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_event_is_lost_or_duplicated_under_any_interleaving(steps in prop::collection::vec(step(), 1..80)) {
        let mut w = World {
            store: MemoryStorage::default(),
            pages: Vec::new(),
            loads: 0,
            now: 1_000_000,
            tracked: Vec::new(),
            received: BTreeMap::new(),
            rng: CountingRandom::default(),
        };
        let a = w.page();
        let b = w.page();
        w.pages = vec![a, b];
        for s in &steps {
            w.run(s);
        }
        // Afterwards the network is healthy: answer everything and let both tabs drain.
        for i in 0..2 {
            while !w.pages[i].net.sent.borrow().is_empty() {
                w.respond(i, 200);
            }
        }
        for _ in 0..50 {
            for i in 0..2 {
                w.pages[i].d.request_flush();
                let now = w.now;
                w.pages[i].d.poll(now);
                // Answered before time moves on, as the binding's request timeout ensures.
                while !w.pages[i].net.sent.borrow().is_empty() {
                    w.respond(i, 200);
                }
            }
            w.now += 61_000;
        }
        for i in 0..2 {
            prop_assert!(w.pages[i].net.sent.borrow().is_empty());
        }
        prop_assert!(w.store.keys().is_empty(), "queue drained: {:?}", w.store.keys());
        for id in &w.tracked {
            prop_assert_eq!(w.received.get(id).copied(), Some(1), "event {} delivered once", id);
        }
        prop_assert_eq!(w.received.len(), w.tracked.len());
    }
}
