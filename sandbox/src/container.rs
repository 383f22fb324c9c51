//! Pid 1 of the sandbox: runs in the child the init process forks after
//! `unshare(CLONE_NEWPID)`. Sets up the mount namespace (rootfs, /proc,
//! /dev, /sys, masked and read-only paths, generated /etc files, extra
//! mounts), pivots into the rootfs, drops to Docker's default capabilities,
//! sets no_new_privs, installs the seccomp filter and execs the command.
//!
//! Single-threaded (the init process never starts threads), so every call
//! here is safe after fork. Errors are written to the status pipe and the
//! process exits; the command replaces this process on success.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use super::error::{SandboxError, WireError};
use super::path_in_root::{self, Create};
use super::protocol::Message;
use super::spec::{MountKind, Network, Rootfs, SandboxSpec, SupplementaryGroups};
use super::{seccomp, user};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Paths hidden from the container (Docker's masked paths): files get
/// `/dev/null` bound over them, directories an empty read-only tmpfs.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only (Docker's readonly paths).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host device nodes bind-mounted into the container's /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What the init process hands to pid 1 across fork.
pub(crate) struct ChildContext<'a> {
    pub spec: &'a SandboxSpec,
    /// Where the init process mounted the rootfs (in the mount namespace
    /// pid 1 copies when it unshares its own).
    pub mountpoint: &'a Path,
    /// Directory holding the generated hosts, hostname, resolv.conf.
    pub state: &'a Path,
    /// Pseudo-terminal slave and its host path, when `process.tty`.
    pub tty: Option<(OwnedFd, PathBuf)>,
    /// Status pipe (close-on-exec).
    pub status: RawFd,
    /// Running in a user namespace set up by a non-root caller.
    pub rootless: bool,
}

/// Never returns: execs the command or reports an error and exits.
pub(crate) fn start(ctx: ChildContext<'_>) -> ! {
    let status = ctx.status;
    let err = match setup_and_exec(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    send(status, &Message::Error(WireError::from(&err)));
    // SAFETY: _exit is async-signal-safe and ends this forked child.
    unsafe { libc::_exit(err.exit_code()) }
}

pub(crate) fn send(fd: RawFd, msg: &Message) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    // SAFETY: fd is the status pipe, owned by this process for its lifetime;
    // ManuallyDrop keeps it open.
    let mut f = std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(fd) });
    let _ = f.write_all(&line);
}

fn sys(step: &str, path: Option<&Path>) -> impl FnOnce(nix::Error) -> SandboxError {
    let step = step.to_string();
    let path = path.map(Path::to_path_buf);
    move |e| SandboxError::setup(step, path, io::Error::from(e))
}

fn io_err(step: &str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError {
    let step = step.to_string();
    let path = path.to_path_buf();
    move |e| SandboxError::setup(step, Some(path), e)
}

fn setup_and_exec(ctx: ChildContext<'_>) -> Result<std::convert::Infallible, SandboxError> {
    let spec = ctx.spec;
    ROOTLESS.store(ctx.rootless, std::sync::atomic::Ordering::Relaxed);
    reset_signals();

    if let Network::Join(path) = &spec.network {
        join_netns(path)?;
    }
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(sys("unshare namespaces", None))?;
    // Nothing mounted from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make mounts private", Some(Path::new("/"))))?;

    if let Some((slave, _)) = &ctx.tty {
        attach_tty(slave)?;
    }

    let root = ctx.mountpoint;
    let root_fd = open_dir(root)?;
    mount_proc(&root_fd)?;
    mount_dev(
        &root_fd,
        ctx.tty.as_ref().map(|(_, p)| p.as_path()),
        ctx.rootless,
    )?;
    mount_sys(&root_fd, &spec.network, ctx.rootless)?;
    mask_paths(&root_fd)?;
    readonly_paths(&root_fd)?;
    mount_etc_files(&root_fd, ctx.state)?;
    mount_extra(&root_fd, spec, ctx.state)?;

    let hostname = if spec.hostname.is_empty() {
        "sandbox"
    } else {
        &spec.hostname
    };
    nix::unistd::sethostname(hostname).map_err(sys("set hostname", None))?;
    if spec.network == Network::None {
        loopback_up()?;
    }
    if spec.readonly_rootfs {
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if matches!(
            spec.rootfs,
            Rootfs::Overlay { .. } | Rootfs::Ephemeral { .. }
        ) {
            flags |= MsFlags::MS_NODEV;
        }
        mount(None::<&str>, root, None::<&str>, flags, None::<&str>)
            .map_err(sys("remount rootfs read-only", Some(root)))?;
    }
    drop(root_fd);
    pivot(root)?;

    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let id = user::resolve(&spec.process.user, &passwd, &group)?;

    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        &spec.process.cwd
    };
    if fs::metadata(cwd).is_err() {
        fs::create_dir_all(cwd).map_err(io_err("create working directory", Path::new(cwd)))?;
    }

    drop_privileges(&id, spec.process.groups)?;
    std::env::set_current_dir(cwd)
        .map_err(io_err("change to working directory", Path::new(cwd)))?;

    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::setup(
            "set no_new_privs",
            None,
            io::Error::last_os_error(),
        ));
    }
    // If the init process dies, so does pid 1, and with it the namespace.
    // Set after the credential change, which clears it.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };

    let mut env = spec.process.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    if spec.process.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }

    let filter = seccomp::compile();
    // Mark every fd but stdio close-on-exec so nothing of ours leaks in.
    // SAFETY: close_range with CLOEXEC flag only changes fd flags.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    filter
        .install()
        .map_err(|e| SandboxError::setup("install seccomp filter", None, e))?;
    exec(&spec.process.args, &env)
}

