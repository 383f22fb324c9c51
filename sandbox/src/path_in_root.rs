//! Opening paths inside the container's rootfs without ever leaving it:
//! `openat2(RESOLVE_IN_ROOT)` resolves `..` and symlinks as if the rootfs
//! were `/`, so an image whose `/etc` is a symlink to `/host/etc` cannot
//! make a mount land on the host. Mounts then target `/proc/self/fd/N`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What to create when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens `rel` (absolute or relative; taken relative to `root`) as an
/// `O_PATH` fd, resolving symlinks inside `root`.
pub fn open(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    openat2(root, rel, libc::O_PATH | libc::O_CLOEXEC)
}

fn openat2(dir: &OwnedFd, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel = relative(rel);
    let c = cstr(if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &rel
    })?;
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: valid fd, NUL-terminated path and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `rel` without its leading `/` and `.` components.
pub fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// Opens `rel` inside `root`, creating it (and missing parents, as
/// directories 0755) when absent.
pub fn open_or_create(root: &OwnedFd, rel: &Path, kind: Create) -> io::Result<OwnedFd> {
    match open(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let rel = relative(rel);
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_owned()),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let parent_fd = open_or_create(root, &parent, Create::Dir)?;
    // Reopen the parent as a real directory fd for *at calls.
    let dir = openat2(
        root,
        &parent,
        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
    )?;
    drop(parent_fd);
    let cname =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid dir fd and NUL-terminated name.
    let rc = unsafe {
        match kind {
            Create::Dir => libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755),
            Create::File => {
                let fd = libc::openat(
                    dir.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                    0
                } else {
                    -1
                }
            }
        }
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    open(root, &rel)
}

/// The `/proc/self/fd/N` path of an fd, for mount(2) targets.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
