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
        "--no-default-features",
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
            "no-modules",
            "--no-typescript",
            "--omit-default-module-path",
        ]))?;

    let out = out_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let optimized = bindgen_dir.join("seam_sdk_small.wasm");
    run(Command::new(install::npm_bin("wasm-opt"))
        .arg(bindgen_dir.join("seam_sdk_bg.wasm"))
        .args(WASM_OPT_FLAGS)
        .arg("-o")
        .arg(&optimized))?;
    // Import and export names become one or two letters (wasm-bindgen's carry hashes); the
    // printed mapping is applied to the glue below. A pass of its own: under `--converge` it
    // would run, and print, more than once. The `target_features` section, which wasm-opt
    // needed until here and browsers never read, goes last (about 110 B gzip).
    let wasm_opt = bindgen_dir.join("seam_sdk_opt.wasm");
    let mapping = Command::new(install::npm_bin("wasm-opt"))
        .arg(&optimized)
        .args([
            "--minify-imports-and-exports-and-modules",
            "--strip-target-features",
            "-o",
        ])
        .arg(&wasm_opt)
        .output()
        .map_err(|e| format!("could not start wasm-opt: {e}"))?;
    if !mapping.status.success() {
        return Err(format!(
            "wasm-opt failed: {}",
            String::from_utf8_lossy(&mapping.stderr)
        ));
    }
    std::fs::copy(&wasm_opt, out.join("seam.wasm"))
        .map_err(|e| format!("cannot copy {}: {e}", wasm_opt.display()))?;
    let glue = rename_in_glue(
        &read(&bindgen_dir.join("seam_sdk.js"))?,
        &String::from_utf8_lossy(&mapping.stdout),
    )?;
    let joined = join_loader(&read(&root.join("sdk/web/js/seam.js"))?, &glue)?;
    let joined_path = bindgen_dir.join("seam.js");
    std::fs::write(&joined_path, joined)
        .map_err(|e| format!("cannot write {}: {e}", joined_path.display()))?;
    run(Command::new(install::npm_bin("terser"))
        .arg(&joined_path)
        .args(["--compress", "passes=2", "--mangle", "--ecma", "2017", "-o"])
        .arg(out.join("seam.js")))?;

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

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Measured smallest for our module among the binaryen size passes (see the report in the
/// SDK's history): `--flatten --rereloop` before `-Oz` saves about 2%.
const WASM_OPT_FLAGS: &[&str] = &[
    "--flatten",
    "--rereloop",
    "-Oz",
    "-Oz",
    "--converge",
    "--zero-filled-memory",
    "--strip-debug",
    "--strip-producers",
];

/// Applies wasm-opt's printed renaming (`["module", "old", "new"]` for imports, `["old",
/// "new"]` for exports) to the wasm-bindgen glue: the import object's keys and module name,
/// and every `wasm.<export>` access.
fn rename_in_glue(glue: &str, mapping: &str) -> Result<String, String> {
    let quoted = |line: &str| -> Vec<String> {
        line.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut out = glue.to_owned();
    let mut module = None;
    for line in mapping.lines() {
        let q = quoted(line);
        match q.as_slice() {
            [m, old, new] => {
                let key = format!("{old}:");
                if !out.contains(&key) {
                    return Err(format!("glue has no import `{old}` to rename"));
                }
                out = out.replace(&key, &format!("{new}:"));
                module = Some((m.clone(), "a"));
            }
            [old, new] => {
                out = replace_word(&out, &format!("wasm.{old}"), &format!("wasm.{new}"));
            }
            _ => {}
        }
    }
    let Some((old_module, new_module)) = module else {
        return Err("wasm-opt printed no import mapping".into());
    };
    Ok(out.replace(&format!("\"{old_module}\":"), &format!("\"{new_module}\":")))
}

/// Replaces `from` where it is not followed by an identifier character.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// The loader with the wasm-bindgen glue (`--target no-modules`) scoped inside its function, so
/// the page loads one classic script plus `seam.wasm`, and no global but `window.seam` appears.
fn join_loader(loader: &str, glue: &str) -> Result<String, String> {
    if loader.matches("/*GLUE*/").count() != 1 {
        return Err("sdk/web/js/seam.js must contain /*GLUE*/ exactly once".into());
    }
    Ok(loader.replace("/*GLUE*/", glue))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minified_names_reach_every_use_in_the_glue() {
        let glue = "const import0 = { __wbg_now_1f: function() {} };\n\
                    return { \"./x_bg.js\": import0 }; wasm.load(1); wasm.loader(2); wasm.memory";
        let mapping = "{\n\"imports\": [\n  [\"./x_bg.js\", \"__wbg_now_1f\", \"a\"]\n ],\n\
                       \"exports\": [\n  [\"load\", \"b\"],\n  [\"memory\", \"c\"]\n ]\n}";
        assert_eq!(
            rename_in_glue(glue, mapping).unwrap(),
            "const import0 = { a: function() {} };\n\
             return { \"a\": import0 }; wasm.b(1); wasm.loader(2); wasm.c"
        );
    }
}
