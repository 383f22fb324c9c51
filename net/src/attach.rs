//! Attaching a container to a bridge network, detaching it, and sweeping
//! what killed holders left (see the crate docs for the whole picture).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::NetError;
use crate::addr::{self, Subnet};
use crate::dns::{self, Peer};
use crate::host;
use crate::network::{DEFAULT_BRIDGE, DEFAULT_NETWORK, NetworkDef, Networks, USER_BRIDGE_PREFIX};
use crate::pasta::{PASTA_NETWORK, Pasta};
use crate::port::PortSpec;
use crate::proxy::{self, Forwarder};
use crate::state::{Endpoint, FIRST_INTERFACE, Holder, Runtime};
use sha2::Digest;

/// Prefix of the host ends of containers' veth pairs (`rbv` + 12 hex
/// digits of the container id).
pub const VETH_PREFIX: &str = "rbv";

/// What a container needs from the network.
#[derive(Debug, Clone, Default)]
pub struct NetRequest {
    /// The container's id (hex; at least 12 digits).
    pub container_id: String,
    /// The container's name (peers on a user network resolve it).
    pub container_name: String,
    /// `bridge` (or `default`) or a user-defined network's name or id.
    pub network: String,
    /// `-p` / `-P` ports.
    pub ports: Vec<PortSpec>,
    /// The container's hostname (empty: the first 12 digits of its id).
    pub hostname: String,
    /// `--network-alias` names (user networks only, as with docker).
    pub aliases: Vec<String>,
    /// `--ip`: the address wanted on a user-defined network (`None`: the
    /// lowest free one).
    pub ip: Option<Ipv4Addr>,
}

/// A published port: what was asked and the host address actually bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub spec: PortSpec,
    pub host: SocketAddr,
}

/// A container's network, held by the process that keeps the container
/// (its monitor, or a foreground `rbuild run`): as root a place on a
/// bridge network (a namespace with a veth, an address, port forwarders
/// running as threads of the holder), rootless the namespace pasta
/// serves (see `pasta.rs`), which the sandbox starts and stops.
/// [`NetAttachment::detach`] (or drop) undoes everything; if the holder
/// is killed, [`sweep`] (bridge) or the sandbox (pasta) does.
#[derive(Debug)]
pub struct NetAttachment(Kind);

#[derive(Debug)]
enum Kind {
    Bridge(Box<BridgeAttachment>),
    Pasta(Pasta),
}

impl NetAttachment {
    /// The network namespace, for [`rbuild_sandbox::Network::Join`] or
    /// `setns`, valid while the attachment lives: on a bridge
    /// `/proc/<holder pid>/fd/<n>` (root may open it from any process).
    /// `None` with pasta, whose namespace the sandbox makes.
    pub fn netns_path(&self) -> Option<PathBuf> {
        match &self.0 {
            Kind::Bridge(b) => Some(b.netns.clone()),
            Kind::Pasta(_) => None,
        }
    }

    /// The container's address on its bridge network (`None` with pasta,
    /// whose namespace has a copy of the host's address).
    pub fn ip(&self) -> Option<Ipv4Addr> {
        match &self.0 {
            Kind::Bridge(b) => Some(b.endpoint.ip),
            Kind::Pasta(_) => None,
        }
    }

