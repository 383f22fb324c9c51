//! The command line: global flags and the subcommands, one module each.

mod bake;
pub mod build;
mod cache;
mod check;
mod completion;
pub mod container;
mod debug;
mod dockerfile_input;
mod export;
mod history;
mod images;
mod import;
mod info;
mod inspect;
mod load;
mod login;
mod logout;
mod network;
mod output;
mod prune;
mod pull;
pub mod push;
mod rmi;
mod run;
mod save;
mod sbom;
mod size;
mod system;
mod table;
mod tag;
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
    /// Build an image from a Dockerfile (the default: `rbuild [OPTIONS] PATH`)
    Build(Box<build::BuildArgs>),
    /// Build the targets of a bake file (docker-bake.hcl, .json, compose.yaml)
    Bake(Box<bake::BakeArgs>),
    /// Run a command in a new sandboxed container
    Run(Box<run::RunArgs>),
    /// Create a new container (not started)
    Create(Box<run::RunArgs>),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Attach to a running container's output (and stdin)
    Attach(container::AttachArgs),
    /// Run a command in a running container
    Exec(container::ExecArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Pause all processes within one or more containers
    Pause(container::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::NamesArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::NamesArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Inspect changes to files on a container's filesystem
    Diff(container::NamesArgs),
    /// Copy files between a container and the host
    Cp(container::CpArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// Display containers' resource usage
    Stats(container::StatsArgs),
    /// Update the resource limits of containers
    Update(container::UpdateArgs),
    /// List a container's published ports
    Port(container::PortArgs),
    /// Show events of containers, images and volumes
    Events(container::EventsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(container::VolumeCommand),
    /// Create an image from a root filesystem (tar, tar.gz, directory, or -)
    Import(import::Args),
    /// Write an image's flattened filesystem as a tar
    Export(export::Args),
    /// List images
    Images(images::Args),
    /// Show low-level information on images as JSON
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Show the software bill of materials (SPDX 2.3) of an image
    Sbom(sbom::Args),
    /// Give an image another name
    Tag(tag::Args),
    /// Remove images
    Rmi(rmi::Args),
    /// Save images to a tar archive (docker-archive + OCI layout)
    Save(save::Args),
    /// Load images from a tar archive (docker-archive or OCI layout)
    Load(load::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Log in to a registry (stores credentials in Docker's config)
    Login(login::Args),
    /// Log out from a registry
    Logout(logout::Args),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage the store
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage the build cache index
    #[command(subcommand, alias = "builder")]
    Cache(CacheCommand),
    /// Show where the store is and what it holds
    Info,
    /// Check a Dockerfile: parse errors, Build Checks, cache rules
    Check(check::CheckArgs),
    /// Inspect rbuild's internals (parse trees)
    Debug(debug::DebugArgs),
    /// Show rbuild's version and build information
    Version,
    /// Print a shell completion script (bash, zsh, fish)
    Completion(completion::CompletionArgs),
    /// Write rbuild's man pages (one per command) to a directory
    ManPages(completion::ManPagesArgs),
}

/// `rbuild image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(images::Args),
    /// Remove unused images
    Prune(prune::Args),
    /// Remove images
    #[command(alias = "remove")]
    Rm(rmi::Args),
    /// Show low-level information on images
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Give an image another name
    Tag(tag::Args),
    /// Create an image from a root filesystem
    Import(import::Args),
    /// Save images to a tar archive
    Save(save::Args),
    /// Load images from a tar archive
    Load(load::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
}

/// `rbuild container …`
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(container::PsArgs),
    /// Create and run a new container
    Run(Box<run::RunArgs>),
    /// Create a new container
    Create(Box<run::RunArgs>),
    /// Start containers
    Start(container::StartArgs),
    /// Stop containers
    Stop(container::StopArgs),
    /// Restart containers
    Restart(container::StopArgs),
    /// Kill containers
    Kill(container::KillArgs),
    /// Remove containers
    #[command(alias = "remove")]
    Rm(container::RmArgs),
    /// Remove all stopped containers
    Prune(container::PruneArgs),
    /// Display detailed information on containers
    Inspect(inspect::Args),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Run a command in a running container
    Exec(container::ExecArgs),
    /// Export a container's filesystem as a tar archive
    Export(export::Args),
    /// Block until containers stop
    Wait(container::NamesArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Inspect changes on a container's filesystem
    Diff(container::NamesArgs),
    /// Create an image from a container
    Commit(container::CommitArgs),
    /// Copy files between a container and the host
    Cp(container::CpArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Pause containers
    Pause(container::NamesArgs),
    /// Unpause containers
    Unpause(container::NamesArgs),
    /// Display resource usage
    Stats(container::StatsArgs),
    /// Update resource limits
    Update(container::UpdateArgs),
    /// Attach to a running container
    Attach(container::AttachArgs),
    /// List published ports
    Port(container::PortArgs),
}

/// `rbuild system …`
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df(system::DfArgs),
    /// Verify every blob and reference in the store
    Check(system::CheckArgs),
    /// Remove stopped containers, unused images (dangling, or all with -a),
    /// unused volumes with --volumes, and the build cache index
    Prune(SystemPruneArgs),
    /// Show events of containers, images and volumes
    Events(container::EventsArgs),
    /// Show where the store is and what it holds
    Info,
}

/// `rbuild system prune`
#[derive(Debug, clap::Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Prune anonymous volumes (all unused ones with -a)
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation (always the case)
    #[arg(short, long)]
    pub force: bool,
}

/// `rbuild cache …` (docker's `builder du/prune`)
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Show the build cache index's disk usage
    Du(cache::DuArgs),
    /// Remove build cache
    Prune(cache::PruneArgs),
}

/// When the first argument after the global flags is not a subcommand
/// (`rbuild -t app .`, `rbuild .`), inserts `build` there, so docker's
/// habit of building by default works. `rbuild`, `--help`/`-h`,
/// `--version`/`-V` and `help` are left alone.
pub fn with_default_subcommand(
    args: Vec<std::ffi::OsString>,
    subcommands: &[String],
) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    // Skip the global flags (only --root, with its value apart or joined).
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if a == "--root" {
            i += 2;
        } else if a.starts_with("--root=") {
            i += 1;
        } else {
            break;
        }
    }
    let Some(first) = args.get(i) else {
        return args;
    };
    let first = first.to_string_lossy();
    let keep = matches!(
        first.as_ref(),
        "-h" | "--help" | "-V" | "--version" | "help"
    ) || subcommands.iter().any(|s| *s == first);
    if keep {
        return args;
    }
    let mut out = args;
    out.insert(i, "build".into());
    out
}

/// Every subcommand name and alias of `rbuild`.
pub fn subcommand_names() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command()
        .get_subcommands()
        .flat_map(|c| {
            std::iter::once(c.get_name().to_string()).chain(c.get_all_aliases().map(str::to_string))
        })
        .collect()
}

