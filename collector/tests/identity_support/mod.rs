//! Test helpers for the identity story tests: a collector with identity resolution on a temporary
//! data dir, called through its router, and the story fixtures.
#![allow(dead_code)] // Each test binary uses a different part of the helpers.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use seam_collector::{AppState, Config};
use serde_json::{Value, json};
use std::path::PathBuf;
use tower::ServiceExt;

pub const WRITE_KEY: &str = "wk_identity_test";
pub const ADMIN_TOKEN: &str = "admin-secret-for-tests";

/// A collector with identity resolution, its data in a directory removed on drop.
pub struct Collector {
    pub app: Router,
    dir: PathBuf,
}

impl Collector {
    pub fn start() -> Collector {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("seam-identity-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create data dir");
        let config = Config::new(&dir)
            .with_write_key(WRITE_KEY)
            .with_admin_token(ADMIN_TOKEN);
        let state = AppState::open(&config).expect("open collector with identity resolution");
        assert!(state.identity.is_some());
        Collector {
            app: seam_collector::app(state),
            dir,
        }
    }

    /// The same data dir opened again, as after a restart of the collector.
    pub fn restart(mut self) -> Collector {
        let dir = std::mem::take(&mut self.dir);
        drop(self);
        let config = Config::new(&dir)
            .with_write_key(WRITE_KEY)
            .with_admin_token(ADMIN_TOKEN);
        let state = AppState::open(&config).expect("reopen collector");
        Collector {
            app: seam_collector::app(state),
            dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    /// Sends messages as one Segment batch (with the write key in the body).
    async fn post_batch(&self, messages: &[Value]) -> (StatusCode, Value) {
        let body = json!({"writeKey": WRITE_KEY, "batch": messages});
        self.call(Method::POST, "/v1/batch", None, Some(body)).await
    }

    /// Sends messages as one Segment batch and expects them accepted.
    pub async fn send(&self, messages: &[Value]) {
        let (status, body) = self.post_batch(messages).await;
        assert_eq!(status, StatusCode::OK, "batch refused: {body}");
        assert_eq!(body["success"], true, "{body}");
        assert!(body.get("rejected").is_none(), "messages rejected: {body}");
    }

    /// Sends messages as one Segment batch and expects every one refused (and kept as failed).
    pub async fn send_refused(&self, messages: &[Value]) {
        let (status, body) = self.post_batch(messages).await;
        assert_eq!(status, StatusCode::OK, "batch refused whole: {body}");
        assert_eq!(
            body["rejected"].as_array().map(Vec::len),
            Some(messages.len()),
            "{body}"
        );
    }

    /// An admin GET with the right token.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(ADMIN_TOKEN), None).await
    }

    pub async fn get_with_token(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(ADMIN_TOKEN), None)
            .await
    }

    /// The profile holding an identifier, which must exist.
    pub async fn profile(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/profiles/{id}")).await;
        assert_eq!(status, StatusCode::OK, "GET profile {id}: {body}");
        body
    }

    /// The files under the data dir whose bytes contain `needle`.
    pub fn files_containing(&self, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read data dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if std::fs::read(&path)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Every timeline event of the profile holding `id`, newest first, following cursors.
    pub async fn timeline(&self, id: &str, page: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/profiles/{id}/events?limit={page}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
            out.extend(body["events"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A story's messages from `tests/identity_fixtures/NAME.json`.
pub fn fixture(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/identity_fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sorted `type:value` strings of a profile's identities.
pub fn identities(profile: &Value) -> Vec<String> {
    type_values(&profile["identities"])
}

/// Sorted `type:value` strings of a JSON array of `{type, value}` objects.
pub fn type_values(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    ids
}

/// Message IDs of events, in the order given.
pub fn message_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap_or_default().to_string())
        .collect()
}
