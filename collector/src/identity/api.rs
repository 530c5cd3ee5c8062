//! The profile API (docs/api.md): lookup, timeline, search, merges, erasure and export, all
//! behind the admin token.

use super::ident::{Identifier, IdentityConfig};
use super::service::{Identity, IdentityError};
use crate::AppState;
use crate::auth::AdminAuth;
use crate::config::ConfigError;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// Routes under `/v1/profiles`; merged into [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/profiles", get(search))
        .route("/v1/profiles/{id}", get(profile).delete(erase))
        .route("/v1/profiles/{id}/events", get(events))
        .route("/v1/profiles/{id}/merges", get(merges))
        .route("/v1/profiles/{id}/export", get(export))
}

impl AppState {
    /// Starts identity resolution over this state's store: opens its view in the data dir,
    /// follows committed events, and refuses erased identifiers at ingest.
    pub fn with_identity(mut self, config: IdentityConfig) -> Result<AppState, ConfigError> {
        let identity = Identity::open(&self.config.data_dir, config, Arc::clone(&self.store))
            .map_err(|e| ConfigError::Store(e.to_string()))?;
        identity.follow();
        self.admission = identity.clone();
        self.identity = Some(identity);
        Ok(self)
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Store(s) => s.into(),
            IdentityError::Db(d) => ApiError::Internal(format!("identity view: {d}")),
        }
    }
}

/// The identity service, caught up with every acknowledged event.
async fn ready(state: &AppState) -> Result<Arc<Identity>, ApiError> {
    let identity = state.identity.clone().ok_or_else(|| {
        ApiError::NotFound("identity resolution is not enabled on this collector".into())
    })?;
    identity.sync().await?;
    Ok(identity)
}

fn parse_id(identity: &Identity, raw: &str) -> Result<Identifier, ApiError> {
    identity
        .config()
        .parse_path(raw)
        .map_err(|m| ApiError::bad_request("invalid_identifier", m))
}

fn unknown(id: &Identifier) -> ApiError {
    ApiError::NotFound(format!("no profile holds {id}"))
}

async fn profile(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let id = parse_id(&identity, &raw)?;
    identity.profile(&id).map(Json).ok_or_else(|| unknown(&id))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn events(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let id = parse_id(&identity, &raw)?;
    let page = crate::admin::page_request(q.limit.as_deref(), q.cursor)?;
    let (events, next) = identity
        .timeline(&id, page.cursor, page.limit)
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(Json(json!({"events": events, "next_cursor": next})))
}

async fn search(
    _: AdminAuth,
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let page = crate::admin::page_request(q.limit.as_deref(), q.cursor)?;
    let (profiles, next) = identity.search(q.q.as_deref(), page.cursor.as_deref(), page.limit);
    Ok(Json(json!({"profiles": profiles, "next_cursor": next})))
}

async fn merges(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let id = parse_id(&identity, &raw)?;
    let (merges, dropped) = identity.merges(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(json!({"merges": merges, "dropped": dropped})))
}

async fn erase(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let id = parse_id(&identity, &raw)?;
    let receipt = identity.erase(&id).await?.ok_or_else(|| unknown(&id))?;
    Ok(Json(json!(receipt)))
}

async fn export(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let identity = ready(&state).await?;
    let id = parse_id(&identity, &raw)?;
    let out = identity.export(&id).await?;
    out.map(Json).ok_or_else(|| unknown(&id))
}
