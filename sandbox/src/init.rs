//! The init process: `rbuild __sandbox-init`, a fresh single-threaded
//! re-exec of the binary. It reads the spec from fd 3, prepares what lives
//! outside the container (state dir, cgroup, user namespace, its own
//! private mount namespace holding the rootfs mount), then unshares a pid
//! namespace and forks pid 1 (see `container`). It stays outside the
//! container as its monitor: forwards signals, relays the terminal, reaps
//! pid 1 and exits with its status (signal n → 128+n), after cleaning up.
//!
//! The rootfs mount lives in the init process's private mount namespace and
//! the container's mounts in pid 1's own copy of it, so both vanish with
//! the processes; nothing is ever mounted in the caller's namespace. The
//! per-run state (generated /etc files, the rootfs mount point and, for
//! [`Rootfs::Ephemeral`], the overlay's upper and work dirs) lives on a
//! tmpfs mounted in that namespace too: nothing is created on disk for a
//! run, and there is nothing to remove afterwards, even when the init
//! process is killed.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::SnapshotterKind;
use super::cgroup::Cgroup;
use super::container::{self, ChildContext};
use super::error::{SandboxError, WireError};
use super::protocol::{Message, SPEC_FD, STATUS_FD};
use super::snapshot;
use super::spec::{Network, Rootfs, SandboxSpec};
use super::userns;

/// Entry point of the hidden init subcommand. Never returns.
pub fn init_main() -> ! {
    // SAFETY: fcntl on the status fd the parent set up for us.
    unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // The container's process starts with umask 0022, runc's default (the
    // OCI spec's `process.user.umask`) and so BuildKit's for RUN: the
    // caller's umask must not change the modes of files a RUN step
    // creates, and with them the layer's digest.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let code = match monitor() {
        Ok(code) => code,
        Err(e) => {
            container::send(STATUS_FD, &Message::Error(WireError::from(&e)));
            e.exit_code()
        }
    };
    std::process::exit(code)
}

/// The sandbox's private tmpfs (see the module docs), mounted on `dir` in
/// the init process's mount namespace.
struct Scratch {
    dir: PathBuf,
    /// `dir` was made for this run only (the shared mount point was
    /// unusable) and is removed afterwards.
    per_run: bool,
}