/// The child of `rbuild exec` after it joined the container (see
/// `exec`): never returns; execs the command or reports an error and exits.
pub(crate) fn start_joined(
    process: &super::spec::Process,
    tty: Option<OwnedFd>,
    status: RawFd,
) -> ! {
    let err = match tty
        .as_ref()
        .map_or(Ok(()), attach_tty)
        .and_then(|()| joined_exec(process))
    {
        Ok(never) => match never {},
        Err(e) => e,
    };
    send(status, &Message::Error(WireError::from(&err)));
    // SAFETY: _exit is async-signal-safe and ends this forked child.
    unsafe { libc::_exit(err.exit_code()) }
}

fn joined_exec(process: &super::spec::Process) -> Result<std::convert::Infallible, SandboxError> {
    reset_signals();
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let id = user::resolve(&process.user, &passwd, &group)?;
    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    };
    drop_privileges(&id, process.groups)?;
    std::env::set_current_dir(cwd)
        .map_err(io_err("change to working directory", Path::new(cwd)))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::setup(
            "set no_new_privs",
            None,
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    if process.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let filter = seccomp::compile();
    // SAFETY: close_range with CLOEXEC flag only changes fd flags.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    filter
        .install()
        .map_err(|e| SandboxError::setup("install seccomp filter", None, e))?;
    exec(&process.args, &env)
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn reset_signals() {
    // SAFETY: resetting dispositions and the mask in a single-threaded
    // child; SIG_DFL is always a valid handler.
    unsafe {
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

pub(crate) fn attach_tty(slave: &OwnedFd) -> Result<(), SandboxError> {
    nix::unistd::setsid().map_err(sys("setsid", None))?;
    // SAFETY: ioctl TIOCSCTTY on a valid tty fd; dup2 onto stdio.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(SandboxError::setup(
                "set controlling terminal",
                None,
                io::Error::last_os_error(),
            ));
        }
        for fd in 0..3 {
            libc::dup2(slave.as_raw_fd(), fd);
        }
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<OwnedFd, SandboxError> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: NUL-terminated path; the fd returned is owned here.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(SandboxError::setup(
            "open rootfs",
            Some(path.into()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mount_fd(
    source: Option<&Path>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    step: &str,
    shown: &Path,
) -> Result<(), SandboxError> {
    mount(source, &path_in_root::fd_path(target), fstype, flags, data)
        .map_err(sys(step, Some(shown)))
}

/// Set in pid 1 when running in a rootless user namespace (for messages).
static ROOTLESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn target(root: &OwnedFd, rel: &str, kind: Create) -> Result<OwnedFd, SandboxError> {
    path_in_root::open_or_create(root, Path::new(rel), kind).map_err(|e| {
        let denied = matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM));
        if denied && ROOTLESS.load(std::sync::atomic::Ordering::Relaxed) {
            SandboxError::Rootless {
                missing: format!(
                    "cannot create the mount point /{rel} in the rootfs: its files belong to users outside the sandbox's user namespace"
                ),
                hint: "use a rootfs owned by your user (for example unpacked by you), or run as root"
                    .to_string(),
            }
        } else {
            SandboxError::setup("create mount point", Some(PathBuf::from(rel)), e)
        }
    })
}

fn mount_proc(root: &OwnedFd) -> Result<(), SandboxError> {
    let t = target(root, "proc", Create::Dir)?;
    mount_fd(
        Some(Path::new("proc")),
        &t,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
        "mount /proc",
        Path::new("/proc"),
    )
}

fn mount_dev(root: &OwnedFd, tty: Option<&Path>, rootless: bool) -> Result<(), SandboxError> {
    let dev = target(root, "dev", Create::Dir)?;
    // nodev: a node made with mknod inside cannot be opened; the devices
    // below are bind mounts, which keep the flags of the host's /dev.
    mount_fd(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "mount /dev",
        Path::new("/dev"),
    )?;
    drop(dev);
    // Everything below goes into the tmpfs just mounted, which holds
    // nothing from the image: paths under it need no confined lookups.
    let dev_dir = path_in_root::open(root, Path::new("dev"))
        .map_err(io_err("open /dev", Path::new("/dev")))?;
    let dev_path = path_in_root::fd_path(&dev_dir);
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let at = dev_path.join(name);
        fs::File::create_new(&at).map_err(io_err("create device mount point", &host))?;
        match mount(
            Some(&host),
            &at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            Ok(()) => {}
            // Not on this host (e.g. no /dev/tty without a terminal device).
            Err(nix::Error::ENOENT) => {
                let _ = fs::remove_file(&at);
            }
            Err(e) => return Err(sys("bind device", Some(&host))(e)),
        }
    }
    let pts_opts = if rootless {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    for (dir, source, fstype, flags, data) in [
        (
            "pts",
            "devpts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            pts_opts,
        ),
        (
            "shm",
            "shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "mode=1777,size=65536k",
        ),
    ] {
        let at = dev_path.join(dir);
        let shown = Path::new("/dev").join(dir);
        fs::create_dir(&at).map_err(io_err("create /dev dir", &shown))?;
        mount(Some(source), &at, Some(fstype), flags, Some(data))
            .map_err(sys("mount /dev dir", Some(&shown)))?;
    }
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev_path.join(link);
        std::os::unix::fs::symlink(to, &p)
            .map_err(io_err("create /dev symlink", Path::new(link)))?;
    }
    if let Some(slave_path) = tty {
        let at = dev_path.join("console");
        fs::File::create_new(&at)
            .map_err(io_err("create /dev/console", Path::new("/dev/console")))?;
        mount(
            Some(slave_path),
            &at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("bind /dev/console", Some(slave_path)))?;
    }
    Ok(())
}

fn mount_sys(root: &OwnedFd, network: &Network, rootless: bool) -> Result<(), SandboxError> {
    let t = target(root, "sys", Create::Dir)?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let fresh = mount(
        Some("sysfs"),
        &path_in_root::fd_path(&t),
        Some("sysfs"),
        ro,
        None::<&str>,
    );
    match fresh {
        Ok(()) => Ok(()),
        // A user namespace that does not own the network namespace
        // (rootless with --network host) may not mount sysfs: bind the
        // host's read-only instead.
        Err(nix::Error::EPERM) if rootless || *network == Network::Host => {
            mount_fd(
                Some(Path::new("/sys")),
                &t,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                "bind /sys",
                Path::new("/sys"),
            )?;
            // Reopen: the remount must target the new bind mount's root.
            let t = target(root, "sys", Create::Dir)?;
            mount_fd(
                None,
                &t,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
                None,
                "remount /sys read-only",
                Path::new("/sys"),
            )
        }
        Err(e) => Err(sys("mount /sys", Some(Path::new("/sys")))(e)),
    }
}

fn mask_paths(root: &OwnedFd) -> Result<(), SandboxError> {
    for p in MASKED_PATHS {
        let fd = match path_in_root::open(root, Path::new(p)) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let is_dir = fs::metadata(path_in_root::fd_path(&fd))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            mount_fd(
                Some(Path::new("tmpfs")),
                &fd,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
                "mask path",
                Path::new(p),
            )?;
        } else {
            mount_fd(
                Some(Path::new("/dev/null")),
                &fd,
                None,
                MsFlags::MS_BIND,
                None,
                "mask path",
                Path::new(p),
            )?;
        }
    }
    Ok(())
}

