//! `cargo xtask bench identity`: identity resolution throughput, and profile lookup and timeline
//! latency with a large stored history. Prints a table.
//!
//! Size is set by `SEAM_BENCH_EVENTS` (default 1,000,000), `SEAM_BENCH_PROFILES` (100,000) and
//! `SEAM_BENCH_INGEST_EVENTS` (100,000); `SEAM_BENCH_RESOLVE_ONLY=1` stops after the in-process
//! resolution figures (for profiling).

use seam_collector::identity::{Engine, EventInput, IdType, Identifier, Identity, IdentityConfig};
use seam_collector::store::sqlite::SqliteStore;
use seam_collector::store::{NewEvent, Store, StoreError, Write};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `seam` binary runs with, so figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Small deterministic generator (xorshift64*), so every run sees the same events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const BASE_MS: i64 = 1_795_000_000_000;

fn ts(ms: i64) -> String {
    seam_collector::identity::input::format_rfc3339(ms)
}

/// A storefront's traffic: `profiles` people, each with one or two browsers, most of whom log
/// in, some of whom buy; about `events` events in all, mostly in time order with some late.
fn traffic(people: std::ops::Range<usize>, per: usize) -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ people.start as u64);
    let events = people.len() * per;
    let mut out = Vec::with_capacity(events);
    for p in people {
        let devices = 1 + (rng.below(4) == 0) as usize;
        let logs_in = rng.below(10) < 6;
        let start = BASE_MS + (p as i64) * 50;
        for i in 0..per {
            let d = i % devices;
            let anon = format!("anon-{p}-{d}");
            let t = start + i as i64 * 1000 + rng.below(500) as i64;
            let mid = format!("m-{p}-{i}");
            let ctx = json!({
                "userAgent": if d == 0 { "Mozilla/5.0 (X11; Linux x86_64) Chrome/131" } else { "Mozilla/5.0 (iPhone) Safari/18" },
                "consent": {"categoryPreferences": {"analytics": true, "marketing": p % 3 == 0}},
                "session": {"id": format!("s-{p}-{}", i / 4)},
                "page": {"referrer": "https://search.example/?q=tea"},
                "campaign": {"source": "newsletter", "name": "winter"},
            });
            let logged = logs_in && i >= per / 2;
            let msg = if logs_in && i == per / 2 + d {
                json!({"type": "identify", "messageId": mid, "timestamp": ts(t), "anonymousId": anon,
                       "userId": format!("user-{p}"),
                       "traits": {"email": format!("Person{p}@Example.com"), "name": format!("Person {p}")},
                       "context": ctx})
            } else if i % 5 == 4 {
                let mut m = json!({"type": "track", "event": "Order Completed", "messageId": mid,
                       "timestamp": ts(t), "anonymousId": anon,
                       "properties": {"order_id": format!("o-{p}-{i}"), "revenue": (rng.below(20000) as f64) / 100.0,
                                      "email": format!("person{p}@example.com")},
                       "context": ctx});
                if logged {
                    m["userId"] = json!(format!("user-{p}"));
                }
                m
            } else {
                let mut m = json!({"type": "page", "name": "Product", "messageId": mid, "timestamp": ts(t),
                       "anonymousId": anon, "properties": {"url": "https://shop.example/p/1"}, "context": ctx});
                if logged {
                    m["userId"] = json!(format!("user-{p}"));
                }
                m
            };
            out.push(msg);
            if out.len() == events {
                return out;
            }
        }
    }
    out
}

/// Delivery order: commit order, with 2% of events arriving late (after a later batch).
fn arrival_order(mut events: Vec<Value>) -> Vec<Value> {
    let mut rng = Rng(42);
    let n = events.len();
    for i in 0..n / 50 {
        let a = rng.below(n as u64) as usize;
        let b = (a + 1 + rng.below(200) as usize).min(n - 1);
        events.swap(a, b);
        let _ = i;
    }
    events
}

