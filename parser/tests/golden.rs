//! Golden tests over testdata/dockerfiles: every `<name>.Dockerfile` parses
//! to the JSON in `<name>.json`, and every `invalid/<name>.Dockerfile` fails
//! with the rendered diagnostic in `invalid/<name>.err`.
//! `RBUILD_BLESS=1 cargo test -p rbuild-parser --test golden` rewrites them.

use std::path::{Path, PathBuf};

fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/dockerfiles"
    ))
}

fn dockerfiles(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    v.sort();
    v
}

fn bless() -> bool {
    std::env::var_os("RBUILD_BLESS").is_some_and(|v| v == "1")
}

/// Compare `got` with the file at `expected`, or rewrite it when blessing.
fn check(expected: &Path, got: &str, failures: &mut Vec<String>) {
    if bless() {
        std::fs::write(expected, got)
            .unwrap_or_else(|e| panic!("writing {}: {e}", expected.display()));
        return;
    }
    match std::fs::read_to_string(expected) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!(
            "{} differs\n--- want\n{want}\n--- got\n{got}",
            expected.display()
        )),
        Err(e) => failures.push(format!(
            "{}: {e} (run with RBUILD_BLESS=1)",
            expected.display()
        )),
    }
}

#[test]
fn valid_dockerfiles_match_their_json() {
    let mut failures = Vec::new();
    let files = dockerfiles(&testdata());
    assert!(!files.is_empty(), "no golden Dockerfiles found");
    for path in &files {
        let src = std::fs::read(path).expect("read Dockerfile");
        match rbuild_parser::parse(&src) {
            Ok(df) => {
                let json = serde_json::to_string_pretty(&df).expect("serialize") + "\n";
                check(&path.with_extension("json"), &json, &mut failures);
            }
            Err(e) => failures.push(format!(
                "{} failed to parse:\n{}",
                path.display(),
                e.render("Dockerfile", &src)
            )),
        }
    }
    println!("golden: {} valid Dockerfiles", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_dockerfiles_match_their_diagnostics() {
    let mut failures = Vec::new();
    let files = dockerfiles(&testdata().join("invalid"));
    assert!(!files.is_empty(), "no invalid golden Dockerfiles found");
    for path in &files {
        let src = std::fs::read(path).expect("read Dockerfile");
        match rbuild_parser::parse(&src) {
            Ok(_) => failures.push(format!("{} parsed but must fail", path.display())),
            Err(e) => check(
                &path.with_extension("err"),
                &e.render("Dockerfile", &src),
                &mut failures,
            ),
        }
    }
    println!("golden: {} invalid Dockerfiles", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
