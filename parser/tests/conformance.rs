//! BuildKit parser conformance: render `ast::parse` in the S-expression
//! format of BuildKit's `parser/testfiles/*/result` and compare exactly.
//! The data lives outside the repository (see shared/conformance/README.md);
//! when it is absent the test prints a note and passes.

use std::path::{Path, PathBuf};

use rbuild_parser::ast;

/// `../shared/conformance` from the workspace root; from a worktree under
/// `wt/<name>/` the same directory is one level further up.
fn conformance_dir() -> PathBuf {
    let primary = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance"
    ));
    let from_worktree = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ));
    if !primary.exists() && from_worktree.exists() {
        from_worktree
    } else {
        primary
    }
}

fn case_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn buildkit_parser_testfiles() {
    let root = conformance_dir().join("buildkit");
    if !root.exists() {
        skipped(
            "buildkit_parser_testfiles",
            &format!("no BuildKit conformance data at {}", root.display()),
        );
        return;
    }
    let positive = case_dirs(&root.join("parser-testfiles"));
    let negative = case_dirs(&root.join("parser-testfiles-negative"));
    let mut failures = Vec::new();
    let mut pos_ok = 0;
    for dir in &positive {
        let src = std::fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let want = std::fs::read_to_string(dir.join("result")).expect("result");
        match ast::parse(&src) {
            Ok(a) => {
                let got = a.to_sexp();
                if got.trim_end() == want.trim_end() {
                    pos_ok += 1;
                } else {
                    failures.push(format!(
                        "{}:\n--- want\n{}\n--- got\n{}",
                        dir.display(),
                        want.trim_end(),
                        got.trim_end()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", dir.display())),
        }
    }
    let mut neg_ok = 0;
    for dir in &negative {
        let src = std::fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        // Either layer may reject it; the full parse includes the raw one.
        match ast::parse(&src) {
            Err(_) => neg_ok += 1,
            Ok(_) => failures.push(format!("{}: parsed but must fail", dir.display())),
        }
    }
    println!(
        "parser conformance: {pos_ok}/{} positive, {neg_ok}/{} negative",
        positive.len(),
        negative.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

use rbuild_testkit::skipped;