/// Posts every body to `/v1/batch` from 4 concurrent senders; returns seconds until all were
/// acknowledged and until identity (when on) had applied them all.
async fn ingest(resolution: bool, bodies: &[String]) -> (f64, f64) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use seam_collector::{AppState, Config, Sources};
    use tower::ServiceExt;

    let dir = std::env::temp_dir().join(format!(
        "seam-ingest-bench-{}-{resolution}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Config::new(&dir).with_write_key("wk_bench");
    let state = if resolution {
        AppState::open(&config).expect("collector")
    } else {
        let store = Arc::new(SqliteStore::open(&dir).expect("store"));
        AppState::with_store(&config, Sources::load(&config).expect("sources"), store)
    };
    let app = seam_collector::app(state.clone());
    let t = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|k| {
            let app = app.clone();
            let mine: Vec<String> = bodies.iter().skip(k).step_by(4).cloned().collect();
            tokio::spawn(async move {
                for body in mine {
                    // A collector that is behind answers 503: wait and send again, as SDKs do.
                    loop {
                        let req = Request::post("/v1/batch")
                            .header("content-type", "application/json")
                            .body(Body::from(body.clone()))
                            .expect("request");
                        let resp = app.clone().oneshot(req).await.expect("response");
                        if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
                            assert_eq!(resp.status(), StatusCode::OK);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }
    let acked = t.elapsed().as_secs_f64();
    if let Some(identity) = &state.identity {
        identity.sync().await.expect("identity catches up");
    }
    let caught_up = t.elapsed().as_secs_f64();
    drop((app, state));
    let _ = std::fs::remove_dir_all(&dir);
    (acked, caught_up)
}

/// CPU time this thread has used (Linux `/proc`, 10 ms ticks), so that the throughput figure
/// does not depend on what else the shared machine runs.
fn thread_cpu() -> Duration {
    cpu_of("/proc/thread-self/stat")
}

/// CPU time of the whole process (every thread), for phases that span threads.
fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    seam_collector::os::disable_transparent_huge_pages();
    let total = env_usize("SEAM_BENCH_EVENTS", 1_000_000);
    let profiles = env_usize("SEAM_BENCH_PROFILES", 100_000);
    let config = IdentityConfig::default();
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 1. Resolution in-process: extraction from the stored message plus graph update.
    let n_resolve = total.min(300_000);
    let sample = arrival_order(traffic(0..(n_resolve / 10).max(1), 10));
    let mut engine = Engine::new(config.clone());
    let (t, cpu) = (Instant::now(), thread_cpu());
    for m in &sample {
        engine.apply(&EventInput::from_message(m, &config));
    }
    let (wall, cpu) = (
        t.elapsed().as_secs_f64(),
        (thread_cpu() - cpu).as_secs_f64(),
    );
    rows.push((
        format!("resolutions/s ({n_resolve} events, 2% late), wall"),
        format!("{:.0}", n_resolve as f64 / wall),
        "≥ 200000".into(),
    ));
    rows.push((
        "resolutions per CPU-second of the resolving thread".into(),
        format!("{:.0}", n_resolve as f64 / cpu),
        "≥ 200000".into(),
    ));
    let inputs: Vec<EventInput<'_>> = sample
        .iter()
        .map(|m| EventInput::from_message(m, &config))
        .collect();
    let mut engine = Engine::new(config.clone());
    let cpu = thread_cpu();
    for e in &inputs {
        engine.apply(e);
    }
    rows.push((
        "  of which graph update only, per CPU-second".into(),
        format!(
            "{:.0}",
            n_resolve as f64 / (thread_cpu() - cpu).as_secs_f64()
        ),
        String::new(),
    ));
    drop((engine, inputs));
    drop(sample);
    if std::env::var_os("SEAM_BENCH_RESOLVE_ONLY").is_some() {
        print_table(total, profiles, rows);
        return;
    }

    // 2. Reads with `total` events and `profiles` profiles stored.
    let dir = std::env::temp_dir().join(format!("seam-identity-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(SqliteStore::open(&dir).expect("store"));
    let per = (total / profiles).max(2);
    let mut stored = 0usize;
    let t = Instant::now();
    // Generated a thousand people at a time, so the history never sits in memory as JSON.
    for start in (0..profiles).step_by(1000) {
        let events = arrival_order(traffic(start..(start + 1000).min(profiles), per));
        for chunk in events.chunks(1000) {
            let write = Write {
                events: chunk
                    .iter()
                    .map(|m| NewEvent::new("wk", BASE_MS, m.as_object().expect("object").clone()))
                    .collect(),
                failed: Vec::new(),
            };
            stored += chunk.len();
            // The store refuses appends while its index is far behind; loading waits for it.
            while let Err(e) = runtime.block_on(store.append(write.clone())) {
                assert!(matches!(e, StoreError::Overloaded(_)), "append: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    eprintln!(
        "stored {stored} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The store's own replay read, the floor under identity's catch-up.
    let (t, cpu) = (Instant::now(), process_cpu());
    let (mut after, mut read) = (0, 0usize);
    loop {
        let page = runtime
            .block_on(store.events_after(after, 2000))
            .expect("replay read");
        let Some(last) = page.last() else { break };
        after = last.seq;
        read += page.len();
    }
    assert_eq!(read, stored, "the store replays every event");
    let read_rate = stored as f64 / t.elapsed().as_secs_f64();
    let read_cpu = (process_cpu() - cpu).as_secs_f64();
    rows.push((
        "store replay read alone (events_after)".into(),
        format!("{read_rate:.0} events/s"),
        String::new(),
    ));
    let (t, cpu) = (Instant::now(), process_cpu());
    let identity = Identity::open(&dir, config.clone(), store).expect("identity");
    runtime.block_on(identity.sync()).expect("catch up");
    rows.push((
        format!("catch-up from the store, {stored} events"),
        format!("{:.0} events/s", stored as f64 / t.elapsed().as_secs_f64()),
        String::new(),
    ));
    let catch_cpu = (process_cpu() - cpu).as_secs_f64();
    rows.push((
        "  per CPU-second: read alone / catch-up".into(),
        format!(
            "{:.0} / {:.0}",
            stored as f64 / read_cpu,
            stored as f64 / catch_cpu
        ),
        String::new(),
    ));
    identity.save().expect("save");
    drop(identity);
    let store = Arc::new(SqliteStore::open(&dir).expect("store"));
    let t = Instant::now();
    let identity = Identity::open(&dir, config.clone(), store).expect("identity");
    runtime.block_on(identity.sync()).expect("catch up");
    rows.push((
        "restart: load saved graph".into(),
        format!("{:.2} s", t.elapsed().as_secs_f64()),
        String::new(),
    ));
    let stored_profiles = identity.search(None, None, 1).0.len();
    assert!(stored_profiles > 0, "profiles were built");

    let mut rng = Rng(7);
    let mut lookups = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..5000 {
        let p = rng.below(profiles as u64);
        let id = match rng.below(3) {
            0 => Identifier {
                kind: IdType::AnonymousId,
                value: format!("anon-{p}-0"),
            },
            1 => Identifier {
                kind: IdType::UserId,
                value: format!("user-{p}"),
            },
            _ => Identifier {
                kind: IdType::Email,
                value: format!("person{p}@example.com"),
            },
        };
        let t = Instant::now();
        let found = identity.profile(&id).map(|v| v.to_string());
        let took = t.elapsed();
        if found.is_none() {
            continue;
        }
        lookups.push(took);
        let t = Instant::now();
        let page = runtime
            .block_on(identity.timeline(&id, None, 50))
            .expect("timeline")
            .expect("known");
        let body = json!({"events": page.0, "next_cursor": page.1}).to_string();
        pages.push(t.elapsed());
        assert!(body.len() > 2);
    }
    let n = lookups.len();
    rows.push((
        format!("profile lookup p50 ({n} lookups)"),
        ms(percentile(&mut lookups, 0.5)),
        String::new(),
    ));
    rows.push((
        "profile lookup p99".into(),
        ms(percentile(&mut lookups, 0.99)),
        "≤ 5 ms".into(),
    ));
    rows.push((
        "timeline page (50) p50".into(),
        ms(percentile(&mut pages, 0.5)),
        String::new(),
    ));
    rows.push((
        "timeline page (50) p99".into(),
        ms(percentile(&mut pages, 0.99)),
        "≤ 10 ms".into(),
    ));

    drop(identity);
    let _ = std::fs::remove_dir_all(&dir);

    // 3. HTTP ingestion with identity resolution following the store, against ingestion alone.
    let n_ingest = env_usize("SEAM_BENCH_INGEST_EVENTS", 100_000);
    let bodies: Vec<String> = traffic(0..n_ingest / 10, 10)
        .chunks(100)
        .map(|b| json!({"writeKey": "wk_bench", "batch": b}).to_string())
        .collect();
    let mut best = [(f64::MAX, f64::MAX); 2];
    for round in 0..6 {
        let on = round % 2 == 1;
        let (acked, caught_up) = runtime.block_on(ingest(on, &bodies));
        let b = &mut best[on as usize];
        *b = (b.0.min(acked), b.1.min(caught_up));
    }
    let rate = |secs: f64| n_ingest as f64 / secs;
    rows.push((
        format!("ingest, resolution off ({n_ingest} events, best of 3)"),
        format!("{:.0} events/s", rate(best[0].0)),
        String::new(),
    ));
    rows.push((
        "ingest, resolution on (acknowledged)".into(),
        format!("{:.0} events/s", rate(best[1].0)),
        String::new(),
    ));
    rows.push((
        "  ratio on/off (acknowledged)".into(),
        format!("{:.0}%", 100.0 * best[0].0 / best[1].0),
        "≥ 80%".into(),
    ));
    rows.push((
        "  ratio on/off (until profiles caught up)".into(),
        format!("{:.0}%", 100.0 * best[0].0 / best[1].1),
        String::new(),
    ));

    print_table(total, profiles, rows);
}

fn print_table(total: usize, profiles: usize, rows: Vec<(String, String, String)>) {
    println!("\nidentity benchmark ({total} events, {profiles} profiles)\n");
    println!(
        "| {:<48} | {:>18} | {:>10} |",
        "measure", "result", "target"
    );
    println!("|{:-<50}|{:-<20}|{:-<12}|", "", "", "");
    for (a, b, c) in rows {
        println!("| {a:<48} | {b:>18} | {c:>10} |");
    }
}
