//! `cargo xtask bench <name>`: each benchmark is a harness-less bench target that prints a table.

use crate::util;

/// (name, package, bench target, what it measures)
const BENCHES: &[(&str, &str, &str, &str)] = &[
    (
        "sdk",
        "seam-e2e",
        "sdk",
        "SDK size and track() main-thread cost in headless Chromium",
    ),
    (
        "ingest",
        "seam-collector",
        "ingest",
        "durable ingestion throughput and latency",
    ),
    (
        "identity",
        "seam-collector",
        "identity",
        "identity resolution and profile reads",
    ),
    (
        "handler",
        "seam-collector",
        "handler",
        "request-path CPU per event (parse, normalise, write), one thread",
    ),
];

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(name) = args.first() else {
        return Err(list());
    };
    let Some((_, package, target, _)) = BENCHES.iter().find(|(n, ..)| n == name) else {
        return Err(format!("unknown benchmark `{name}`\n{}", list()));
    };
    if *name == "sdk" {
        crate::sdk::build_sdk()?;
        crate::install::chromium()?;
    }
    util::run(
        util::cargo()
            .args(["bench", "--package", package, "--bench", target, "--"])
            .args(&args[1..])
            .env("SEAM_SDK_DIR", crate::sdk::out_dir())
            .env("SEAM_CHROMIUM", crate::install::CHROMIUM)
            .env("CHROMEDRIVER", crate::install::CHROMEDRIVER),
    )
}

fn list() -> String {
    let mut s = String::from("usage: cargo xtask bench <name>\nbenchmarks:\n");
    for (name, _, _, what) in BENCHES {
        s.push_str(&format!("  {name:<10} {what}\n"));
    }
    s
}
