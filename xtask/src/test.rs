//! `cargo xtask test`: install what is missing, then formatting, lints, native tests, the SDK
//! build with its size budget, wasm tests in headless Chromium, and the end-to-end tests.

use crate::install::{self, CHROMEDRIVER, CHROMIUM};
use crate::util::{self, step};
use std::time::Instant;

pub fn run() -> Result<(), String> {
    let start = Instant::now();
    step(
        "install: wasm target, wasm-bindgen-cli, npm tools",
        install::wasm_toolchain,
    )?;
    step("install: chromium and chromedriver", install::chromium)?;
    step("cargo fmt --check", || {
        util::run(util::cargo().args(["fmt", "--all", "--check"]))
    })?;
    step("clippy (native)", || {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (wasm32)", || {
        util::run(util::cargo().args([
            "clippy",
            "--package",
            "seam-sdk",
            "--package",
            "seam-sdk-core",
            "--all-targets",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("build-sdk (size budget)", || {
        crate::sdk::build_sdk().map(|_| ())
    })?;
    step("native and end-to-end tests", || {
        util::run(
            util::cargo()
                .args(["test", "--workspace"])
                .env("SEAM_SDK_DIR", crate::sdk::out_dir())
                .env("SEAM_CHROMIUM", CHROMIUM)
                .env("CHROMEDRIVER", CHROMEDRIVER),
        )
    })?;
    step("wasm tests in headless Chromium", || {
        util::run(
            util::cargo()
                .args([
                    "test",
                    "--package",
                    "seam-sdk",
                    "--target",
                    "wasm32-unknown-unknown",
                ])
                .env("CHROMEDRIVER", CHROMEDRIVER)
                .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
        )
    })?;
    eprintln!(
        "\nxtask: all checks and tests passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