    /// The bridge network's gateway (its bridge's address).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match &self.0 {
            Kind::Bridge(b) => Some(b.endpoint.gateway),
            Kind::Pasta(_) => None,
        }
    }

    /// The subnet's prefix length (bridge networks).
    pub fn prefix_len(&self) -> Option<u8> {
        match &self.0 {
            Kind::Bridge(b) => Some(b.endpoint.subnet.prefix()),
            Kind::Pasta(_) => None,
        }
    }

    /// Name of the network attached to (`pasta` for pasta's).
    pub fn network_name(&self) -> &str {
        match &self.0 {
            Kind::Bridge(b) => &b.endpoint.network_name,
            Kind::Pasta(_) => PASTA_NETWORK,
        }
    }

    /// Id of the bridge network attached to.
    pub fn network_id(&self) -> Option<&str> {
        match &self.0 {
            Kind::Bridge(b) => Some(&b.endpoint.network_id),
            Kind::Pasta(_) => None,
        }
    }

    /// The published ports with the host addresses bound.
    pub fn ports(&self) -> &[PublishedPort] {
        match &self.0 {
            Kind::Bridge(b) => &b.ports,
            Kind::Pasta(p) => &p.ports,
        }
    }

    /// The sandbox's network mode: on a bridge join the prepared
    /// namespace; with pasta a namespace of the sandbox's own user
    /// namespace, which pasta joins ([`rbuild_sandbox::Network::Helper`]).
    pub fn sandbox_network(&self) -> rbuild_sandbox::Network {
        match &self.0 {
            Kind::Bridge(b) => rbuild_sandbox::Network::Join(b.netns.clone()),
            Kind::Pasta(p) => p.sandbox_network(),
        }
    }

    /// Bind mounts of the generated /etc/hosts and /etc/resolv.conf of a
    /// bridge network, to add to the sandbox spec's mounts (none with
    /// pasta: the sandbox's own files fit).
    pub fn sandbox_mounts(&self) -> Vec<rbuild_sandbox::Mount> {
        match &self.0 {
            Kind::Bridge(b) => b.sandbox_mounts(),
            Kind::Pasta(_) => Vec::new(),
        }
    }

    /// Undoes the attachment: on a bridge stops the forwarders and
    /// removes the veth, the namespace, the lease and, when this was the
    /// network's last container, its bridge and nftables rules (the
    /// table when no bridge is left); nothing with pasta, which ended
    /// with the sandbox.
    pub fn detach(self) -> Result<(), NetError> {
        match self.0 {
            Kind::Bridge(mut b) => b.detach_inner(),
            // The sandbox stopped pasta when the container ended.
            Kind::Pasta(_) => Ok(()),
        }
    }
}

/// Gives a rootless container its network through pasta, publishing
/// `ports` (pasta binds them on the host).
pub fn attach_pasta(ports: &[PortSpec]) -> Result<NetAttachment, NetError> {
    crate::pasta::prepare(ports).map(|p| NetAttachment(Kind::Pasta(p)))
}

/// A container's place on a network, held by the process that keeps the
/// container (its monitor, or a foreground `rbuild run`): the network
/// namespace to join, its address, and the port forwarders, which run as
/// threads of that process. [`NetAttachment::detach`] (or drop) undoes
/// everything; if the holder is killed, [`sweep`] does.
#[derive(Debug)]
pub(crate) struct BridgeAttachment {
    endpoint: Endpoint,
    /// The namespace's handle (see `host::create_netns`), and its path.
    netns_fd: Option<std::os::fd::OwnedFd>,
    netns: PathBuf,
    etc: PathBuf,
    ports: Vec<PublishedPort>,
    forwarders: Vec<ForwarderHandle>,
    detached: bool,
}

struct ForwarderHandle(Forwarder);

impl std::fmt::Debug for ForwarderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarder")
    }
}

