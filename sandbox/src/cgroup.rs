//! Resource limits through cgroups, v2 (unified) or v1 (one hierarchy per
//! controller), whichever the machine has. The init process creates a
//! child cgroup of its own, writes the limits, moves itself in (pid 1 of
//! the sandbox inherits it) and removes it after the run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::error::SandboxError;
use super::spec::Limits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// CFS period used to express `--cpus` as a quota, as docker does.
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup version the machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The cgroup version mounted at /sys/fs/cgroup.
pub fn version() -> CgroupVersion {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// Cgroup directories created for one sandbox; removed by [`Cgroup::remove`].
pub(crate) struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value)
        .map_err(|e| SandboxError::setup("write cgroup file", Some(path.into()), e))
}

/// Current cgroup path of this process for a v1 controller, or the v2 path.
fn current(controller: Option<&str>) -> Result<String, SandboxError> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(|e| {
        SandboxError::setup(
            "read cgroup membership",
            Some("/proc/self/cgroup".into()),
            e,
        )
    })?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        if hit {
            return Ok(path.to_string());
        }
    }
    Err(SandboxError::setup(
        "find cgroup",
        Some("/proc/self/cgroup".into()),
        io::Error::from_raw_os_error(libc::ENOENT),
    ))
}

impl Cgroup {
    /// Creates a cgroup named `name` with `limits` and moves this process in.
    /// `every_controller`: on cgroup v1 also join the freezer, memory,
    /// cpu, cpuacct, pids and blkio hierarchies without limits there (a
    /// lasting container's cgroup: pause, stats and `update` use them).
    pub(crate) fn create(
        name: &str,
        limits: &Limits,
        every_controller: bool,
    ) -> Result<Cgroup, SandboxError> {
        let pid = std::process::id().to_string();
        let mut cg = Cgroup { dirs: Vec::new() };
        match version() {
            CgroupVersion::V2 => {
                let base = Path::new(CGROUP_ROOT).join(current(None)?.trim_start_matches('/'));
                let mut enable = Vec::new();
                if limits.memory.is_some() {
                    enable.push("+memory");
                }
                if limits.cpus.is_some() {
                    enable.push("+cpu");
                }
                if limits.pids.is_some() {
                    enable.push("+pids");
                }
                // Enable only what is missing. Enabling needs the parent to
                // hold no processes of its own (unless it is the root), so
                // this fails outside a delegated cgroup: say so.
                let control = base.join("cgroup.subtree_control");
                let enabled = fs::read_to_string(&control).unwrap_or_default();
                let missing: Vec<&str> = enable
                    .iter()
                    .copied()
                    .filter(|c| !enabled.split_whitespace().any(|e| e == &c[1..]))
                    .collect();
                if !missing.is_empty() {
                    fs::write(&control, missing.join(" ")).map_err(|source| {
                        SandboxError::CgroupControllers {
                            controllers: missing.join(" "),
                            path: base.clone(),
                            source,
                        }
                    })?;
                }
                let dir = base.join(name);
                fs::create_dir(&dir)
                    .map_err(|e| SandboxError::setup("create cgroup", Some(dir.clone()), e))?;
                cg.dirs.push(dir.clone());
                if let Some(m) = limits.memory {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                if let Some(c) = limits.cpus {
                    let quota = (c * CPU_PERIOD_US as f64).round() as u64;
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if let Some(p) = limits.pids {
                    write(&dir.join("pids.max"), &p.to_string())?;
                }
                write(&dir.join("cgroup.procs"), &pid)?;
            }
            CgroupVersion::V1 => {
                let mut plan: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
                if let Some(m) = limits.memory {
                    plan.push(("memory", vec![("memory.limit_in_bytes", m.to_string())]));
                }
                if let Some(c) = limits.cpus {
                    let quota = (c * CPU_PERIOD_US as f64).round() as u64;
                    plan.push((
                        "cpu",
                        vec![
                            ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                            ("cpu.cfs_quota_us", quota.to_string()),
                        ],
                    ));
                }
                if let Some(p) = limits.pids {
                    plan.push(("pids", vec![("pids.max", p.to_string())]));
                }
                if every_controller {
                    for ctrl in ["freezer", "memory", "cpu", "cpuacct", "pids", "blkio"] {
                        let mounted = Path::new(CGROUP_ROOT).join(ctrl).is_dir();
                        if mounted && !plan.iter().any(|(c, _)| *c == ctrl) {
                            plan.push((ctrl, Vec::new()));
                        }
                    }
                }
                for (ctrl, files) in plan {
                    let base = Path::new(CGROUP_ROOT)
                        .join(ctrl)
                        .join(current(Some(ctrl))?.trim_start_matches('/'));
                    let dir = base.join(name);
                    if let Err(e) = fs::create_dir(&dir) {
                        cg.remove();
                        return Err(SandboxError::setup("create cgroup", Some(dir), e));
                    }
                    cg.dirs.push(dir.clone());
                    for (file, value) in files {
                        if let Err(e) = write(&dir.join(file), &value) {
                            cg.remove();
                            return Err(e);
                        }
                    }
                    // Memory+swap equal to memory: no swap, as docker's default.
                    if ctrl == "memory" {
                        let sw = dir.join("memory.memsw.limit_in_bytes");
                        if sw.exists() {
                            let _ = fs::write(&sw, limits.memory.unwrap_or(0).to_string());
                        }
                    }
                    if let Err(e) = write(&dir.join("cgroup.procs"), &pid) {
                        cg.remove();
                        return Err(e);
                    }
                }
            }
        }
        Ok(cg)
    }

    /// The OOM killer killed something here (v1 `memory.oom_control`'s
    /// `oom_kill`, v2 `memory.events`'s `oom_kill`).
    pub(crate) fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|d| {
            ["memory.oom_control", "memory.events"].iter().any(|f| {
                fs::read_to_string(d.join(f)).is_ok_and(|t| {
                    t.lines().any(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
            })
        })
    }

    /// Moves this process back to the parent cgroups and removes ours.
    /// Best effort: runs after the sandbox's processes are gone.
    pub(crate) fn remove(&mut self) {
        let pid = std::process::id().to_string();
        for dir in self.dirs.drain(..).rev() {
            if let Some(parent) = dir.parent() {
                let _ = fs::write(parent.join("cgroup.procs"), &pid);
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}
