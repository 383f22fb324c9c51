//! What of `rbuild build`'s flags is the CLI's own: the clap value enums
//! and the value parsers that read the process (the environment). The
//! flag syntaxes themselves (`-o`, `--cache-to`, `--secret`, …) are the
//! build library's ([`rbuild_builder::spec::parse`]), shared with every
//! front end; their errors become clap's, which names the flag and value.

use rbuild_builder::spec::SecretSpec;
use rbuild_builder::spec::parse::SpecError;
use rbuild_solver::op::ExecNetwork;

/// `--network`: BuildKit's three modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkFlag {
    /// the builder's default (the host's network, as rbuild has no bridge)
    Default,
    /// only a loopback interface
    None,
    /// the host's network
    Host,
}

impl NetworkFlag {
    /// The RUN steps' default network.
    pub fn exec_network(self) -> ExecNetwork {
        match self {
            NetworkFlag::Default | NetworkFlag::Host => ExecNetwork::Host,
            NetworkFlag::None => ExecNetwork::None,
        }
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFlag {
    /// tty when stderr is a terminal, else plain
    Auto,
    /// live status lines
    Tty,
    /// BuildKit's plain text log
    Plain,
    /// one JSON object per event and line
    Json,
}

/// `--secret`, as [`rbuild_builder::spec::parse::parse_secret`] parses
/// it, with `id=X` alone taken from the environment variable `X` when
/// this process has it set.
pub fn parse_secret(s: &str) -> Result<SecretSpec, SpecError> {
    rbuild_builder::spec::parse::parse_secret(s, |k| std::env::var_os(k).is_some())
}
