//! The Segment HTTP tracking API: `POST /v1/batch` and `/v1/{track,identify,page,screen,group,
//! alias}`, under the other names clients use too (analytics.js posts to `/v1/t`, `/v1/i`, …
//! and `/v1/b`; older server libraries batch to `/v1/import`; RudderStack's browser SDK sends
//! beacons to `/beacon/v1/batch?writeKey=…`), and the source settings analytics.js and
//! RudderStack's SDK load first ([`crate::settings`]).
//! Authenticates the write key, reads (and un-gzips) a bounded body, validates each message,
//! applies consent and suppression, and answers `200 {"success":true}` only once the store has
//! made the events durable. CORS for browsers is here too.

use crate::AppState;
use crate::auth::basic_write_key;
use crate::error::ApiError;
use crate::message::{self, Envelope, MAX_BATCH_BYTES, Normalised, RequestInfo};
use crate::metrics::Metrics;
use crate::store::{Appended, FailedEvent, NewEvent, Write};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, USER_AGENT, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Instant;
use time::OffsetDateTime;

/// The exact success body some clients check for.
const SUCCESS: &str = r#"{"success":true}"#;

pub fn routes(state: AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/b", post(batch))
        .route("/v1/import", post(batch))
        .route("/beacon/v1/batch", post(batch))
        .route(
            "/v1/projects/{write_key}/settings",
            get(crate::settings::settings),
        )
        .route("/sourceConfig", get(crate::settings::source_config))
        .route("/sourceConfig/", get(crate::settings::source_config));
    for ty in message::TYPES {
        // analytics.js names each endpoint by the type's first letter.
        for path in [format!("/v1/{ty}"), format!("/v1/{}", &ty[..1])] {
            router = router.route(
                &path,
                post(move |s: State<AppState>, r: Request| single(s, r, ty)),
            );
        }
    }
    router.layer(middleware::from_fn_with_state(state, cors))
}

/// The write key of a `writeKey` query parameter, as `navigator.sendBeacon` callers send it
/// (they cannot set a header); a query that does not parse is a 400 naming it.
pub(crate) fn query_write_key(uri: &axum::http::Uri) -> Result<Option<String>, ApiError> {
    #[derive(serde::Deserialize)]
    struct KeyQuery {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    if uri.query().is_none() {
        return Ok(None);
    }
    let Query(q) = Query::<KeyQuery>::try_from_uri(uri).map_err(|e| {
        ApiError::bad_request("invalid_query", format!("query string: {}", e.body_text()))
    })?;
    Ok(q.write_key.filter(|k| !k.is_empty()))
}

async fn batch(State(state): State<AppState>, request: Request) -> Response {
    ingest(state, request, None).await
}

async fn single(State(state): State<AppState>, request: Request, ty: &'static str) -> Response {
    ingest(state, request, Some(ty)).await
}

async fn ingest(state: AppState, request: Request, implied_type: Option<&'static str>) -> Response {
    let started = Instant::now();
    let result = accept(&state, request, implied_type).await;
    state.metrics.observe(started.elapsed());
    match result {
        Ok(response) => response,
        Err(e @ ApiError::Overloaded(_)) => {
            Metrics::add(&state.metrics.requests_overloaded, 1);
            tracing::debug!(error = %e, "Request refused: overloaded.");
            e.into_response()
        }
        Err(e) => {
            Metrics::add(&state.metrics.requests_refused, 1);
            tracing::debug!(code = e.code(), error = %e, "Request refused.");
            e.into_response()
        }
    }
}

async fn accept(
    state: &AppState,
    request: Request,
    implied_type: Option<&'static str>,
) -> Result<Response, ApiError> {
    let received_at = OffsetDateTime::now_utc();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // A key in the header or the query string is checked before the body is read.
    let early_key = match basic_write_key(headers)? {
        Some(key) => Some(key),
        None => query_write_key(&parts.uri)?,
    };
    if let Some(key) = &early_key {
        source_for(state, key, headers)?;
    }
    // Refused before the body is read and parsed, so overload does not cost that work too.
    if let Some(why) = state.store.overloaded() {
        return Err(ApiError::Overloaded(why));
    }
    let raw = read_body(headers, body).await?;
    let text = std::str::from_utf8(&raw)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not UTF-8: {e}")))?;
    let envelope = match implied_type {
        None => message::parse_batch(text),
        Some(_) => message::parse_single(text),
    }
    .map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let write_key = match (early_key, &envelope.write_key) {
        (Some(k), _) => k,
        (None, Some(k)) => {
            source_for(state, k, headers)?;
            k.clone()
        }
        (None, None) => {
            return Err(ApiError::Unauthorized(
                "no write key: send it as the HTTP Basic user name, as `writeKey` in the body, or as a `writeKey` query parameter"
                    .into(),
            ));
        }
    };

    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = state.sources.trusted_proxies.client_ip(peer, headers);
    let info = RequestInfo::new(
        received_at,
        ip,
        state.config.truncate_ip,
        headers.get(USER_AGENT).and_then(|v| v.to_str().ok()),
        implied_type,
    );
    let outcome = validate(state, &write_key, envelope, &info);
    let Checked {
        write,
        rejected,
        consent_dropped,
        suppressed,
    } = outcome;
    let m = &state.metrics;
    Metrics::add(&m.consent_dropped, consent_dropped);
    Metrics::add(&m.suppressed, suppressed);
    Metrics::add(&m.rejected, rejected.len() as u64);
    let submitted = write.events.len();
    let appended = if write.events.is_empty() && write.failed.is_empty() {
        Vec::new()
    } else {
        state.store.append(write).await?
    };
    let stored = appended
        .iter()
        .filter(|a| matches!(a, Appended::Stored { .. }))
        .count() as u64;
    Metrics::add(&m.accepted, stored);
    Metrics::add(&m.deduplicated, submitted as u64 - stored);
    tracing::debug!(
        write_key = %write_key,
        stored,
        duplicates = submitted as u64 - stored,
        rejected = rejected.len(),
        consent_dropped,
        suppressed,
        "Batch accepted."
    );
    let body = if rejected.is_empty() {
        SUCCESS.to_owned()
    } else {
        json!({"success": true, "rejected": rejected}).to_string()
    };
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

/// Whether `key` is a known source and the browser origin (if any) may use it.
pub(crate) fn source_for(state: &AppState, key: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let source = state
        .sources
        .get(key)
        .ok_or_else(|| ApiError::Unauthorized(format!("unknown write key `{}`", shorten(key))))?;
    if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok())
        && !source.allows(origin)
    {
        return Err(ApiError::OriginNotAllowed(format!(
            "origin `{origin}` may not send with this write key (source `{}`)",
            source.name
        )));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The body, decompressed, at most [`MAX_BATCH_BYTES`]; a gzip bomb stops at the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "batch is over {} KB; split it",
            MAX_BATCH_BYTES / 1024
        ))
    };
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BATCH_BYTES
    {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, MAX_BATCH_BYTES)
        .await
        .map_err(|e| {
            let is_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if is_limit {
                too_large()
            } else {
                ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
            }
        })?;
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let decoder: Box<dyn Read> = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(raw),
        Some("gzip" | "x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&raw[..])),
        Some(other) => {
            return Err(ApiError::UnsupportedEncoding(format!(
                "Content-Encoding `{other}` is not supported; use gzip or none"
            )));
        }
    };
    let mut out = Vec::with_capacity((raw.len() * 4).min(MAX_BATCH_BYTES + 1));
    decoder
        .take(MAX_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_gzip",
                format!("body could not be decompressed: {e}"),
            )
        })?;
    if out.len() > MAX_BATCH_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(out))
}

