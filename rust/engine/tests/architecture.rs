//! The layering rules of ARCHITECTURE.md, checked on the engine's source:
//! each layer (a folder of src/) names only the layers below it, protocol
//! and runtime code never reads a buffer on the host (that is what keeps
//! shares resident on a GPU), and library files stay short.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Layers bottom to top; a layer may name itself and those before it.
const LAYERS: &[&str] = &[
    "error", "prg", "ring", "device", "net", "protocol", "runtime",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (path relative to src/, library code: the text before any test module).
fn library_files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read source");
            let lib = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            (rel, lib)
        })
        .collect()
}

fn layer_of(rel: &str) -> Option<usize> {
    let top = rel.split('/').next()?.trim_end_matches(".rs");
    LAYERS.iter().position(|l| *l == top)
}

#[test]
fn layers_only_name_the_layers_below() {
    let mut bad = Vec::new();
    for (rel, code) in library_files() {
        let Some(me) = layer_of(&rel) else { continue };
        for (i, upper) in LAYERS.iter().enumerate().skip(me + 1) {
            let needle = format!("crate::{upper}");
            if code.contains(&needle) {
                bad.push(format!("{rel} (layer {}) names {needle}", LAYERS[me]));
            }
            let _ = i;
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn protocol_and_runtime_never_read_buffers_on_the_host() {
    for (rel, code) in library_files() {
        if rel.starts_with("protocol/") || rel.starts_with("runtime/") {
            for bad in [".host()", ".host_mut()", "device::cpu", "&Cpu", "Cpu)"] {
                assert!(!code.contains(bad), "{rel} uses {bad}");
            }
        }
    }
}

/// Library code of the engine and of the binding crate: no `unwrap`,
/// `expect`, `panic!`, `unreachable!` (errors are values; tests may unwrap).
#[test]
fn library_code_does_not_panic() {
    let mut files = library_files();
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/src");
    let mut extra = Vec::new();
    sources(&py, &mut extra);
    for p in extra {
        let text = fs::read_to_string(&p).expect("read source");
        let lib = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
        files.push((p.to_string_lossy().into_owned(), lib));
    }
    let mut bad = Vec::new();
    for (rel, code) in files {
        for (i, line) in code.lines().enumerate() {
            let code_part = line.split("//").next().unwrap_or("");
            for word in [
                ".unwrap()",
                ".expect(",
                "panic!(",
                "unreachable!(",
                "todo!(",
                "unimplemented!(",
            ] {
                if code_part.contains(word) {
                    bad.push(format!("{rel}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "panicking calls in library code:\n{}",
        bad.join("\n")
    );
}

#[test]
fn library_files_stay_short() {
    let long: BTreeMap<String, usize> = library_files()
        .into_iter()
        .map(|(rel, code)| (rel, code.lines().count()))
        .filter(|(_, n)| *n > 700)
        .collect();
    assert!(long.is_empty(), "library files over 700 lines: {long:?}");
}
