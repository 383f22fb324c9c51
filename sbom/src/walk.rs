//! Walks an image's root filesystem once for the scanners that look
//! everywhere (Python, npm, binaries), never following symlinks and
//! skipping the kernel's pseudo-filesystems' mount points.

use std::os::unix::fs::PermissionsExt;

use crate::rootfs::{RootFs, join};

/// What the walk found at a path.
pub(crate) enum Found<'a> {
    Dir(&'a str),
    File { name: &'a str, executable: bool },
}

/// Directories whose content is not the image's.
const SKIPPED: &[&str] = &["/proc", "/sys", "/dev"];

/// Most entries visited (a bound on hostile images).
const MAX_ENTRIES: usize = 2_000_000;

/// Calls `visit` with every directory and regular file under the root,
/// by image path, in sorted order.
pub(crate) fn walk(fs: &RootFs, visit: &mut dyn FnMut(&str, Found<'_>)) {
    let mut stack = vec!["/".to_string()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let host = fs.root().join(dir.trim_start_matches('/'));
        let Ok(entries) = fs_err::read_dir(&host) else {
            continue;
        };
        let mut children: Vec<(String, std::fs::Metadata)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let meta = e.metadata().ok()?;
                Some((name, meta))
            })
            .collect();
        children.sort_by(|a, b| b.0.cmp(&a.0));
        for (name, meta) in children {
            seen += 1;
            if seen > MAX_ENTRIES {
                return;
            }
            let path = join(&dir, &name);
            if meta.is_dir() {
                if SKIPPED.contains(&path.as_str()) {
                    continue;
                }
                visit(&path, Found::Dir(&name));
                stack.push(path);
            } else if meta.is_file() {
                let executable = meta.permissions().mode() & 0o111 != 0;
                visit(
                    &path,
                    Found::File {
                        name: &name,
                        executable,
                    },
                );
            }
        }
    }
}
