//! The `rbuild` binary: argument parsing, one module per subcommand, and the
//! mapping of errors to exit codes. Libraries return typed errors; only this
//! crate prints and decides how the process ends.

mod commands;
mod root;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
