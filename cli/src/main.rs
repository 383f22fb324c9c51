//! The `rbuild` binary: argument parsing, one module per subcommand, and the
//! mapping of errors to exit codes. Libraries return typed errors; only this
//! crate prints and decides how the process ends.

mod commands;
mod root;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its init process; that must
    // happen before anything else (no clap, no threads).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(rbuild_executor::sandbox::INIT_ARG))
    {
        rbuild_executor::sandbox::init_main();
    }
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