impl BridgeAttachment {
    /// Bind mounts of the generated /etc/hosts and /etc/resolv.conf, to
    /// add to the sandbox spec's mounts.
    pub(crate) fn sandbox_mounts(&self) -> Vec<rbuild_sandbox::Mount> {
        [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")]
            .into_iter()
            .map(|(file, target)| rbuild_sandbox::Mount {
                kind: rbuild_sandbox::MountKind::Bind,
                source: self.etc.join(file),
                target: PathBuf::from(target),
                readonly: false,
            })
            .collect()
    }

    /// Stops the forwarders and removes the veth, the namespace, the
    /// lease and, when this was the network's last container, its bridge
    /// and nftables rules (the table when no bridge is left).
    pub(crate) fn detach_inner(&mut self) -> Result<(), NetError> {
        if self.detached {
            return Ok(());
        }
        self.detached = true;
        for f in &mut self.forwarders {
            f.0.stop();
        }
        self.forwarders.clear();
        let rt = Runtime::open()?;
        let _lock = rt.lock()?;
        let all = rt.endpoints();
        let before = bridges_in_use(&all);
        // With the networks `network connect` added (their interfaces go
        // with the namespace; their records and host ends go here).
        let mine: Vec<&Endpoint> = all
            .iter()
            .filter(|e| e.container_id == self.endpoint.container_id && !e.first())
            .chain(std::iter::once(&self.endpoint))
            .collect();
        let mut first = None;
        for e in &mine {
            if let Err(err) = teardown(&rt, e) {
                first.get_or_insert(err);
            }
        }
        let after = settle(&rt, &before);
        for e in &mine {
            refresh_hosts(&rt, &e.network_id, None);
        }
        match (first, after) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    }
}

impl Drop for BridgeAttachment {
    fn drop(&mut self) {
        let _ = self.detach_inner();
    }
}

/// Attaches a container to a bridge network of the store at `root` (for
/// `host` and `none` the sandbox needs no attachment: use
/// `Network::Host`/`Network::None`). Needs root.
///
/// Ports are bound first, so "port is already allocated" costs nothing
/// else; then, under the host-wide lock: the endpoint record (the IP
/// lease), the bridge and nftables rules when the network has no other
/// container yet, the namespace, the veth pair with `eth0` inside, the
/// address and default route, and the generated /etc files.
pub fn attach(root: &Path, req: &NetRequest) -> Result<NetAttachment, NetError> {
    attach_bridge(root, req).map(|b| NetAttachment(Kind::Bridge(Box::new(b))))
}

fn attach_bridge(root: &Path, req: &NetRequest) -> Result<BridgeAttachment, NetError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NetError::NeedsRoot);
    }
    if req.container_id.len() < 12 || !req.container_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NetError::InvalidRequest {
            reason: format!("container id {:?} is not 12+ hex digits", req.container_id),
        });
    }
    let network = if req.network == "default" {
        DEFAULT_NETWORK
    } else {
        req.network.as_str()
    };
    let def = Networks::new(root).get(network)?;
    if def.bridge().is_none() {
        return Err(NetError::InvalidRequest {
            reason: format!(
                "network {} needs no attachment (driver {})",
                def.name, def.driver
            ),
        });
    }
    let bound = req
        .ports
        .iter()
        .map(|p| proxy::bind(p).map(|(b, at)| (p.clone(), b, at)))
        .collect::<Result<Vec<_>, _>>()?;

    let rt = Runtime::open()?;
    let lock = rt.lock()?;
    sweep_locked(&rt);
    let endpoints = rt.endpoints();
    if endpoints.iter().any(|e| e.container_id == req.container_id) {
        return Err(NetError::InvalidRequest {
            reason: format!("container {} is already attached", &req.container_id[..12]),
        });
    }
    let endpoint = plan_endpoint(&rt, &def, req, &endpoints, FIRST_INTERFACE)?;
    let before = bridges_in_use(&endpoints);
    rt.write_endpoint(&endpoint)?;
    let mut attachment = BridgeAttachment {
        netns_fd: None,
        netns: PathBuf::new(),
        etc: rt.etc_dir(&endpoint.container_id),
        endpoint,
        ports: Vec::new(),
        forwarders: Vec::new(),
        detached: false,
    };
    if let Err(e) = set_up(&rt, &mut attachment, &before) {
        // Undo what was made (drop detaches), reporting the first error.
        drop(lock);
        let _ = attachment.detach_inner();
        return Err(e);
    }
    refresh_hosts(
        &rt,
        &attachment.endpoint.network_id,
        Some(&attachment.endpoint.container_id),
    );
    drop(lock);
    let backend_ip = IpAddr::V4(attachment.endpoint.ip);
    for (spec, b, at) in bound {
        let backend = SocketAddr::new(backend_ip, spec.container_port);
        let f = Forwarder::start(b, at, backend)?;
        attachment.forwarders.push(ForwarderHandle(f));
        attachment.ports.push(PublishedPort { spec, host: at });
    }
    attachment.endpoint.ports = attachment
        .ports
        .iter()
        .map(|p| (p.spec.clone(), p.host))
        .collect();
    rt.write_endpoint(&attachment.endpoint)?;
    Ok(attachment)
}

