//! `cargo xtask bench handler`: the request path's CPU per event without HTTP, threads or disk:
//! a 50-event batch like the ingest bench's split into messages, each validated, normalised and
//! written as stored. One thread, so the figure is steady where the ingest bench's wall-clock
//! ones are not; the baseline in the same run is serde_json alone parsing the batch and writing
//! each message back, so the ratio is what normalisation costs on top of reading and writing
//! JSON at all.
//!
//! `--rounds N` (default 30): each row's figure is its fastest round, rounds alternating
//! between the rows so that both see the same machine.

mod shared;

use seam_collector::identity::input::Reads;
use seam_collector::message::{RequestInfo, normalise, parse_batch, parse_time};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

/// The allocator the `seam` binary runs with, so figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS_PER_BATCH: usize = 50;
const BATCHES_PER_ROUND: usize = 400;

/// The ingest bench's batch (its message IDs fixed).
fn batch() -> String {
    let events: Vec<Value> = (0..EVENTS_PER_BATCH)
        .map(|i| shared::browser_message(i, &format!("00000000001234-{i:02}")))
        .collect();
    json!({"batch": events, "writeKey": "wk", "sentAt": "2026-11-23T10:00:01.000Z"}).to_string()
}

/// Microseconds per event of one round of `step` over the batch.
fn round(body: &str, step: &dyn Fn(&str) -> usize) -> f64 {
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..BATCHES_PER_ROUND {
        bytes += step(black_box(body));
    }
    black_box(bytes);
    started.elapsed().as_secs_f64() * 1e6 / (BATCHES_PER_ROUND * EVENTS_PER_BATCH) as f64
}

/// serde_json alone: the batch parsed into values, each message written back.
fn parse_and_write(body: &str) -> usize {
    let parsed: Value = serde_json::from_str(body).expect("the batch parses");
    parsed["batch"]
        .as_array()
        .expect("a batch array")
        .iter()
        .map(|m| serde_json::to_string(m).expect("writes").len())
        .sum()
}

/// What the collector does per request before the store: split, validate, normalise, write;
/// with identity resolution on, also parse the fields it reads from what is stored.
fn request_path(body: &str, info: &RequestInfo<'_>, identity: bool) -> usize {
    let mut envelope = parse_batch(body).expect("the batch parses");
    let messages = std::mem::take(&mut envelope.messages);
    messages
        .into_iter()
        .map(|raw| {
            let reads = identity.then_some(Reads::MESSAGE);
            let normalised =
                normalise(raw, &envelope, info, reads).expect("every message is valid");
            normalised.json.len() + normalised.read.len()
        })
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(30, |v| v.parse().expect("--rounds takes a number"));
    let body = batch();
    let info = RequestInfo::new(
        parse_time("2026-11-23T10:00:02Z").expect("a time"),
        Some("203.0.113.9".parse().expect("an IP")),
        false,
        Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"),
        None,
    );
    let (mut baseline, mut path, mut with_identity) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..rounds {
        baseline = baseline.min(round(&body, &parse_and_write));
        path = path.min(round(&body, &|b| request_path(b, &info, false)));
        with_identity = with_identity.min(round(&body, &|b| request_path(b, &info, true)));
    }
    println!(
        "handler bench: {EVENTS_PER_BATCH}-event batch of {} bytes, {BATCHES_PER_ROUND} batches per round, fastest of {rounds} rounds, one thread\n",
        body.len()
    );
    println!("| {:<44} | µs/event | vs baseline |", "step");
    println!("|{}|---------:|------------:|", "-".repeat(46));
    for (step, us) in [
        ("serde_json parse + write (baseline)", baseline),
        ("split + validate + normalise + write", path),
        ("… + the fields identity reads", with_identity),
    ] {
        println!(
            "| {step:<44} | {us:8.3} | {:10.0}% |",
            100.0 * us / baseline
        );
    }
}