impl Scratch {
    /// The shared mount point, else a fresh directory in `runtime`. Made
    /// before any user namespace is entered, as the calling user.
    fn new(runtime: &Path) -> Result<Scratch, SandboxError> {
        if let Some(dir) = super::runtime_dir::scratch_mount_point(runtime) {
            return Ok(Scratch {
                dir,
                per_run: false,
            });
        }
        // The pid lets a later sweep tell whether its maker is gone.
        let template = runtime.join(format!("sandbox-{}-XXXXXX", std::process::id()));
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| {
            SandboxError::setup("create state dir", Some(template.clone()), e.into())
        })?;
        Ok(Scratch { dir, per_run: true })
    }

    /// Mounts the tmpfs (in the current, private, mount namespace).
    fn mount(&self) -> Result<(), SandboxError> {
        // No nosuid/nodev/noexec: overlay uses this as its upper layer, and
        // the flags that apply are the overlay mount's own.
        mount(
            Some("tmpfs"),
            &self.dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(|e| SandboxError::setup("mount sandbox tmpfs", Some(self.dir.clone()), e.into()))
    }

    fn mkdir(&self, name: &str) -> Result<PathBuf, SandboxError> {
        let p = self.dir.join(name);
        fs::create_dir(&p)
            .map_err(|e| SandboxError::setup("create sandbox dir", Some(p.clone()), e))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.per_run {
            let _ = umount2(&self.dir, MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

fn read_spec() -> Result<SandboxSpec, SandboxError> {
    // SAFETY: fd 3 was set up by the parent for us alone.
    let mut f = unsafe { fs::File::from_raw_fd(SPEC_FD) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| SandboxError::setup("read sandbox spec", None, e))?;
    serde_json::from_slice(&buf).map_err(|e| SandboxError::InvalidSpec {
        reason: format!("spec is not valid JSON: {e}"),
    })
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn write_state_files(state: &Path, hostname: &str, network: &Network) -> Result<(), SandboxError> {
    let w = |name: &str, text: String| {
        let p = state.join(name);
        fs::write(&p, text).map_err(|e| SandboxError::setup("write generated file", Some(p), e))
    };
    let hosts = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None | Network::Join(_) | Network::Helper(_) => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    };
    w("hosts", hosts)?;
    w("hostname", format!("{hostname}\n"))?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match network {
        Network::Host => host_resolv,
        Network::None | Network::Join(_) | Network::Helper(_) => isolated_resolv_conf(&host_resolv),
    };
    w("resolv.conf", resolv)?;
    Ok(())
}

/// The resolv.conf of a container with a network of its own, as Docker
/// and BuildKit write it: the host's, without nameservers on loopback
/// (unreachable from another network namespace); Google's public ones
/// when none remain, so the file is never empty.
fn isolated_resolv_conf(host: &str) -> String {
    let loopback = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words
                .next()
                .and_then(|a| a.split('%').next()?.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback())
    };
    let mut out = String::new();
    for line in host.lines().filter(|l| !loopback(l)) {
        out.push_str(line);
        out.push('\n');
    }
    let has_nameserver = out
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"));
    if !has_nameserver {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// The name in the state dir of the file that `spec.mounts[index]`, a
/// [`MountKind::File`](crate::MountKind::File), shows.
pub(crate) fn mount_file_name(index: usize) -> String {
    format!("mount-file-{index}")
}

/// Writes the content of each file mount to the state dir: the tmpfs
/// private to this mount namespace, so a secret is never on disk and is
/// freed by the kernel when the run ends, even if it is killed. Written
/// 0600 first, then given its owner and mode.
fn write_mount_files(state: &Path, spec: &SandboxSpec) -> Result<(), SandboxError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for (i, m) in spec.mounts.iter().enumerate() {
        let crate::MountKind::File(file) = &m.kind else {
            continue;
        };
        let p = state.join(mount_file_name(i));
        let err = |e| SandboxError::setup("write mounted file", Some(p.clone()), e);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(err)?;
        f.write_all(&file.data).map_err(err)?;
        drop(f);
        // Rootless, an owner the user namespace does not map fails here,
        // as it would for any file the step's user cannot be given.
        std::os::unix::fs::chown(&p, Some(file.uid), Some(file.gid)).map_err(err)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(file.mode)).map_err(err)?;
    }
    Ok(())
}

/// Mount points the sandbox may have to create in the rootfs; those missing
/// before the run are removed after it so the image is not modified.
const MOUNT_POINTS: [&str; 7] = [
    "proc",
    "dev",
    "sys",
    "etc",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Pid of the process that started this init process.
static CALLER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

fn monitor() -> Result<i32, SandboxError> {
    CALLER.store(
        nix::unistd::getppid().as_raw(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // If the caller dies, so does the sandbox (pid 1 follows us, see
    // container).
    // SAFETY: prctl with integer arguments only.
    // SIGTERM rather than SIGKILL so that, once the signalfd is set up,
    // the caller's death is noticed (parent changed) and the sandbox is
    // killed and cleaned up (mounts, state dir, cgroup) instead of leaked.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    let spec = read_spec()?;
    let rootless = !nix::unistd::geteuid().is_root();
    if rootless && spec.limits.any() {
        return Err(SandboxError::Rootless {
            missing: "resource limits (--memory, --cpus, --pids-limit) need cgroups, which a non-root user cannot configure here".into(),
            hint: "run as root, or drop the limits".into(),
        });
    }
    let hostname = match (spec.hostname.is_empty(), &spec.network) {
        (false, _) => spec.hostname.clone(),
        (true, Network::Host) => host_hostname(),
        (true, Network::None | Network::Join(_) | Network::Helper(_)) => "sandbox".into(),
    };

    let runtime = super::runtime_dir::runtime_dir();
    // Made here, as the calling user, before any user namespace is entered.
    // Without it mount points are created in the upper dir and removed again.
    let init_layer = super::runtime_dir::init_layer(&runtime).ok();
    let scratch = Scratch::new(&runtime)?;

    let mut cgroup = match (&spec.cgroup, spec.limits.any()) {
        (Some(name), _) => {
            // Without limits a cgroup is a convenience (stats, pause):
            // where one cannot be made (rootless) the run goes on without.
            match Cgroup::create(name, &spec.limits, true) {
                Ok(cg) => Some(cg),
                Err(e) if spec.limits.any() => return Err(e),
                Err(_) => None,
            }
        }
        (None, true) => Some(Cgroup::create(
            &format!("rbuild-{}", std::process::id()),
            &spec.limits,
            false,
        )?),
        (None, false) => None,
    };
    let result = run_in_namespaces(&spec, &scratch, &hostname, rootless, init_layer.as_deref());
    if let Some(cg) = cgroup.as_mut() {
        if cg.oom_killed() {
            container::send(STATUS_FD, &Message::OomKilled);
        }
        cg.remove();
    }
    result
}

fn run_in_namespaces(
    spec: &SandboxSpec,
    scratch: &Scratch,
    hostname: &str,
    rootless: bool,
    init_layer: Option<&Path>,
) -> Result<i32, SandboxError> {
    // Forked while this process is still in the host's namespaces.
    let helper = match &spec.network {
        Network::Helper(h) => Some(super::net_helper::Pending::fork(h, &scratch.dir)?),
        _ => None,
    };
    if rootless {
        userns::enter()?;
    }
    // The helper's network namespace, owned by the user namespace just
    // made: pid 1 inherits it, and the helper configures it before the
    // command starts.
    let _helper = match helper {
        Some(pending) => {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| SandboxError::setup("unshare network namespace", None, e.into()))?;
            Some(pending.start()?)
        }
        None => None,
    };
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| SandboxError::setup("unshare mount namespace", None, e.into()))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SandboxError::setup("make mounts private", Some("/".into()), e.into()))?;
    scratch.mount()?;
    write_state_files(&scratch.dir, hostname, &spec.network)?;
    write_mount_files(&scratch.dir, spec)?;
    let mountpoint = scratch.mkdir("root")?;

    let copy = mount_rootfs(spec, &mountpoint, rootless, init_layer, scratch)?;
    // An ephemeral rootfs is discarded whole; others get back what they had.
    let ephemeral = matches!(spec.rootfs, Rootfs::Ephemeral { .. });
    let missing: Vec<&str> = if ephemeral {
        Vec::new()
    } else {
        MOUNT_POINTS
            .iter()
            .copied()
            .filter(|p| fs::symlink_metadata(mountpoint.join(p)).is_err())
            .collect()
    };

    let code = spawn_and_wait(spec, &scratch.dir, &mountpoint, hostname, rootless);

    // Remove the mount points we created, deepest first.
    for p in missing.iter().rev() {
        let full = mountpoint.join(p);
        if let Ok(m) = fs::symlink_metadata(&full) {
            if m.is_dir() {
                let _ = fs::remove_dir(&full);
            } else if m.len() == 0 {
                let _ = fs::remove_file(&full);
            }
        }
    }
    // Mounts need no unmounting: they go with this process's namespace.
    if let Rootfs::Overlay { work, .. } = &spec.rootfs {
        if copy.is_none() {
            // The volatile overlay leaves work/work (mode 000, with an
            // incompat/volatile marker) behind; clear it so the work dir
            // is empty again and removable by its owner.
            let _ = umount2(&mountpoint, MntFlags::MNT_DETACH);
            clear_overlay_work(work);
        }
    }
    if let (Some((merged, manifest)), Rootfs::Overlay { upper, .. }) = (copy, &spec.rootfs) {
        let _ = umount2(&mountpoint, MntFlags::MNT_DETACH);
        let diff = snapshot::diff_into(&merged, &manifest, upper).map_err(|e| {
            SandboxError::setup(
                "record changes of copy-based snapshot",
                Some(upper.clone()),
                e,
            )
        });
        let _ = fs::remove_dir_all(&merged);
        diff?;
    }
    code
}

fn clear_overlay_work(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let inner = work.join("work");
    if fs::symlink_metadata(&inner).is_ok() {
        let _ = fs::set_permissions(&inner, fs::Permissions::from_mode(0o700));
        let _ = fs::remove_dir_all(&inner);
    }
}

/// Mounts the rootfs at `mountpoint`. Returns the merged dir and manifest
/// when the copy-based snapshotter had to be used.
fn mount_rootfs(
    spec: &SandboxSpec,
    mountpoint: &Path,
    rootless: bool,
    init_layer: Option<&Path>,
    scratch: &Scratch,
) -> Result<Option<(PathBuf, snapshot::Manifest)>, SandboxError> {
    let bind = |src: &Path| {
        mount(
            Some(src),
            mountpoint,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| SandboxError::setup("bind rootfs", Some(src.to_path_buf()), e.into()))
    };
    match &spec.rootfs {
        Rootfs::Dir(dir) => {
            bind(dir)?;
            // nodev: device nodes made with mknod inside cannot be opened.
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV;
            mount(None::<&str>, mountpoint, None::<&str>, flags, None::<&str>).map_err(|e| {
                SandboxError::setup("remount rootfs nodev", Some(dir.clone()), e.into())
            })?;
            Ok(None)
        }
        Rootfs::Ephemeral { lowers } => {
            let upper = scratch.mkdir("upper")?;
            let work = scratch.mkdir("work")?;
            let lowers = at_least_one(lowers, scratch)?;
            mount_overlay(
                &lowers, &upper, &work, mountpoint, rootless, init_layer, &bind,
            )
        }
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } => {
            let lowers = at_least_one(lowers, scratch)?;
            mount_overlay(
                &lowers, upper, work, mountpoint, rootless, init_layer, &bind,
            )
        }
    }
}

/// `lowers`, or one empty dir on the sandbox's tmpfs when there are none
/// (an image `FROM scratch` with no files): overlayfs needs a lower dir.
fn at_least_one(lowers: &[PathBuf], scratch: &Scratch) -> Result<Vec<PathBuf>, SandboxError> {
    if lowers.is_empty() {
        Ok(vec![scratch.mkdir("empty")?])
    } else {
        Ok(lowers.to_vec())
    }
}

/// Mounts an overlay of `lowers` (under `init_layer` when it fits) at
/// `mountpoint`, or falls back to the copy-based snapshotter (see
/// [`mount_rootfs`]).
fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    mountpoint: &Path,
    rootless: bool,
    init_layer: Option<&Path>,
    bind: &dyn Fn(&Path) -> Result<(), SandboxError>,
) -> Result<Option<(PathBuf, snapshot::Manifest)>, SandboxError> {
    // The init layer goes on top of the image's layers when the
    // options still fit in a page with it (it lives apart from the
    // snapshots, so it can defeat the relative-path compaction).
    let with_init: Vec<PathBuf>;
    let lowers = match init_layer {
        Some(layer) => {
            with_init = std::iter::once(layer.to_path_buf())
                .chain(lowers.iter().cloned())
                .collect();
            let fits = overlay_mount_data(&with_init, upper, work, rootless)
                .0
                .len()
                <= OVERLAY_DATA_MAX;
            if fits { &with_init } else { lowers }
        }
        None => lowers,
    };
    let (data, base) = overlay_mount_data(lowers, upper, work, rootless);
    if data.len() > OVERLAY_DATA_MAX {
        return Err(SandboxError::InvalidSpec {
            reason: format!(
                "overlay options for {} lower dirs are {} bytes, more than mount(2) accepts (one page) even relative to their common parent; keep snapshot dirs under one short parent",
                lowers.len(),
                data.len()
            ),
        });
    }
    // Overlay resolves relative dirs against the mounter's cwd.
    if let Some(base) = &base {
        nix::unistd::chdir(base.as_path()).map_err(|e| {
            SandboxError::setup("chdir to snapshot dir", Some(base.clone()), e.into())
        })?;
    }
    let forced_copy = std::env::var_os("RBUILD_SNAPSHOTTER").is_some_and(|v| v == "copy");
    let res = if forced_copy {
        Err(nix::Error::EINVAL)
    } else {
        mount(
            Some("overlay"),
            mountpoint,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
    };
    if base.is_some() {
        let _ = nix::unistd::chdir("/");
    }
    match res {
        Ok(()) => {
            container::send(STATUS_FD, &Message::Snapshotter(SnapshotterKind::Overlay));
            Ok(None)
        }
        Err(e) if overlay_unsupported(e) => {
            let merged = snapshot::merged_dir(work);
            let manifest = snapshot::copy_merged(lowers, &merged)
                .map_err(|e| SandboxError::setup("copy-based snapshot", Some(merged.clone()), e))?;
            bind(&merged)?;
            container::send(STATUS_FD, &Message::Snapshotter(SnapshotterKind::Copy));
            Ok(Some((merged, manifest)))
        }
        Err(e) => Err(SandboxError::setup(
            "mount overlay rootfs",
            Some(upper.to_path_buf()),
            e.into(),
        )),
    }
}

/// Errors that mean "overlayfs cannot be used here" rather than "the paths
/// are wrong": no overlay support, or a filesystem overlay refuses.
fn overlay_unsupported(e: nix::Error) -> bool {
    matches!(
        e,
        nix::Error::ENODEV | nix::Error::EINVAL | nix::Error::EOPNOTSUPP | nix::Error::EPERM
    )
}

fn escape_overlay(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path, rootless: bool) -> String {
    let lowers: Vec<String> = lowers.iter().map(|l| escape_overlay(l)).collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={},volatile",
        lowers.join(":"),
        escape_overlay(upper),
        escape_overlay(work)
    );
    if rootless {
        data.push_str(",userxattr");
    }
    data
}

/// mount(2) options are limited to one page. Above this many bytes the
/// dirs are given relative to their common parent instead (which the
/// caller then makes the cwd), so a store's snapshots/<id> lowers fit many
/// more layers.
const OVERLAY_DATA_MAX: usize = 4000;

/// The overlay mount options, and the directory they are relative to when
/// absolute paths would not fit in a page: the common parent of all dirs,
/// else that of the lowers alone, with upper and work left absolute (an
/// ephemeral rootfs keeps them on its tmpfs, away from the snapshots).
fn overlay_mount_data(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootless: bool,
) -> (String, Option<PathBuf>) {
    let data = overlay_options(lowers, upper, work, rootless);
    if data.len() <= OVERLAY_DATA_MAX {
        return (data, None);
    }
    let all: Vec<&Path> = lowers
        .iter()
        .map(PathBuf::as_path)
        .chain([upper, work])
        .collect();
    let lowers_only = &all[..lowers.len()];
    let mut best = (data, None);
    for dirs in [&all[..], lowers_only] {
        let Some(base) = common_parent(dirs) else {
            continue;
        };
        // Relative to the base, or absolute (unaffected by the cwd) when
        // not under it.
        let rel = |p: &Path| {
            p.strip_prefix(&base)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let rel_lowers: Vec<PathBuf> = lowers.iter().map(|l| rel(l)).collect();
        let data = overlay_options(&rel_lowers, &rel(upper), &rel(work), rootless);
        if data.len() < best.0.len() {
            best = (data, Some(base));
        }
        if best.0.len() <= OVERLAY_DATA_MAX {
            break;
        }
    }
    best
}

/// The deepest directory above every one of `dirs` (other than `/`).
fn common_parent(dirs: &[&Path]) -> Option<PathBuf> {
    let mut base = dirs.first()?.parent()?.to_path_buf();
    while !dirs.iter().all(|p| p.starts_with(&base)) {
        base = base.parent()?.to_path_buf();
    }
    (base.parent().is_some()).then_some(base)
}

/// Signals forwarded to pid 1 (SIGCHLD and SIGWINCH are handled here).
pub(crate) const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn spawn_and_wait(
    spec: &SandboxSpec,
    state: &Path,
    mountpoint: &Path,
    hostname: &str,
    rootless: bool,
) -> Result<i32, SandboxError> {
    let pty = if spec.process.tty {
        Some(super::tty::Pty::open()?)
    } else {
        None
    };
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGWINCH);
    mask.thread_block()
        .map_err(|e| SandboxError::setup("block signals", None, e.into()))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SandboxError::setup("signalfd", None, e.into()))?;

    unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| SandboxError::setup("unshare pid namespace", None, e.into()))?;
    let spec_for_child = SandboxSpec {
        hostname: hostname.to_string(),
        ..spec.clone()
    };
    // SAFETY: this process is single-threaded (a fresh exec that started
    // no threads), so the child may do anything after fork.
    let child = match unsafe { nix::unistd::fork() }
        .map_err(|e| SandboxError::setup("fork pid 1", None, e.into()))?
    {
        ForkResult::Child => {
            drop(sfd);
            let tty = pty.map(|p| p.into_slave());
            container::start(ChildContext {
                spec: &spec_for_child,
                mountpoint,
                state,
                tty,
                status: STATUS_FD,
                rootless,
            })
        }
        ForkResult::Parent { child } => child,
    };
    let pty = pty.map(|p| p.into_master());
    let caller = Pid::from_raw(CALLER.load(std::sync::atomic::Ordering::Relaxed));
    if nix::unistd::getppid() != caller {
        // The caller died before the signalfd existed.
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
    }
    wait_loop(child, &sfd, pty.as_ref(), caller)
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

