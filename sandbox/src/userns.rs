//! Rootless sandboxes: a user namespace in which the calling user is root.
//!
//! With ranges for the user in /etc/subuid and /etc/subgid and the setuid
//! helpers newuidmap/newgidmap installed, the namespace maps uid 0 to the
//! user and uids 1..=N to the subordinate range, so images with several
//! users work. Otherwise only uid/gid 0 exist (mapped to the user), and a
//! process that asks for another user fails with an error saying so.

use std::fs;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, Pid};

use super::error::SandboxError;

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// Finds the first range for `name` or `id` in the contents of a subid file.
pub fn find_range(text: &str, name: &str, id: u32) -> Option<SubRange> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        Some(SubRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

fn user_name(uid: u32) -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

fn helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn rootless_err(missing: String, hint: &str) -> SandboxError {
    SandboxError::Rootless {
        missing,
        hint: hint.to_string(),
    }
}

fn map_self(uid: u32, gid: u32) -> Result<(), SandboxError> {
    let w = |file: &str, text: String| {
        fs::write(file, text)
            .map_err(|e| SandboxError::setup("write user namespace map", Some(file.into()), e))
    };
    w("/proc/self/setgroups", "deny".into())?;
    w("/proc/self/uid_map", format!("0 {uid} 1"))?;
    w("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

/// How a rootless sandbox maps ids (see the module docs): container id 0
/// is the user's; with subordinate ranges (and the setuid helpers) ids
/// 1..=count are the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootlessMapping {
    pub uid: u32,
    pub gid: u32,
    /// Both ranges, or none: one without the other is not used.
    pub subids: Option<(SubRange, SubRange)>,
}

/// The mapping a sandbox started by this (non-root) process uses; `None`
/// as root, where ids are not mapped. Files a RUN step writes carry the
/// host side of it; a layer records the container side.
pub fn rootless_mapping() -> Option<RootlessMapping> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return None;
    }
    let gid = nix::unistd::getegid().as_raw();
    let name = user_name(uid);
    let subuid = fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| find_range(&t, &name, uid));
    let subgid = fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| find_range(&t, &name, uid));
    let tools = helper("newuidmap").is_some() && helper("newgidmap").is_some();
    let subids = match (subuid, subgid, tools) {
        (Some(u), Some(g), true) => Some((u, g)),
        _ => None,
    };
    Some(RootlessMapping { uid, gid, subids })
}

/// Enters a new user namespace as its root. Single-threaded callers only
/// (it forks a helper that runs newuidmap/newgidmap for this process).
pub(crate) fn enter() -> Result<(), SandboxError> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let name = user_name(uid);
    let subuid = fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| find_range(&t, &name, uid));
    let subgid = fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| find_range(&t, &name, uid));
    let tools = (helper("newuidmap"), helper("newgidmap"));
    let unshare_err = |e: nix::Error| {
        rootless_err(
            format!("cannot create a user namespace ({e})"),
            "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or run as root",
        )
    };
    match (subuid, subgid, tools) {
        (Some(su), Some(sg), (Some(nu), Some(ng))) => {
            let (r, w) =
                nix::unistd::pipe().map_err(|e| SandboxError::setup("pipe", None, e.into()))?;
            let me = nix::unistd::getpid();
            // SAFETY: the init process is single-threaded, so fork is safe.
            match unsafe { nix::unistd::fork() }
                .map_err(|e| SandboxError::setup("fork", None, e.into()))?
            {
                ForkResult::Child => {
                    drop(w);
                    let mut b = [0u8; 1];
                    let _ = nix::unistd::read(&r, &mut b);
                    let ok = run_map(&nu, me, uid, su) && run_map(&ng, me, gid, sg);
                    // SAFETY: ends the forked helper without running destructors.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
                }
                ForkResult::Parent { child } => {
                    drop(r);
                    let res = unshare(CloneFlags::CLONE_NEWUSER);
                    let _ = nix::unistd::write(&w, b"x");
                    drop(w);
                    let st = nix::sys::wait::waitpid(child, None);
                    res.map_err(unshare_err)?;
                    match st {
                        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                        _ => Err(rootless_err(
                            format!(
                                "newuidmap/newgidmap failed to map uid {uid} with {}:{}:{} (see its message above)",
                                name, su.start, su.count
                            ),
                            "check the ranges in /etc/subuid and /etc/subgid and that newuidmap/newgidmap are setuid root",
                        )),
                    }
                }
            }
        }
        _ => {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(unshare_err)?;
            map_self(uid, gid)
        }
    }
}

fn run_map(tool: &Path, pid: Pid, id: u32, range: SubRange) -> bool {
    Command::new(tool)
        .arg(pid.to_string())
        .args([
            "0",
            &id.to_string(),
            "1",
            "1",
            &range.start.to_string(),
            &range.count.to_string(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why a non-root sandbox is limited, for messages: `None` when subordinate
/// ids and the helpers are all there.
pub fn missing_for_multi_user() -> Option<String> {
    let uid = nix::unistd::geteuid().as_raw();
    let name = user_name(uid);
    if helper("newuidmap").is_none() || helper("newgidmap").is_none() {
        return Some("newuidmap/newgidmap are not installed (Debian package uidmap)".into());
    }
    let has = |f: &str| {
        fs::read_to_string(f)
            .ok()
            .and_then(|t| find_range(&t, &name, uid))
            .is_some()
    };
    if !has("/etc/subuid") {
        return Some(format!("no range for {name} in /etc/subuid"));
    }
    if !has("/etc/subgid") {
        return Some(format!("no range for {name} in /etc/subgid"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_range_by_name_or_uid() {
        let t = "alice:100000:65536\n1001:200000:1000\n";
        assert_eq!(
            find_range(t, "alice", 1000),
            Some(SubRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            find_range(t, "bob", 1001),
            Some(SubRange {
                start: 200000,
                count: 1000
            })
        );
        assert_eq!(find_range(t, "carol", 1002), None);
    }
}
