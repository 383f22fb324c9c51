//! Copying a [`SourceFs`] selection (the build context, or a stage's
//! snapshots through a merged view) into a plain directory, as RUN's
//! context, stage and cache-seed mounts need it.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::BuildError;
use rbuild_context::copy::{EntryKind, SourceFs};
use rbuild_oci::path_text;

/// `rel` (relative, `/`-separated) joined to `root`, refusing `..`.
fn join_inside(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(&*path_text::to_os(rel)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} leaves its root", path_text::quoted(rel)),
                ));
            }
        }
    }
    Ok(out)
}

/// `path` relative to a source root: no leading `/`, no `.` components.
pub(crate) fn clean_rel(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Copies the entry `rel` of `src` (recursively) to `dest`, keeping modes
/// and owners. With `hardlink_root` (the host directory `src` reads),
/// regular files are hard-linked from there when possible instead of
/// copied: only for trees mounted read-only, since a link shares the
/// inode with the user's file.
pub(crate) fn copy_tree(
    src: &dyn SourceFs,
    rel: &str,
    dest: &Path,
    hardlink_root: Option<&Path>,
) -> Result<(), BuildError> {
    let read_err = |p: &str| {
        let p = p.to_string();
        move |source| BuildError::Io {
            path: PathBuf::from(&*path_text::to_os(&p)),
            source,
        }
    };
    let Some(meta) = src.lstat(rel).map_err(read_err(rel))? else {
        return Err(BuildError::MountSource {
            what: "the source".into(),
            source_path: rel.to_string(),
        });
    };
    match meta.kind {
        EntryKind::Dir => {
            fs::create_dir(dest).map_err(BuildError::io(dest))?;
            for name in src.read_dir(rel).map_err(read_err(rel))? {
                let child = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let to = dest.join(path_text::to_os(&name));
                copy_tree(src, &child, &to, hardlink_root)?;
            }
        }
        EntryKind::File => {
            let linked = hardlink_root
                .and_then(|root| join_inside(root, rel).ok())
                .is_some_and(|host| fs::hard_link(&host, dest).is_ok());
            if !linked {
                let mut from = src.open(rel).map_err(read_err(rel))?;
                let mut to = fs::File::create(dest).map_err(BuildError::io(dest))?;
                io::copy(&mut from, &mut to).map_err(BuildError::io(dest))?;
            } else {
                // The link is the user's inode: leave its mode and owner.
                return Ok(());
            }
        }
        EntryKind::Symlink => {
            let target = src.read_link(rel).map_err(read_err(rel))?;
            std::os::unix::fs::symlink(&target, dest).map_err(BuildError::io(dest))?;
            let _ = std::os::unix::fs::lchown(dest, Some(meta.uid), Some(meta.gid));
            return Ok(());
        }
        // Devices and fifos are not needed by a build step's mount.
        EntryKind::Other => return Ok(()),
    }
    let _ = std::os::unix::fs::lchown(dest, Some(meta.uid), Some(meta.gid));
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode))
        .map_err(BuildError::io(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_rel_drops_slashes_and_dots() {
        assert_eq!(clean_rel("/a/./b/"), "a/b");
        assert_eq!(clean_rel("."), "");
    }
}
