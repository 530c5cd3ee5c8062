//! `cargo xtask bench identity`: identity resolution throughput and profile read latency.

fn main() {
    println!("identity bench: not yet written");
}
