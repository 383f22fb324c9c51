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
    let argv1 = std::env::args_os().nth(1);
    if argv1.as_deref() == Some(std::ffi::OsStr::new(rbuild_sandbox::EXEC_ARG)) {
        rbuild_sandbox::exec_main();
    }
    if argv1.as_deref() == Some(std::ffi::OsStr::new(rbuild_container::monitor::MONITOR_ARG)) {
        let rest: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        rbuild_container::monitor::main(&rest);
    }
    // Before any thread starts: a build's per-file lists are made on
    // several threads, and one arena per thread kept each one's peak.
    rbuild_sandbox::limit_malloc_arenas();
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
    match commands::run(cli) {
        Ok(code) => code,
        // Printed already, as docker prints it.
        Err(err) if err.is::<commands::container::Reported>() => ExitCode::from(
            err.downcast_ref::<commands::container::Reported>()
                .map_or(1, |r| r.0),
        ),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