#[derive(serde::Serialize)]
struct Rejected {
    index: usize,
    code: &'static str,
    message: String,
}

struct Checked {
    write: Write,
    rejected: Vec<Rejected>,
    consent_dropped: u64,
    suppressed: u64,
}

fn validate(
    state: &AppState,
    write_key: &str,
    mut envelope: Envelope<'_>,
    info: &RequestInfo<'_>,
) -> Checked {
    let received_ms = (info.received_at().unix_timestamp_nanos() / 1_000_000) as i64;
    let received_text = info.received_text();
    let messages = std::mem::take(&mut envelope.messages);
    let mut out = Checked {
        write: Write {
            events: Vec::with_capacity(messages.len()),
            failed: Vec::new(),
        },
        rejected: Vec::new(),
        consent_dropped: 0,
        suppressed: 0,
    };
    // Identity resolution, and an admission check, read only some fields of each message.
    let reads = (state.identity.is_some() || !state.admission.admits_all())
        .then_some(crate::identity::input::Reads::MESSAGE);
    for (index, raw) in messages.into_iter().enumerate() {
        let text = raw.text();
        match message::normalise(raw, &envelope, info, reads) {
            Ok(Normalised {
                consent_denied: true,
                ..
            }) => out.consent_dropped += 1,
            Ok(n) => {
                if reads.is_some() && state.admission.refuses(&n.read) {
                    out.suppressed += 1;
                    continue;
                }
                out.write.events.push(NewEvent {
                    write_key: write_key.to_owned(),
                    message_id: n.message_id,
                    received_at_ms: received_ms,
                    user_id: n.user_id,
                    anonymous_id: n.anonymous_id,
                    message: n.read,
                    json: n.json,
                });
            }
            Err(rejection) => {
                out.write.failed.push(FailedEvent {
                    id: 0,
                    received_at: received_text.to_owned(),
                    write_key: write_key.to_owned(),
                    code: rejection.code.to_owned(),
                    message: rejection.message.clone(),
                    raw: text.to_owned(),
                });
                out.rejected.push(Rejected {
                    index,
                    code: rejection.code,
                    message: rejection.message,
                });
            }
        }
    }
    out
}

/// CORS for the ingestion routes. Preflights come without the write key, so they pass when any
/// source allows the origin; the request itself is then checked against its own source.
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| state.sources.any_allows(o));
    if request.method() == Method::OPTIONS {
        let Some(origin) = origin.filter(|_| allowed) else {
            return ApiError::OriginNotAllowed(
                "this origin is not allowed to send events to this collector".into(),
            )
            .into_response();
        };
        let request_headers = request
            .headers()
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_static("authorization, content-type, content-encoding")
            });
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, request_headers);
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        h.insert(VARY, HeaderValue::from_static("Origin"));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin.filter(|_| allowed) {
        let h = response.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
        h.insert(VARY, HeaderValue::from_static("Origin"));
    }
    response
}
