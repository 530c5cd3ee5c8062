//! Admin reads of the collector's own data: stored events and failed (refused) messages.

use crate::AppState;
use crate::auth::AdminAuth;
use crate::error::ApiError;
use crate::store::{Identifiers, PageRequest};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

const MAX_LIMIT: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(events))
        .route("/v1/failed", get(failed))
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Parses `limit` (default 100, at most 1000) naming the problem when it is not a number.
pub fn page_request(limit: Option<&str>, cursor: Option<String>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("limit `{l}` must be a number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    Ok(PageRequest { limit, cursor })
}

async fn events(
    _: AdminAuth,
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = page_request(q.limit.as_deref(), q.cursor)?;
    let ids = Identifiers {
        user_ids: q.user_id.into_iter().collect(),
        anonymous_ids: q.anonymous_id.into_iter().collect(),
        ..Default::default()
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "missing_identifier",
            "give `user_id` or `anonymous_id` in the query",
        ));
    }
    let page = state.store.events_for(&ids, page).await?;
    let events: Vec<Value> = page.items.into_iter().map(|e| e.message).collect();
    Ok(Json(
        json!({"events": events, "next_cursor": page.next_cursor}),
    ))
}

#[derive(serde::Deserialize)]
struct FailedQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn failed(
    _: AdminAuth,
    State(state): State<AppState>,
    Query(q): Query<FailedQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = page_request(q.limit.as_deref(), q.cursor)?;
    let page = state.store.failed(page).await?;
    Ok(Json(
        json!({"failed": page.items, "next_cursor": page.next_cursor}),
    ))
}
