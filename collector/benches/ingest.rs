//! `cargo xtask bench ingest`: durable ingestion throughput and latency, next to a parse-only
//! ceiling measured in the same run, and memory after many stored events. Prints a table.
//!
//! The collector runs in a child process (this binary re-executed with `--serve`), so its
//! memory is measured alone; the load generator is a keep-alive hyper client on the same
//! machine sending 50-event batches of about 20 KB with unique message IDs.
//!
//! Rows: the parse-only ceiling (same handler, a store that acknowledges without writing); the
//! durable path (the embedded store: log fsync per group commit, SQLite indexed behind it); and
//! the whole collector as `seam serve` runs it, identity resolution following every commit.
//! `503` answers (overload) are counted apart and honoured like a client would: that connection
//! waits `Retry-After`. `lag` is how many acknowledged events were not yet readable at the end;
//! `peak RSS` is the collector's high-water mark in that phase (each phase starts a fresh one).
//! `handler p99` is read from the collector's own latency histogram (its `/metrics`): the
//! handler's time alone, without the waits for a core before it runs and after it answers that
//! the load generator's `p99` also holds. It is interpolated within a histogram bucket, so it
//! is approximate (it can come out a little above the load generator's figure).
//! `commit p99` and `commits >5 ms` are read from the store's commit histogram the same way:
//! how long the log's write and `fdatasync` took per group commit, the disk's share of every
//! request's latency. A request waits for its group's commit and often for the one before it,
//! so a slow `fdatasync` (this machine's disk has some of over 100 ms) shows up in `p99`.
//!
//! Flags: `--seconds S` per measured phase (default 10), `--events N` stored in the whole
//! collector (identity on) before reading its memory, and again once identity resolution has
//! caught up (default 1,000,000; the target is 10,000,000; 0 skips it), `--conns 64,4` and
//! `--handlers parse-only,sqlite,sqlite+identity` to run only some phases (the parse-only
//! ceiling always runs, since the other rows are read against it), and `--batch N` events per
//! request (default 50; 1 sends each event alone to `/v1/t`, as analytics.js does from a
//! browser).

mod shared;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seam_collector::store::conformance::TempDir;
use seam_collector::store::sqlite::SqliteStore;
use seam_collector::store::{
    Appended, BoxFuture, CommittedBatch, EventBus, FailedEvent, Identifiers, Page, PageRequest,
    Store, StoreError, StoreStats, StoredEvent, Write,
};
use seam_collector::{AppState, Config, Sources};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The same allocator as the `seam` binary, since the collector runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WRITE_KEY: &str = "bench-key";
/// Events per request unless `--batch` says otherwise: what server libraries send.
const EVENTS_PER_BATCH: usize = 50;
/// Width of the request counter written into every message ID of a batch.
const COUNTER_WIDTH: usize = 14;

fn main() {
    seam_collector::os::disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let engine = args.get(i + 1).cloned().unwrap_or_default();
        let dir = args.get(i + 2).cloned().unwrap_or_default();
        serve(&engine, &dir);
        return;
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let flag = |name: &str, default: u64| {
        value(name).map_or(default, |v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not `{v}`"))
        })
    };
    let list = |name: &str, default: String| -> Vec<String> {
        let text = value(name).map_or(default, str::to_owned);
        text.split(',').map(str::to_owned).collect()
    };
    let seconds = flag("--seconds", 10);
    let batch = flag("--batch", EVENTS_PER_BATCH as u64) as usize;
    assert!(
        (1..=500).contains(&batch),
        "--batch takes 1 to 500 events per request, not {batch}"
    );
    let events = flag("--events", 1_000_000);
    let phases = Phases {
        conns: list("--conns", "64,4".into())
            .iter()
            .map(|c| {
                c.parse()
                    .unwrap_or_else(|_| panic!("--conns takes numbers, not `{c}`"))
            })
            .collect(),
        handlers: list("--handlers", HANDLERS.join(",")),
        batch,
    };
    if let Some(h) = phases
        .handlers
        .iter()
        .find(|h| !HANDLERS.contains(&h.as_str()))
    {
        panic!("--handlers: `{h}` is not one of {}", HANDLERS.join(", "));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(Duration::from_secs(seconds), events, &phases));
}

