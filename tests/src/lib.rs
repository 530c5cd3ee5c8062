//! Test harness shared by the end-to-end tests: a collector on an ephemeral port (restartable on
//! the same port and data dir), headless Chromium driven through ChromeDriver, a recording proxy,
//! a small admin HTTP client and screenshot output.

pub mod capture;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The built SDK (`cargo xtask build-sdk`), or `$SEAM_SDK_DIR`.
pub fn sdk_dir() -> PathBuf {
    std::env::var_os("SEAM_SDK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(|d| workspace_root().join(d))
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("sdk")
        })
}

/// A collector serving on `127.0.0.1:0` for the life of the value.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(state: seam_collector::AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(seam_collector::run(listener, state, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `site` (its `index.html` and scripts) from a [`capture::Capture`], on another origin
/// than the collector's as a storefront would be, and opens that page in a new [`Browser`].
pub async fn open_site_page(site: &Path) -> (capture::Capture, Browser) {
    let pages = capture::Capture::start(site.to_owned()).await;
    let browser = Browser::launch().await;
    browser
        .client
        .goto(&format!("{}/sdk/index.html", pages.origin()))
        .await
        .expect("open page");
    (pages, browser)
}

/// A ChromeDriver process and one headless Chromium session; each `Browser` is a separate
/// profile, so two of them behave as two devices.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    pub async fn launch() -> Self {
        let driver_path =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = free_port();
        // Its own process group, which Chromium joins, so a failing test can end both at once.
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e} (run `cargo xtask test`)"));
        let profile = TempDir::new("chromium-profile");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("SEAM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path.display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("rustls connector")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver at {url} did not accept a session: {last_err:?}");
    }

    /// Ends the browser session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        kill_process_group(&mut self.driver);
    }

    /// Polls a JavaScript expression until it returns a truthy value, or panics after `timeout`.
    pub async fn wait_for_js(&self, expr: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let value = self
                .client
                .execute(&format!("return ({expr});"), vec![])
                .await
                .expect("execute script");
            let truthy = !matches!(value, Value::Null | Value::Bool(false));
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for `{expr}`");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    /// A test that panics never reaches `close`: end ChromeDriver and the Chromium it started,
    /// or the browsers outlive the test.
    fn drop(&mut self) {
        kill_process_group(&mut self.driver);
    }
}

