//! Key-value storage (localStorage, cookies) behind a trait, and the consent gate that keeps
//! everything in memory until the visitor allows storing.

use alloc::borrow::ToOwned;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

/// A synchronous string store. `set` returns false when the store refused (quota, blocked).
pub trait Storage {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str) -> bool;
    fn remove(&self, key: &str);
    /// Every key currently stored (other tabs' keys included).
    fn keys(&self) -> Vec<String>;
}

/// An in-memory store; clones share the same entries, like two tabs sharing one localStorage.
/// A plain vector: it holds few entries and keeps the wasm smaller than a map would.
#[derive(Clone, Default, Debug)]
pub struct MemoryStorage(Rc<RefCell<Vec<(String, String)>>>);

impl MemoryStorage {
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Option<String> {
        let entries = self.0.borrow();
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn set(&self, key: &str, value: &str) -> bool {
        let mut entries = self.0.borrow_mut();
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => entries.push((key.to_owned(), value.to_owned())),
        }
        true
    }
    fn remove(&self, key: &str) {
        self.0.borrow_mut().retain(|(k, _)| k != key);
    }
    fn keys(&self) -> Vec<String> {
        self.0.borrow().iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Storage that writes nothing to the real store until `open` (consent granted): before that,
/// reads and writes go to memory, and `open` moves what was kept there into the real store.
pub struct Gate<S> {
    real: S,
    memory: MemoryStorage,
    open: bool,
}

impl<S: Storage> Gate<S> {
    pub fn new(real: S, open: bool) -> Self {
        Gate {
            real,
            memory: MemoryStorage::default(),
            open,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Starts writing through to the real store, moving what was kept in memory there.
    pub fn open(&mut self) {
        if self.open {
            return;
        }
        self.open = true;
        for key in self.memory.keys() {
            if let Some(v) = self.memory.get(&key) {
                self.real.set(&key, &v);
            }
        }
        self.memory.clear();
    }

    /// Forgets what was kept in memory (consent denied before it was ever granted).
    pub fn discard(&mut self) {
        self.memory.clear();
    }

    pub fn real(&self) -> &S {
        &self.real
    }
}

impl<S: Storage> Storage for Gate<S> {
    fn get(&self, key: &str) -> Option<String> {
        if self.open {
            self.real.get(key)
        } else {
            self.memory.get(key)
        }
    }
    fn set(&self, key: &str, value: &str) -> bool {
        if self.open {
            self.real.set(key, value)
        } else {
            self.memory.set(key, value)
        }
    }
    fn remove(&self, key: &str) {
        if self.open {
            self.real.remove(key)
        } else {
            self.memory.remove(key)
        }
    }
    fn keys(&self) -> Vec<String> {
        if self.open {
            self.real.keys()
        } else {
            self.memory.keys()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;
    #[test]
    fn closed_gate_writes_nothing_to_the_real_store_until_opened() {
        let real = MemoryStorage::default();
        let mut gate = Gate::new(real.clone(), false);
        gate.set("seam.aid", "abc");
        assert_eq!(gate.get("seam.aid").as_deref(), Some("abc"));
        assert!(real.is_empty());
        gate.open();
        assert_eq!(real.get("seam.aid").as_deref(), Some("abc"));
    }

    #[test]
    fn discarding_a_closed_gate_forgets_what_it_held() {
        let real = MemoryStorage::default();
        let mut gate = Gate::new(real.clone(), false);
        gate.set("k", "v");
        gate.discard();
        gate.open();
        assert!(real.is_empty());
    }
}