/// The collector set-ups a phase can run: the ceiling, the store alone, the whole collector.
const HANDLERS: [&str; 3] = ["parse-only", "sqlite", "sqlite+identity"];

/// Which phases run: connection counts, and the handlers at each.
struct Phases {
    conns: Vec<usize>,
    handlers: Vec<String>,
    /// Events per request.
    batch: usize,
}

struct Row {
    lag: u64,
    /// The collector process's peak RSS: what it held while under this load.
    peak_rss_mb: f64,
    /// Identity resolution's catch-ups from the store (the first at start-up; more when it
    /// fell too far behind the live commits).
    replays: u64,
    /// Stored events identity resolution had not applied when the phase ended.
    identity_lag: u64,
    /// The collector process's CPU time (user + system) per event it stored in the phase.
    cpu_us_per_event: f64,
    /// p99 of the collector's own latency histogram: the time from its handler starting on a
    /// request to the response, without the waits for a core before and after that the load
    /// generator also sees. Read within a bucket, so approximate.
    handler_p99_ms: Option<f64>,
    /// p99 of the store's group commits, and how many took over 5 ms (`None`: no store).
    commit_p99_ms: Option<f64>,
    slow_commits: Option<u64>,
    handler: &'static str,
    connections: usize,
    result: LoadResult,
}

