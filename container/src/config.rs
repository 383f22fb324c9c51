//! What a container is made of (`config.json`, written once at create and
//! on `rename`/`update`) and what it is doing (`state.json`, rewritten on
//! every change). Both are versioned and written atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the per-container files; bumped when their meaning changes.
pub const STATE_VERSION: u32 = 1;

/// A container's configuration: the image's config with the flags of
/// `create`/`run` applied, and how the host provides for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    /// Without docker's leading `/`.
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's ID (`sha256:` + config digest).
    pub image_id: String,
    /// The image's manifest digest (how the layers are found again).
    pub manifest: String,
    /// Entrypoint and command after the flags; `path` + `args` is argv.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub tty: bool,
    pub open_stdin: bool,
    /// Close stdin after the first attached client disconnects.
    pub stdin_once: bool,
    /// Made to be attached to (`create`, `run` without `-d`): docker's
    /// `AttachStdout`/`AttachStderr`.
    #[serde(default)]
    pub attach: bool,
    pub labels: BTreeMap<String, String>,
    /// Signal name or number sent by `stop` (default SIGTERM).
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    pub healthcheck: Option<Healthcheck>,
    /// The image's EXPOSE ports (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Paths the image declares with VOLUME.
    pub image_volumes: Vec<String>,
    pub host: HostConfig,
    /// Every mount: binds, volumes (named and anonymous) and tmpfs.
    pub mounts: Vec<MountPoint>,
}

impl ContainerConfig {
    /// argv: entrypoint then command.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }

    /// The 12-digit short id.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Docker's HostConfig, the parts rbuild honours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HostConfig {
    /// `none`, `host`, `bridge` or a network's name.
    pub network_mode: String,
    /// `-p` values as given (`[IP:]HOST:CTR[/proto]`).
    pub port_bindings: Vec<String>,
    /// `-P`.
    pub publish_all_ports: bool,
    /// `--network-alias`: more names on a user-defined network (absent in
    /// state written before they were kept).
    #[serde(default)]
    pub network_aliases: Vec<String>,
    pub restart: RestartPolicy,
    /// `--rm`.
    pub auto_remove: bool,
    pub read_only: bool,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<u64>,
    /// `--init`: tini as pid 1 (see the monitor).
    pub init: bool,
    /// `--log-opt max-size` in bytes (None: unbounded).
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file` (default 1).
    pub log_max_file: u32,
}

/// `--restart`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub name: String,
    /// `on-failure:N` (0: unlimited).
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// Parses docker's `--restart` value.
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c.parse::<u32>().ok()?)),
            None => (s, None),
        };
        match (name, count) {
            ("no" | "always" | "unless-stopped", None) => Some(RestartPolicy {
                name: name.to_string(),
                maximum_retry_count: 0,
            }),
            ("on-failure", c) => Some(RestartPolicy {
                name: name.to_string(),
                maximum_retry_count: c.unwrap_or(0),
            }),
            _ => None,
        }
    }

    /// Whether a container that exited with `code` (after `restarts`
    /// restarts, not stopped by the user) starts again.
    pub fn restarts(&self, code: i32, restarts: u32) -> bool {
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0 && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count)
            }
            _ => false,
        }
    }
}

/// The image's HEALTHCHECK (durations in nanoseconds, docker's defaults
/// filled in).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", …]` or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: u32,
}

/// One mount of a container (docker's `Mounts` entries).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: String,
    /// Host path (binds and volumes).
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    /// A volume made for this container (`rm -v` removes it).
    pub anonymous: bool,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
}

impl Status {
    /// docker's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct State {
    pub version: u32,
    pub status: Status,
    /// Host pid of the container's pid 1 (0 when not running).
    pub pid: u32,
    /// Pid of the monitor, and its start time (clock ticks since boot,
    /// /proc/PID/stat field 22) so a reused pid is not mistaken for it.
    pub monitor_pid: u32,
    pub monitor_start: u64,
    /// Pid of the sandbox's init process (signals go through it).
    pub init_pid: u32,
    /// -1: unknown (the monitor died).
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
    pub health: Option<Health>,
}

/// Health of a container with a HEALTHCHECK.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthLog>,
}

/// One probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// Time a zero value of docker's timestamps shows.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_like_docker() {
        assert_eq!(RestartPolicy::parse("no").unwrap().name, "no");
        let p = RestartPolicy::parse("on-failure:3").unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert!(RestartPolicy::parse("sometimes").is_none());
        assert!(RestartPolicy::parse("always:2").is_none());
        assert!(p.restarts(1, 2) && !p.restarts(1, 3) && !p.restarts(0, 0));
        assert!(RestartPolicy::parse("always").unwrap().restarts(0, 100));
    }
}
