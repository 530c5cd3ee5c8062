//! The browser binding of the seam SDK: exports the JavaScript API over `seam-sdk-core`.

use wasm_bindgen::prelude::*;

/// The SDK version, as reported in `context.library.version`.
#[wasm_bindgen]
pub fn version() -> String {
    seam_sdk_core::LIBRARY_VERSION.into()
}