async fn bench(phase: Duration, rss_events: u64, phases: &Phases) {
    let template = Template::new(phases.batch);
    let requests = if template.events == 1 {
        format!("single events to {}", template.path)
    } else {
        format!("{}-event batches", template.events)
    };
    println!(
        "ingest bench: {requests} of {} bytes, {} s per phase, {} cores",
        template.len(),
        phase.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let counter = Arc::new(AtomicU64::new(0));
    let mut rows = Vec::new();
    for &connections in &phases.conns {
        let engines = HANDLERS
            .into_iter()
            .filter(|e| *e == "parse-only" || phases.handlers.iter().any(|h| h == e));
        for engine in engines {
            let dir = TempDir::new("ingest-bench");
            let server = Server::start(engine, &dir);
            let cpu_before = server.cpu_seconds();
            let result = load(
                server.addr.clone(),
                connections,
                Stop::After(phase),
                &template,
                &counter,
            )
            .await;
            let lag = server.metric("seam_index_lag_events").await;
            let replays = server.metric("seam_identity_replays_total").await;
            let identity_lag = server.metric("seam_identity_lag_events").await;
            let cpu = server.cpu_seconds() - cpu_before;
            let metrics = server.metrics_text().await;
            let quantile_ms = |name: &str| {
                seam_collector::metrics::histogram_quantile(&metrics, name, 0.99)
                    .map(|secs| secs * 1e3)
            };
            let commits = "seam_store_commit_duration_seconds";
            rows.push(Row {
                handler_p99_ms: quantile_ms("seam_ingest_request_duration_seconds"),
                commit_p99_ms: quantile_ms(commits),
                slow_commits: seam_collector::metrics::histogram_count_above(
                    &metrics, commits, 0.005,
                ),
                lag,
                peak_rss_mb: server.peak_rss_kb() as f64 / 1024.0,
                replays,
                identity_lag,
                cpu_us_per_event: 1e6 * cpu / (result.all_requests * template.events as u64) as f64,
                handler: match engine {
                    "sqlite" => "durable (log fsync)",
                    "sqlite+identity" => "durable + identity",
                    _ => "parse-only (ceiling)",
                },
                connections,
                result,
            });
        }
    }

    println!();
    println!(
        "| handler                 | conns | events/s | p50 ms | p99 ms | handler p99 ms | commit p99 ms | commits >5 ms | of ceiling | CPU µs/event |  503s | errors |     lag | peak RSS MB |"
    );
    println!(
        "|-------------------------|------:|---------:|-------:|-------:|---------------:|--------------:|--------------:|-----------:|-------------:|------:|-------:|--------:|------------:|"
    );
    for row in &rows {
        let ceiling = rows
            .iter()
            .find(|r| r.connections == row.connections && r.handler.starts_with("parse"))
            .map_or(1.0, |r| r.result.events_per_sec());
        println!(
            "| {:<23} | {:>5} | {:>8.0} | {:>6.2} | {:>6.2} | {:>14} | {:>13} | {:>13} | {:>9.0}% | {:>12.1} | {:>5} | {:>6} | {:>7} | {:>11.1} |",
            row.handler,
            row.connections,
            row.result.events_per_sec(),
            row.result.percentile(0.50),
            row.result.percentile(0.99),
            row.handler_p99_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.1}")),
            row.commit_p99_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.2}")),
            row.slow_commits.map_or("-".to_owned(), |n| n.to_string()),
            100.0 * row.result.events_per_sec() / ceiling,
            row.cpu_us_per_event,
            row.result.overloaded,
            row.result.errors,
            row.lag,
            row.peak_rss_mb,
        );
    }
    for row in rows.iter().filter(|r| r.handler == "durable + identity") {
        println!(
            "{} at {} conns: identity resolution {} events behind at the end, replayed from the store {} times",
            row.handler, row.connections, row.identity_lag, row.replays
        );
    }

    if rss_events == 0 {
        return;
    }
    // Memory after many stored events.
    let dir = TempDir::new("ingest-bench-rss");
    let server = Server::start("sqlite+identity", &dir);
    let idle_rss = server.rss_kb();
    let batches = rss_events.div_ceil(template.events as u64);
    let started = Instant::now();
    let result = load(
        server.addr.clone(),
        64,
        Stop::Batches(batches),
        &template,
        &counter,
    )
    .await;
    let elapsed = started.elapsed();
    let stored = result.requests * template.events as u64;
    let rss = server.rss_kb();
    let hwm = server.peak_rss_kb();
    let disk = dir_bytes(&dir.0);
    println!();
    println!(
        "| stored events | load time s | events/s | RSS idle MB | RSS after MB | peak RSS MB | disk MB |  503s | errors |"
    );
    println!(
        "|--------------:|------------:|---------:|------------:|-------------:|------------:|--------:|------:|-------:|"
    );
    println!(
        "| {:>13} | {:>11.1} | {:>8.0} | {:>11.1} | {:>12.1} | {:>11.1} | {:>7.0} | {:>5} | {:>6} |",
        stored,
        elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64(),
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        disk as f64 / 1e6,
        result.overloaded,
        result.errors
    );
    // Identity resolution catches up once the load stops; memory then.
    let started = Instant::now();
    let behind = loop {
        let behind = server.metric("seam_identity_lag_events").await;
        if behind == 0 || started.elapsed() > Duration::from_secs(300) {
            break behind;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "identity resolution {} in {:.1} s after the load; RSS then {:.1} MB, peak {:.1} MB",
        if behind == 0 {
            "caught up".to_string()
        } else {
            format!("still {behind} events behind")
        },
        started.elapsed().as_secs_f64(),
        server.rss_kb() as f64 / 1024.0,
        server.peak_rss_kb() as f64 / 1024.0,
    );
    // Restart: time to rebuild the dedup index from the stored rows.
    drop(server);
    let started = Instant::now();
    let server = Server::start("sqlite+identity", &dir);
    println!(
        "restart with {stored} stored events: ready in {:.2} s, RSS {:.1} MB",
        started.elapsed().as_secs_f64(),
        server.rss_kb() as f64 / 1024.0
    );
}

/// A request of typical browser track/page events (a 50-event batch is about 20 KB), whose
/// message IDs all contain a fixed-width counter slot so every request can be made unique by
/// overwriting it. One event goes alone to its type's short endpoint, as analytics.js sends it.
#[derive(Clone)]
struct Template {
    body: Vec<u8>,
    slots: Vec<usize>,
    events: usize,
    path: String,
}

