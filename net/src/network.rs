//! Network definitions: the predefined `bridge`, `host` and `none`, and the
//! user-defined networks of a store root (`<root>/networks-v1/NAME.json`),
//! with docker's names, checks and messages.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::NetError;
use crate::addr::{self, Subnet};
use crate::state::{Runtime, write_atomic};

/// Name of the default bridge network, and of its host bridge.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The host bridge of the default network.
pub const DEFAULT_BRIDGE: &str = "rbuild0";
/// Prefix of the host bridges of user-defined networks (`rbr-` + 11 hex
/// digits of the network id: 15 characters, the kernel's limit).
pub const USER_BRIDGE_PREFIX: &str = "rbr-";

/// A network as `network ls` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// `bridge`, `host` or `null` (docker's driver names).
    pub driver: String,
    /// Fixed for user networks; the default bridge's is chosen when its
    /// bridge is first made (the first free 10.200-209.0.0/16).
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    /// Seconds and nanoseconds since the epoch.
    pub created: (i64, u32),
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
}

impl NetworkDef {
    /// Whether this is one of `bridge`, `host`, `none`.
    pub fn predefined(&self) -> bool {
        is_predefined(&self.name)
    }

    /// The host bridge this network's containers attach to (`None` for
    /// host and none).
    pub fn bridge(&self) -> Option<String> {
        match (self.driver.as_str(), self.name.as_str()) {
            ("bridge", DEFAULT_NETWORK) => Some(DEFAULT_BRIDGE.to_string()),
            ("bridge", _) => Some(format!("{USER_BRIDGE_PREFIX}{}", &self.id[..11])),
            _ => None,
        }
    }

    /// Short id, as `network ls` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

fn is_predefined(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none")
}

fn predefined(name: &str) -> NetworkDef {
    let driver = match name {
        "none" => "null",
        other => other,
    };
    NetworkDef {
        name: name.to_string(),
        id: hex::encode(Sha256::digest(format!("rbuild predefined network {name}"))),
        driver: driver.to_string(),
        subnet: None,
        gateway: None,
        created: (0, 0),
        labels: BTreeMap::new(),
        internal: false,
    }
}

/// What `network create` takes.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Only `bridge` (the default) is supported.
    pub driver: Option<String>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
}