fn readonly_paths(root: &OwnedFd) -> Result<(), SandboxError> {
    for p in READONLY_PATHS {
        let fd = match path_in_root::open(root, Path::new(p)) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let src = path_in_root::fd_path(&fd);
        mount_fd(
            Some(&src),
            &fd,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            "bind read-only path",
            Path::new(p),
        )?;
        // Re-open: the path now refers to the new bind mount.
        let fd = path_in_root::open(root, Path::new(p))
            .map_err(io_err("reopen read-only path", Path::new(p)))?;
        mount_fd(
            None,
            &fd,
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None,
            "remount read-only path",
            Path::new(p),
        )?;
    }
    Ok(())
}

/// Files the init process generated, and where they go.
pub(crate) const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

fn mount_etc_files(root: &OwnedFd, state: &Path) -> Result<(), SandboxError> {
    for name in ETC_FILES {
        let src = state.join(name);
        let rel = format!("etc/{name}");
        let t = target(root, &rel, Create::File)?;
        mount_fd(
            Some(&src),
            &t,
            None,
            MsFlags::MS_BIND,
            None,
            "bind generated file",
            Path::new(&rel),
        )?;
    }
    Ok(())
}

fn mount_extra(root: &OwnedFd, spec: &SandboxSpec, state: &Path) -> Result<(), SandboxError> {
    for (i, m) in spec.mounts.iter().enumerate() {
        if !m.target.is_absolute() {
            return Err(SandboxError::InvalidSpec {
                reason: format!("mount target {} is not absolute", m.target.display()),
            });
        }
        let rel = m.target.to_string_lossy().into_owned();
        match &m.kind {
            MountKind::Bind | MountKind::File(_) => {
                // A file mount's content is in the state dir (see init).
                let file_source;
                let source = if matches!(m.kind, MountKind::File(_)) {
                    file_source = state.join(super::init::mount_file_name(i));
                    &file_source
                } else {
                    &m.source
                };
                let meta = fs::metadata(source).map_err(io_err("bind mount source", source))?;
                let kind = if meta.is_dir() {
                    Create::Dir
                } else {
                    Create::File
                };
                let t = target(root, &rel, kind)?;
                mount_fd(
                    Some(source),
                    &t,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                    "bind mount",
                    &m.target,
                )?;
                if m.readonly {
                    let t = path_in_root::open(root, &m.target)
                        .map_err(io_err("reopen bind mount", &m.target))?;
                    // Keep the flags the kernel locks (nosuid etc.) by reading them.
                    let locked = statvfs_flags(&path_in_root::fd_path(&t));
                    mount_fd(
                        None,
                        &t,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
                        None,
                        "remount bind mount read-only",
                        &m.target,
                    )?;
                }
            }
            MountKind::Tmpfs => {
                let t = target(root, &rel, Create::Dir)?;
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if m.readonly {
                    flags |= MsFlags::MS_RDONLY;
                }
                mount_fd(
                    Some(Path::new("tmpfs")),
                    &t,
                    Some("tmpfs"),
                    flags,
                    Some("mode=1777"),
                    "mount tmpfs",
                    &m.target,
                )?;
            }
        }
    }
    Ok(())
}

