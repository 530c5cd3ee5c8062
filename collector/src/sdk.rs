//! Serving the built SDK under `/sdk/`: content types, caching and cross-origin headers.

use axum::body::Body;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL};
use axum::http::{HeaderValue, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::Router;
use std::path::Path;
use tower_http::services::ServeDir;

/// The entry script changes with every release under the same URL, so caches revalidate it
/// soon; the files it loads are fetched through it and may be kept longer.
const ENTRY_CACHE: &str = "public, max-age=300";
const ASSET_CACHE: &str = "public, max-age=86400";

pub fn service(dir: &Path) -> Router {
    Router::new()
        .fallback_service(ServeDir::new(dir))
        .layer(middleware::from_fn(headers))
}

async fn headers(request: Request<Body>, next: Next) -> Response {
    let entry = request.uri().path().trim_start_matches('/') == "seam.js";
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status().as_u16() == 304 {
        let h = response.headers_mut();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(if entry { ENTRY_CACHE } else { ASSET_CACHE }),
        );
        // The loader imports its bindings and wasm from the collector's origin, which is not
        // the storefront's.
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    response
}