/// The networks of a store root.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// The networks of the store at `root` (nothing is created until a
    /// network is).
    pub fn new(root: &Path) -> Networks {
        Networks {
            dir: root.join("networks-v1"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// bridge, host, none, then user networks by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>, NetError> {
        let mut out: Vec<NetworkDef> = ["bridge", "host", "none"].map(predefined).into();
        let mut user = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let bytes =
                        std::fs::read(&p).map_err(|e| NetError::io("read network", &p, e))?;
                    let def: NetworkDef =
                        serde_json::from_slice(&bytes).map_err(|source| NetError::Corrupt {
                            path: p.clone(),
                            source,
                        })?;
                    user.push(def);
                }
            }
        }
        user.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(user);
        Ok(out)
    }

    /// A network by name, full id or unique id prefix (docker's lookup).
    pub fn get(&self, name_or_id: &str) -> Result<NetworkDef, NetError> {
        let all = self.list()?;
        if let Some(n) = all
            .iter()
            .find(|n| n.name == name_or_id || n.id == name_or_id)
        {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&NetworkDef> = all
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(NetError::NotFound {
                name: name_or_id.to_string(),
            }),
        }
    }

    /// `network create`: docker's name rules, a subnet overlapping no
    /// other network of this store nor any route of the host.
    pub fn create(&self, name: &str, opts: &CreateOptions) -> Result<NetworkDef, NetError> {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(NetError::InvalidName {
                name: name.to_string(),
            });
        }
        match opts.driver.as_deref() {
            None | Some("bridge") => {}
            Some(other) => {
                return Err(NetError::Driver {
                    driver: other.to_string(),
                });
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| NetError::io("create", &self.dir, e))?;
        let lock_path = self.dir.join(".lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| NetError::io("open lock", &lock_path, e))?;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| NetError::io("lock", &lock_path, e.into()))?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == name) {
            return Err(NetError::Exists {
                name: name.to_string(),
            });
        }
        let mut taken: Vec<Subnet> = existing.iter().filter_map(|n| n.subnet).collect();
        taken.extend(crate::host::routes().into_iter().map(|(s, _)| s));
        if let Some(rt) = Runtime::existing() {
            taken.extend(rt.endpoints().iter().map(|e| e.subnet));
            taken.extend(rt.default_subnet());
        }
        let subnet = match opts.subnet {
            Some(s) => {
                if taken.iter().any(|t| t.overlaps(&s)) {
                    return Err(NetError::PoolOverlap { subnet: s });
                }
                s
            }
            None => addr::pick(addr::user_pool(), &taken).ok_or(NetError::NoSubnet)?,
        };
        let gateway = match opts.gateway {
            Some(g) if !subnet.contains(g) || g == subnet.base() || g == subnet.broadcast() => {
                return Err(NetError::Gateway { gateway: g, subnet });
            }
            Some(g) => g,
            None => subnet.first_host(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut seed = Sha256::new();
        seed.update(name.as_bytes());
        seed.update(now.as_nanos().to_le_bytes());
        seed.update(std::process::id().to_le_bytes());
        seed.update(self.dir.as_os_str().as_encoded_bytes());
        let def = NetworkDef {
            name: name.to_string(),
            id: hex::encode(seed.finalize()),
            driver: "bridge".into(),
            subnet: Some(subnet),
            gateway: Some(gateway),
            created: (now.as_secs() as i64, now.subsec_nanos()),
            labels: opts.labels.clone(),
            internal: opts.internal,
        };
        let json = serde_json::to_vec_pretty(&def).expect("network serializes");
        write_atomic(&self.path(name), &json)?;
        Ok(def)
    }

    /// Containers attached to `def` now (name, id, ip/prefix), from the
    /// host's runtime state.
    pub fn endpoints(&self, def: &NetworkDef) -> Vec<EndpointInfo> {
        let Some(rt) = Runtime::existing() else {
            return Vec::new();
        };
        rt.endpoints()
            .into_iter()
            .filter(|e| e.network_id == def.id && e.holder.alive())
            .map(|e| EndpointInfo {
                container_id: e.container_id,
                container_name: e.container_name,
                ip: e.ip,
                prefix: e.subnet.prefix(),
                veth: e.veth,
            })
            .collect()
    }

    /// `network rm`: refused for predefined networks and networks in use.
    pub fn remove(&self, name_or_id: &str) -> Result<NetworkDef, NetError> {
        let def = self.get(name_or_id)?;
        if def.predefined() {
            return Err(NetError::Predefined { name: def.name });
        }
        if !self.endpoints(&def).is_empty() {
            return Err(NetError::InUse {
                name: def.name.clone(),
                id: def.short_id().to_string(),
            });
        }
        let p = self.path(&def.name);
        std::fs::remove_file(&p).map_err(|e| NetError::io("remove network", &p, e))?;
        Ok(def)
    }

    /// `network prune`: removes the user networks no container uses;
    /// returns their names.
    pub fn prune(&self) -> Result<Vec<String>, NetError> {
        let mut removed = Vec::new();
        for def in self.list()? {
            if !def.predefined() && self.endpoints(&def).is_empty() {
                self.remove(&def.id)?;
                removed.push(def.name);
            }
        }
        Ok(removed)
    }
}

/// A container attached to a network, for `network inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub container_id: String,
    pub container_name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub veth: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::new(dir.path());
        let names: Vec<String> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        let opts = CreateOptions {
            subnet: Some("10.231.7.0/24".parse().unwrap()),
            ..Default::default()
        };
        let n = nets.create("front-end_1.x", &opts).unwrap();
        assert_eq!(n.gateway, Some("10.231.7.1".parse().unwrap()));
        assert!(n.bridge().unwrap().starts_with("rbr-"));
        assert_eq!(n.bridge().unwrap().len(), 15);
        assert_eq!(nets.get(&n.id[..6]).unwrap().name, "front-end_1.x");
        assert!(matches!(
            nets.create("front-end_1.x", &opts),
            Err(NetError::Exists { .. })
        ));
        let overlapping = CreateOptions {
            subnet: Some("10.231.0.0/16".parse().unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            nets.create("other", &overlapping),
            Err(NetError::PoolOverlap { .. })
        ));
        assert!(matches!(
            nets.create("-x", &opts),
            Err(NetError::InvalidName { .. })
        ));
        assert!(matches!(
            nets.remove("bridge"),
            Err(NetError::Predefined { .. })
        ));
        assert_eq!(nets.remove("front-end_1.x").unwrap().name, "front-end_1.x");
        assert!(matches!(
            nets.get("front-end_1.x"),
            Err(NetError::NotFound { .. })
        ));
    }
}
