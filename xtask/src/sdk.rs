//! `cargo xtask build-sdk`: compile sdk/web to wasm, generate bindings with the locked
//! wasm-bindgen, shrink with wasm-opt, assemble `target/sdk/`, and enforce the size budget.

use crate::install;
use crate::util::{self, root, run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files a site serves for the SDK; `seam.js` is the entry script.
pub fn out_dir() -> PathBuf {
    util::target_dir().join("sdk")
}

/// Builds the SDK and returns its size report. Fails when the gzip total exceeds the budget.
pub fn build_sdk() -> Result<SizeReport, String> {
    install::wasm_toolchain()?;
    let root = root();
    run(util::cargo().args([
        "build",
        "--package",
        "seam-sdk",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm",
    ]))?;
    let target = util::target_dir();
    let wasm = target.join("wasm32-unknown-unknown/wasm/seam_sdk.wasm");
    let bindgen_dir = target.join("sdk-bindgen");
    let _ = std::fs::remove_dir_all(&bindgen_dir);
    run(Command::new("wasm-bindgen")
        .arg(&wasm)
        .arg("--out-dir")
        .arg(&bindgen_dir)
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--omit-default-module-path",
        ]))?;

    let out = out_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    run(Command::new(install::npm_bin("wasm-opt"))
        .arg(bindgen_dir.join("seam_sdk_bg.wasm"))
        .args(["-Oz", "--strip-debug", "--strip-producers", "-o"])
        .arg(out.join("seam_sdk_bg.wasm")))?;
    copy(&bindgen_dir.join("seam_sdk.js"), &out.join("seam_sdk.js"))?;
    copy(&root.join("sdk/web/js/seam.js"), &out.join("seam.js"))?;

    let report = SizeReport::measure(&out)?;
    report.print();
    let budget = gzip_budget()?;
    if report.total_gzip > budget {
        return Err(format!(
            "SDK gzip total {} B exceeds the budget of {} B in sdk/web/size-budget.toml",
            report.total_gzip, budget
        ));
    }
    eprintln!(
        "xtask: SDK gzip total {} B within budget {} B; files in {}",
        report.total_gzip,
        budget,
        out.display()
    );
    Ok(report)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// `gzip_total_bytes = N` from `sdk/web/size-budget.toml`.
fn gzip_budget() -> Result<u64, String> {
    let path = root().join("sdk/web/size-budget.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "gzip_total_bytes")
        .and_then(|(_, v)| v.trim().replace('_', "").parse().ok())
        .ok_or_else(|| format!("{} has no `gzip_total_bytes = N` line", path.display()))
}

pub struct FileSize {
    pub name: String,
    pub raw: u64,
    pub gzip: u64,
    pub brotli: u64,
}

pub struct SizeReport {
    pub files: Vec<FileSize>,
    pub total_raw: u64,
    pub total_gzip: u64,
    pub total_brotli: u64,
}

impl SizeReport {
    /// Sizes of every file in `dir`: everything there is loaded by a page that uses the SDK.
    pub fn measure(dir: &Path) -> Result<Self, String> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut files = Vec::new();
        for entry in entries {
            let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            files.push(FileSize {
                name: entry.file_name().to_string_lossy().into_owned(),
                raw: bytes.len() as u64,
                gzip: gzip_len(&bytes),
                brotli: brotli_len(&bytes),
            });
        }
        Ok(SizeReport {
            total_raw: files.iter().map(|f| f.raw).sum(),
            total_gzip: files.iter().map(|f| f.gzip).sum(),
            total_brotli: files.iter().map(|f| f.brotli).sum(),
            files,
        })
    }

    pub fn print(&self) {
        println!(
            "{:<24} {:>10} {:>10} {:>10}",
            "file", "raw B", "gzip B", "brotli B"
        );
        for f in &self.files {
            println!(
                "{:<24} {:>10} {:>10} {:>10}",
                f.name, f.raw, f.gzip, f.brotli
            );
        }
        println!(
            "{:<24} {:>10} {:>10} {:>10}",
            "total", self.total_raw, self.total_gzip, self.total_brotli
        );
    }
}

pub fn gzip_len(bytes: &[u8]) -> u64 {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail").len() as u64
}

pub fn brotli_len(bytes: &[u8]) -> u64 {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("in-memory brotli");
    out.len() as u64
}
