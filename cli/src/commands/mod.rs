//! The command line: global flags and the subcommands, one module each.

mod run;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rbuild: a daemonless Dockerfile → OCI image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
pub struct Cli {
    /// Root directory of the image store [env: RBUILD_ROOT; default:
    /// /var/lib/rbuild as root, else $XDG_DATA_HOME/rbuild]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show rbuild's version and build information
    Version,
    /// Run a command in a new sandboxed container
    Run(Box<run::RunArgs>),
}

/// Runs the parsed command line; the returned code becomes the process's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => version::run(),
        Command::Run(args) => run::run(*args),
    }
}
