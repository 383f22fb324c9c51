//! What a RUN leaves in its upper dir once the sandbox is gone: the mount
//! points the sandbox had to create are removed (they are not the
//! command's output), then an empty upper dir means the step has no layer.

use std::fs;
use std::path::{Path, PathBuf};

use super::BuildError;

/// True when the absolute path `target` exists in the merged view of
/// `lowers` (top first, overlay snapshots): whiteouts, opaque directories
/// and files hiding what is below, as [`LayeredFs`](rbuild_context::copy::LayeredFs)
/// reads them for COPY.
fn exists_in_lowers(lowers: &[PathBuf], target: &Path) -> bool {
    use rbuild_context::copy::SourceFs;
    let rel = target.strip_prefix("/").unwrap_or(target);
    if rel.as_os_str().is_empty() {
        return true;
    }
    let rel = rbuild_oci::path_text::from_os(rel.as_os_str());
    rbuild_context::copy::LayeredFs::new(lowers.to_vec())
        .lstat(&rel)
        .is_ok_and(|m| m.is_some())
}

/// After a run: removes from `upper` the empty files and directories the
/// sandbox created as mount points for `targets` that the lowers did not
/// have, and the parent directories created (or copied up) only to hold
/// them, so they do not become part of the layer. Anything the command
/// wrote there is kept.
pub(crate) fn remove_placeholders(upper: &Path, lowers: &[PathBuf], targets: &[PathBuf]) {
    let mut targets: Vec<&PathBuf> = targets.iter().collect();
    // Deepest first, so a nested target goes before its parent's.
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    for target in targets {
        if exists_in_lowers(lowers, target) {
            continue;
        }
        let rel = target.strip_prefix("/").unwrap_or(target);
        let mut path = upper.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                if fs::remove_dir(&path).is_err() {
                    continue;
                }
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                if fs::remove_file(&path).is_err() {
                    continue;
                }
            }
            _ => continue,
        }
        // Parents: created for the mount point (absent from the lowers),
        // or copied up to hold it. Only empty, non-opaque ones go.
        while let Some(parent) = path.parent() {
            if parent == upper {
                break;
            }
            let is_plain_empty_dir = fs::symlink_metadata(parent).is_ok_and(|m| m.is_dir())
                && !rbuild_context::copy::is_opaque(parent).unwrap_or(true)
                && fs::read_dir(parent).is_ok_and(|mut d| d.next().is_none());
            if !is_plain_empty_dir || fs::remove_dir(parent).is_err() {
                break;
            }
            path = parent.to_path_buf();
        }
    }
}

/// Gives `path` the owner `uid:gid` a RUN step is to see. As root, a
/// chown. A caller that is not root runs its sandboxes in a user
/// namespace where it is root itself (the sandbox's rootless mode), so
/// its own files already show as 0:0 there: an id of 0 is left as it is,
/// where a chown would need privileges the caller lacks. Other ids are
/// asked for as given (without privileges that fails, as before).
pub(crate) fn chown_for_sandbox(path: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    let root = rustix::process::geteuid().is_root();
    let uid = (root || uid != 0).then_some(uid);
    let gid = (root || gid != 0).then_some(gid);
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, uid, gid).map_err(BuildError::io(path))
}

/// True when `dir` has no entries.
pub(crate) fn is_empty_dir(dir: &Path) -> Result<bool, BuildError> {
    Ok(fs::read_dir(dir)
        .map_err(BuildError::io(dir))?
        .next()
        .is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    use rbuild_testkit::skipped;

    #[test]
    fn lookups_follow_overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (t.path().join("top"), t.path().join("bottom"));
        fs::create_dir_all(bottom.join("a/b")).unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        fs::write(top.join("f"), "").unwrap();
        let lowers = vec![top.clone(), bottom.clone()];
        assert!(exists_in_lowers(&lowers, Path::new("/a/b")));
        assert!(exists_in_lowers(&lowers, Path::new("/f")));
        assert!(!exists_in_lowers(&lowers, Path::new("/f/x")));
        assert!(!exists_in_lowers(&lowers, Path::new("/missing")));
        assert!(exists_in_lowers(&lowers, Path::new("/")));
        // Deletions in an upper layer hide what the lower one has.
        fs::create_dir_all(bottom.join("gone")).unwrap();
        fs::create_dir_all(bottom.join("o/old")).unwrap();
        fs::create_dir_all(top.join("o")).unwrap();
        rustix::fs::lsetxattr(
            top.join("o"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert!(
            !exists_in_lowers(&lowers, Path::new("/o/old")),
            "opaque dir"
        );
        assert!(exists_in_lowers(&lowers, Path::new("/o")));
        let whiteout = rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        );
        if whiteout.is_ok() {
            assert!(!exists_in_lowers(&lowers, Path::new("/gone")), "whiteout");
        } else {
            skipped(
                "lookups_follow_overlay_rules",
                "its whiteout check needs root (a 0/0 character device)",
            );
        }
    }

    #[test]
    fn placeholders_and_their_new_parents_go_but_written_files_stay() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(upper.join("run/secrets")).unwrap();
        fs::write(upper.join("run/secrets/token"), "").unwrap();
        fs::create_dir_all(upper.join("cache/dir")).unwrap();
        fs::write(upper.join("cache/kept"), "data").unwrap();
        remove_placeholders(
            &upper,
            &[lower],
            &[
                PathBuf::from("/run/secrets/token"),
                PathBuf::from("/cache/dir"),
            ],
        );
        assert!(!upper.join("run").exists());
        assert!(!upper.join("cache/dir").exists());
        assert!(upper.join("cache/kept").exists());
    }
}
