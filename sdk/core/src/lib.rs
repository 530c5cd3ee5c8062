//! Browser-independent core of the seam SDK. Knows nothing about web APIs: clock, storage,
//! transport and randomness come in through traits so the logic is tested natively.

/// The `context.library.name` every event carries.
pub const LIBRARY_NAME: &str = "seam.js";
/// The `context.library.version` every event carries.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_identifies_itself_as_seam_js() {
        assert_eq!(LIBRARY_NAME, "seam.js");
        assert!(LIBRARY_VERSION.split('.').count() == 3);
    }
}
