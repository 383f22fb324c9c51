//! `rbuild logout [REGISTRY]`: forgets stored credentials (Docker's config
//! file and its credential helper).

use std::process::ExitCode;

use rbuild_registry::DockerConfig;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry (default: Docker Hub)
    pub registry: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = super::login::registry_domain(args.registry.as_deref());
    let mut config = DockerConfig::load(&DockerConfig::default_path())?;
    if config.erase(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
