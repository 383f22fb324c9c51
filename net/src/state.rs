//! Host-wide runtime state, `/run/rbuild/net-v1/`: one record per
//! attached container (its endpoint), the generated /etc files, and the default bridge's subnet, all guarded by one file
//! lock. Host-wide rather than per store root because what it describes
//! is: bridges, veths, addresses and the nftables table are shared by
//! every store on the machine, so IP leases (the endpoint records) must be
//! too. On tmpfs, so a reboot clears it along with what it described.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::NetError;
use crate::addr::Subnet;
use crate::port::PortSpec;

/// Where the host-wide network state lives (root only).
pub const RUNTIME_DIR: &str = "/run/rbuild/net-v1";

/// One container attached to a bridge: also its IP lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub aliases: Vec<String>,
    pub network_id: String,
    pub network_name: String,
    /// Whether peers resolve each other by name (user-defined networks).
    pub names: bool,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub veth: String,
    /// The interface's name in the container: `eth0` for the network it
    /// started on, `eth1`… for those `network connect` added.
    #[serde(default = "first_interface")]
    pub ifname: String,
    pub ports: Vec<(PortSpec, SocketAddr)>,
    /// The process holding the attachment; when it is gone the endpoint
    /// is stale and [`crate::sweep`] removes it.
    pub holder: Holder,
}

fn first_interface() -> String {
    FIRST_INTERFACE.into()
}

/// The interface of the network a container starts on.
pub(crate) const FIRST_INTERFACE: &str = "eth0";

impl Endpoint {
    /// The record's file name: the container's id for the network it
    /// started on, `<id>.<network id, 12 digits>` for a connected one.
    pub fn key(&self) -> String {
        if self.ifname == FIRST_INTERFACE {
            self.container_id.clone()
        } else {
            format!(
                "{}.{}",
                self.container_id,
                &self.network_id[..self.network_id.len().min(12)]
            )
        }
    }

    /// Whether this is the endpoint of the network the container started
    /// on (its namespace and /etc files go with it).
    pub fn first(&self) -> bool {
        self.ifname == FIRST_INTERFACE
    }
}

/// A process, identified across pid reuse by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub pid: u32,
    pub start: u64,
}

impl Holder {
    pub fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// Process `pid` (a container's monitor, for `network connect`).
    pub fn of(pid: u32) -> Holder {
        Holder {
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot), or
/// `None` when the process is gone or a zombie (dead, not yet reaped: its
/// parent may never reap it, e.g. a container's pid 1 that is no init).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The runtime dir, opened.
pub(crate) struct Runtime {
    pub dir: PathBuf,
}

/// The held lock (released on drop).
pub(crate) struct Lock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl Runtime {
    /// Opens (creating, mode 0700) the runtime dir.
    pub fn open() -> Result<Runtime, NetError> {
        let dir = PathBuf::from(RUNTIME_DIR);
        for d in [
            dir.clone(),
            dir.join("endpoints"),
            dir.join("netns"),
            dir.join("etc"),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| NetError::io("create runtime dir", &d, e))?;
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(
            dir.parent().unwrap_or(&dir),
            std::fs::Permissions::from_mode(0o700),
        );
        Ok(Runtime { dir })
    }

    /// The runtime dir when it exists (nothing to sweep otherwise).
    pub fn existing() -> Option<Runtime> {
        let dir = PathBuf::from(RUNTIME_DIR);
        dir.is_dir().then_some(Runtime { dir })
    }

    /// Takes the lock every change of host network state holds.
    pub fn lock(&self) -> Result<Lock, NetError> {
        let p = self.dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| NetError::io("open lock", &p, e))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(Lock)
            .map_err(|(_, e)| NetError::io("lock", &p, e.into()))
    }

    pub fn etc_dir(&self, id: &str) -> PathBuf {
        self.dir.join("etc").join(id)
    }

    fn endpoint_path(&self, id: &str) -> PathBuf {
        self.dir.join("endpoints").join(format!("{id}.json"))
    }

    /// Every endpoint record (unreadable ones are skipped: a record is
    /// written whole with a rename, so only foreign files are).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let d = self.dir.join("endpoints");
        let Ok(rd) = std::fs::read_dir(&d) else {
            return Vec::new();
        };
        let mut out: Vec<Endpoint> = rd
            .filter_map(|e| {
                let p = e.ok()?.path();
                if p.extension()? != "json" {
                    return None;
                }
                serde_json::from_slice(&std::fs::read(&p).ok()?).ok()
            })
            .collect();
        out.sort_by_key(|e| e.ip);
        out
    }

