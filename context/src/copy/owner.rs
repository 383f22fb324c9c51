//! `--chown user[:group]` and WORKDIR's owner, resolved against the
//! destination's `/etc/passwd` and `/etc/group` with BuildKit's file-op
//! rules, which differ from `docker run -u`: a numeric user alone gives
//! that number as both uid and gid (`--chown=1000` is 1000:1000); a user
//! name gives its passwd uid and primary gid; a group, by name or number,
//! replaces the gid. A name that the files do not list is an error (BuildKit
//! would silently use 0; an error is what a user wants to see).

use super::CopyError;
use super::layered::LayeredFs;

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `spec` against `fs`'s `/etc/passwd` and `/etc/group` (read only
/// when a name needs them). An empty spec is root.
pub(crate) fn resolve_owner(fs: &LayeredFs, spec: &str) -> Result<Owner, CopyError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut owner = if user.is_empty() {
        Owner { uid: 0, gid: 0 }
    } else if let Ok(id) = user.parse::<u32>() {
        Owner { uid: id, gid: id }
    } else {
        let passwd = read_text(fs, "/etc/passwd")?;
        passwd
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 4 && f[0] == user)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
            .map(|(uid, gid)| Owner { uid, gid })
            .next()
            .unwrap_or(Owner { uid: 0, gid: 0 })
    };
    match group {
        None | Some("") => {}
        Some(g) => {
            owner.gid = match g.parse::<u32>() {
                Ok(id) => id,
                Err(_) => {
                    let groups = read_text(fs, "/etc/group")?;
                    groups
                        .lines()
                        .filter_map(|line| {
                            let f: Vec<&str> = line.split(':').collect();
                            (f.len() >= 3 && f[0] == g)
                                .then(|| f[2].parse().ok())
                                .flatten()
                        })
                        .next()
                        .unwrap_or(owner.gid)
                }
            };
        }
    }
    Ok(owner)
}

fn read_text(fs: &LayeredFs, path: &str) -> Result<String, CopyError> {
    let data = fs.read_file(path).map_err(|source| CopyError::Io {
        path: path.into(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&data.unwrap_or_default()).into_owned())
}
