//! BuildKit parser conformance: render `ast::parse` in the S-expression
//! format of BuildKit's `parser/testfiles/*/result` and compare exactly.
//! The data lives outside the repository (see shared/conformance/README.md);
//! when it is absent the test prints a note and passes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rbuild_parser::ast::{self, Args, Node};

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

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}' => {
                if (c as u32) > 0xffff {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                } else {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// BuildKit's `Node.Dump` for one instruction.
fn dump(node: &Node) -> String {
    let mut s = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.value)).collect();
        let _ = write!(s, " [{}]", flags.join(" "));
    }
    match &node.args {
        Args::Words { words, .. } => {
            for w in words {
                s.push(' ');
                s.push_str(&go_quote(&w.value));
            }
        }
        Args::KeyValues { pairs } => {
            for p in pairs {
                let _ = write!(
                    s,
                    " {} {} {}",
                    go_quote(&p.key.value),
                    go_quote(&p.value.value),
                    go_quote(&p.separator)
                );
            }
        }
        Args::Sub { node } => {
            let _ = write!(s, " ({})", dump(node));
        }
    }
    s.trim().to_string()
}

fn render(ast: &ast::Ast) -> String {
    let mut out = String::new();
    for n in &ast.nodes {
        let _ = writeln!(out, "({})", dump(n));
    }
    out
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
        println!("parser conformance: skipped, {} not found", root.display());
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
                let got = render(&a);
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