/// Runs the parsed command line; the returned code becomes the process's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that never touch the store don't resolve (or create) it.
    let command = match cli.command {
        Command::Check(args) => return check::run(args),
        Command::Debug(args) => return debug::run(args),
        Command::Version => return version::run(),
        Command::Completion(args) => return completion::run(args),
        Command::ManPages(args) => return completion::run_man_pages(args),
        // Login reads rbuild's config file in the store root (insecure
        // registries) when a root can be named; it never opens the store.
        Command::Login(args) => {
            let root = crate::root::store_root(cli.root).ok();
            return login::run(root.as_deref(), args);
        }
        Command::Logout(args) => return logout::run(args),
        other => other,
    };
    let root = crate::root::store_root(cli.root)?;
    let root = root.as_path();
    match command {
        Command::Check(_)
        | Command::Debug(_)
        | Command::Version
        | Command::Completion(_)
        | Command::ManPages(_)
        | Command::Login(_)
        | Command::Logout(_) => unreachable!("handled above"),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(root, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(root, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(root, a),
        Command::Export(a) => export::run(root, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(root, a),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => inspect::run(root, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::run(root, a),
        Command::Sbom(a) => sbom::run(root, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(root, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(root, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(root, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(root, a),
        Command::Image(ImageCommand::Prune(a)) => prune::run(root, a),
        Command::System(SystemCommand::Df(a)) => system::df(root, a),
        Command::System(SystemCommand::Check(a)) => system::check(root, a),
        Command::Info | Command::System(SystemCommand::Info) => info::run(root),
        Command::Run(args) | Command::Container(ContainerCommand::Run(args)) => {
            run::run(root, *args)
        }
        Command::Create(args) | Command::Container(ContainerCommand::Create(args)) => {
            Ok(match container::create_container(root, &args) {
                Ok(c) => {
                    println!("{}", c.config.id);
                    ExitCode::SUCCESS
                }
                Err(e) => container::create_failed(&e),
            })
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            container::start(root, a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => container::ps(root, a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            container::logs(root, a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            container::attach(root, a)
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            container::exec(root, a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            container::stop(root, a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            container::kill(root, a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            container::restart(root, a)
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            container::pause(root, a, true)
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            container::pause(root, a, false)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            container::wait(root, a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => container::rm(root, a),
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            container::rename(root, a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => container::top(root, a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => {
            container::diff(root, a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => container::cp(root, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            container::commit(root, a)
        }
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => {
            container::stats(root, a)
        }
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => {
            container::update(root, a)
        }
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            container::port(root, a)
        }
        Command::Events(a) | Command::System(SystemCommand::Events(a)) => {
            container::events(root, a)
        }
        Command::System(SystemCommand::Prune(a)) => {
            let (ids, bytes) = container::prune_containers(root)?;
            if !ids.is_empty() {
                println!("Deleted Containers:");
                ids.iter().for_each(|i| println!("{i}"));
                println!();
            }
            let mut total = bytes;
            if a.volumes {
                let (names, b) = container::prune_volumes(root, a.all)?;
                total += b;
                if !names.is_empty() {
                    println!("Deleted Volumes:");
                    names.iter().for_each(|n| println!("{n}"));
                    println!();
                }
            }
            let code = prune::run(
                root,
                prune::Args {
                    all: a.all,
                    force: true,
                    filters: vec![],
                },
            )?;
            println!(
                "Total reclaimed space (containers and volumes): {}",
                size::human_size(total)
            );
            Ok(code)
        }
        Command::Container(ContainerCommand::Prune(a)) => container::prune(root, a),
        Command::Container(ContainerCommand::Inspect(a)) => inspect::run(root, a),
        Command::Container(ContainerCommand::Export(a)) => export::run(root, a),
        Command::Volume(c) => container::volume_cmd(root, c),
        Command::Network(cmd) => network::run(root, cmd),
        Command::Build(args) => build::run(root, *args),
        Command::Bake(args) => bake::run(root, *args),
        Command::Cache(CacheCommand::Du(a)) => cache::du(root, a),
        Command::Cache(CacheCommand::Prune(a)) => cache::prune(root, a),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn with_default(argv: &[&str]) -> Vec<String> {
        let args = argv.iter().map(OsString::from).collect();
        with_default_subcommand(args, &subcommand_names())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn build_is_the_default_subcommand() {
        assert_eq!(
            with_default(&["rbuild", "-t", "x", "."]),
            ["rbuild", "build", "-t", "x", "."]
        );
        assert_eq!(with_default(&["rbuild", "."]), ["rbuild", "build", "."]);
        assert_eq!(
            with_default(&["rbuild", "--root", "R", "-t", "x", "."]),
            ["rbuild", "--root", "R", "build", "-t", "x", "."]
        );
        assert_eq!(
            with_default(&["rbuild", "--root=R", "ctx"]),
            ["rbuild", "--root=R", "build", "ctx"]
        );
        for same in [
            &["rbuild"][..],
            &["rbuild", "images"],
            &["rbuild", "build", "."],
            &["rbuild", "--root", "R", "images"],
            &["rbuild", "image", "ls"],
            &["rbuild", "builder", "prune"],
            &["rbuild", "--help"],
            &["rbuild", "-V"],
            &["rbuild", "help", "run"],
            &["rbuild", "--root", "R"],
        ] {
            assert_eq!(with_default(same), same.to_vec());
        }
    }

    #[test]
    fn the_build_subcommand_parses() {
        let cli = Cli::try_parse_from(with_default(&["rbuild", "--root", "R", "-t", "app:1", "."]))
            .unwrap();
        assert_eq!(cli.root.as_deref(), Some(std::path::Path::new("R")));
        match cli.command {
            Command::Build(b) => {
                assert_eq!(b.tags[0].familiar(), "app:1");
                assert_eq!(b.context, std::path::Path::new("."));
            }
            other => panic!("{other:?}"),
        }
    }
}
