//! Scratch directories of the worker: made in the store's per-process tmp
//! dir (swept by the next rbuild when this one is killed), removed when
//! dropped, and named by a per-process sequence number so concurrent steps
//! never collide. Nothing secret goes here: secrets and heredoc files
//! reach a RUN step in memory only (`MountSource::File`).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::BuildError;
use rbuild_store::Store;

/// A number not returned before in this process, for scratch names.
pub(crate) fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh directory in the store's per-process tmp dir (swept by the
/// next rbuild if this one is killed), removed when dropped.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(store: &Store, prefix: &str) -> Result<ScratchDir, BuildError> {
        Self::new_in(store.tmp_dir(), prefix)
    }

    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<ScratchDir, BuildError> {
        let n = unique();
        let path = parent.join(format!("build-{prefix}-{}-{n}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(BuildError::io(&path))?;
        Ok(ScratchDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // overlayfs leaves <work>/work with mode 000.
        let _ = fs::set_permissions(
            self.path.join("work/work"),
            fs::Permissions::from_mode(0o700),
        );
        let _ = fs::remove_dir_all(&self.path);
    }
}
