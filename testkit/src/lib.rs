//! rbuild-testkit: what the test suites of several rbuild crates share
//! (a dev-dependency only; no library code depends on it).
//!
//! A test that needs root or a tool it cannot find must say so when it
//! does not run, never pass silently: [`skipped`] prints the line the
//! suite's readers (people and CI) look for.

#![forbid(unsafe_code)]

use std::io::Write;

/// Says that `test` (or the part `why` names) did not run here, and why:
/// `SKIPPED <test>: <why>`, written to /dev/stderr, past libtest's capture
/// of a passing test's output (which hides `eprintln!`), so that a skip
/// never looks like a pass. Falls back to standard error when /dev/stderr
/// cannot be opened (e.g. inherited from another user).
#[allow(clippy::print_stderr)]
pub fn skipped(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}\n");
    let direct = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/stderr")
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if direct.is_err() {
        eprint!("{line}");
    }
}
