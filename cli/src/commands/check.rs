//! `rbuild check`: parse a Dockerfile and report its errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::dockerfile_input::DockerfileInput;

/// Parse the Dockerfile and print its errors (exit 1), or nothing (exit 0)
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// The build context directory
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let input = DockerfileInput::read(args.file.as_deref(), &args.context)?;
    match rbuild_parser::parse(&input.bytes) {
        Ok(dockerfile) => {
            for warning in &dockerfile.warnings {
                eprint!("{}", warning.render(&input.display_name, &input.bytes));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprint!("{}", err.render(&input.display_name, &input.bytes));
            Ok(ExitCode::from(1))
        }
    }
}
