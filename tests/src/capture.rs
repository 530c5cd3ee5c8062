//! A capture server for SDK tests: records every request to `/v1/*` (method, content type,
//! body), answers as scripted (a status, `Retry-After`, or a held reply), serves the built SDK
//! under `/sdk/` like the collector, and sends CORS headers so a page on another origin can
//! read its answers. `Pages` serves the fixture pages on a second origin.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the capture server answers the next request to `/v1/*`.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status with `{"success":true}` for 2xx, an error body otherwise.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany { retry_after_secs: u64 },
    /// Record the request at once, answer 200 only after this long.
    Hold(Duration),
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    sdk_dir: PathBuf,
}

/// Spawns `router` on `127.0.0.1:0`; the sender stops it.
async fn serve(router: Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}

pub struct Capture {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Capture {
    /// Starts on `127.0.0.1:0`, serving the SDK from `sdk_dir`.
    pub async fn start(sdk_dir: PathBuf) -> Self {
        let shared = Shared {
            inner: Arc::default(),
            sdk_dir,
        };
        let inner = shared.inner.clone();
        let router = Router::new()
            .route("/sdk/{file}", get(sdk_file))
            .route("/v1/projects/{key}/settings", get(segment_settings))
            .route("/v1/{*rest}", any(record))
            .with_state(shared);
        let (addr, stop) = serve(router).await;
        Capture {
            addr,
            inner,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts the answers to the next requests, in order; afterwards requests get 200.
    pub fn reply(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Every event of every recorded batch, in arrival order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == "/v1/batch")
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until at least `n` events have arrived; panics after `timeout`.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} events; got {}: {events:#?}",
                    events.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".parse().unwrap());
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        "Retry-After".parse().unwrap(),
    );
    res
}

async fn record(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut inner = s.inner.lock().unwrap();
        inner.requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_owned(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if method == Method::OPTIONS {
            None
        } else {
            inner.script.pop_front()
        }
    };
    if method == Method::OPTIONS {
        // Recorded so a test can assert that the SDK never needs a preflight.
        return cors(StatusCode::NO_CONTENT.into_response());
    }
    let ok = || (StatusCode::OK, r#"{"success":true}"#).into_response();
    let res = match reply {
        None | Some(Reply::Status(200)) => ok(),
        Some(Reply::Status(code)) => (
            StatusCode::from_u16(code).expect("valid status"),
            r#"{"code":"scripted","message":"scripted failure"}"#,
        )
            .into_response(),
        Some(Reply::TooMany { retry_after_secs }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            r#"{"code":"rate_limited","message":"slow down"}"#,
        )
            .into_response(),
        Some(Reply::Hold(d)) => {
            tokio::time::sleep(d).await;
            ok()
        }
    };
    cors(res)
}

/// What Segment's CDN answers for a write key, pointed back at this server.
async fn segment_settings(Path(key): Path<String>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let settings = serde_json::json!({
        "integrations": {"Segment.io": {"apiKey": key, "apiHost": format!("{host}/v1"), "protocol": "http"}},
        "plan": {"track": {"__default": {"enabled": true}}},
    });
    cors(axum::Json(settings).into_response())
}

async fn sdk_file(State(s): State<Shared>, Path(file): Path<String>) -> Response {
    static_file(s.sdk_dir.join(file.replace(['/', '\\'], ""))).await
}

async fn static_file(path: PathBuf) -> Response {
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => cors(([(header::CONTENT_TYPE, kind)], bytes).into_response()),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The fixture pages (`tests/fixtures/pages/`), served on their own origin; `__SDK_ORIGIN__`
/// in a page becomes the capture server's origin so the script tag points there.
pub struct Pages {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Pages {
    pub async fn start(dir: PathBuf, sdk_origin: String) -> Self {
        let router = Router::new().route(
            "/{page}",
            get(move |Path(page): Path<String>| {
                let path = dir.join(page.replace(['/', '\\'], ""));
                let sdk_origin = sdk_origin.clone();
                async move {
                    match tokio::fs::read_to_string(&path).await {
                        Ok(html) => (
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                            html.replace("__SDK_ORIGIN__", &sdk_origin),
                        )
                            .into_response(),
                        Err(_) => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
        let (addr, stop) = serve(router).await;
        Pages { addr, _stop: stop }
    }

    /// `http://localhost:PORT/path`: a different origin from the capture server's 127.0.0.1.
    pub fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{}", self.addr.port(), path)
    }
}