fn kill_process_group(driver: &mut Child) {
    if matches!(driver.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", driver.id())])
            .stderr(Stdio::null())
            .status();
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The UMD build of Segment's analytics.js (`@segment/analytics-next`, pinned in
/// `xtask/tools/package.json` and installed there by `cargo xtask`): `index.js` (the
/// `AnalyticsNext` global) and `standalone.js` (the snippet's loader).
pub fn analytics_js_dir() -> PathBuf {
    let dir = workspace_root().join("xtask/tools/node_modules/@segment/analytics-next/dist/umd");
    assert!(
        dir.join("index.js").exists() && dir.join("standalone.js").exists(),
        "no analytics.js in {}; `cargo xtask test` and `cargo xtask bench sdk` install it",
        dir.display()
    );
    dir
}

/// The bundled ES module build of RudderStack's JavaScript SDK (`@rudderstack/analytics-js`,
/// pinned in `xtask/tools/package.json` and installed there by `cargo xtask`): one file that
/// exports `RudderAnalytics`, its plugins inside rather than fetched from RudderStack's CDN.
pub fn rudderstack_js_file() -> PathBuf {
    let file = workspace_root().join(
        "xtask/tools/node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/esm/index.mjs",
    );
    assert!(
        file.exists(),
        "no RudderStack SDK at {}; `cargo xtask test` installs it",
        file.display()
    );
    file
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "seam-{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The write key the demo storefront pages carry.
pub const WRITE_KEY: &str = "demo-write-key";
/// The admin token the demo tests give the collector and type into the profile viewer.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// The demo storefront and profile viewer.
pub fn demo_site_dir() -> PathBuf {
    workspace_root().join("demo-site")
}

/// The collector state the demo tests run: the embedded store in `data_dir`, the demo write key,
/// the admin token, the built SDK under `/sdk/` and the demo site at `/`.
fn demo_state(data_dir: &Path) -> seam_collector::AppState {
    let mut config = seam_collector::Config::new(data_dir)
        .with_write_key(WRITE_KEY)
        .with_admin_token(ADMIN_TOKEN);
    config.sdk_dir = sdk_dir();
    config.site_dir = Some(demo_site_dir());
    seam_collector::AppState::open(&config).expect("open the collector's store")
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

/// The real collector serving the demo site, in-process on `127.0.0.1:0`; it can be stopped and
/// started again on the same port with the same data dir, as an operator's restart would.
pub struct DemoCollector {
    pub addr: SocketAddr,
    pub data_dir: TempDir,
    running: Option<Running>,
}

impl DemoCollector {
    pub async fn start() -> Self {
        assert!(
            sdk_dir().join("seam.js").exists(),
            "no SDK at {}; run `cargo xtask build-sdk`",
            sdk_dir().display()
        );
        let data_dir = TempDir::new("collector-data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let running = Some(serve(listener, &data_dir.path));
        DemoCollector {
            addr,
            data_dir,
            running,
        }
    }

    /// Graceful shutdown: in-flight requests finish, then the server task ends.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("collector shut down within 20 s")
                .expect("collector task")
                .expect("collector ran without error");
        }
    }

    /// Starts again on the same port and data dir after `stop`.
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "the collector is still running");
        let mut last_err = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.running = Some(serve(listener, &self.data_dir.path));
                    return;
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot bind {} again: {last_err:?}", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET` an admin route with the admin token.
    pub async fn admin_get(&self, path: &str) -> HttpResponse {
        http_request(
            self.addr,
            "GET",
            path,
            &[("Authorization", format!("Bearer {ADMIN_TOKEN}"))],
            None,
        )
        .await
    }

    /// Waits until the profile of `id` (`type:value`, URL-encoded) holds `anonymous_id`, and
    /// gives its identities as `type:"value"`.
    pub async fn wait_for_profile_with(
        &self,
        id: &str,
        anonymous_id: &str,
        timeout: Duration,
    ) -> Vec<String> {
        let profile = self
            .wait_for_admin(&format!("/v1/profiles/{id}"), timeout, |p| {
                p["identities"].as_array().is_some_and(|ids| {
                    ids.iter()
                        .any(|i| i["type"] == "anonymous_id" && i["value"] == anonymous_id)
                })
            })
            .await;
        profile["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .map(|i| format!("{}:{}", i["type"].as_str().unwrap_or(""), i["value"]))
            .collect()
    }

    /// Polls an admin route until `accept` holds for its JSON body, or panics after `timeout`
    /// showing the last answer.
    pub async fn wait_for_admin(
        &self,
        path: &str,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let response = self.admin_get(path).await;
            if response.status == 200 {
                let body = response.json();
                if accept(&body) {
                    return body;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting on GET {path}; last answer {} {}",
                    response.status, response.body
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends a Segment message to an ingestion route with the demo write key (HTTP Basic).
    pub async fn ingest(&self, path: &str, message: &Value) -> HttpResponse {
        let basic = base64(format!("{WRITE_KEY}:").as_bytes());
        http_request(
            self.addr,
            "POST",
            path,
            &[
                ("Authorization", format!("Basic {basic}")),
                ("Content-Type", "application/json".into()),
            ],
            Some(message.to_string().into_bytes()),
        )
        .await
    }
}

fn serve(listener: tokio::net::TcpListener, data_dir: &Path) -> Running {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(seam_collector::run(
        listener,
        demo_state(data_dir),
        async move {
            let _ = rx.await;
        },
    ));
    (tx, task)
}

impl Drop for DemoCollector {
    fn drop(&mut self) {
        if let Some((tx, _task)) = self.running.take() {
            let _ = tx.send(());
        }
    }
}

/// Every admin route answers JSON; ingestion answers `{"success":true}`.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection: small and dependency-free, enough for tests.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    HttpResponse {
        status,
        body: String::from_utf8_lossy(&payload).to_string(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes each proxied connection's client sent, one buffer per connection.
type ConnectionLog = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A TCP proxy in front of the collector that records the request line of every HTTP request
/// the browser sends, so a test can prove what did (or did not) reach the collector.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    connections: ConnectionLog,
    accept: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let connections: ConnectionLog = Arc::default();
        let log = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
                log.lock().expect("proxy log").push(seen.clone());
                tokio::spawn(proxy_connection(client, upstream, seen));
            }
        });
        RecordingProxy {
            addr,
            connections,
            accept,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `"METHOD /path"` for every request seen so far, per connection in arrival order.
    pub fn requests(&self) -> Vec<String> {
        const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        let connections = self.connections.lock().expect("proxy log");
        let mut out = Vec::new();
        for bytes in connections.iter() {
            let bytes = bytes.lock().expect("connection log");
            for line in String::from_utf8_lossy(&bytes).split("\r\n") {
                let mut parts = line.split(' ');
                if let (Some(method), Some(path), Some(version)) =
                    (parts.next(), parts.next(), parts.next())
                    && METHODS.contains(&method)
                    && version.starts_with("HTTP/1.")
                {
                    out.push(format!("{method} {path}"));
                }
            }
        }
        out
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn proxy_connection(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upload = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen.lock()
                .expect("connection log")
                .extend_from_slice(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let download = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upload, download);
}

/// Where screenshots go: `docs/screenshots/` when `SEAM_UPDATE_SCREENSHOTS=1` (to refresh the
/// README's pictures), otherwise `e2e-screenshots/` in the target dir so test runs leave the
/// tree clean.
pub fn screenshot_dir() -> PathBuf {
    if std::env::var("SEAM_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        return workspace_root().join("docs/screenshots");
    }
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("e2e-screenshots"))
        .unwrap_or_else(|| std::env::temp_dir().join("seam-e2e-screenshots"))
}

impl Browser {
    /// Opens `url` and waits until the seam SDK is running.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
        // Until the wasm has started, the loader's API queues calls and returns nothing; `user()`
        // answering an object means the SDK is running (the queued probes replay harmlessly).
        self.wait_for_js(
            "document.readyState === 'complete' && !Array.isArray(window.seam) \
             && typeof window.seam.user === 'function' && typeof window.seam.user() === 'object'",
            Duration::from_secs(20),
        )
        .await;
    }

    /// Clicks the element matching `css`, waiting for it to appear.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `text` into the input matching `css` after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The visible text of the element matching `css`, waiting for it to appear.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}` within 20 s: {e}"))
    }

    /// Runs `seam.flush()` and waits for the promise: everything queued so far is acknowledged.
    pub async fn flush(&self) {
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 Promise.resolve(window.seam.flush()).then(() => done('ok'), e => done('error: ' + e));",
                vec![],
            )
            .await
            .expect("seam.flush()");
        assert_eq!(result, Value::from("ok"), "seam.flush() failed");
    }

    /// The visitor's current anonymous ID as the SDK reports it.
    pub async fn anonymous_id(&self) -> String {
        let value = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 Promise.resolve(window.seam.anonymousId()).then(id => done(id), e => done(null));",
                vec![],
            )
            .await
            .expect("seam.anonymousId()");
        value
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("seam.anonymousId() gave {value}"))
            .to_string()
    }

    /// Everything this origin has put on the device: cookies (including HttpOnly ones, through
    /// WebDriver), localStorage and sessionStorage keys, and IndexedDB database names.
    pub async fn stored_state(&self) -> Value {
        let cookies: Vec<String> = self
            .client
            .get_all_cookies()
            .await
            .expect("cookies")
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let storage = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const keys = s => Array.from({length: s.length}, (_, i) => s.key(i));
                 const dbs = indexedDB.databases ? indexedDB.databases() : Promise.resolve([]);
                 dbs.then(list => done({
                   document_cookie: document.cookie,
                   local_storage: keys(localStorage),
                   session_storage: keys(sessionStorage),
                   indexed_db: list.map(d => d.name),
                 }));",
                vec![],
            )
            .await
            .expect("storage snapshot");
        serde_json::json!({ "cookies": cookies, "page": storage })
    }

    /// Saves a PNG of the viewport as `name.png` in `screenshot_dir()` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}
