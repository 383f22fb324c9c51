//! `rbuild debug`: tools for looking inside rbuild, for people and tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::dockerfile_input::DockerfileInput;

#[derive(Debug, Args)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: DebugCommand,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree
    Parse(ParseArgs),
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile (`-` reads stdin)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print the typed parse tree as JSON (default: BuildKit's S-expression
    /// form of the raw syntax tree, one instruction per line)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DebugArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DebugCommand::Parse(args) => parse(args),
    }
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let input = DockerfileInput::read(Some(&args.file), std::path::Path::new("."))?;
    let rendered = if args.json {
        rbuild_parser::parse(&input.bytes).map(|d| {
            let mut s = serde_json::to_string_pretty(&d).expect("parse tree serializes");
            s.push('\n');
            s
        })
    } else {
        rbuild_parser::ast::parse(&input.bytes).map(|ast| ast.to_sexp())
    };
    match rendered {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprint!("{}", err.render(&input.display_name, &input.bytes));
            Ok(ExitCode::from(1))
        }
    }
}
