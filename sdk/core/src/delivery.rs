//! Delivery: batching by count, time and bytes; one request in flight per tab; retries with
//! backoff; the beacon flush when the page goes away. Nothing here waits: the browser binding
//! calls `poll` when the returned wake-up time comes and `on_outcome` when a response arrives.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Random;
use crate::backoff::{Outcome, delay_ms};
use crate::json;
use crate::queue::{Entry, Queue};
use crate::storage::Storage;
use crate::time::iso8601;

/// Delivery limits; the defaults are the documented ones.
#[derive(Clone, Debug)]
pub struct Config {
    /// Send once this many events are queued.
    pub flush_at: usize,
    /// Send an event at the latest this long after it was queued.
    pub flush_interval_ms: u64,
    /// A batch body stays under this many bytes.
    pub max_batch_bytes: usize,
    /// A single event over this many bytes is rejected.
    pub max_event_bytes: usize,
    /// At most this many events are stored; past it the oldest is dropped.
    pub max_queue: usize,
    /// Limit of a beacon or keepalive body.
    pub beacon_bytes: usize,
    /// How long a tab's claim on events it is sending lasts; the binding aborts requests after
    /// half of it so a live claim never expires under a request still in flight.
    pub lease_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flush_at: 20,
            flush_interval_ms: 2_000,
            max_batch_bytes: 500 * 1024,
            max_event_bytes: 32 * 1024,
            max_queue: 1_000,
            beacon_bytes: 64 * 1024,
            lease_ms: 60_000,
        }
    }
}

/// Sends request bodies. `send` starts a request and must not call back synchronously; the
/// binding reports the result with [`Delivery::on_outcome`].
pub trait Transport {
    fn send(&mut self, request: u64, body: String, keepalive: bool);
    /// `navigator.sendBeacon`; true when the browser took the body.
    fn beacon(&mut self, body: &str) -> bool;
}

/// Something the page's developer should hear about (logged as one console warning each).
#[derive(Clone, Debug, PartialEq)]
pub enum Warning {
    /// An event of this many bytes was not queued.
    EventTooLarge(usize),
    /// The queue was full; the oldest events are being dropped (once per run of drops: a page
    /// tracking faster than the network takes would otherwise log on every call).
    QueueFull,
    /// Storage refused the event (quota); it was not queued.
    StorageRefused,
    /// The collector refused a batch of this many events with this status; they were dropped.
    Rejected(u16, usize),
}

struct InFlight {
    request: u64,
    events: Vec<Entry>,
    /// The page unloaded while this request was in flight: its events were taken out of
    /// storage (the keepalive request carries them) and are put back only if it fails.
    handed_off: bool,
}

pub struct Delivery<S, T> {
    pub store: S,
    pub transport: T,
    pub config: Config,
    /// False until consent allows sending (opt-in mode).
    pub enabled: bool,
    write_key: String,
    queue: Queue,
    inflight: Option<InFlight>,
    next_request: u64,
    attempt: u32,
    retry_at: u64,
    flush_requested: bool,
    /// Events this tab queued since its last send, to trigger by count.
    unsent: usize,
    warnings: Vec<Warning>,
    /// The last enqueue dropped the oldest event.
    dropping: bool,
}

impl<S: Storage, T: Transport> Delivery<S, T> {
    pub fn new(store: S, transport: T, config: Config, write_key: String, tab: String) -> Self {
        let mut queue = Queue::new(tab);
        queue.load(&store);
        Delivery {
            store,
            transport,
            config,
            enabled: true,
            write_key,
            queue,
            inflight: None,
            next_request: 0,
            attempt: 0,
            retry_at: 0,
            flush_requested: false,
            unsent: 0,
            warnings: Vec::new(),
            dropping: false,
        }
    }

