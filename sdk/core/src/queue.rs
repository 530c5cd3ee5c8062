//! The persistent event queue: one storage key per event (so tabs never overwrite each other's
//! writes), ordered by enqueue time, with per-event leases so two tabs never send the same event.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::storage::Storage;
use crate::time::{parse_num, push_num};

const EVENT_PREFIX: &str = "seam.q.";
const LEASE_PREFIX: &str = "seam.l.";

/// One stored event: its storage key and serialized JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub json: String,
}

/// This tab's handle on the shared queue.
pub struct Queue {
    tab: String,
    seq: u64,
}

impl Queue {
    pub fn new(tab: String) -> Self {
        Queue { tab, seq: 0 }
    }

    /// Stores an event; returns false when the store refused it (quota).
    pub fn push(&mut self, store: &impl Storage, now: u64, message_id: &str, json: &str) -> bool {
        self.seq += 1;
        let mut key = String::with_capacity(64);
        key.push_str(EVENT_PREFIX);
        push_num(&mut key, now, 13);
        key.push('.');
        push_num(&mut key, self.seq, 6);
        key.push('.');
        key.push_str(message_id);
        store.set(&key, json)
    }

    /// Keys of every stored event, oldest first.
    pub fn all_keys(store: &impl Storage) -> Vec<String> {
        let mut keys: Vec<String> = store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(EVENT_PREFIX))
            .collect();
        insertion_sort(&mut keys);
        keys
    }

    /// Events no other live tab has claimed, oldest first.
    pub fn sendable(&self, store: &impl Storage, now: u64) -> Vec<String> {
        Queue::all_keys(store)
            .into_iter()
            .filter(|k| match self.lease_holder(store, k, now) {
                None => true,
                Some(tab) => tab == self.tab,
            })
            .collect()
    }

    /// The tab holding an unexpired lease on `key`.
    fn lease_holder(&self, store: &impl Storage, key: &str, now: u64) -> Option<String> {
        let lease = store.get(&lease_key(key))?;
        let (tab, until) = lease.rsplit_once('.')?;
        (parse_num(until)? > now).then(|| tab.to_owned())
    }

    /// Claims `keys` until `until`; returns the entries this tab now holds (a key another tab
    /// claimed in the meantime, or that was removed, is left out).
    pub fn claim(&self, store: &impl Storage, keys: &[String], now: u64, until: u64) -> Vec<Entry> {
        let mut lease = self.tab.clone();
        lease.push('.');
        push_num(&mut lease, until, 1);
        let mut held = Vec::new();
        for key in keys {
            if matches!(self.lease_holder(store, key, now), Some(t) if t != self.tab) {
                continue;
            }
            store.set(&lease_key(key), &lease);
            // Read back: a tab that wrote after us owns it.
            if store.get(&lease_key(key)).as_deref() != Some(lease.as_str()) {
                continue;
            }
            if let Some(json) = store.get(key) {
                held.push(Entry {
                    key: key.clone(),
                    json,
                });
            } else {
                store.remove(&lease_key(key));
            }
        }
        held
    }

    /// Gives up the lease so any tab may send the event again.
    pub fn release(store: &impl Storage, key: &str) {
        store.remove(&lease_key(key));
    }

    /// Deletes a delivered (or dropped) event and its lease.
    pub fn remove(store: &impl Storage, key: &str) {
        store.remove(key);
        store.remove(&lease_key(key));
    }

    /// The enqueue time encoded in a key.
    pub fn enqueued_at(key: &str) -> u64 {
        key.get(EVENT_PREFIX.len()..EVENT_PREFIX.len() + 13)
            .and_then(parse_num)
            .unwrap_or(0)
    }

    /// The `messageId` encoded in a key.
    pub fn message_id(key: &str) -> &str {
        key.rsplit('.').next().unwrap_or("")
    }
}

/// Keys mostly arrive in order already; this is far smaller in wasm than the std sorts.
fn insertion_sort(keys: &mut [String]) {
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && keys[j - 1] > keys[j] {
            keys.swap(j - 1, j);
            j -= 1;
        }
    }
}

fn lease_key(event_key: &str) -> String {
    let mut k = String::with_capacity(event_key.len());
    k.push_str(LEASE_PREFIX);
    k.push_str(event_key.strip_prefix(EVENT_PREFIX).unwrap_or(event_key));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use std::prelude::rust_2024::*;

    #[test]
    fn events_come_back_oldest_first_with_their_ids() {
        let store = MemoryStorage::default();
        let mut q = Queue::new("tab1".into());
        q.push(&store, 2_000, "m2", "{}");
        q.push(&store, 1_000, "m1", "{}");
        let keys = q.sendable(&store, 3_000);
        assert_eq!(
            keys.iter()
                .map(|k| Queue::message_id(k))
                .collect::<Vec<_>>(),
            ["m1", "m2"]
        );
        assert_eq!(Queue::enqueued_at(&keys[0]), 1_000);
    }

    #[test]
    fn an_event_claimed_by_one_tab_is_not_sent_by_another_until_the_lease_expires() {
        let store = MemoryStorage::default();
        let mut a = Queue::new("a".into());
        let b = Queue::new("b".into());
        a.push(&store, 1, "m1", "{}");
        let keys = a.sendable(&store, 10);
        assert_eq!(a.claim(&store, &keys, 10, 100).len(), 1);
        assert!(b.sendable(&store, 50).is_empty());
        assert!(b.claim(&store, &keys, 50, 150).is_empty());
        assert_eq!(
            b.sendable(&store, 100).len(),
            1,
            "a dead tab's lease runs out"
        );
    }

    #[test]
    fn removing_an_event_removes_its_lease() {
        let store = MemoryStorage::default();
        let mut a = Queue::new("a".into());
        a.push(&store, 1, "m1", "{}");
        let keys = a.sendable(&store, 10);
        a.claim(&store, &keys, 10, 100);
        Queue::remove(&store, &keys[0]);
        assert!(store.is_empty());
    }
}
