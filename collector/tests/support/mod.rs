//! Helpers shared by the collector's integration tests: a collector state on a temporary data
//! dir, requests through the router without a socket, the wire fixtures, and gzip.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use seam_collector::store::conformance::TempDir;
use seam_collector::store::sqlite::{Limits, SqliteStore};
use seam_collector::{AppState, Config, Sources, app};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use tower::ServiceExt;

pub const WRITE_KEY: &str = "WK_test_123";
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A collector on a fresh data dir accepting [`WRITE_KEY`], with [`ADMIN_TOKEN`].
pub struct Collector {
    pub state: AppState,
    pub dir: TempDir,
}

impl Collector {
    pub fn start() -> Self {
        Self::with(|c| c)
    }

    pub fn with(adjust: impl FnOnce(Config) -> Config) -> Self {
        let dir = TempDir::new("collector-test");
        let config = adjust(
            Config::new(&dir.0)
                .with_write_key(WRITE_KEY)
                .with_admin_token(ADMIN_TOKEN),
        );
        let state = AppState::open(&config).expect("open collector");
        Collector { state, dir }
    }

    /// A collector whose only source, from a `--config` file, is `shop-key`, allowed to send
    /// from `https://shop.example` alone.
    pub fn with_shop_source() -> Self {
        let dir = TempDir::new("shop-source");
        let file = dir.0.join("seam.toml");
        std::fs::write(
            &file,
            "[[sources]]\nwrite_key = \"shop-key\"\nallowed_origins = [\"https://shop.example\"]\n",
        )
        .expect("write config");
        Self::with(|mut c| {
            c.write_keys.clear();
            c.config = Some(file);
            c
        })
    }

    /// A collector whose embedded store has the given bounds (overload tests).
    pub fn with_limits(limits: Limits) -> Self {
        let dir = TempDir::new("collector-test");
        let config = Config::new(&dir.0)
            .with_write_key(WRITE_KEY)
            .with_admin_token(ADMIN_TOKEN);
        let sources = Sources::load(&config).expect("sources");
        let store = SqliteStore::open_with(&dir.0, limits).expect("open store");
        let state = AppState::with_store(&config, sources, std::sync::Arc::new(store));
        Collector { state, dir }
    }

    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app().oneshot(request).await.expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// POSTs JSON with the write key as HTTP Basic user name.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            Request::post(path)
                .header("authorization", basic(WRITE_KEY))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// POSTs JSON as if it came over a socket from `peer` with these `X-Forwarded-For` values.
    pub async fn post_via(&self, path: &str, body: &Value, peer: &str, xff: &[&str]) -> Answer {
        let mut request = Request::post(path)
            .header("authorization", basic(WRITE_KEY))
            .header("content-type", "application/json");
        for v in xff {
            request = request.header("x-forwarded-for", *v);
        }
        let mut request = request.body(Body::from(body.to_string())).expect("request");
        let peer: std::net::SocketAddr = peer.parse().expect("peer address");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.send(request).await
    }

    pub async fn admin_get(&self, path: &str) -> Answer {
        self.send(
            Request::get(path)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    /// Every stored event of a user, newest first (follows cursors).
    pub async fn events_of_user(&self, user_id: &str) -> Vec<Value> {
        self.events_of("user_id", user_id).await
    }

    pub async fn events_of(&self, param: &str, value: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let answer = self
                .admin_get(&format!("/v1/events?{param}={value}&limit=50{cursor}"))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let page = answer.json();
            all.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return all,
            }
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.admin_get("/metrics").await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .parse()
            .expect("number")
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// Asserts a JSON error with this status and code; returns its message.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.body);
        body["message"].as_str().expect("message").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn basic(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
}

/// One captured request of a real client.
pub struct Capture {
    pub client: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Capture {
    /// The request as the client sent it: the JSON body re-encoded, gzipped when it said so.
    pub fn request(&self) -> Request<Body> {
        let json = self.body.to_string().into_bytes();
        let gzipped = self.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-encoding") && v.eq_ignore_ascii_case("gzip")
        });
        let mut builder = Request::builder()
            .method(self.method.as_str())
            .uri(&self.path);
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder
            .body(Body::from(if gzipped { gzip(&json) } else { json }))
            .expect("request")
    }

    pub fn message_count(&self) -> usize {
        self.body["batch"].as_array().map_or(1, Vec::len)
    }
}

pub fn captures() -> Vec<Capture> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "wire fixtures missing");
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let requests: Vec<Value> = serde_json::from_str(&text).expect("fixture JSON");
        for r in requests {
            out.push(Capture {
                client: file.file_stem().unwrap().to_string_lossy().into_owned(),
                method: r["method"].as_str().expect("method").into(),
                path: r["path"].as_str().expect("path").into(),
                headers: r["headers"]
                    .as_object()
                    .expect("headers")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("header").to_owned()))
                    .collect(),
                body: r["body"].clone(),
            });
        }
    }
    out
}
