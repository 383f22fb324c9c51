//! A container's filesystem seen from outside: its image's layers, the
//! changes in its writable layer (`diff`), copies in and out (`cp`), the
//! flattened tree (`export`) and a new image from its changes (`commit`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rbuild_oci::Digest;
use rbuild_store::{LayerInfo, Store};

use crate::{Container, ContainerConfig, ContainerError, Result};

/// The image's layer snapshots, top first (overlay's lowerdir order).
pub fn lowers(root: &Path, config: &ContainerConfig) -> Result<Vec<PathBuf>> {
    let store = Store::open(root)?;
    let digest: Digest = config
        .manifest
        .parse()
        .map_err(|_| ContainerError::Invalid {
            what: "manifest digest in container config",
            value: config.manifest.clone(),
            hint: None,
        })?;
    let image = image_of(&store, config, &digest)?;
    let mut out = image
        .layers
        .iter()
        .map(|l| store.snapshot_layer(l))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

/// The container's image: by manifest, else (after a forced `rmi` kept
/// it as a dangling image under a new manifest) by image ID.
fn image_of(
    store: &Store,
    config: &ContainerConfig,
    manifest: &Digest,
) -> Result<rbuild_store::Image> {
    match store.image_by_manifest(manifest) {
        Ok(i) => Ok(i),
        Err(e) => store
            .images()?
            .into_iter()
            .find(|i| i.id.to_string() == config.image_id)
            .ok_or(ContainerError::Store(e)),
    }
}

/// One line of `diff`: `A`dded, `C`hanged or `D`eleted, and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: char,
    pub path: String,
}

/// What the writable layer changed, as docker's `diff` lists it (a
/// changed path's parent directories are listed as changed).
pub fn diff(c: &Container, lowers: &[PathBuf]) -> Vec<Change> {
    let mut out = Vec::new();
    walk_diff(&c.upper(), Path::new(""), lowers, &mut out);
    out
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk_diff(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) {
    let Ok(rd) = fs::read_dir(upper.join(rel)) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let Ok(m) = fs::symlink_metadata(upper.join(&r)) else {
            continue;
        };
        let shown = format!("/{}", r.display());
        if m.file_type().is_char_device() && m.rdev() == 0 {
            out.push(Change {
                kind: 'D',
                path: shown,
            });
            continue;
        }
        let kind = if in_lowers(lowers, &r) { 'C' } else { 'A' };
        out.push(Change { kind, path: shown });
        if m.is_dir() {
            walk_diff(upper, &r, lowers, out);
        }
    }
}

/// Copies `path` of the container's filesystem (image layers plus its
/// writable layer) to the new path `dest`. False when it does not exist.
pub fn copy_out(c: &Container, lowers: &[PathBuf], path: &str, dest: &Path) -> Result<bool> {
    let mut layers = vec![c.upper()];
    layers.extend_from_slice(lowers);
    let rel = Path::new(path.trim_start_matches('/'));
    rbuild_sandbox::copy_merged_path(&layers, rel, dest).map_err(ContainerError::io("copy", path))
}

/// The directory to write `path` of the container into: the running
/// container's root as its pid 1 sees it, else the writable layer (with
/// the parents the image has copied up).
pub fn copy_in_target(c: &Container, lowers: &[PathBuf], path: &str) -> Result<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    // No `..`, and no symlink on the way (nothing outside the container
    // may be written through one).
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(ContainerError::Invalid {
            what: "container path",
            value: path.to_string(),
            hint: None,
        });
    }
    let base = if c.is_running() {
        PathBuf::from(format!("/proc/{}/root", c.state.pid))
    } else {
        c.upper()
    };
    let mut cur = PathBuf::new();
    for comp in rel.components() {
        cur.push(comp);
        let full = base.join(&cur);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ContainerError::Invalid {
                    what: "container path (a symlink on the way)",
                    value: path.to_string(),
                    hint: None,
                });
            }
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => {
                return Err(ContainerError::Invalid {
                    what: "container path (deleted)",
                    value: path.to_string(),
                    hint: None,
                });
            }
            Ok(_) => {}
            Err(_) if !c.is_running() => {
                // Copy up the directory from the image, if it has one.
                let from_image = lowers.iter().map(|l| l.join(&cur)).find(|p| p.is_dir());
                match from_image {
                    Some(src) => {
                        fs::create_dir(&full).map_err(ContainerError::io("create", &full))?;
                        if let Ok(m) = fs::metadata(&src) {
                            let _ = fs::set_permissions(&full, m.permissions());
                            let _ = std::os::unix::fs::lchown(&full, Some(m.uid()), Some(m.gid()));
                        }
                    }
                    None => {
                        return Err(ContainerError::Invalid {
                            what: "destination directory in the container (not found)",
                            value: path.to_string(),
                            hint: None,
                        });
                    }
                }
            }
            Err(_) => {
                return Err(ContainerError::Invalid {
                    what: "destination directory in the container (not found)",
                    value: path.to_string(),
                    hint: None,
                });
            }
        }
    }
    Ok(base.join(rel))
}

