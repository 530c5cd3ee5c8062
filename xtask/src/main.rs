//! Build and run orchestration: `cargo xtask build-sdk | demo | test | bench <name>`.
//! Every set-up step lives here so that no step lives only in someone's shell history.

mod bench;
mod install;
mod sdk;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build-sdk        build the browser SDK into target/sdk/ and check its size budget
  demo [ARGS..]    build the SDK and run `seam demo` (extra ARGS go to `seam demo`)
  test             install what is missing, then run every check and test suite
  bench <name>     run a benchmark and print its table (names: sdk, ingest, identity)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-sdk") => sdk::build_sdk().map(|_| ()),
        Some("demo") => demo(&args[1..]),
        Some("test") => test::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the SDK and runs the collector's demo mode on the embedded store.
fn demo(extra: &[String]) -> Result<(), String> {
    install::wasm_toolchain()?;
    sdk::build_sdk()?;
    let sdk_dir = sdk::out_dir();
    let demo_dir = util::root().join("demo-site");
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--release",
        "--package",
        "seam-collector",
        "--bin",
        "seam",
        "--",
        "demo",
    ]);
    cmd.arg("--sdk-dir").arg(&sdk_dir);
    cmd.arg("--site-dir").arg(&demo_dir);
    cmd.args(extra);
    util::run(&mut cmd)
}