/// What `network connect` gave a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub network_id: String,
    pub network_name: String,
    /// The interface in the container (`eth1`…).
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// `network connect`: adds an interface on the bridge network
/// `req.network` to the running container whose network namespace is at
/// `netns` (its address, no default route: the first network keeps it,
/// as with docker), rewrites the hosts files of it and of the network's
/// containers, and records the endpoint with the container's monitor
/// (`holder_pid`) as holder, so [`sweep`] removes it if that dies and the
/// monitor's detach removes it with the rest. Needs root.
pub fn connect(
    root: &Path,
    req: &NetRequest,
    netns: &Path,
    holder_pid: u32,
) -> Result<Connected, NetError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NetError::RootlessUserNetwork {
            name: req.network.clone(),
        });
    }
    let def = Networks::new(root).get(&req.network)?;
    if def.bridge().is_none() {
        return Err(NetError::ConnectNonBridge {
            name: def.name.clone(),
        });
    }
    let rt = Runtime::open()?;
    let _lock = rt.lock()?;
    sweep_locked(&rt);
    let endpoints = rt.endpoints();
    let mine: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.container_id == req.container_id)
        .collect();
    if mine.iter().any(|e| e.network_id == def.id) {
        return Err(NetError::AlreadyConnected {
            container: req.container_name.clone(),
            network: def.name.clone(),
        });
    }
    let ifname = (1..)
        .map(|n| format!("eth{n}"))
        .find(|n| !mine.iter().any(|e| e.ifname == *n))
        .expect("a free interface name");
    let mut endpoint = plan_endpoint(&rt, &def, req, &endpoints, &ifname)?;
    endpoint.holder = Holder::of(holder_pid);
    let before = bridges_in_use(&endpoints);
    rt.write_endpoint(&endpoint)?;
    let made = (|| {
        if !host::link_exists(&endpoint.bridge) {
            host::create_bridge(&endpoint.bridge, endpoint.subnet, endpoint.gateway)?;
        }
        let after = bridges_in_use(&rt.endpoints());
        if after != before {
            host::nft_apply(&after)?;
        }
        host::ip_batch(&format!(
            "link add {veth} type veth peer name {ifname} netns {ns}\nlink set {veth} master {br}\nlink set {veth} up\n",
            veth = endpoint.veth,
            ns = netns.display(),
            br = endpoint.bridge
        ))?;
        host::ip_batch_in(
            netns,
            &format!(
                "addr add {ip}/{p} dev {ifname}\nlink set {ifname} up\n",
                ip = endpoint.ip,
                p = endpoint.subnet.prefix(),
            ),
        )
    })();
    if let Err(e) = made {
        let _ = teardown(&rt, &endpoint);
        let _ = settle(&rt, &before);
        return Err(e);
    }
    refresh_hosts(&rt, &def.id, Some(&endpoint.container_id));
    Ok(Connected {
        network_id: def.id,
        network_name: def.name,
        ifname,
        ip: endpoint.ip,
        gateway: endpoint.gateway,
        prefix_len: endpoint.subnet.prefix(),
    })
}

/// `network disconnect`: removes the container's interface on `network`
/// (its host end, and with it the pair), its lease, and its name from
/// the peers' hosts files. [`NetError::NotConnected`] when it has none.
pub fn disconnect(
    root: &Path,
    container_id: &str,
    container_name: &str,
    network: &str,
) -> Result<(), NetError> {
    let def = Networks::new(root).get(network)?;
    let Some(rt) = Runtime::existing() else {
        return Err(NetError::NotConnected {
            container: container_name.to_string(),
            network: def.name,
        });
    };
    let _lock = rt.lock()?;
    let endpoints = rt.endpoints();
    let Some(e) = endpoints
        .iter()
        .find(|e| e.container_id == container_id && e.network_id == def.id)
    else {
        return Err(NetError::NotConnected {
            container: container_name.to_string(),
            network: def.name,
        });
    };
    let before = bridges_in_use(&endpoints);
    let first = teardown(&rt, e).err();
    let after = settle(&rt, &before);
    refresh_hosts(&rt, &def.id, Some(container_id));
    match (first, after) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(()),
    }
}

