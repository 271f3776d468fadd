//! Architecture invariant: the folders of `src/` are layers, and a layer imports only the
//! layers below it. `base` (the vocabulary) imports nothing of the project; `logic` (pure:
//! config, model, schedules, the operators' languages) imports `base`; `io` (the kernel and
//! the network) imports both; `health`, `cli` and `daemon` sit on top. So every pure decision
//! can be tested without root, and no import cycle can run through two layers.
//!
//! The check reads the source as text: `crate::LAYER` paths, and the first segment of every
//! item of a `use crate::{...}` group.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Each layer and the layers it may import (itself included).
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["base"]),
    ("logic", &["base", "logic"]),
    ("io", &["base", "logic", "io"]),
    ("health", &["base", "logic", "io", "health"]),
    ("cli", &["base", "logic", "io", "cli"]),
    ("daemon", &["base", "logic", "io", "health", "daemon"]),
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level modules a file names through `crate::`.
fn imported_layers(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` in a macro is the same crate.
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            names.extend(group_heads(group));
        } else {
            names.insert(identifier(rest).to_owned());
        }
    }
    names
}

/// The first path segment of each top-level item of a `{...}` group (`text` starts after the
/// opening brace).
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                heads.push(identifier(&text[i..]).to_owned());
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    let mut checked = 0;
    for (layer, may_import) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "the layer {layer} has no files");
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            checked += 1;
            for name in imported_layers(&text) {
                if name != "self" && !may_import.contains(&name.as_str()) {
                    broken.push(format!(
                        "{} ({layer}) imports crate::{name}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files were read");
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn every_module_of_the_library_is_in_a_layer() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';'))
        .collect();
    let layers: Vec<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        modules.iter().copied().collect::<BTreeSet<_>>(),
        layers.iter().copied().collect::<BTreeSet<_>>(),
        "lib.rs declares exactly the layers"
    );
}

#[test]
fn the_reader_finds_grouped_and_plain_imports() {
    let text = "use crate::{\n    base::mac::MacAddr,\n    logic::{config, model::{Model}},\n};\n\
                fn f() { crate::io::bpf::load(); }";
    assert_eq!(
        imported_layers(text),
        ["base", "io", "logic"].map(String::from).into(),
    );
}
