//! Deterministic stand-ins for the browser (randomness, network) used by the native tests.

use crate::Random;
use crate::delivery::Transport;
use alloc::borrow::ToOwned;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// Deterministic "randomness": a linear congruential sequence.
#[derive(Default)]
pub struct CountingRandom(pub Cell<u64>);

impl Random for CountingRandom {
    fn fill(&self, bytes: &mut [u8]) {
        for b in bytes {
            let n = self
                .0
                .get()
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0.set(n);
            *b = (n >> 33) as u8;
        }
    }
}

/// A request the fake network has not answered yet.
#[derive(Clone, Debug)]
pub struct Sent {
    pub request: u64,
    pub body: String,
    pub keepalive: bool,
}

/// Records requests; beacons are accepted unless `refuse_beacons` is set. Clones share state.
#[derive(Clone, Default)]
pub struct FakeNetwork {
    pub sent: Rc<RefCell<Vec<Sent>>>,
    pub beacons: Rc<RefCell<Vec<String>>>,
    pub refuse_beacons: Rc<Cell<bool>>,
}

impl Transport for FakeNetwork {
    fn send(&mut self, request: u64, body: String, keepalive: bool) {
        self.sent.borrow_mut().push(Sent {
            request,
            body,
            keepalive,
        });
    }
    fn beacon(&mut self, body: &str) -> bool {
        if self.refuse_beacons.get() {
            return false;
        }
        self.beacons.borrow_mut().push(body.to_owned());
        true
    }
}