/// Chooses the bridge, subnet and address of a new endpoint.
fn plan_endpoint(
    rt: &Runtime,
    def: &NetworkDef,
    req: &NetRequest,
    endpoints: &[Endpoint],
    ifname: &str,
) -> Result<Endpoint, NetError> {
    let bridge = def.bridge().expect("checked by the caller");
    let foreign_routes: Vec<Subnet> = host::routes()
        .into_iter()
        .filter(|(_, dev)| *dev != bridge)
        .map(|(s, _)| s)
        .collect();
    let (subnet, gateway) = if def.name == DEFAULT_NETWORK {
        let existing = rt
            .default_subnet()
            .filter(|_| host::link_exists(DEFAULT_BRIDGE));
        let subnet = match existing {
            Some(s) => s,
            None => {
                let mut taken = foreign_routes.clone();
                taken.extend(endpoints.iter().map(|e| e.subnet));
                let s =
                    addr::pick(addr::default_bridge_pool(), &taken).ok_or(NetError::NoSubnet)?;
                rt.set_default_subnet(Some(s))?;
                s
            }
        };
        (subnet, subnet.first_host())
    } else {
        let subnet = def.subnet.ok_or(NetError::NoSubnet)?;
        if foreign_routes.iter().any(|r| r.overlaps(&subnet)) {
            return Err(NetError::PoolOverlap { subnet });
        }
        (subnet, def.gateway.unwrap_or(subnet.first_host()))
    };
    let used: Vec<Ipv4Addr> = endpoints
        .iter()
        .filter(|e| e.bridge == bridge)
        .map(|e| e.ip)
        .collect();
    let ip = match req.ip {
        Some(_) if def.name == DEFAULT_NETWORK => {
            return Err(NetError::UserIpOnDefaultSubnet);
        }
        Some(ip) if !subnet.contains(ip) || ip == gateway || ip == subnet.first_host() => {
            return Err(NetError::InvalidRequest {
                reason: format!("no configured subnet contains IP address {ip}"),
            });
        }
        Some(ip) if used.contains(&ip) => return Err(NetError::AddressInUse),
        Some(ip) => ip,
        None => subnet
            .free_host(gateway, &used)
            .ok_or_else(|| NetError::NoAddress {
                network: def.name.clone(),
                subnet,
            })?,
    };
    let id = req.container_id.to_ascii_lowercase();
    let hostname = if req.hostname.is_empty() {
        id[..12].to_string()
    } else {
        req.hostname.clone()
    };
    let veth = if ifname == FIRST_INTERFACE {
        format!("{VETH_PREFIX}{}", &id[..12])
    } else {
        // 15 bytes at most: a digest of (container, network) for the rest.
        let d = sha2::Sha256::digest(format!("{id}\n{}", def.id).as_bytes());
        format!("{VETH_PREFIX}{}", &hex::encode(d)[..12])
    };
    Ok(Endpoint {
        veth,
        ifname: ifname.to_string(),
        container_id: id,
        container_name: req.container_name.clone(),
        hostname,
        aliases: req.aliases.clone(),
        network_id: def.id.clone(),
        network_name: def.name.clone(),
        names: def.name != DEFAULT_NETWORK,
        bridge,
        subnet,
        gateway,
        ip,
        ports: Vec::new(),
        holder: Holder::me(),
    })
}

