//! `RUN --mount=type=cache`: directories kept in the store across builds,
//! named by the mount's id.
//!
//! ```text
//! <store>/cache-mounts/<sha256(id) hex>/        the directory (sharing=shared|locked)
//! <store>/cache-mounts/<sha256(id) hex>.lock    flock: shared while in use by
//!                                                shared mounts, exclusive for locked
//!                                                and private ones
//! <store>/cache-mounts/<hex>-<n>/ (+ .lock)      further directories a private
//!                                                mount takes when the others are busy
//! ```
//!
//! The id is hashed so any text is a safe file name; the contents are
//! never part of a key or a layer. Prune removes directories nobody holds.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rbuild_solver::Digest;
use rbuild_solver::op::CacheSharing;

use super::BuildError;
use rbuild_store::{FileLock, LockMode, Store};

/// The directory holding every cache mount of `store`.
pub(crate) fn root(store_dir: &Path) -> PathBuf {
    store_dir.join("cache-mounts")
}

/// A cache mount's directory, held (locked) until dropped.
#[derive(Debug)]
pub(crate) struct HeldCacheDir {
    pub(crate) dir: PathBuf,
    _lock: FileLock,
}

/// Fills a freshly created cache directory at the given path.
pub(crate) type Seed<'a> = &'a dyn Fn(&Path) -> Result<(), BuildError>;

/// How a new cache directory is made.
pub(crate) struct NewDir<'a> {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Fills a freshly created directory (the `from=` seed).
    pub(crate) seed: Option<Seed<'a>>,
}

/// Takes the cache directory for `id` with `sharing`'s rules: shared
/// mounts use it together; locked waits until no one else uses it;
/// private takes another directory when it is in use. Creates it (with
/// `new`'s mode, owner and seed) when it does not exist yet.
pub(crate) fn acquire(
    store: &Store,
    id: &str,
    sharing: CacheSharing,
    new: &NewDir<'_>,
) -> Result<HeldCacheDir, BuildError> {
    let root = root(store.dir());
    fs::create_dir_all(&root).map_err(BuildError::io(&root))?;
    let base = Digest::of(id.as_bytes()).hex();
    let (name, lock) = match sharing {
        CacheSharing::Shared => {
            let name = base.clone();
            let lock = FileLock::acquire(&root.join(format!("{name}.lock")), LockMode::Shared)?;
            (name, lock)
        }
        CacheSharing::Locked => {
            let name = base.clone();
            let lock = FileLock::acquire(&root.join(format!("{name}.lock")), LockMode::Exclusive)?;
            (name, lock)
        }
        CacheSharing::Private => {
            let mut n = 0u32;
            loop {
                let name = if n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                };
                let path = root.join(format!("{name}.lock"));
                if let Some(lock) = FileLock::try_acquire(&path, LockMode::Exclusive)? {
                    break (name, lock);
                }
                n += 1;
            }
        }
    };
    let dir = root.join(&name);
    if !dir.is_dir() {
        create(store, &dir, new)?;
    }
    Ok(HeldCacheDir { dir, _lock: lock })
}

/// Makes `dir` all-or-nothing: built in scratch space, renamed in place.
fn create(store: &Store, dir: &Path, new: &NewDir<'_>) -> Result<(), BuildError> {
    let scratch = super::scratch::ScratchDir::new(store, "cache-mount")?;
    let tmp = scratch.path().join("dir");
    match new.seed {
        Some(seed) => seed(&tmp)?,
        None => {
            fs::DirBuilder::new()
                .mode(new.mode)
                .create(&tmp)
                .map_err(BuildError::io(&tmp))?;
        }
    }
    // The mount's own mode and owner win over the seed's root directory.
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(new.mode))
        .map_err(BuildError::io(&tmp))?;
    super::upper_dir::chown_for_sandbox(&tmp, new.uid, new.gid)?;
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // A concurrent shared user made it first.
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(BuildError::io(dir)(e)),
    }
}

/// Removes every cache directory nobody holds. Returns (directories,
/// bytes) removed.
pub(crate) fn prune(store: &Store) -> Result<(u64, u64), BuildError> {
    let root = root(store.dir());
    if !root.is_dir() {
        return Ok((0, 0));
    }
    let (mut count, mut bytes) = (0, 0);
    for entry in fs::read_dir(&root).map_err(BuildError::io(&root))? {
        let entry = entry.map_err(BuildError::io(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") || !entry.path().is_dir() {
            continue;
        }
        let lock_path = root.join(format!("{name}.lock"));
        let Some(_lock) = FileLock::try_acquire(&lock_path, LockMode::Exclusive)? else {
            continue;
        };
        bytes += rbuild_store::tree_size(&entry.path());
        fs::remove_dir_all(entry.path()).map_err(BuildError::io(&entry.path()))?;
        let _ = fs::remove_file(&lock_path);
        count += 1;
    }
    Ok((count, bytes))
}

/// Bytes used by all cache mounts.
pub(crate) fn usage(store_dir: &Path) -> u64 {
    rbuild_store::tree_size(&root(store_dir))
}