    /// Warnings raised since the last call.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        core::mem::take(&mut self.warnings)
    }

    /// Queues a serialized event (a JSON object without `sentAt`). Persisted before anything
    /// is sent, so it survives a reload. Returns true when the caller should `poll` now.
    pub fn enqueue(&mut self, now: u64, message_id: &str, event: &str) -> bool {
        if event.len() > self.config.max_event_bytes {
            self.warnings.push(Warning::EventTooLarge(event.len()));
            return false;
        }
        let mut dropped = false;
        while self.queue.keys().len() >= self.config.max_queue.max(1)
            && let Some(oldest) = self.queue.keys().first().cloned()
        {
            self.queue.remove(&self.store, &oldest);
            dropped = true;
        }
        if dropped && !self.dropping {
            self.warnings.push(Warning::QueueFull);
        }
        self.dropping = dropped;
        if !self.queue.push(&self.store, now, message_id, event) {
            self.warnings.push(Warning::StorageRefused);
            return false;
        }
        self.unsent += 1;
        self.unsent >= self.config.flush_at
    }

    /// Asks for everything queued to go out now (subject to `Retry-After`/backoff).
    pub fn request_flush(&mut self) {
        self.flush_requested = true;
    }

    /// Keys of every event still waiting for acknowledgement.
    pub fn outstanding(&self) -> Vec<String> {
        let mut keys = self.queue.keys().to_vec();
        if let Some(f) = &self.inflight {
            keys.extend(f.events.iter().map(|e| e.key.clone()));
        }
        keys
    }

    /// Lists the stored events again: the store behind the consent gate changed.
    pub fn reload(&mut self) {
        self.queue.load(&self.store);
    }

    /// Another tab stored (`present`) or removed `key` (the browser's `storage` event).
    pub fn note(&mut self, key: &str, present: bool) {
        self.queue.note(key, present);
    }

    /// Rewrites every queued event with `f` (events held in memory before consent).
    pub fn rewrite(&self, f: impl Fn(&str) -> String) {
        for key in self.queue.keys() {
            if let Some(json) = self.store.get(key) {
                self.store.set(key, &f(&json));
            }
        }
    }

    /// Sends a batch when one is due. Returns when to call again (ms since epoch), or `None`
    /// when only a response or a new event can make something due.
    pub fn poll(&mut self, now: u64) -> Option<u64> {
        if !self.enabled || self.inflight.is_some() {
            return None;
        }
        if now < self.retry_at {
            return Some(self.retry_at);
        }
        let Some(first) = self.queue.keys().first() else {
            self.flush_requested = false;
            self.unsent = 0;
            return None;
        };
        let due_at = Queue::enqueued_at(first) + self.config.flush_interval_ms;
        if !(self.flush_requested
            || self.queue.keys().len() >= self.config.flush_at
            || now >= due_at)
        {
            return Some(due_at);
        }
        let batch = self.queue.claim(
            &self.store,
            now,
            now + self.config.lease_ms,
            self.config.flush_at.max(1),
            self.config.max_batch_bytes - 200,
            &[],
        );
        if batch.is_empty() {
            if self.queue.keys().is_empty() {
                self.flush_requested = false;
                self.unsent = 0;
                return None;
            }
            return Some(now + self.config.flush_interval_ms);
        }
        self.unsent = self.unsent.saturating_sub(batch.len());
        let body = self.body(&batch, now);
        let keepalive = body.len() <= self.config.beacon_bytes;
        self.next_request += 1;
        let request = self.next_request;
        self.inflight = Some(InFlight {
            request,
            events: batch,
            handed_off: false,
        });
        self.transport.send(request, body, keepalive);
        None
    }

    /// Applies the result of request `request`. Call `poll` afterwards.
    pub fn on_outcome(&mut self, now: u64, request: u64, outcome: Outcome, rng: &impl Random) {
        let Some(flight) = self.inflight.take_if(|f| f.request == request) else {
            return;
        };
        match outcome {
            Outcome::Accepted | Outcome::Rejected(_) => {
                if let Outcome::Rejected(status) = outcome {
                    self.warnings
                        .push(Warning::Rejected(status, flight.events.len()));
                }
                for e in &flight.events {
                    self.queue.remove(&self.store, &e.key);
                }
                self.attempt = 0;
                self.retry_at = 0;
            }
            // The page unloaded with this keepalive request in flight: the browser rejects
            // the page's promise but carries on with the request, so putting its events back
            // would send them twice.
            Outcome::NoResponse if flight.handed_off => {}
            Outcome::Retry { .. } | Outcome::NoResponse => {
                let after_ms = match outcome {
                    Outcome::Retry { after_ms } => after_ms,
                    _ => None,
                };
                for e in &flight.events {
                    if flight.handed_off {
                        self.queue.put(&self.store, e.key.clone(), &e.json);
                    }
                    Queue::release(&self.store, &e.key);
                }
                let wait = after_ms.unwrap_or_else(|| delay_ms(self.attempt, rng));
                self.attempt = self.attempt.saturating_add(1);
                self.retry_at = now + wait;
            }
        }
    }

    /// The page is being hidden (`unloading`: `pagehide`, it may never come back). Sends what
    /// is queued by one beacon under the beacon limit; events the beacon took leave storage.
    /// On unload the request in flight takes its events with it when it was sent with
    /// keepalive; one too large for keepalive dies with the page, so its events are released
    /// for the next page load to send at once rather than when this tab's lease runs out.
    pub fn on_page_hide(&mut self, now: u64, unloading: bool) {
        if !self.enabled {
            return;
        }
        let beacon_bytes = self.config.beacon_bytes;
        let extra = self.write_key.len() + 60;
        if let Some(f) = self
            .inflight
            .as_mut()
            .filter(|f| unloading && !f.handed_off)
        {
            let keepalive = body_len(&f.events, extra) <= beacon_bytes;
            for e in &f.events {
                if keepalive {
                    self.queue.remove(&self.store, &e.key);
                } else {
                    Queue::release(&self.store, &e.key);
                }
            }
            f.handed_off = keepalive;
        }
        if now < self.retry_at {
            // The collector asked us to wait; the next page load sends these.
            return;
        }
        let inflight = self.inflight.as_ref().map_or(&[][..], |f| &f.events[..]);
        // One beacon, up to the limit: what does not fit stays for the next page load.
        let chunk = self.queue.claim(
            &self.store,
            now,
            now + self.config.lease_ms,
            usize::MAX,
            beacon_bytes.saturating_sub(extra),
            inflight,
        );
        if !chunk.is_empty() {
            let sent = self.transport.beacon(&self.body(&chunk, now));
            for e in &chunk {
                if sent {
                    self.queue.remove(&self.store, &e.key);
                } else {
                    Queue::release(&self.store, &e.key);
                }
            }
        }
        self.unsent = 0;
    }

    /// `{"batch":[...],"sentAt":"...","writeKey":"..."}` with `sentAt` on every event.
    fn body(&self, events: &[Entry], now: u64) -> String {
        let sent_at = iso8601(now);
        let mut body = String::with_capacity(body_len(events, self.write_key.len() + 60));
        body.push_str("{\"batch\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            json::push_with_sent_at(&mut body, &e.json, &sent_at);
        }
        body.push_str("],\"sentAt\":");
        json::push_str(&mut body, &sent_at);
        body.push_str(",\"writeKey\":");
        json::push_str(&mut body, &self.write_key);
        body.push('}');
        body
    }
}

/// An upper bound of the body size for `events` (each gains `sentAt`), plus `extra`.
fn body_len(events: &[Entry], extra: usize) -> usize {
    events.iter().map(|e| e.json.len() + 40).sum::<usize>() + extra
}