fn statvfs_flags(p: &Path) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(s) = nix::sys::statvfs::statvfs(p) {
        use nix::sys::statvfs::FsFlags;
        let f = s.flags();
        if f.contains(FsFlags::ST_NOSUID) {
            out |= MsFlags::MS_NOSUID;
        }
        if f.contains(FsFlags::ST_NODEV) {
            out |= MsFlags::MS_NODEV;
        }
        if f.contains(FsFlags::ST_NOEXEC) {
            out |= MsFlags::MS_NOEXEC;
        }
    }
    out
}

/// Moves this process into the network namespace bind-mounted at `path`
/// ([`Network::Join`]). Opened here, before the mount namespace is
/// unshared and the root pivoted, while host paths still resolve.
fn join_netns(path: &Path) -> Result<(), SandboxError> {
    let file = fs::File::open(path).map_err(io_err("open network namespace", path))?;
    match nix::sched::setns(&file, CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) if ROOTLESS.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(SandboxError::Rootless {
                missing: format!(
                    "cannot join the network namespace {}: it belongs to the host's user namespace",
                    path.display()
                ),
                hint: "run as root, or use --network none or host".into(),
            })
        }
        Err(e) => Err(sys("join network namespace", Some(path))(e)),
    }
}

fn loopback_up() -> Result<(), SandboxError> {
    // SAFETY: plain socket + ioctl on a zeroed ifreq naming "lo".
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(SandboxError::setup(
                "bring lo up",
                None,
                io::Error::last_os_error(),
            ));
        }
        let s = OwnedFd::from_raw_fd(s);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(SandboxError::setup(
                "bring lo up",
                None,
                io::Error::last_os_error(),
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(SandboxError::setup(
                "bring lo up",
                None,
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn pivot(root: &Path) -> Result<(), SandboxError> {
    nix::unistd::chdir(root).map_err(sys("chdir to rootfs", Some(root)))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; the
    // detach below removes it (the trick runc uses; no temp dir needed).
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root", Some(root)))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmount old root", None))?;
    nix::unistd::chdir("/").map_err(sys("chdir /", None))?;
    Ok(())
}

fn drop_privileges(id: &user::Identity, groups: SupplementaryGroups) -> Result<(), SandboxError> {
    let keep: CapsHashSet = DEFAULT_CAPS.iter().copied().collect();
    let cap_err = |step: &'static str| {
        move |e: caps::errors::CapsError| {
            SandboxError::setup(step, None, io::Error::other(e.to_string()))
        }
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            // Capabilities the kernel does not know are fine to skip.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(cap_err("clear inheritable capabilities"))?;
    // Keep the permitted set across setuid so root-in-image keeps its caps;
    // for other users the exec below clears them, as with docker.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let primary = match groups {
        SupplementaryGroups::WithPrimary => Some(id.gid),
        SupplementaryGroups::Memberships => None,
    };
    let mut gids: Vec<nix::unistd::Gid> = Vec::new();
    for g in primary.into_iter().chain(id.groups.iter().copied()) {
        let g = nix::unistd::Gid::from_raw(g);
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    // A user namespace with a single mapping has setgroups denied; there
    // are no other groups to drop then.
    let setgroups_denied =
        fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !setgroups_denied {
        nix::unistd::setgroups(&gids).map_err(|e| unmapped(e, "setgroups", id))?;
    }
    let gid = nix::unistd::Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| unmapped(e, "setgid", id))?;
    let uid = nix::unistd::Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| unmapped(e, "setuid", id))?;
    if id.uid == 0 {
        caps::set(None, CapSet::Effective, &keep).map_err(cap_err("set effective capabilities"))?;
        caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("set permitted capabilities"))?;
    } else {
        caps::clear(None, CapSet::Effective).map_err(cap_err("clear effective capabilities"))?;
        caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("set permitted capabilities"))?;
    }
    Ok(())
}