/// The (bridge, subnet) pairs of live endpoints: what nftables must cover.
fn bridges_in_use(endpoints: &[Endpoint]) -> Vec<(String, Subnet)> {
    let mut out: Vec<(String, Subnet)> = endpoints
        .iter()
        .map(|e| (e.bridge.clone(), e.subnet))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn set_up(
    rt: &Runtime,
    a: &mut BridgeAttachment,
    before: &[(String, Subnet)],
) -> Result<(), NetError> {
    let e = &a.endpoint;
    if !host::link_exists(&e.bridge) {
        host::create_bridge(&e.bridge, e.subnet, e.gateway)?;
    }
    let after = bridges_in_use(&rt.endpoints());
    // Same bridges as before: the table already covers them.
    if after != before {
        host::nft_apply(&after)?;
    }
    if !host::ip_forward() {
        std::fs::write(rt.forward_marker(), b"")
            .map_err(|err| NetError::io("write", &rt.forward_marker(), err))?;
        host::set_ip_forward(true)?;
    }
    let fd = host::create_netns()?;
    a.netns = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    a.netns_fd = Some(fd);
    host::ip_batch(&format!(
        "link add {veth} type veth peer name eth0 netns {ns}\nlink set {veth} master {br}\nlink set {veth} up\n",
        veth = e.veth,
        ns = a.netns.display(),
        br = e.bridge
    ))?;
    host::ip_batch_in(
        &a.netns,
        &format!(
            "link set lo up\naddr add {ip}/{p} dev eth0\nlink set eth0 up\nroute add default via {gw}\n",
            ip = e.ip,
            p = e.subnet.prefix(),
            gw = e.gateway
        ),
    )?;
    std::fs::create_dir_all(&a.etc).map_err(|err| NetError::io("create", &a.etc, err))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    crate::state::write_in_place(&a.etc.join("resolv.conf"), &dns::resolv_conf(&host_resolv))?;
    Ok(())
}

/// Rewrites the hosts file of every container on `network_id` (see
/// [`hosts_text`]).
fn refresh_hosts(rt: &Runtime, network_id: &str, only: Option<&str>) {
    let all = rt.endpoints();
    let mut done: Vec<&str> = Vec::new();
    let affected = all
        .iter()
        .filter(|e| e.network_id == network_id)
        .map(|e| e.container_id.as_str())
        .chain(only);
    for id in affected {
        if done.contains(&id) {
            continue;
        }
        done.push(id);
        let dir = rt.etc_dir(id);
        if !dir.is_dir() {
            continue;
        }
        if let Some(text) = hosts_text(&all, id, only) {
            let _ = crate::state::write_in_place(&dir.join("hosts"), &text);
        }
    }
}

/// The hosts file of container `id` among `all` endpoints: its own line,
/// and for each user network it is on (`network connect` adds more), one
/// line per peer there. On the default bridge a container's file names
/// only itself and does not change as others come and go, so it is made
/// only for `only` (the container attaching). `None`: nothing to write.
fn hosts_text(all: &[Endpoint], id: &str, only: Option<&str>) -> Option<String> {
    let names_of = |e: &Endpoint| -> Vec<String> {
        let mut names = vec![e.hostname.clone()];
        if !e.container_name.is_empty() {
            names.push(e.container_name.clone());
        }
        names.extend(e.aliases.iter().cloned());
        names.push(e.container_id[..12].to_string());
        names
    };
    let mine: Vec<&Endpoint> = all.iter().filter(|e| e.container_id == id).collect();
    let primary = mine.iter().find(|e| e.first()).or(mine.first())?;
    let named = mine.iter().any(|e| e.names);
    if !named && only != Some(id) {
        return None;
    }
    // Docker's own line: hostname only on the default bridge.
    let own_names = if named {
        let mut n = names_of(primary);
        for e in &mine {
            n.extend(e.aliases.iter().cloned());
        }
        n
    } else {
        vec![primary.hostname.clone()]
    };
    let mut others: Vec<(Ipv4Addr, Vec<String>)> = Vec::new();
    for e in mine.iter().filter(|e| e.names) {
        for o in all
            .iter()
            .filter(|o| o.network_id == e.network_id && o.container_id != id)
        {
            others.push((o.ip, names_of(o)));
        }
    }
    let own = Peer {
        ip: primary.ip,
        names: own_names.iter().map(String::as_str).collect(),
    };
    let others: Vec<Peer<'_>> = others
        .iter()
        .map(|(ip, n)| Peer {
            ip: *ip,
            names: n.iter().map(String::as_str).collect(),
        })
        .collect();
    Some(dns::hosts(&own, &others))
}

/// Removes one endpoint's veth, /etc files and record (the lease). The first error is returned; the rest is still tried.
fn teardown(rt: &Runtime, e: &Endpoint) -> Result<(), NetError> {
    let etc = rt.etc_dir(&e.container_id);
    let results = [
        host::delete_link(&e.veth),
        if e.first() {
            std::fs::remove_dir_all(&etc)
                .or_else(|err| {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(err)
                    }
                })
                .map_err(|err| NetError::io("remove", &etc, err))
        } else {
            Ok(())
        },
        rt.remove_endpoint(e),
    ];
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
}

