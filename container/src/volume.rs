//! Named and anonymous volumes: `<root>/volumes-v1/<name>/_data`, with
//! `volume.json` beside it. A volume outlives its containers; one that any
//! container (running or not) mounts cannot be removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ContainerConfig, ContainerError, Containers, Result};

/// The directory of volumes under a store root (versioned).
pub const VOLUMES_DIR: &str = "volumes-v1";

/// `volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// Made for one container (image VOLUME or `-v /path`).
    pub anonymous: bool,
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

fn dir(root: &Path) -> PathBuf {
    root.join(VOLUMES_DIR)
}

/// The volume's data directory.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    dir(root).join(name).join("_data")
}

/// Creates volume `name` (a fresh anonymous one when `None`); an existing
/// volume of that name is returned as is, as docker does.
pub fn create(root: &Path, name: Option<&str>, labels: BTreeMap<String, String>) -> Result<Volume> {
    let (name, anonymous) = match name {
        Some(n) => (n.to_string(), false),
        None => (crate::new_id(), true),
    };
    if !crate::names::valid(&name) {
        return Err(ContainerError::Invalid {
            what: "volume name",
            value: name,
            hint: Some("names are [a-zA-Z0-9][a-zA-Z0-9_.-]+".into()),
        });
    }
    if let Ok(v) = get(root, &name) {
        return Ok(v);
    }
    let top = dir(root);
    if !top.is_dir() {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(&top).map_err(ContainerError::io("create", &top))?;
        // Owner only, as the containers' dir.
        fs::set_permissions(&top, fs::Permissions::from_mode(0o700))
            .map_err(ContainerError::io("chmod", &top))?;
    }
    let d = data_dir(root, &name);
    fs::create_dir_all(&d).map_err(ContainerError::io("create", &d))?;
    let (s, n) = rbuild_oci::time::now();
    let v = Volume {
        name: name.clone(),
        created: rbuild_oci::time::rfc3339_nanos(s, n),
        labels,
        anonymous,
        mountpoint: d,
    };
    crate::write_json(&dir(root).join(&name).join("volume.json"), &v)?;
    crate::events::record(root, "volume", "create", &name, &[("driver", "local")]);
    Ok(v)
}

/// The volume named `name`.
pub fn get(root: &Path, name: &str) -> Result<Volume> {
    let p = dir(root).join(name).join("volume.json");
    let bytes = fs::read(&p).map_err(|_| ContainerError::NoSuchVolume(name.to_string()))?;
    let mut v: Volume = serde_json::from_slice(&bytes)
        .map_err(|source| ContainerError::Corrupt { path: p, source })?;
    v.mountpoint = data_dir(root, name);
    Ok(v)
}

/// Every volume, by name.
pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let Ok(rd) = fs::read_dir(dir(root)) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Volume> = rd
        .flatten()
        .filter_map(|e| get(root, &e.file_name().to_string_lossy()).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Ids of the containers that mount volume `name`.
pub fn users(root: &Path, name: &str) -> Result<Vec<String>> {
    Ok(Containers::open(root)?
        .list()?
        .into_iter()
        .filter(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
        })
        .map(|c| c.config.id)
        .collect())
}

/// Removes volume `name`, refusing while a container uses it.
pub fn remove(root: &Path, name: &str) -> Result<()> {
    get(root, name)?;
    let users = users(root, name)?;
    if !users.is_empty() {
        return Err(ContainerError::VolumeInUse {
            name: name.to_string(),
            users: users.join(", "),
        });
    }
    let d = dir(root).join(name);
    fs::remove_dir_all(&d).map_err(ContainerError::io("remove", &d))?;
    crate::events::record(root, "volume", "destroy", name, &[("driver", "local")]);
    Ok(())
}

/// Removes the anonymous volumes of a container being removed (`rm -v`,
/// `--rm`), skipping any another container still uses.
pub fn remove_anonymous(root: &Path, config: &ContainerConfig) {
    for m in &config.mounts {
        if m.kind == "volume" && m.anonymous {
            let others = users(root, &m.name).unwrap_or_default();
            if others.iter().all(|id| *id == config.id) {
                let d = dir(root).join(&m.name);
                if fs::remove_dir_all(&d).is_ok() {
                    crate::events::record(
                        root,
                        "volume",
                        "destroy",
                        &m.name,
                        &[("driver", "local")],
                    );
                }
            }
        }
    }
}

/// Bytes under a volume's data.
pub fn size(v: &Volume) -> u64 {
    rbuild_store::tree_size(&v.mountpoint)
}

/// Fills an empty volume with what the image has at `path` (docker seeds
/// a volume the first time it is mounted over image content).
pub fn seed(v: &Volume, lowers: &[PathBuf], path: &str) -> Result<()> {
    let empty = fs::read_dir(&v.mountpoint)
        .map(|mut r| r.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let rel = Path::new(path.trim_start_matches('/'));
    let tmp = v.mountpoint.with_file_name("_seed");
    let _ = fs::remove_dir_all(&tmp);
    let copied = rbuild_sandbox::copy_merged_path(lowers, rel, &tmp)
        .map_err(ContainerError::io("seed volume from", rel))?;
    if copied && tmp.is_dir() {
        fs::remove_dir(&v.mountpoint).map_err(ContainerError::io("replace", &v.mountpoint))?;
        fs::rename(&tmp, &v.mountpoint).map_err(ContainerError::io("rename", &tmp))?;
    } else {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(())
}