pub(crate) fn wait_loop(
    child: Pid,
    sfd: &SignalFd,
    master: Option<&OwnedFd>,
    caller: Pid,
) -> Result<i32, SandboxError> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdin = io::stdin();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let _raw = master.and_then(|_| super::tty::RawMode::enter(stdin.as_fd()));
    if let Some(m) = master {
        super::tty::copy_winsize(stdin.as_fd(), m.as_fd());
    }
    let mut code: Option<i32> = None;
    let mut buf = [0u8; 8192];
    loop {
        if code.is_some() && !master_open {
            break;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let stdin_idx = if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let master_idx = match master {
            Some(m) if master_open => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(SandboxError::setup("poll", None, e.into())),
        }
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds[i].revents()).is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (sig_ready, in_ready, m_ready) = (ready(Some(0)), ready(stdin_idx), ready(master_idx));
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    loop {
                        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) | Err(_) => break,
                            Ok(ws) => {
                                if ws.pid() == Some(child) {
                                    code = exit_code(ws);
                                }
                            }
                        }
                    }
                } else if signo == libc::SIGWINCH {
                    if let Some(m) = master {
                        super::tty::copy_winsize(stdin.as_fd(), m.as_fd());
                    }
                } else if signo == libc::SIGTERM && nix::unistd::getppid() != caller {
                    // The caller died (PDEATHSIG): end the sandbox now.
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                } else if let Ok(sig) = Signal::try_from(signo) {
                    let _ = nix::sys::signal::kill(child, sig);
                }
            }
        }
        if let (true, Some(m)) = (in_ready, master) {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(m.as_fd(), &buf[..n]);
                }
            }
        }
        if let (true, Some(m)) = (m_ready, master) {
            match nix::unistd::read(m.as_fd(), &mut buf) {
                Ok(0) | Err(_) => master_open = false,
                Ok(n) => {
                    let _ = write_all(io::stdout().as_fd(), &buf[..n]);
                }
            }
        }
        if code.is_some() && master.is_none() {
            break;
        }
    }
    Ok(code.unwrap_or(125))
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    let _ = fd.as_raw_fd();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_resolv_conf_drops_loopback_nameservers_and_is_never_empty() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            isolated_resolv_conf(host),
            "# generated\nsearch corp.example\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let host = "nameserver 10.0.0.2\nnameserver 127.0.0.1\n";
        assert_eq!(isolated_resolv_conf(host), "nameserver 10.0.0.2\n");
        assert_eq!(
            isolated_resolv_conf(""),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn short_overlay_options_use_absolute_paths() {
        let (data, base) = overlay_mount_data(
            &[PathBuf::from("/s/a"), PathBuf::from("/s/b")],
            Path::new("/s/up"),
            Path::new("/s/wk"),
            false,
        );
        assert_eq!(
            data,
            "lowerdir=/s/a:/s/b,upperdir=/s/up,workdir=/s/wk,volatile"
        );
        assert_eq!(base, None);
    }

    #[test]
    fn long_overlay_options_become_relative_to_the_common_parent() {
        let root = format!("/var/lib/rbuild/{}", "x".repeat(40));
        let lowers: Vec<PathBuf> = (0..50)
            .map(|i| PathBuf::from(format!("{root}/snapshots/{i:064}")))
            .collect();
        let (data, base) = overlay_mount_data(
            &lowers,
            Path::new(&format!("{root}/tmp/up")),
            Path::new(&format!("{root}/tmp/wk")),
            true,
        );
        assert_eq!(base, Some(PathBuf::from(&root)));
        assert!(data.len() <= OVERLAY_DATA_MAX, "{}", data.len());
        assert!(data.starts_with(&format!("lowerdir=snapshots/{:064}:", 0)));
        assert!(data.ends_with(",upperdir=tmp/up,workdir=tmp/wk,volatile,userxattr"));
    }

    #[test]
    fn an_upper_dir_outside_the_lowers_parent_stays_absolute() {
        let root = format!("/var/lib/rbuild/{}", "x".repeat(40));
        let lowers: Vec<PathBuf> = (0..50)
            .map(|i| PathBuf::from(format!("{root}/snapshots/{i:064}")))
            .collect();
        let (data, base) = overlay_mount_data(
            &lowers,
            Path::new("/run/rbuild/scratch-mnt/upper"),
            Path::new("/run/rbuild/scratch-mnt/work"),
            false,
        );
        assert_eq!(base, Some(PathBuf::from(format!("{root}/snapshots"))));
        assert!(data.len() <= OVERLAY_DATA_MAX, "{}", data.len());
        assert!(data.ends_with(
            ",upperdir=/run/rbuild/scratch-mnt/upper,workdir=/run/rbuild/scratch-mnt/work,volatile"
        ));
    }
}
