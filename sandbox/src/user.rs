//! Resolving `Process::user` (`name`, `uid`, `name:group`, `uid:gid`) from
//! the rootfs's `/etc/passwd` and `/etc/group`, the way docker does: a
//! numeric uid missing from passwd is fine (gid 0, no extra groups); a name
//! must exist.

use super::error::SandboxError;

/// A resolved identity: uid, primary gid, the user's group memberships
/// (`/etc/group` entries listing it; none when the group was given), home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

/// (name, gid, members)
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` against the contents of `/etc/passwd` and `/etc/group`
/// (either may be empty when the file is missing).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, SandboxError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| SandboxError::UserNotFound {
                    user: user_part.to_string(),
                })?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part.parse().unwrap_or(0),
    };
    let mut gid = entry.as_ref().map(|e| e.gid).unwrap_or(0);
    let home = entry
        .as_ref()
        .map(|e| e.home.to_string())
        .unwrap_or_else(|| "/".to_string());
    let mut groups = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_entries(group)
                    .find(|(name, _, _)| *name == g)
                    .map(|(_, id, _)| id)
                    .ok_or_else(|| SandboxError::GroupNotFound {
                        group: g.to_string(),
                    })?,
            };
        }
        _ => {
            // Supplementary groups only when the group is not forced, as docker.
            if let Some(e) = &entry {
                groups = group_entries(group)
                    .filter(|(_, _, members)| members.contains(&e.name))
                    .map(|(_, id, _)| id)
                    .collect();
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\n";

    #[test]
    fn empty_is_root() {
        let id = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn name_resolves_uid_gid_and_supplementary_groups() {
        let id = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        // Memberships only: the primary gid is not listed (BuildKit).
        assert_eq!(id.groups, vec![10]);
        // A given group: no memberships, as runc's GetExecUser.
        assert!(resolve("app:app", PASSWD, GROUP).unwrap().groups.is_empty());
        assert!(
            resolve("1000:1000", PASSWD, GROUP)
                .unwrap()
                .groups
                .is_empty()
        );
    }

    #[test]
    fn numeric_uid_not_in_passwd_gets_gid_0() {
        let id = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (4242, 0));
    }

    #[test]
    fn user_and_group_by_name_or_number() {
        assert_eq!(resolve("nobody:app", PASSWD, GROUP).unwrap().gid, 1000);
        assert_eq!(resolve("1000:7", PASSWD, GROUP).unwrap().gid, 7);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(
            resolve("ghost", PASSWD, GROUP),
            Err(SandboxError::UserNotFound { .. })
        ));
        assert!(matches!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(SandboxError::GroupNotFound { .. })
        ));
    }
}
