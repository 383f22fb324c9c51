//! The runner of test binaries that spawn sandboxes (`harness = false`):
//! the sandbox re-executes the test binary as its init process, which
//! libtest's own `main` would not let through.

// A test runner reports on stdout like libtest; it runs only in test binaries.
#![allow(clippy::print_stdout)]

use crate as sandbox;

/// Runs `tests` (name, function), each caught on panic, after handing
/// the process to the sandbox init when it was started as one. The first
/// non-flag argument filters tests by name. With `skip` (why this machine
/// cannot run them), each test is reported as `SKIPPED <name>: <why>`
/// instead of run. Ends with `N passed, N failed, N skipped` (CI reads the
/// first two counts); exits 1 when any failed.
pub fn run(tests: &[(&str, fn())], skip: Option<&str>) {
    if std::env::args().nth(1).as_deref() == Some(sandbox::INIT_ARG) {
        sandbox::init_main();
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        if let Some(why) = skip {
            println!("SKIPPED {name}: {why}");
            skipped += 1;
            continue;
        }
        match std::panic::catch_unwind(f) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\n{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}