impl Template {
    fn new(events: usize) -> Self {
        let slot = "#".repeat(COUNTER_WIDTH);
        // Alone, the second message of a batch: a track.
        let first = usize::from(events == 1);
        let messages: Vec<serde_json::Value> = (first..first + events)
            .map(|i| shared::browser_message(i, &format!("{slot}-{i:02}")))
            .collect();
        let sent_at = "2026-11-23T10:00:01.000Z";
        let (body, path) = match &messages[..] {
            [one] => {
                let mut body = one.clone();
                body["writeKey"] = WRITE_KEY.into();
                body["sentAt"] = sent_at.into();
                let kind = one["type"].as_str().expect("a type");
                (body, format!("/v1/{}", &kind[..1]))
            }
            _ => (
                serde_json::json!({"batch": messages, "writeKey": WRITE_KEY, "sentAt": sent_at}),
                "/v1/batch".to_owned(),
            ),
        };
        let body = body.to_string().into_bytes();
        let slots = body
            .windows(COUNTER_WIDTH)
            .enumerate()
            .filter(|(_, w)| w.iter().all(|b| *b == b'#'))
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        assert_eq!(slots.len(), events, "one counter slot per message");
        Template {
            body,
            slots,
            events,
            path,
        }
    }

    fn len(&self) -> usize {
        self.body.len()
    }

    fn request_body(&self, n: u64) -> Bytes {
        let mut body = self.body.clone();
        let digits = format!("{n:0width$}", width = COUNTER_WIDTH);
        for &at in &self.slots {
            body[at..at + COUNTER_WIDTH].copy_from_slice(digits.as_bytes());
        }
        Bytes::from(body)
    }
}

enum Stop {
    After(Duration),
    Batches(u64),
}

struct LoadResult {
    events_per_request: u64,
    requests: u64,
    /// Batches stored, warm-up included (what the collector's CPU time was spent on).
    all_requests: u64,
    /// 503 answers; that connection then waited `Retry-After`.
    overloaded: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl LoadResult {
    fn events_per_sec(&self) -> f64 {
        (self.requests * self.events_per_request) as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Drives `connections` keep-alive connections, each sending one batch at a time.
async fn load(
    addr: String,
    connections: usize,
    stop: Stop,
    template: &Template,
    counter: &Arc<AtomicU64>,
) -> LoadResult {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http();
    let url: hyper::Uri = format!("http://{addr}{}", template.path)
        .parse()
        .expect("uri");
    let template = Arc::new(template.clone());
    // A short warm-up so connections exist and caches are warm before measuring.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let started = Instant::now() + Duration::from_millis(500);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, template, counter, sent) = (
            client.clone(),
            url.clone(),
            template.clone(),
            counter.clone(),
            sent.clone(),
        );
        let (deadline, limit) = match stop {
            Stop::After(d) => (Some(started + d), u64::MAX),
            Stop::Batches(n) => (None, n),
        };
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut overloaded, mut errors, mut all) = (0u64, 0u64, 0u64, 0u64);
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let measuring = deadline.is_none() || Instant::now() >= warm_until;
                if !measuring {
                    // Warm-up requests are sent but not counted.
                } else if sent.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let request = hyper::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(template.request_body(n)))
                    .expect("request");
                let t = Instant::now();
                let answer = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let retry_after = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        let body = response.into_body().collect().await.map(|b| b.to_bytes());
                        if status == 503 {
                            Answer::Overloaded(retry_after.unwrap_or(1))
                        } else if status == 200
                            && body.is_ok_and(|b| &b[..] == b"{\"success\":true}")
                        {
                            Answer::Stored
                        } else {
                            Answer::Failed
                        }
                    }
                    Err(_) => Answer::Failed,
                };
                let elapsed = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                all += u64::from(matches!(answer, Answer::Stored));
                match answer {
                    Answer::Stored if measuring => {
                        latencies.push(elapsed);
                        ok += 1;
                    }
                    Answer::Stored => {}
                    Answer::Overloaded(secs) => {
                        if measuring {
                            overloaded += 1;
                            // Not stored: the batch is sent again after the wait.
                            sent.fetch_sub(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                    Answer::Failed => errors += u64::from(measuring),
                }
            }
            (ok, overloaded, errors, all, latencies)
        }));
    }
    let mut result = LoadResult {
        events_per_request: template.events as u64,
        requests: 0,
        all_requests: 0,
        overloaded: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (ok, overloaded, errors, all, latencies) = task.await.expect("load task");
        result.requests += ok;
        result.all_requests += all;
        result.overloaded += overloaded;
        result.errors += errors;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = match stop {
        Stop::After(d) => d,
        Stop::Batches(_) => started.elapsed(),
    };
    result.latencies_us.sort_unstable();
    result
}

