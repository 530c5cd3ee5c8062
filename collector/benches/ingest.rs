//! `cargo xtask bench ingest`: durable ingestion throughput and latency against a parse-only ceiling.

fn main() {
    println!("ingest bench: being written");
}
