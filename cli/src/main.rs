//! The `rbuild` binary: argument parsing, one module per subcommand, and the
//! mapping of errors to exit codes. Libraries return typed errors; only this
//! crate prints and decides how the process ends.

// clap turns the flags' doc comments into `--help` text, where `NAME[:TAG]`
// is usage syntax that users read, not an intra-doc link.
#![allow(rustdoc::broken_intra_doc_links)]

mod commands;
mod root;

use std::process::ExitCode;

use clap::Parser;

/// True when `args` (after [`commands::with_default_subcommand`]) run
/// `rbuild build`: the first argument that is not a global flag is
/// `build` (`rbuild run img build` is not a build).
fn is_build(args: &[std::ffi::OsString]) -> bool {
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--root" {
            rest.next();
            continue;
        }
        if a.to_string_lossy().starts_with("--root=") {
            continue;
        }
        return a == "build";
    }
    false
}

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its init process; that must
    // happen before anything else (no clap, no threads).
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(rbuild_sandbox::INIT_ARG))
    {
        rbuild_sandbox::init_main();
    }
    let args = commands::with_default_subcommand(
        std::env::args_os().collect(),
        &commands::subcommand_names(),
    );
    let cli = match commands::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // docker build exits 1 on a bad flag value, not clap's 2; help and
        // version are not errors.
        Err(e) if e.use_stderr() && is_build(&args) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(e) => e.exit(),
    };
    rbuild_store::set_lock_wait_observer(Box::new(report_lock_wait));
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Says what a command waits for when another rbuild process holds the
/// store's gc lock (a build while `cache prune` or `system check` runs, or
/// the other way round), and for how long it waited. Other locks are held
/// for milliseconds and are not reported.
fn report_lock_wait(wait: &rbuild_store::LockWait<'_>) {
    use rbuild_store::LockWait;
    let is_gc = |lock: &std::path::Path| lock.file_name() == Some(std::ffi::OsStr::new("gc.lock"));
    match wait {
        LockWait::Waiting { lock, holders } if is_gc(lock) => {
            let who: Vec<String> = holders
                .iter()
                .map(|h| {
                    let mut command = h.command.clone();
                    if command.chars().count() > 60 {
                        command = command.chars().take(57).collect::<String>() + "...";
                    }
                    format!("pid {} ({command})", h.pid)
                })
                .collect();
            if who.is_empty() {
                eprintln!("waiting for another rbuild process to release the store...");
            } else {
                eprintln!("waiting for the store, in use by {}...", who.join(", "));
            }
        }
        LockWait::Acquired { lock, waited } if is_gc(lock) => {
            eprintln!("waited {:.1}s for the store", waited.as_secs_f64());
        }
        _ => {}
    }
}
