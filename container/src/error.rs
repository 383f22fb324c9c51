//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong with containers, volumes and their state.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this id, id prefix or name.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// No volume has this name.
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    /// The name is taken by another container.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    /// A container name docker would refuse.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// A prefix matches several containers.
    #[error("multiple containers found with provided prefix: {0}")]
    Ambiguous(String),
    /// The operation needs a running container (its id).
    #[error("Container {0} is not running")]
    NotRunning(String),
    /// The operation needs a stopped container (its id; docker 20.10's
    /// words).
    #[error(
        "You cannot remove a running container {0}. Stop the container before attempting removal or force remove"
    )]
    Running(String),
    /// The container is not in a state the operation accepts, in docker's
    /// words (`Container ID is not paused`, `Cannot kill container: …`).
    #[error("{0}")]
    State(String),
    /// The container is paused.
    #[error("container {0} is paused, unpause the container before stopping or killing")]
    Paused(String),
    /// A volume still mounted by containers.
    #[error("remove {name}: volume is in use - [{users}]")]
    VolumeInUse { name: String, users: String },
    /// A bad flag value (`--restart`, `--mount`, `-v`, `-p`, …).
    #[error("invalid {what}: {value:?}{}", hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Invalid {
        what: &'static str,
        value: String,
        hint: Option<String>,
    },
    /// A file of the container's state could not be read or written.
    #[error("{step} {}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state file that is not valid JSON.
    #[error("corrupt container state {}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The monitor could not be started or reported a failure.
    #[error("cannot start container {id}: {message}")]
    Start { id: String, message: String },
    /// The store said no.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// The sandbox said no.
    #[error(transparent)]
    Sandbox(#[from] rbuild_sandbox::SandboxError),
}

impl ContainerError {
    pub(crate) fn io(
        step: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ContainerError::Io { step, path, source }
    }

    /// docker's exit code for this error: 125 for a name conflict or a bad
    /// value (as `docker run`/`create` give), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ContainerError::NameInUse { .. }
            | ContainerError::InvalidName(_)
            | ContainerError::Invalid { .. }
            | ContainerError::Start { .. } => 125,
            ContainerError::Sandbox(e) => e.exit_code() as u8,
            _ => 1,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