/// After endpoints went: removes bridges no endpoint uses, rewrites the
/// nftables table when the set of bridges changed, and turns ip_forward
/// back off when rbuild turned it on and no bridge is left.
fn settle(rt: &Runtime, before: &[(String, Subnet)]) -> Result<(), NetError> {
    let endpoints = rt.endpoints();
    let after = bridges_in_use(&endpoints);
    let mut first: Option<NetError> = None;
    for br in host::links_with_prefix(&[DEFAULT_BRIDGE, USER_BRIDGE_PREFIX]) {
        let ours = br == DEFAULT_BRIDGE || br.starts_with(USER_BRIDGE_PREFIX);
        if ours && !after.iter().any(|(b, _)| *b == br) {
            if let Err(e) = host::delete_link(&br) {
                first.get_or_insert(e);
            }
            if br == DEFAULT_BRIDGE {
                let _ = rt.set_default_subnet(None);
            }
        }
    }
    if after != before || (after.is_empty() && host::nft_table_exists()) {
        if let Err(e) = host::nft_apply(&after) {
            first.get_or_insert(e);
        }
    }
    if after.is_empty() && rt.forward_marker().exists() {
        if let Err(e) = host::set_ip_forward(false) {
            first.get_or_insert(e);
        }
        let _ = std::fs::remove_file(rt.forward_marker());
    }
    first.map_or(Ok(()), Err)
}

/// What [`sweep`] removed, one line each, for `system check` to print.
pub type SweepReport = Vec<String>;

/// Removes what holders killed before detaching left on the host:
/// endpoints whose holder is gone (veth if its container still runs,
/// lease, /etc files), veths without a record, bridges no
/// endpoint uses, and the nftables table when no bridge is left. Safe
/// while other containers run: live holders' state is never touched.
/// Does nothing (and needs nothing) when not root or when rbuild never
/// attached a container on this host.
pub fn sweep() -> Result<SweepReport, NetError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(Vec::new());
    }
    let Some(rt) = Runtime::existing() else {
        return Ok(Vec::new());
    };
    let _lock = rt.lock()?;
    Ok(sweep_locked(&rt))
}

