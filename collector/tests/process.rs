//! The real `seam` binary: a SIGKILL in the middle of a load loses no acknowledged event, and
//! SIGTERM lets an in-flight request finish before the process exits.

mod support;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seam_collector::store::conformance::TempDir;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{ADMIN_TOKEN, WRITE_KEY, basic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `seam serve` on an ephemeral port; the address is read from its "Listening." log line.
struct Seam {
    child: Child,
    addr: String,
}

impl Seam {
    fn start(data_dir: &std::path::Path) -> Seam {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seam"))
            .args(["serve", "--addr", "127.0.0.1:0", "--write-key", WRITE_KEY])
            .args(["--admin-token", ADMIN_TOKEN, "--sdk-dir", "/nonexistent"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start seam");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("seam exited before listening")
                .expect("read log");
            if line.contains("Listening.") {
                let at = line.find("addr=").expect("addr field") + 5;
                break line[at..]
                    .split_whitespace()
                    .next()
                    .expect("addr value")
                    .to_owned();
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Seam { child, addr }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for Seam {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post_batch(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: &str,
    body: Value,
) -> Option<(u16, String)> {
    let request = hyper::Request::post(format!("http://{addr}/v1/batch"))
        .header("authorization", basic(WRITE_KEY))
        .body(Full::new(Bytes::from(body.to_string())))
        .ok()?;
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Every stored message ID of a user, through the admin API.
async fn stored_ids(addr: &str, user: &str) -> HashSet<String> {
    let client = client();
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let request = hyper::Request::get(format!(
            "http://{addr}/v1/events?user_id={user}&limit=1000{cursor}"
        ))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
        let response = client.request(request).await.expect("admin read");
        assert_eq!(response.status(), 200);
        let page: Value = serde_json::from_slice(
            &response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
        )
        .expect("json");
        for e in page["events"].as_array().expect("events") {
            ids.insert(e["messageId"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_load_loses_no_acknowledged_event() {
    let dir = TempDir::new("sigkill");
    let seam = Seam::start(&dir.0);
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (addr, acknowledged) = (seam.addr.clone(), acknowledged.clone());
        senders.push(tokio::spawn(async move {
            let client = client();
            for n in 0.. {
                let ids: Vec<String> = (0..20).map(|i| format!("w{worker}-{n}-{i}")).collect();
                let batch: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"type": "track", "event": "Load", "userId": "loader", "messageId": id}))
                    .collect();
                match post_batch(&client, &addr, json!({ "batch": batch })).await {
                    Some((200, body)) if body == r#"{"success":true}"# => {
                        acknowledged.lock().unwrap().extend(ids);
                    }
                    _ => break,
                }
            }
        }));
    }
    // Let the load run, then kill without warning while requests are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 4000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seam.signal("-KILL");
    for s in senders {
        let _ = s.await;
    }
    drop(seam);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 1000,
        "the load barely ran: {}",
        acknowledged.len()
    );

    let seam = Seam::start(&dir.0);
    let stored = stored_ids(&seam.addr, "loader").await;
    let lost: Vec<&String> = acknowledged.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost after SIGKILL, e.g. {lost:?}",
        acknowledged.difference(&stored).count(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_before_exit() {
    let dir = TempDir::new("sigterm");
    let mut seam = Seam::start(&dir.0);
    let body = json!({"batch": [{"type": "track", "event": "Last words", "userId": "leaver", "messageId": "bye-1"}]})
        .to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(&seam.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        seam.addr,
        basic(WRITE_KEY),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The request is half sent when the signal arrives; it must still be answered and stored.
    seam.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"success":true}"#), "{answer}");

    let status = tokio::task::spawn_blocking(move || {
        let status = seam.child.wait().expect("wait");
        (status, seam)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "seam exited with {}", status.0);
    drop(status.1);

    let seam = Seam::start(&dir.0);
    assert!(stored_ids(&seam.addr, "leaver").await.contains("bye-1"));
}

#[test]
fn a_missing_data_dir_stops_start_up_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args([
            "serve",
            "--data-dir",
            "/nonexistent/seam-data",
            "--write-key",
            "k",
        ])
        .output()
        .expect("run seam");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--data-dir /nonexistent/seam-data"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_setting_and_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["serve", "--help"])
        .output()
        .expect("run seam");
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--addr",
        "SEAM_ADDR",
        "--data-dir",
        "SEAM_DATA_DIR",
        "--write-key",
        "SEAM_WRITE_KEYS",
        "--admin-token",
        "SEAM_ADMIN_TOKEN",
        "--config",
        "--sdk-dir",
        "--truncate-ip",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
