//! Browser-independent core of the seam SDK. Knows nothing about web APIs: clock, storage,
//! transport and randomness come in through traits so the logic is tested natively. `no_std`
//! (with `alloc`) so the browser build can drop std's panic and formatting machinery.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod backoff;
pub mod consent;
pub mod delivery;
pub mod ids;
pub mod json;
pub mod queue;
pub mod session;
pub mod storage;
pub mod testing;
pub mod time;
pub mod tracker;

/// The `context.library.name` every event carries.
pub const LIBRARY_NAME: &str = "seam.js";
/// The `context.library.version` every event carries.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// A source of randomness (the browser's `crypto.getRandomValues`).
pub trait Random {
    fn fill(&self, bytes: &mut [u8]);

    /// A uniform float in `[0, 1)`, for jitter.
    fn unit(&self) -> f64 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        f64::from(u32::from_le_bytes(b)) / 4_294_967_296.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn library_identifies_itself_as_seam_js() {
        assert_eq!(LIBRARY_NAME, "seam.js");
        assert!(LIBRARY_VERSION.split('.').count() == 3);
    }
}
