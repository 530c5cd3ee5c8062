//! The seam collector: HTTP API, serving the SDK and the demo site.

pub mod identity;

use axum::Router;
use axum::routing::get;
use std::path::PathBuf;
use tower_http::services::ServeDir;

/// What the HTTP layer needs; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Built SDK files served under `/sdk/`.
    pub sdk_dir: Option<PathBuf>,
    /// Static demo storefront served at `/`.
    pub site_dir: Option<PathBuf>,
}

/// The whole HTTP API as a router, callable without a socket.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    if let Some(dir) = &state.sdk_dir {
        router = router.nest_service("/sdk", ServeDir::new(dir));
    }
    if let Some(dir) = &state.site_dir {
        router = router.fallback_service(ServeDir::new(dir));
    }
    router
}

/// Serves `app` on a bound listener until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn healthz_answers_ok() {
        let response = app(AppState::default())
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