fn sweep_locked(rt: &Runtime) -> SweepReport {
    let mut report = Vec::new();
    let endpoints = rt.endpoints();
    let before = bridges_in_use(&endpoints);
    for e in endpoints.iter().filter(|e| !e.holder.alive()) {
        match teardown(rt, e) {
            Ok(()) => report.push(format!(
                "removed network endpoint of container {} on {} ({}), whose holder (pid {}) is gone",
                &e.container_id[..12],
                e.network_name,
                e.ip,
                e.holder.pid
            )),
            Err(err) => report.push(format!(
                "cannot remove network endpoint of container {}: {err}",
                &e.container_id[..12]
            )),
        }
    }
    let live: Vec<Endpoint> = rt.endpoints();
    let known = |id: &str| live.iter().any(|e| e.container_id == id);
    if let Ok(rd) = std::fs::read_dir(rt.dir.join("etc")) {
        for f in rd.flatten() {
            if !known(&f.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(f.path());
            }
        }
    }
    for veth in host::links_with_prefix(&[VETH_PREFIX]) {
        if !live.iter().any(|e| e.veth == veth) && host::delete_link(&veth).is_ok() {
            report.push(format!("removed stale veth {veth}"));
        }
    }
    let bridges_before = host::links_with_prefix(&[DEFAULT_BRIDGE, USER_BRIDGE_PREFIX]);
    let in_use = bridges_in_use(&live);
    let unused_bridge = bridges_before
        .iter()
        .any(|b| !in_use.iter().any(|(u, _)| u == b));
    let had_table = live.is_empty() && host::nft_table_exists();
    if report.is_empty() && !unused_bridge && !had_table {
        // Nothing went, every bridge is in use and no table is left
        // without one: the common case at attach, spared running nft.
        return report;
    }
    match settle(rt, &before) {
        Ok(()) => {
            for br in bridges_before {
                if !host::link_exists(&br) {
                    report.push(format!("removed unused bridge {br}"));
                }
            }
            if had_table && live.is_empty() {
                report.push(format!("removed nftables table ip {}", host::NFT_TABLE));
            }
        }
        Err(err) => report.push(format!("cannot clean up network state: {err}")),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ctr: char, net: char, ip: &str, ifname: &str, names: bool, aliases: &[&str]) -> Endpoint {
        Endpoint {
            container_id: ctr.to_string().repeat(64),
            container_name: format!("c{ctr}"),
            hostname: format!("h{ctr}"),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            network_id: net.to_string().repeat(64),
            network_name: format!("n{net}"),
            names,
            bridge: format!("rbr-{}", net.to_string().repeat(11)),
            subnet: "10.0.0.0/8".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            ip: ip.parse().unwrap(),
            veth: format!("rbv{}", ctr.to_string().repeat(12)),
            ifname: ifname.into(),
            ports: Vec::new(),
            holder: Holder { pid: 1, start: 1 },
        }
    }

    fn peers(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with("10.")).collect()
    }

    #[test]
    fn a_connected_container_sees_and_is_seen_on_every_network() {
        let all = [
            // a: on network 1, connected to network 2 with an alias.
            ep('a', '1', "10.1.0.2", "eth0", true, &[]),
            ep('a', '2', "10.2.0.5", "eth1", true, &["files"]),
            ep('b', '1', "10.1.0.3", "eth0", true, &[]),
            ep('c', '2', "10.2.0.2", "eth0", true, &[]),
            // d: on the default bridge only.
            ep('d', '0', "10.3.0.2", "eth0", false, &[]),
        ];
        let a = hosts_text(&all, &"a".repeat(64), None).unwrap();
        assert_eq!(
            peers(&a),
            [
                "10.1.0.2\tha ca aaaaaaaaaaaa files",
                "10.1.0.3\thb cb bbbbbbbbbbbb",
                "10.2.0.2\thc cc cccccccccccc",
            ]
        );
        // c sees a at its address on their shared network, with its alias.
        let c = hosts_text(&all, &"c".repeat(64), None).unwrap();
        assert_eq!(
            peers(&c),
            [
                "10.2.0.2\thc cc cccccccccccc",
                "10.2.0.5\tha ca files aaaaaaaaaaaa"
            ]
        );
        // b does not see c (no shared network).
        let b = hosts_text(&all, &"b".repeat(64), None).unwrap();
        assert!(!b.contains("cccccccccccc"), "{b}");
        // The default bridge: only itself, written when it attaches.
        assert_eq!(hosts_text(&all, &"d".repeat(64), None), None);
        let d = hosts_text(&all, &"d".repeat(64), Some(&"d".repeat(64))).unwrap();
        assert_eq!(peers(&d), ["10.3.0.2\thd"]);
    }
}
