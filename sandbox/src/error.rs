//! The sandbox's error type, and its wire form: errors found inside the
//! re-executed init process travel back to the caller as JSON on the status
//! pipe and become a [`SandboxError`] there.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A sandbox could not be started or its process could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The init process (a re-exec of the current binary) could not start.
    #[error("cannot start the sandbox init process from {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A setup step (mount, namespace, cgroup, ...) failed.
    #[error("sandbox setup failed: {step}{}", path_suffix(path))]
    Setup {
        step: String,
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// The command could not be executed (exit code 126 or 127, like docker).
    #[error("cannot execute {program:?} in the sandbox")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
    /// The user named by `Process::user` is not in the rootfs.
    #[error(
        "unable to find user {user}: no matching entries in the rootfs's /etc/passwd\nhint: use a numeric uid, or add the user to the image"
    )]
    UserNotFound { user: String },
    /// The group named by `Process::user` is not in the rootfs.
    #[error(
        "unable to find group {group}: no matching entries in the rootfs's /etc/group\nhint: use a numeric gid, or add the group to the image"
    )]
    GroupNotFound { group: String },
    /// Something a rootless (non-root) sandbox needs is missing.
    #[error("rootless sandbox: {missing}\nhint: {hint}")]
    Rootless { missing: String, hint: String },
    /// Resource limits were asked for but cgroup controllers cannot be used.
    #[error(
        "cannot enable cgroup controllers {controllers} at {path}\nhint: run rbuild as root in a cgroup whose controllers are delegated and that holds no processes of its own (e.g. systemd-run --scope -p Delegate=yes), or drop --memory/--cpus/--pids-limit"
    )]
    CgroupControllers {
        controllers: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The spec cannot be run as given.
    #[error("invalid sandbox spec: {reason}")]
    InvalidSpec { reason: String },
    /// The init process sent something that is not a status message.
    #[error("malformed status message from the sandbox init process")]
    Protocol {
        #[source]
        source: serde_json::Error,
    },
    /// The init process ended without reporting a result.
    #[error("the sandbox init process ended unexpectedly (wait status {status})")]
    InitDied { status: i32 },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" at {}", p.display()),
        None => String::new(),
    }
}

impl SandboxError {
    /// The exit code docker uses for this error: 127 when the command does
    /// not exist, 126 when it cannot be executed, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            SandboxError::Exec { .. } => 126,
            _ => 125,
        }
    }

    pub(crate) fn setup(step: impl Into<String>, path: Option<PathBuf>, source: io::Error) -> Self {
        SandboxError::Setup {
            step: step.into(),
            path,
            source,
        }
    }
}

/// The serializable form of [`SandboxError`] (io errors as errno).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    Setup {
        step: String,
        path: Option<PathBuf>,
        errno: i32,
    },
    Exec {
        program: String,
        errno: i32,
    },
    UserNotFound {
        user: String,
    },
    GroupNotFound {
        group: String,
    },
    Rootless {
        missing: String,
        hint: String,
    },
    InvalidSpec {
        reason: String,
    },
    CgroupControllers {
        controllers: String,
        path: PathBuf,
        errno: i32,
    },
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl From<&SandboxError> for WireError {
    fn from(e: &SandboxError) -> Self {
        match e {
            SandboxError::Setup { step, path, source } => WireError::Setup {
                step: step.clone(),
                path: path.clone(),
                errno: errno_of(source),
            },
            SandboxError::Exec { program, source } => WireError::Exec {
                program: program.clone(),
                errno: errno_of(source),
            },
            SandboxError::UserNotFound { user } => WireError::UserNotFound { user: user.clone() },
            SandboxError::GroupNotFound { group } => WireError::GroupNotFound {
                group: group.clone(),
            },
            SandboxError::Rootless { missing, hint } => WireError::Rootless {
                missing: missing.clone(),
                hint: hint.clone(),
            },
            SandboxError::InvalidSpec { reason } => WireError::InvalidSpec {
                reason: reason.clone(),
            },
            SandboxError::CgroupControllers {
                controllers,
                path,
                source,
            } => WireError::CgroupControllers {
                controllers: controllers.clone(),
                path: path.clone(),
                errno: errno_of(source),
            },
            SandboxError::Spawn { path, source } => WireError::Setup {
                step: "spawn".into(),
                path: Some(path.clone()),
                errno: errno_of(source),
            },
            SandboxError::Protocol { .. } | SandboxError::InitDied { .. } => WireError::Setup {
                step: "protocol".into(),
                path: None,
                errno: libc::EPROTO,
            },
        }
    }
}

impl From<WireError> for SandboxError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Setup { step, path, errno } => SandboxError::Setup {
                step,
                path,
                source: io::Error::from_raw_os_error(errno),
            },
            WireError::Exec { program, errno } => SandboxError::Exec {
                program,
                source: io::Error::from_raw_os_error(errno),
            },
            WireError::UserNotFound { user } => SandboxError::UserNotFound { user },
            WireError::GroupNotFound { group } => SandboxError::GroupNotFound { group },
            WireError::Rootless { missing, hint } => SandboxError::Rootless { missing, hint },
            WireError::InvalidSpec { reason } => SandboxError::InvalidSpec { reason },
            WireError::CgroupControllers {
                controllers,
                path,
                errno,
            } => SandboxError::CgroupControllers {
                controllers,
                path,
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }
}
