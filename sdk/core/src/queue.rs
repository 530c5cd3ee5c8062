//! The persistent event queue: one storage key per event (so tabs never overwrite each other's
//! writes), ordered by enqueue time, with per-event leases so two tabs never send the same event.
//! Storage is listed once per page: after that the tab keeps an index of the keys in memory, so
//! queueing an event is one storage write whatever the queue's length.

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
    /// Stored event keys, oldest first: listed from storage by `load`, then kept by this tab's
    /// own writes and by `note` (other tabs' writes, from the browser's `storage` events). A key
    /// another tab removed unnoticed is dropped when a claim finds it gone.
    keys: Vec<String>,
}

impl Queue {
    pub fn new(tab: String) -> Self {
        Queue {
            tab,
            seq: 0,
            keys: Vec::new(),
        }
    }

    /// Lists the stored events again (page load, consent granted or denied).
    pub fn load(&mut self, store: &impl Storage) {
        self.keys.clear();
        for k in store.keys() {
            self.note(&k, true);
        }
    }

    /// Keys of the stored events this tab knows of, oldest first.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Another tab stored (`present`) or removed `key`; keys outside the queue are ignored.
    pub fn note(&mut self, key: &str, present: bool) {
        if !key.starts_with(EVENT_PREFIX) {
            return;
        }
        let at = self.keys.partition_point(|k| k.as_str() < key);
        let known = self.keys.get(at).is_some_and(|k| k == key);
        if present && !known {
            self.keys.insert(at, key.to_owned());
        } else if !present && known {
            self.keys.remove(at);
        }
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
        self.put(store, key, json)
    }

    /// Stores `json` under `key` again (a handed-off request failed).
    pub fn put(&mut self, store: &impl Storage, key: String, json: &str) -> bool {
        let stored = store.set(&key, json);
        if stored {
            self.note(&key, true);
        }
        stored
    }

    /// Whether another live tab holds a lease on `key`.
    fn leased_by_other(&self, store: &impl Storage, key: &str, now: u64) -> bool {
        store.get(&lease_key(key)).is_some_and(|lease| {
            lease.rsplit_once('.').is_some_and(|(tab, until)| {
                tab != self.tab && parse_num(until).is_some_and(|u| u > now)
            })
        })
    }

    /// Claims the oldest events no other live tab holds, leaving out those in `skip`, until
    /// `until`: at most `max` of them, and past the first only while their JSON (plus 40 bytes
    /// each for `sentAt` and commas) stays within `max_bytes`. Keys found removed leave the index.
    pub fn claim(
        &mut self,
        store: &impl Storage,
        now: u64,
        until: u64,
        max: usize,
        max_bytes: usize,
        skip: &[Entry],
    ) -> Vec<Entry> {
        let mut lease = self.tab.clone();
        lease.push('.');
        push_num(&mut lease, until, 1);
        let mut held = Vec::new();
        let mut bytes = 0;
        let mut i = 0;
        while held.len() < max {
            let Some(key) = self.keys.get(i) else { break };
            if skip.iter().any(|e| e.key == *key) || self.leased_by_other(store, key, now) {
                i += 1;
                continue;
            }
            let Some(json) = store.get(key) else {
                store.remove(&lease_key(key));
                self.keys.remove(i);
                continue;
            };
            if !held.is_empty() && bytes + json.len() + 40 > max_bytes {
                break;
            }
            let lk = lease_key(key);
            store.set(&lk, &lease);
            // Read back: a tab that wrote after us owns it.
            if store.get(&lk).as_deref() == Some(lease.as_str()) {
                bytes += json.len() + 40;
                held.push(Entry {
                    key: key.clone(),
                    json,
                });
            }
            i += 1;
        }
        held
    }

    /// Gives up the lease so any tab may send the event again. Reading first is cheaper than a
    /// removal (a write other tabs hear of), and most events dropped from a full queue have none.
    pub fn release(store: &impl Storage, key: &str) {
        let lease = lease_key(key);
        if store.get(&lease).is_some() {
            store.remove(&lease);
        }
    }

    /// Deletes a delivered (or dropped) event and its lease.
    pub fn remove(&mut self, store: &impl Storage, key: &str) {
        store.remove(key);
        Queue::release(store, key);
        self.note(key, false);
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

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| Queue::message_id(&e.key)).collect()
    }

    #[test]
    fn events_come_back_oldest_first_with_their_ids() {
        let store = MemoryStorage::default();
        let mut q = Queue::new("tab1".into());
        q.push(&store, 2_000, "m2", "{}");
        q.push(&store, 1_000, "m1", "{}");
        let held = q.claim(&store, 3_000, 4_000, 10, 1 << 20, &[]);
        assert_eq!(ids(&held), ["m1", "m2"]);
        assert_eq!(Queue::enqueued_at(&held[0].key), 1_000);
    }

    #[test]
    fn a_new_page_finds_what_an_earlier_one_left_in_storage() {
        let store = MemoryStorage::default();
        let mut old = Queue::new("old".into());
        old.push(&store, 2, "m2", "{}");
        old.push(&store, 1, "m1", "{}");
        let mut new = Queue::new("new".into());
        new.load(&store);
        assert_eq!(new.keys(), old.keys());
    }

    #[test]
    fn an_event_claimed_by_one_tab_is_not_sent_by_another_until_the_lease_expires() {
        let store = MemoryStorage::default();
        let mut a = Queue::new("a".into());
        let mut b = Queue::new("b".into());
        a.push(&store, 1, "m1", "{}");
        b.load(&store);
        assert_eq!(a.claim(&store, 10, 100, 10, 1 << 20, &[]).len(), 1);
        assert!(b.claim(&store, 50, 150, 10, 1 << 20, &[]).is_empty());
        assert_eq!(
            b.claim(&store, 100, 200, 10, 1 << 20, &[]).len(),
            1,
            "a dead tab's lease runs out"
        );
    }

    #[test]
    fn another_tabs_writes_reach_the_index_and_removed_events_leave_it() {
        let store = MemoryStorage::default();
        let mut a = Queue::new("a".into());
        let mut b = Queue::new("b".into());
        a.push(&store, 1, "m1", "{}");
        a.push(&store, 2, "m2", "{}");
        for k in a.keys() {
            b.note(k, true);
        }
        b.note("seam.session", true);
        assert_eq!(b.keys(), a.keys());
        let first = a.keys()[0].clone();
        a.remove(&store, &first);
        let held = b.claim(&store, 10, 100, 10, 1 << 20, &[]);
        assert_eq!(ids(&held), ["m2"]);
        assert_eq!(b.keys().len(), 1, "the vanished key left b's index");
    }

    #[test]
    fn removing_an_event_removes_its_lease() {
        let store = MemoryStorage::default();
        let mut a = Queue::new("a".into());
        a.push(&store, 1, "m1", "{}");
        let held = a.claim(&store, 10, 100, 10, 1 << 20, &[]);
        a.remove(&store, &held[0].key);
        assert!(store.is_empty());
        assert!(a.keys().is_empty());
    }
}