/// Writes the container's flattened filesystem as a tar to `out`.
pub fn export(root: &Path, c: &Container, out: &mut dyn Write) -> Result<()> {
    let lowers = lowers(root, &c.config)?;
    let store = Store::open(root)?;
    let tmp = tempdir_in(store.tmp_dir())?;
    let tree = tmp.join("rootfs");
    copy_out(c, &lowers, "/", &tree)?;
    let r = rbuild_store::layer::pack_dir(&tree, out, &Default::default());
    let _ = fs::remove_dir_all(&tmp);
    r.map_err(|e| ContainerError::io("pack", &tree)(std::io::Error::other(e.to_string())))?;
    Ok(())
}

fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    let p = parent.join(format!("ctr-{}", &crate::new_id()[..16]));
    fs::create_dir_all(&p).map_err(ContainerError::io("create", &p))?;
    Ok(p)
}

/// Options of `commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Instructions applied to the config (`-c`).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub tags: Vec<rbuild_oci::reference::ImageRef>,
}

/// Makes an image of the container's image plus its writable layer;
/// returns the new image's ID.
pub fn commit(root: &Path, c: &Container, opts: &CommitOptions) -> Result<Digest> {
    let store = Store::open(root)?;
    let digest: Digest = c
        .config
        .manifest
        .parse()
        .map_err(|_| ContainerError::Invalid {
            what: "manifest digest in container config",
            value: c.config.manifest.clone(),
            hint: None,
        })?;
    let base = image_of(&store, &c.config, &digest)?;
    let _session = store.write_session()?;
    let mut blob = store.blob_writer(None)?;
    let stats = rbuild_store::layer::pack_diff(&c.upper(), &mut blob, &Default::default())
        .map_err(|e| ContainerError::io("pack", c.upper())(std::io::Error::other(e.to_string())))?;
    blob.flush()
        .map_err(ContainerError::io("write layer", c.upper()))?;
    let (blob_digest, size) = blob.commit()?;
    let layer = LayerInfo {
        digest: blob_digest,
        diff_id: stats.diff_id,
        size,
        media_type: rbuild_store::layout::MEDIA_TYPE_LAYER_TAR.to_string(),
    };
    let mut config = base.config.clone();
    let (s, n) = rbuild_oci::time::now();
    let created = rbuild_oci::time::rfc3339_nanos(s, n);
    config.created = Some(created.clone());
    if opts.author.is_some() {
        config.author = opts.author.clone();
    }
    // The container's command becomes the image's, as docker commits it.
    config.config.cmd = Some(c.config.cmd.clone());
    config.config.entrypoint = if c.config.entrypoint.is_empty() {
        None
    } else {
        Some(c.config.entrypoint.clone())
    };
    config.config.env = Some(c.config.env.clone());
    if !opts.changes.is_empty() {
        let changed = rbuild_store::archive::config_from_changes(&opts.changes).map_err(|e| {
            ContainerError::Invalid {
                what: "change",
                value: opts.changes.join("; "),
                hint: Some(e.to_string()),
            }
        })?;
        let changed = serde_json::to_value(&changed).unwrap_or_default();
        let mut base_v = serde_json::to_value(&config.config).unwrap_or_default();
        if let (Some(obj), Some(ch)) = (base_v.as_object_mut(), changed.as_object()) {
            for (k, v) in ch {
                if v.is_null() {
                    continue;
                }
                if k == "Env" {
                    let mut env: Vec<String> = obj
                        .get("Env")
                        .and_then(|e| serde_json::from_value(e.clone()).ok())
                        .unwrap_or_default();
                    for e in v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.as_str())
                    {
                        let key = e.split('=').next().unwrap_or("");
                        env.retain(|x| x.split('=').next() != Some(key));
                        env.push(e.to_string());
                    }
                    obj.insert(k.clone(), serde_json::json!(env));
                } else {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        if let Ok(cc) = serde_json::from_value(base_v) {
            config.config = cc;
        }
    }
    config.rootfs.diff_ids.push(stats.diff_id.to_string());
    config.history.push(rbuild_oci::image_config::History {
        created: Some(created),
        created_by: Some(c.config.argv().join(" ")),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        ..Default::default()
    });
    let bytes = serde_json::to_vec(&config).expect("config serializes");
    let mut layers = base.layers.clone();
    layers.push(layer);
    let image = store.write_image_raw(&bytes, &layers, &opts.tags)?;
    Ok(image.id)
}

/// A process of the container (`top`).
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub uid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub start_ticks: u64,
    pub cpu_ticks: u64,
    pub cmd: String,
}

/// The container's processes (those in pid 1's pid namespace), as host pids.
pub fn processes(c: &Container) -> Vec<ProcessInfo> {
    if !c.is_running() {
        return Vec::new();
    }
    let ns = fs::read_link(format!("/proc/{}/ns/pid", c.state.pid)).ok();
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != ns {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = cmdline
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let uid = fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .unwrap_or(0);
        out.push(ProcessInfo {
            uid,
            pid,
            ppid: num(1) as u32,
            start_ticks: num(19),
            cpu_ticks: num(11) + num(12),
            cmd,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Resource use of a running container (`stats`).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub cpu_nanos: u64,
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub block_read: u64,
    pub block_write: u64,
}

fn read_u64(p: PathBuf) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads the container's cgroup counters (v1 or v2).
pub fn stats(c: &Container) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = c.cgroup_dir("cpuacct") {
        s.cpu_nanos = read_u64(d.join("cpuacct.usage")).unwrap_or_else(|| {
            fs::read_to_string(d.join("cpu.stat"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                })
                .map(|u| u * 1000)
                .unwrap_or(0)
        });
    }
    if let Some(d) = c.cgroup_dir("memory") {
        s.memory = read_u64(d.join("memory.usage_in_bytes"))
            .or_else(|| read_u64(d.join("memory.current")))
            .unwrap_or(0);
        s.memory_limit = read_u64(d.join("memory.limit_in_bytes"))
            .or_else(|| read_u64(d.join("memory.max")))
            .unwrap_or(0);
    }
    if let Some(d) = c.cgroup_dir("pids") {
        s.pids = read_u64(d.join("pids.current")).unwrap_or(0);
    }
    if let Some(d) = c.cgroup_dir("blkio") {
        let t = fs::read_to_string(d.join("blkio.throttle.io_service_bytes")).unwrap_or_default();
        for l in t.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [_, op, v] = f.as_slice() {
                let v: u64 = v.parse().unwrap_or(0);
                match *op {
                    "Read" => s.block_read += v,
                    "Write" => s.block_write += v,
                    _ => {}
                }
            }
        }
    }
    s
}

/// Applies new limits to a running container's cgroup (`update`).
pub fn update_limits(
    c: &Container,
    memory: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
) -> Result<()> {
    let write = |d: Option<PathBuf>, v1: &str, v2: &str, value: String| -> Result<()> {
        let Some(d) = d else { return Ok(()) };
        let p = if d.join(v1).exists() {
            d.join(v1)
        } else {
            d.join(v2)
        };
        fs::write(&p, value).map_err(ContainerError::io("write", &p))
    };
    if let Some(m) = memory {
        write(
            c.cgroup_dir("memory"),
            "memory.limit_in_bytes",
            "memory.max",
            m.to_string(),
        )?;
    }
    if let Some(cpu) = cpus {
        let quota = (cpu * 100_000.0).round() as u64;
        if let Some(d) = c.cgroup_dir("cpu") {
            if d.join("cpu.cfs_quota_us").exists() {
                let _ = fs::write(d.join("cpu.cfs_period_us"), "100000");
                let p = d.join("cpu.cfs_quota_us");
                fs::write(&p, quota.to_string()).map_err(ContainerError::io("write", &p))?;
            } else {
                let p = d.join("cpu.max");
                fs::write(&p, format!("{quota} 100000"))
                    .map_err(ContainerError::io("write", &p))?;
            }
        }
    }
    if let Some(p) = pids {
        write(c.cgroup_dir("pids"), "pids.max", "pids.max", p.to_string())?;
    }
    Ok(())
}