enum Answer {
    Stored,
    /// 503 with this `Retry-After`.
    Overloaded(u64),
    Failed,
}

/// Bytes in a directory and its subdirectories (the store's database and its log).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The collector in a child process.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(engine: &str, dir: &TempDir) -> Server {
        let exe = std::env::current_exe().expect("bench executable");
        let mut child = Command::new(exe)
            .args(["--serve", engine])
            .arg(&dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start collector child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .unwrap_or_else(|| panic!("collector child said {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The collector's `/metrics` text (empty when it has none).
    async fn metrics_text(&self) -> String {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let url: hyper::Uri = format!("http://{}/metrics", self.addr)
            .parse()
            .expect("uri");
        let Ok(response) = client.get(url).await else {
            return String::new();
        };
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// A figure from the collector's `/metrics` (0 when absent).
    async fn metric(&self, name: &str) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the collector process has used so far, user and system, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces):
        // utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf only reads its integer argument.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (ticks(11) + ticks(12)) as f64 / per_second
    }

    fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin asks the child to stop gracefully.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Child mode: serve the collector with the given engine until stdin closes.
fn serve(engine: &str, dir: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let config = Config::new(dir).with_write_key(WRITE_KEY);
        let sources = || Sources::load(&config).expect("sources");
        let state = match engine {
            // The whole collector as `seam serve` runs it, identity resolution included.
            "sqlite+identity" => AppState::open(&config).expect("open store"),
            "sqlite" => AppState::with_store(
                &config,
                sources(),
                Arc::new(SqliteStore::open(std::path::Path::new(dir)).expect("open store")),
            ),
            _ => AppState::with_store(&config, sources(), Arc::new(NullStore::default())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("ADDR {}", listener.local_addr().expect("addr"));
        let shutdown = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                let _ = std::io::stdin().read_line(&mut sink);
            })
            .await;
        };
        seam_collector::run(listener, state, shutdown)
            .await
            .expect("serve");
    });
}

/// The parse-only ceiling: acknowledges every event without storing it.
#[derive(Default)]
struct NullStore {
    seq: AtomicU64,
    bus: EventBus,
}

impl Store for NullStore {
    fn append(&self, write: Write) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        let n = write.events.len() as u64;
        let first = self.seq.fetch_add(n, Ordering::Relaxed);
        Box::pin(async move {
            Ok((0..n)
                .map(|i| Appended::Stored { seq: first + i + 1 })
                .collect())
        })
    }
    fn events_for<'a>(
        &'a self,
        _: &'a Identifiers,
        _: PageRequest,
    ) -> BoxFuture<'a, Result<Page<StoredEvent>, StoreError>> {
        Box::pin(async {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        })
    }
    fn events_after(
        &self,
        _: u64,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn delete_events_for<'a>(
        &'a self,
        _: &'a Identifiers,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    fn failed(&self, _: PageRequest) -> BoxFuture<'_, Result<Page<FailedEvent>, StoreError>> {
        Box::pin(async {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        })
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommittedBatch> {
        self.bus.subscribe()
    }
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}
