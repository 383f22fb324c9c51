//! `rbuild login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`:
//! verifies credentials against the registry (`/v2/`, through its token
//! server when it has one) and stores them in Docker's config file (or its
//! credential helper), where `docker` and rbuild both find them.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_registry::{Credentials, DockerConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry (default: Docker Hub)
    pub registry: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: arguments show up in `ps`)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Reach this registry over plain HTTP (see `rbuild pull --help`)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// `https://host:port/` or `host:port` → the domain references use;
/// Docker Hub's names → `docker.io`.
pub fn registry_domain(text: Option<&str>) -> String {
    let Some(t) = text else {
        return "docker.io".to_string();
    };
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let host = t.split('/').next().unwrap_or(t);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// `root` is the store root when one can be named, for rbuild's config
/// file there (login itself never opens the store).
pub fn run(root: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let registry = registry_domain(args.registry.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match args.password {
            Some(p) => {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
                p
            }
            None => prompt("Password: ")?,
        }
    };
    if username.is_empty() || password.is_empty() {
        bail!(
            "username and password are required\nhint: rbuild login -u USER --password-stdin {registry}"
        );
    }
    let creds = Credentials { username, password };
    let client = super::pull::client(root, &args.insecure_registries)?;
    client.set_credentials(&registry, Some(creds.clone()));
    client.check_login(&registry)?;
    let mut config = DockerConfig::load(&DockerConfig::default_path())?;
    config.store(&registry, &creds)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Reads one line from the terminal (the password without echo).
fn prompt(label: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "cannot prompt for {}: stdin is not a terminal\nhint: use -u USER and --password-stdin",
            label.trim_end_matches([':', ' ']).to_lowercase()
        );
    }
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let hide = label.starts_with("Password");
    use nix::sys::termios;
    let saved = if hide {
        termios::tcgetattr(&stdin).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(termios::LocalFlags::ECHO);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, t);
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_arguments_normalize_like_docker() {
        assert_eq!(registry_domain(None), "docker.io");
        assert_eq!(
            registry_domain(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_domain(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(
            registry_domain(Some("http://reg.lan:5000/")),
            "reg.lan:5000"
        );
    }
}
