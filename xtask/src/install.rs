//! Installs what a fresh machine lacks, idempotently: each step checks first and does nothing
//! when its tool is already there.

use crate::util::{self, output, root, run};
use std::path::PathBuf;
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Everything `build-sdk` needs: the wasm target, the matching wasm-bindgen CLI, and wasm-opt.
pub fn wasm_toolchain() -> Result<(), String> {
    wasm_target()?;
    wasm_bindgen_cli()?;
    npm_tools()
}

pub fn wasm_target() -> Result<(), String> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The `wasm-bindgen` version in Cargo.lock; the CLI must match it exactly.
pub fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock_path = root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
        {
            return Ok(v.trim_matches('"').to_string());
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

/// Installs `wasm-bindgen` and `wasm-bindgen-test-runner` at exactly the locked version.
/// Not `--locked`: one of the CLI's pinned dependencies is missing from the registry here.
pub fn wasm_bindgen_cli() -> Result<(), String> {
    let want = locked_wasm_bindgen_version()?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    let runner_ok = util::on_path("wasm-bindgen-test-runner");
    if have.split_whitespace().nth(1) == Some(want.as_str()) && runner_ok {
        return Ok(());
    }
    eprintln!(
        "xtask: installing wasm-bindgen-cli {want} (found: {})",
        have.trim()
    );
    run(util::cargo().args([
        "install",
        "wasm-bindgen-cli",
        "--force",
        "--version",
        &format!("={want}"),
    ]))
}

fn npm_tools_dir() -> PathBuf {
    root().join("xtask/tools")
}

/// A tool installed by `npm ci` from `xtask/tools/package-lock.json`.
pub fn npm_bin(name: &str) -> PathBuf {
    npm_tools_dir().join("node_modules/.bin").join(name)
}

/// Installs the npm packages pinned in `xtask/tools/` (wasm-opt from `binaryen`, terser, and
/// Segment's analytics.js and RudderStack's SDK for the compatibility tests) into its git-ignored `node_modules/`,
/// unless the lock file is already satisfied.
pub fn npm_tools() -> Result<(), String> {
    let dir = npm_tools_dir();
    let stamp = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let current = match (std::fs::read(&stamp), std::fs::read(&lock)) {
        (Ok(a), Ok(b)) => same_packages(&a, &b),
        _ => false,
    };
    if current && npm_bin("wasm-opt").exists() {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
}

/// npm writes `node_modules/.package-lock.json` with the installed packages; compare the
/// `"packages"` sections loosely by checking each locked `"version"` line appears in it.
fn same_packages(installed: &[u8], locked: &[u8]) -> bool {
    let installed = String::from_utf8_lossy(installed);
    String::from_utf8_lossy(locked)
        .lines()
        .filter(|l| l.trim_start().starts_with("\"integrity\""))
        .all(|l| installed.contains(l.trim()))
}

/// Debian's Chromium and ChromeDriver for the browser tests, installed with apt when running
/// as root; otherwise a message saying what to install.
pub fn chromium() -> Result<(), String> {
    let have = |p: &str| std::path::Path::new(p).exists();
    if have(CHROMIUM) && have(CHROMEDRIVER) {
        return Ok(());
    }
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        return Err(format!(
            "{CHROMIUM} and {CHROMEDRIVER} are needed for the browser tests; \
             install them with `sudo apt-get install -y chromium chromium-driver`"
        ));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