    pub fn write_endpoint(&self, e: &Endpoint) -> Result<(), NetError> {
        let p = self.endpoint_path(&e.key());
        let json = serde_json::to_vec_pretty(e).expect("endpoint serializes");
        write_atomic(&p, &json)
    }

    pub fn remove_endpoint(&self, e: &Endpoint) -> Result<(), NetError> {
        let p = self.endpoint_path(&e.key());
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetError::io("remove endpoint record", &p, e))
            }
            _ => Ok(()),
        }
    }

    /// The default bridge's subnet while it exists.
    pub fn default_subnet(&self) -> Option<Subnet> {
        std::fs::read_to_string(self.dir.join("default-bridge"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn set_default_subnet(&self, s: Option<Subnet>) -> Result<(), NetError> {
        let p = self.dir.join("default-bridge");
        match s {
            Some(s) => write_atomic(&p, s.to_string().as_bytes()),
            None => {
                let _ = std::fs::remove_file(&p);
                Ok(())
            }
        }
    }

    /// Marker: ip_forward was off before rbuild turned it on, and goes off
    /// again when the last bridge does.
    pub fn forward_marker(&self) -> PathBuf {
        self.dir.join("ip_forward-was-off")
    }
}

/// Writes `data` to `path` through a temp file and rename, so readers see
/// the old or the new content, never a part.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| NetError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| NetError::io("rename", path, e))
}

/// Rewrites `path` in place, so a bind mount of it in a running
/// container sees the new content (a rename would not be seen). Unchanged
/// content is not written; new content is written over the old before the
/// file is cut to its length, so a reader never finds it empty.
pub(crate) fn write_in_place(path: &Path, data: &str) -> Result<(), NetError> {
    use std::io::Write;
    if std::fs::read(path).is_ok_and(|old| old == data.as_bytes()) {
        return Ok(());
    }
    let fail = |e| NetError::io("write", path, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(fail)?;
    f.write_all(data.as_bytes()).map_err(fail)?;
    f.set_len(data.len() as u64).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ifname: &str) -> Endpoint {
        Endpoint {
            container_id: "ab".repeat(32),
            container_name: "web".into(),
            hostname: "web".into(),
            aliases: Vec::new(),
            network_id: "cd".repeat(32),
            network_name: "front".into(),
            names: true,
            bridge: "rbr-cdcdcdcdcdc".into(),
            subnet: "10.252.7.0/24".parse().unwrap(),
            gateway: "10.252.7.1".parse().unwrap(),
            ip: "10.252.7.2".parse().unwrap(),
            veth: "rbvabababababab".into(),
            ifname: ifname.into(),
            ports: Vec::new(),
            holder: Holder { pid: 1, start: 1 },
        }
    }

    #[test]
    fn a_connected_endpoint_has_a_record_of_its_own_and_old_records_read_as_first() {
        assert_eq!(endpoint("eth0").key(), "ab".repeat(32));
        assert_eq!(
            endpoint("eth1").key(),
            format!("{}.cdcdcdcdcdcd", "ab".repeat(32))
        );
        assert!(endpoint("eth0").first() && !endpoint("eth1").first());
        // A record written before `ifname` existed is the first network's.
        let mut v = serde_json::to_value(endpoint("eth1")).unwrap();
        v.as_object_mut().unwrap().remove("ifname");
        let old: Endpoint = serde_json::from_value(v).unwrap();
        assert!(old.first());
    }
}
