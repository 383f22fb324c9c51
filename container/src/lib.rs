//! Containers as lasting objects, daemonless (as podman): each container
//! is a directory under `<store root>/containers-v1/<id>/` (mode 0700,
//! readable by its owner only) holding
//!
//! - `config.json` — [`ContainerConfig`]: the image's config with the
//!   flags applied, mounts, restart policy, limits;
//! - `state.json` — [`State`]: created/running/exited, pids, exit code,
//!   times, health; replaced atomically (temp file + rename) on every
//!   change, so a kill -9 at any moment leaves the old or the new state;
//! - `upper/`, `work/` — the writable layer (overlayfs upper and work dirs);
//! - `ctr.log` (+ `ctr.log.N` after rotation) — docker's json-file log;
//! - `stdin.sock` — where `attach`/`start -i` write the container's stdin.
//!
//! A running container has a **monitor** ([`monitor`]): the rbuild binary
//! re-executed in its own session, which holds the sandbox (and so pid 1),
//! pumps its output into the log, records the exit and applies the restart
//! policy. Its pid and start time are in the state; a reader that finds it
//! gone while the state says running reports the container exited with an
//! unknown code (-1). The sandbox's init process dies with the monitor
//! (parent-death signal), and with it every mount and cgroup of the run:
//! nothing leaks.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod config;
mod error;
pub mod events;
pub mod foreground;
pub mod fs_ops;
pub mod log;
pub mod monitor;
pub mod names;
pub mod volume;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use config::{
    ContainerConfig, Health, HealthLog, Healthcheck, HostConfig, MountPoint, RestartPolicy,
    STATE_VERSION, State, Status, ZERO_TIME,
};
pub use error::{ContainerError, Result};
use rbuild_store::{FileLock, LockMode};

/// The directory of containers under a store root (versioned).
pub const CONTAINERS_DIR: &str = "containers-v1";

/// The containers of one store root.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
    dir: PathBuf,
}

