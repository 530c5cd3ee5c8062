//! The seam collector: HTTP API, ingestion, durable storage, serving the SDK and the demo site.
//!
//! Library first: build a [`Config`] (from flags or in code), [`AppState::open`] it (opens the
//! store and starts its writer), then [`app`] gives the router and [`run`] serves it on a bound
//! listener until a shutdown future resolves, draining in-flight requests.
//!
//! # For identity resolution and profiles (`crate::identity`)
//!
//! - Events: `state.store.subscribe()` delivers each durable commit as a
//!   [`store::CommittedBatch`] of [`store::StoredEvent`]s (`seq` + normalised message); replay
//!   with `store.events_after(seq, limit)`; timelines with `store.events_for(&ids, page)`;
//!   erasure with `store.delete_events_for(&ids)`. See [`store`].
//! - Refusing erased identifiers at ingest: implement [`admission::Admission`] and install it
//!   with [`AppState::with_admission`] before building the router.
//! - Admin routes: take [`auth::AdminAuth`] as a handler argument; errors are [`ApiError`].
//! - Routes: `crate::identity::routes()` returns a `Router<AppState>` merged in [`app`].

pub mod admission;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod identity;
pub mod message;
pub mod metrics;
pub mod os;
pub mod settings;
pub mod store;

mod admin;
mod ingest;
mod sdk;

pub use config::{Config, ConfigError, Source, Sources};
pub use error::ApiError;

use admission::{Admission, AdmitAll};
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics::Metrics;
use std::sync::Arc;
use store::Store;
use store::sqlite::SqliteStore;
use tower_http::services::ServeDir;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sources: Arc<Sources>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<dyn Admission>,
    /// Identity resolution and profiles (`AppState::with_identity`); `None` serves no profiles.
    pub identity: Option<Arc<identity::Identity>>,
}

impl AppState {
    /// Checks the configuration, opens the embedded store in `config.data_dir` and starts its
    /// writer. Errors name the setting at fault.
    pub fn open(config: &Config) -> Result<AppState, ConfigError> {
        let sources = Sources::load(config)?;
        check_data_dir(config)?;
        let store =
            SqliteStore::open(&config.data_dir).map_err(|e| ConfigError::Store(e.to_string()))?;
        Self::with_store(config, sources, Arc::new(store))
            .with_identity(config.identity.to_config().map_err(ConfigError::Identity)?)
    }

    /// State over any engine (tests, other engines).
    pub fn with_store(config: &Config, sources: Sources, store: Arc<dyn Store>) -> AppState {
        AppState {
            config: Arc::new(config.clone()),
            sources: Arc::new(sources),
            store,
            metrics: Arc::new(Metrics::default()),
            admission: Arc::new(AdmitAll),
            identity: None,
        }
    }

    /// Installs the ingest-time admission check (see [`admission::Admission`]).
    pub fn with_admission(mut self, admission: Arc<dyn Admission>) -> AppState {
        self.admission = admission;
        self
    }
}

fn check_data_dir(config: &Config) -> Result<(), ConfigError> {
    let path = &config.data_dir;
    let err = |why: String| ConfigError::DataDir {
        path: path.clone(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot open: {e}")))?;
    if !meta.is_dir() {
        return Err(err("is not a directory".into()));
    }
    let probe = path.join(".seam-write-probe");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| err(format!("is not writable: {e}")))?;
    Ok(())
}

/// The whole HTTP API as a router, callable without a socket.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .merge(ingest::routes(state.clone()))
        .merge(admin::routes())
        .merge(identity::routes())
        .with_state(state.clone());
    if state.config.sdk_dir.is_dir() {
        router = router.nest_service("/sdk", sdk::service(&state.config.sdk_dir));
    }
    if let Some(dir) = &state.config.site_dir {
        router = router.fallback_service(ServeDir::new(dir));
    }
    router
}

async fn metrics_text(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(
            state.store.stats(),
            state.identity.as_ref().map(|i| i.stats()),
        ),
    )
}

/// Serves `app` on a bound listener until `shutdown` resolves, then finishes in-flight requests
/// (their events are durable before they are answered).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