fn unmapped(e: nix::Error, step: &str, id: &user::Identity) -> SandboxError {
    if e == nix::Error::EINVAL {
        SandboxError::Rootless {
            missing: format!(
                "uid {} / gid {} is not mapped in the sandbox's user namespace",
                id.uid, id.gid
            ),
            hint: "add ranges for your user to /etc/subuid and /etc/subgid and install newuidmap/newgidmap (Debian package uidmap), or run as root".into(),
        }
    } else {
        SandboxError::setup(step, None, io::Error::from(e))
    }
}

fn exec(args: &[String], env: &[String]) -> Result<std::convert::Infallible, SandboxError> {
    let Some(program) = args.first() else {
        return Err(SandboxError::InvalidSpec {
            reason: "no command given".into(),
        });
    };
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SandboxError::InvalidSpec {
            reason: "argument contains a NUL byte".into(),
        })?;
    let cenv: Vec<CString> = env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SandboxError::InvalidSpec {
            reason: "environment contains a NUL byte".into(),
        })?;
    let exec_err = |e: io::Error| SandboxError::Exec {
        program: program.clone(),
        source: e,
    };
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    let mut last = io::Error::from_raw_os_error(libc::ENOENT);
    for c in candidates {
        match fs::metadata(&c) {
            Ok(m) if m.is_file() => {
                if m.permissions().mode() & 0o111 == 0 {
                    last = io::Error::from_raw_os_error(libc::EACCES);
                    continue;
                }
            }
            Ok(_) if !program.contains('/') => continue,
            Ok(_) => return Err(exec_err(io::Error::from_raw_os_error(libc::EACCES))),
            Err(e) => {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    last = e;
                }
                continue;
            }
        }
        let cpath = CString::new(c.as_os_str().as_bytes()).expect("no NUL");
        let e = nix::unistd::execve(&cpath, &cargs, &cenv).unwrap_err();
        return Err(exec_err(io::Error::from(e)));
    }
    let _ = OsStr::new("");
    Err(exec_err(last))
}