/// One container: where it lives, what it is, what it is doing.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub config: ContainerConfig,
    pub state: State,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(ContainerError::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` as JSON to `path` atomically (temp file in the same
/// directory, then rename).
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let data = serde_json::to_vec_pretty(value).expect("state serializes");
    rbuild_store::atomic::replace_file(dir, path, &data)?;
    Ok(())
}

/// /proc/PID/stat field 22 (start time in clock ticks), if PID exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // A zombie (killed, not yet reaped by whoever adopted it) is gone.
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// A fresh 64-hex-digit id.
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Containers {
    /// The containers under the store root `root` (nothing is made until
    /// the first container is).
    pub fn open(root: &Path) -> Result<Containers> {
        Ok(Containers {
            root: root.to_path_buf(),
            dir: root.join(CONTAINERS_DIR),
        })
    }

    /// Makes the containers' directory (mode 0700) when missing.
    fn ensure_dir(&self) -> Result<()> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(ContainerError::io("create", &self.dir))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(ContainerError::io("chmod", &self.dir))?;
        }
        Ok(())
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held while names are checked and taken (create, rename, remove).
    pub fn lock(&self) -> Result<FileLock> {
        self.ensure_dir()?;
        Ok(FileLock::acquire(
            &self.dir.join(".lock"),
            LockMode::Exclusive,
        )?)
    }

    /// Every container, oldest first. Entries that cannot be read (a
    /// create killed half-way) are skipped; see [`Containers::broken`].
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        if !self.dir.exists() {
            return Ok(out);
        }
        for entry in fs::read_dir(&self.dir).map_err(ContainerError::io("read", &self.dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() != 64 || !entry.path().is_dir() {
                continue;
            }
            if let Ok(c) = Container::load(&entry.path()) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        Ok(out)
    }

    /// Directories of containers whose config cannot be read (a create
    /// that died before writing it): `system check` reports them and
    /// removes them with `--repair`.
    pub fn broken(&self) -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().len() == 64 && e.path().is_dir())
            .filter(|e| Container::load(&e.path()).is_err())
            .map(|e| e.path())
            .collect()
    }

    /// The container named by `what`: a full id, a unique id prefix, or a
    /// name (docker's order: exact id, exact name, prefix).
    pub fn get(&self, what: &str) -> Result<Container> {
        let what = what.trim_start_matches('/');
        if what.len() == 64 {
            let dir = self.dir.join(what);
            if dir.is_dir() {
                return Container::load(&dir);
            }
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.config.name == what) {
            return Ok(c.clone());
        }
        let hits: Vec<&Container> = if what.is_empty() {
            Vec::new()
        } else {
            all.iter()
                .filter(|c| c.config.id.starts_with(what))
                .collect()
        };
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ContainerError::NoSuchContainer(what.to_string())),
            _ => Err(ContainerError::Ambiguous(what.to_string())),
        }
    }

    /// Checks that `name` is valid and free (call with [`Containers::lock`]).
    pub fn check_name(&self, name: &str, except: Option<&str>) -> Result<()> {
        if !names::valid(name) {
            return Err(ContainerError::InvalidName(name.to_string()));
        }
        for c in self.list()? {
            if c.config.name == name && Some(c.config.id.as_str()) != except {
                return Err(ContainerError::NameInUse {
                    name: name.to_string(),
                    id: c.config.id,
                });
            }
        }
        Ok(())
    }

    /// A generated name no container has.
    pub fn free_name(&self) -> Result<String> {
        let taken: Vec<String> = self.list()?.into_iter().map(|c| c.config.name).collect();
        Ok(names::generate(|n| taken.iter().any(|t| t == n)))
    }

    /// Makes the container's directory and writes its config and a
    /// `created` state. The name must have been checked under the lock.
    pub fn create(&self, config: ContainerConfig) -> Result<Container> {
        self.ensure_dir()?;
        let dir = self.dir.join(&config.id);
        fs::create_dir(&dir).map_err(ContainerError::io("create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(ContainerError::io("chmod", &dir))?;
        for d in ["upper", "work"] {
            let p = dir.join(d);
            fs::create_dir(&p).map_err(ContainerError::io("create", &p))?;
        }
        let state = State {
            version: STATE_VERSION,
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..State::default()
        };
        write_json(&dir.join("state.json"), &state)?;
        // The config last: a directory without it is a create that died.
        write_json(&dir.join("config.json"), &config)?;
        Ok(Container { dir, config, state })
    }

    /// Removes a container that is not running (its directory, writable
    /// layer and log).
    pub fn remove(&self, c: &Container) -> Result<()> {
        remove_tree(&c.dir)
    }
}

/// Removes a container directory (overlayfs leaves `work/work` mode 000).
pub fn remove_tree(dir: &Path) -> Result<()> {
    let _ = fs::set_permissions(dir.join("work/work"), fs::Permissions::from_mode(0o700));
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContainerError::io("remove", dir)(e)),
    }
}

impl Container {
    /// Reads a container, settling a state its monitor can no longer
    /// vouch for: running (or restarting) with the monitor gone becomes
    /// exited with code -1 ("unknown"), written back.
    pub fn load(dir: &Path) -> Result<Container> {
        let config: ContainerConfig = read_json(&dir.join("config.json"))?;
        let mut state: State = read_json(&dir.join("state.json"))?;
        let live = matches!(
            state.status,
            Status::Running | Status::Paused | Status::Restarting
        );
        if live && !monitor_alive(&state) {
            // Re-read: the monitor may have written its last state since.
            let again: State = read_json(&dir.join("state.json"))?;
            if again.status == state.status && again.monitor_pid == state.monitor_pid {
                state.status = Status::Exited;
                state.exit_code = -1;
                state.pid = 0;
                state.init_pid = 0;
                state.error = "the container's monitor died".into();
                if state.finished_at == ZERO_TIME || state.finished_at.is_empty() {
                    let (s, n) = rbuild_oci::time::now();
                    state.finished_at = rbuild_oci::time::rfc3339_nanos(s, n);
                }
                let _ = write_json(&dir.join("state.json"), &state);
            } else {
                state = again;
            }
        }
        let mut c = Container {
            dir: dir.to_path_buf(),
            config,
            state,
        };
        if c.state.status == Status::Running && c.frozen() {
            c.state.status = Status::Paused;
        }
        Ok(c)
    }

    /// Re-reads the container from disk.
    pub fn reload(&self) -> Result<Container> {
        match Container::load(&self.dir) {
            Err(ContainerError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(ContainerError::NoSuchContainer(self.config.id.clone()))
            }
            r => r,
        }
    }

    pub fn write_state(&self, state: &State) -> Result<()> {
        write_json(&self.dir.join("state.json"), state)
    }

    pub fn write_config(&self, config: &ContainerConfig) -> Result<()> {
        write_json(&self.dir.join("config.json"), config)
    }

    /// The container's directory in the store root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exit code of this container once it is gone: removed as it
    /// exited (`--rm`), the code its `die` event recorded (else -1).
    pub fn exit_code_when_gone(&self) -> i32 {
        self.dir
            .parent()
            .and_then(Path::parent)
            .and_then(|root| events::last_exit_code(root, &self.config.id))
            .unwrap_or(-1)
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("ctr.log")
    }

    pub fn stdin_socket(&self) -> PathBuf {
        self.dir.join("stdin.sock")
    }

    /// [`Container::stdin_socket`] by a path short enough for a unix
    /// socket's address (`/proc/self/fd/N/stdin.sock`, through an open
    /// handle on the container dir, returned to keep it open).
    pub fn stdin_socket_short(&self) -> Result<(fs::File, PathBuf)> {
        use std::os::fd::AsRawFd;
        let dir = fs::File::open(&self.dir).map_err(ContainerError::io("open", &self.dir))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/stdin.sock", dir.as_raw_fd()));
        Ok((dir, path))
    }

    /// Exists while a `stop`/`kill` by the user is under way: the monitor
    /// then does not apply the restart policy.
    pub fn stop_marker(&self) -> PathBuf {
        self.dir.join("stopped-by-user")
    }

    /// Running or paused (a process to signal or join).
    pub fn is_running(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Paused) && self.state.pid != 0
    }

    /// The monitor lives (running, paused or restarting).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// The cgroup directories of pid 1, per hierarchy (`controller list`,
    /// dir); empty when not running.
    pub fn cgroup_dirs(&self) -> Vec<(String, PathBuf)> {
        if !self.is_running() {
            return Vec::new();
        }
        let text =
            fs::read_to_string(format!("/proc/{}/cgroup", self.state.pid)).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            if ctrls.starts_with("name=") || !path.contains("rbuild-ctr-") {
                continue;
            }
            let rel = path.trim_start_matches('/');
            let base = Path::new("/sys/fs/cgroup");
            let dir = if ctrls.is_empty() {
                base.join(rel)
            } else {
                std::iter::once(ctrls)
                    .chain(ctrls.split(','))
                    .map(|c| base.join(c).join(rel))
                    .find(|d| d.is_dir())
                    .unwrap_or_else(|| base.join(ctrls).join(rel))
            };
            out.push((ctrls.to_string(), dir));
        }
        out
    }

    /// The directory of controller `ctrl` (v1), or the v2 dir.
    pub fn cgroup_dir(&self, ctrl: &str) -> Option<PathBuf> {
        let dirs = self.cgroup_dirs();
        dirs.iter()
            .find(|(c, _)| c.split(',').any(|x| x == ctrl))
            .or_else(|| dirs.iter().find(|(c, _)| c.is_empty()))
            .map(|(_, d)| d.clone())
    }

    /// The container's cgroup is frozen (`pause`).
    pub fn frozen(&self) -> bool {
        if let Some(d) = self.cgroup_dir("freezer") {
            let v1 = fs::read_to_string(d.join("freezer.state")).unwrap_or_default();
            let v2 = fs::read_to_string(d.join("cgroup.freeze")).unwrap_or_default();
            return v1.trim() == "FROZEN" || v1.trim() == "FREEZING" || v2.trim() == "1";
        }
        false
    }

    /// Freezes or thaws the container's processes (cgroup freezer).
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let Some(d) = self.cgroup_dir("freezer") else {
            return Err(ContainerError::Invalid {
                what: "pause",
                value: self.config.name.clone(),
                hint: Some("the container has no freezer cgroup (rootless?)".into()),
            });
        };
        let (file, value) = if d.join("freezer.state").exists() {
            ("freezer.state", if frozen { "FROZEN" } else { "THAWED" })
        } else {
            ("cgroup.freeze", if frozen { "1" } else { "0" })
        };
        let p = d.join(file);
        fs::write(&p, value).map_err(ContainerError::io("write", &p))
    }

    /// Sends `signal` to pid 1 (from outside its pid namespace: SIGKILL
    /// always lands, others only when pid 1 handles them, as with docker).
    pub fn signal(&self, signal: i32) -> Result<()> {
        if !self.is_running() {
            return Err(ContainerError::NotRunning(self.config.id.clone()));
        }
        let sig =
            nix::sys::signal::Signal::try_from(signal).map_err(|_| ContainerError::Invalid {
                what: "signal",
                value: signal.to_string(),
                hint: None,
            })?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.state.pid as i32), sig);
        Ok(())
    }

    /// docker's `Status` column: `Up 3 seconds`, `Exited (0) 2 minutes ago`…
    pub fn status_text(&self) -> String {
        use rbuild_oci::time;
        let ago =
            |t: &str| time::human_duration(time::now_secs() - time::parse_rfc3339(t).unwrap_or(0));
        let health = match &self.state.health {
            Some(h) if self.is_running() => match h.status.as_str() {
                "starting" => " (health: starting)".to_string(),
                s => format!(" ({s})"),
            },
            _ => String::new(),
        };
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}{health}", ago(&self.state.started_at)),
            Status::Paused => format!("Up {} (Paused)", ago(&self.state.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                ago(&self.state.finished_at)
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.state.exit_code,
                ago(&self.state.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Dead => "Dead".into(),
        }
    }
}

/// The monitor recorded in `state` still runs.
pub fn monitor_alive(state: &State) -> bool {
    state.monitor_pid != 0 && process_start_time(state.monitor_pid) == Some(state.monitor_start)
}
