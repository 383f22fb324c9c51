//! The monitor of a running container (podman's conmon, in-process): the
//! rbuild binary re-executed with [`MONITOR_ARG`] in a session of its own,
//! so it outlives the `rbuild` that started it and no terminal's hangup
//! reaches it. It
//!
//! 1. sets up the container's network ([`network_up`], the one place
//!    networking is wired), starts the sandbox on the container's overlay
//!    (writable layer in the container dir) with its mounts and a cgroup
//!    `rbuild-ctr-<id12>` (freezer, stats, `update`);
//! 2. records `running` with pid 1's host pid, then tells the starter
//!    "ok" on its stdout (the starter's readiness pipe);
//! 3. pumps stdout/stderr into the json-file log, feeds stdin from
//!    `stdin.sock` (attach) when the container keeps stdin open, runs the
//!    HEALTHCHECK;
//! 4. when pid 1 exits: records the exit code and time, tears the network
//!    down ([`network_down`]) and applies the restart policy (unless a user
//!    stopped it: [`Container::stop_marker`]); with `--rm` removes the
//!    container.
//!
//! If the monitor is killed, the sandbox's init process gets its
//! parent-death signal and ends the container, unmounting and removing its
//! cgroup; readers then see a dead monitor and report exit code -1.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbuild_sandbox as sandbox;

use crate::log::{LineSplitter, LogWriter};
use crate::{Container, ContainerError, Containers, Health, HealthLog, Result, State, Status};

/// The hidden argument (argv\[1\]) that makes the binary run [`main`]:
/// `rbuild __container-monitor ROOT ID`.
pub const MONITOR_ARG: &str = "__container-monitor";

fn now() -> String {
    let (s, n) = rbuild_oci::time::now();
    rbuild_oci::time::rfc3339_nanos(s, n)
}

/// Starts the container's monitor and waits until it reports the
/// container running (or why it could not start it).
pub fn start(root: &Path, c: &Container) -> Result<()> {
    let _ = fs::remove_file(c.stop_marker());
    let monitor_log = c.dir.join("monitor.log");
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&monitor_log)
        .map_err(ContainerError::io("open", &monitor_log))?;
    let mut child = Command::new("/proc/self/exe")
        .arg(MONITOR_ARG)
        .arg(root)
        .arg(&c.config.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| ContainerError::Start {
            id: c.config.id.clone(),
            message: format!("cannot run the monitor: {e}"),
        })?;
    let mut answer = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut answer);
    }
    // The monitor's first process exits once its detached copy runs.
    let _ = child.wait();
    let answer = answer.trim();
    if answer == "ok" {
        return Ok(());
    }
    let message = answer.strip_prefix("error: ").unwrap_or(answer);
    Err(ContainerError::Start {
        id: c.config.id.clone(),
        message: if message.is_empty() {
            let log = fs::read_to_string(&monitor_log).unwrap_or_default();
            format!(
                "the monitor died: {}",
                log.lines().last().unwrap_or("no message")
            )
        } else {
            message.to_string()
        },
    })
}

/// Entry point of the hidden monitor subcommand (`args`: ROOT ID). Never
/// returns.
pub fn main(args: &[std::ffi::OsString]) -> ! {
    let (Some(root), Some(id)) = (args.first(), args.get(1)) else {
        std::process::exit(2)
    };
    let root = PathBuf::from(root);
    let id = id.to_string_lossy().into_owned();
    // Detach: the first process spawns the real monitor and exits, so the
    // monitor is reparented (to init or a subreaper) at once; it then
    // starts a session of its own.
    if std::env::var_os("RBUILD_MONITOR_DETACHED").is_none() {
        let spawned = Command::new("/proc/self/exe")
            .arg(MONITOR_ARG)
            .arg(&root)
            .arg(&id)
            .env("RBUILD_MONITOR_DETACHED", "1")
            .stdin(Stdio::null())
            .spawn();
        std::process::exit(if spawned.is_ok() { 0 } else { 1 })
    }
    let _ = nix::unistd::setsid();
    let code = match run(&root, &id) {
        Ok(()) => 0,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            ready(&format!("error: {msg}"));
            eprintln_safe(&msg);
            1
        }
    };
    std::process::exit(code)
}

fn eprintln_safe(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Answers the starter (once): writes to stdout, then points stdout at
/// /dev/null so the starter's pipe closes.
fn ready(msg: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let _ = writeln!(std::io::stdout(), "{msg}");
    let _ = std::io::stdout().flush();
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// What [`network_up`] set up, for [`network_down`]: the container's
/// network (on a bridge its namespace, address and port forwarders, which
/// run as threads of this monitor; rootless pasta, which the sandbox
/// runs), if it has one.
#[derive(Debug)]
pub struct NetworkHandle {
    net: rbuild_net::Networking,
    /// `network.json` in the container's directory: what `inspect` and
    /// `port` show while the container runs.
    record: Option<PathBuf>,
}

impl NetworkHandle {
    /// Mounts the sandbox needs for this network (the generated
    /// `/etc/hosts` and `/etc/resolv.conf` of a bridge network).
    pub fn mounts(&self) -> Vec<sandbox::Mount> {
        self.net.sandbox_mounts()
    }
}

/// The network facts of a running container, as [`network_up`] records
/// them in `network.json`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    pub network: String,
    pub ip: String,
    /// `(container port/proto, host ip, host port)` actually bound.
    pub ports: Vec<(String, String, u16)>,
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub prefix_len: u8,
    /// `network disconnect` took the container off this network.
    #[serde(default)]
    pub disconnected: bool,
}

/// A network `network connect` added to a container: kept in
/// `connected.json` in its directory, attached again at every start.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// The network's name.
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`, as asked.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// While the container runs: where it is on the network.
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub prefix_len: u8,
}

/// The networks `network connect` added to the container in `dir`.
pub fn connections(dir: &Path) -> Vec<Connection> {
    std::fs::read(dir.join("connected.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_connections(
    dir: &Path,
    list: &[Connection],
) -> std::result::Result<(), rbuild_net::NetError> {
    let path = dir.join("connected.json");
    let tmp = dir.join("connected.json.tmp");
    let json = serde_json::to_vec_pretty(list).expect("connections serialize");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| rbuild_net::NetError::Io {
            step: "write",
            path,
            source,
        })
}

/// The name of the network the container starts on (`bridge` for the
/// default), or `None` for `none` and `host`.
fn primary_network(c: &Container) -> Option<String> {
    match c.config.host.network_mode.as_str() {
        "" | "default" | "bridge" => Some(rbuild_net::DEFAULT_NETWORK.into()),
        "none" | "host" => None,
        other => Some(other.to_string()),
    }
}

fn connect_request(c: &Container, network: &str, conn: &Connection) -> rbuild_net::NetRequest {
    let config = &c.config;
    rbuild_net::NetRequest {
        container_id: config.id.clone(),
        container_name: config.name.clone(),
        network: network.to_string(),
        ports: Vec::new(),
        hostname: if config.hostname.is_empty() {
            config.short_id().to_string()
        } else {
            config.hostname.clone()
        },
        aliases: conn.aliases.clone(),
        ip: conn.ip,
    }
}

fn fill(conn: &mut Connection, got: &rbuild_net::Connected) {
    conn.network = got.network_name.clone();
    conn.network_id = got.network_id.clone();
    conn.address = got.ip.to_string();
    conn.gateway = got.gateway.to_string();
    conn.prefix_len = got.prefix_len;
}

/// `network connect`: adds the container to `network` (docker's errors:
/// an unknown network, a network it is already on, `host`/`none`). A
/// running container gets an interface there now (see
/// [`rbuild_net::connect`]); a created or stopped one at its next start.
pub fn connect(
    root: &Path,
    c: &Container,
    network: &str,
    aliases: Vec<String>,
    ip: Option<std::net::Ipv4Addr>,
) -> std::result::Result<(), rbuild_net::NetError> {
    let nets = rbuild_net::Networks::new(root);
    let def = nets.get(network)?;
    let Some(primary) = primary_network(c) else {
        return Err(rbuild_net::NetError::ConnectNonBridge { name: def.name });
    };
    if def.bridge().is_none() {
        return Err(rbuild_net::NetError::ConnectNonBridge { name: def.name });
    }
    let mut list = connections(c.dir());
    let on_primary = nets.get(&primary).is_ok_and(|p| p.id == def.id)
        && !network_record(c.dir()).is_some_and(|r| r.disconnected);
    if on_primary || list.iter().any(|x| x.network == def.name) {
        return Err(rbuild_net::NetError::AlreadyConnected {
            container: c.config.name.clone(),
            network: def.name,
        });
    }
    let mut conn = Connection {
        network: def.name.clone(),
        aliases,
        ip,
        ..Connection::default()
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(rbuild_net::NetError::RootlessUserNetwork { name: def.name });
    }
    if c.is_running() {
        let netns = PathBuf::from(format!("/proc/{}/ns/net", c.state.pid));
        let got = rbuild_net::connect(
            root,
            &connect_request(c, &def.name, &conn),
            &netns,
            c.state.monitor_pid,
        )?;
        fill(&mut conn, &got);
    }
    list.push(conn);
    save_connections(c.dir(), &list)
}

/// `network disconnect`: takes the container off `network`, now if it
/// runs, and for its next starts. `force` ignores a network that is
/// gone.
pub fn disconnect(
    root: &Path,
    c: &Container,
    network: &str,
    force: bool,
) -> std::result::Result<(), rbuild_net::NetError> {
    let def = match rbuild_net::Networks::new(root).get(network) {
        Ok(d) => d,
        Err(rbuild_net::NetError::NotFound { .. }) if force => {
            let mut list = connections(c.dir());
            list.retain(|x| x.network != network);
            return save_connections(c.dir(), &list);
        }
        Err(e) => return Err(e),
    };
    let mut list = connections(c.dir());
    let connected = list.iter().any(|x| x.network == def.name);
    let record = network_record(c.dir()).filter(|_| c.is_running());
    let on_primary = record
        .as_ref()
        .is_some_and(|r| r.network == def.name && !r.disconnected);
    if !connected && !on_primary {
        return Err(rbuild_net::NetError::NotConnected {
            container: c.config.name.clone(),
            network: def.name,
        });
    }
    if c.is_running() {
        match rbuild_net::disconnect(root, &c.config.id, &c.config.name, &def.name) {
            Ok(()) => {}
            Err(rbuild_net::NetError::NotConnected { .. }) if connected => {}
            Err(e) => return Err(e),
        }
    }
    if on_primary {
        if let Some(mut r) = record {
            r.disconnected = true;
            r.ip.clear();
            let path = c.dir().join("network.json");
            let _ = serde_json::to_vec(&r)
                .map_err(std::io::Error::other)
                .and_then(|b| std::fs::write(&path, b));
        }
    }
    list.retain(|x| x.network != def.name);
    save_connections(c.dir(), &list)
}

/// `inspect`'s NetworkSettings.Networks: the network the container
/// started on and those `network connect` added, with their addresses
/// while it runs.
pub fn inspect_networks(c: &Container) -> serde_json::Value {
    let running = c.is_running();
    let record = running.then(|| network_record(c.dir())).flatten();
    let mut m = serde_json::Map::new();
    let entry = |id: &str, ip: &str, gw: &str, prefix: u8, aliases: &[String]| {
        serde_json::json!({
            "Aliases": if aliases.is_empty() { serde_json::Value::Null } else { serde_json::json!(aliases) },
            "NetworkID": id,
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "Gateway": gw,
            "MacAddress": "",
        })
    };
    match &record {
        Some(r) if r.disconnected => {}
        Some(r) => {
            m.insert(
                r.network.clone(),
                entry(
                    &r.network_id,
                    &r.ip,
                    &r.gateway,
                    r.prefix_len,
                    &c.config.host.network_aliases,
                ),
            );
        }
        None => {
            let name = primary_network(c).unwrap_or_else(|| c.config.host.network_mode.clone());
            m.insert(name, entry("", "", "", 0, &c.config.host.network_aliases));
        }
    }
    for x in connections(c.dir()) {
        let e = if running {
            entry(
                &x.network_id,
                &x.address,
                &x.gateway,
                x.prefix_len,
                &x.aliases,
            )
        } else {
            entry("", "", "", 0, &x.aliases)
        };
        m.insert(x.network.clone(), e);
    }
    serde_json::Value::Object(m)
}

/// Reads what [`network_up`] recorded for the container in `dir`.
pub fn network_record(dir: &Path) -> Option<NetworkRecord> {
    let text = std::fs::read(dir.join("network.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Sets up networking for the container before it starts, returning the
/// sandbox's network mode and what to undo after it exits, under
/// rbuild-net's one rule ([`rbuild_net::set_up`], which the foreground
/// `run` follows too): `none`, `host`, as root a bridge network (`bridge`,
/// docker's default, or a user-defined network by name), rootless pasta,
/// with the `-p`/`-P` ports published by forwarders (or pasta) this
/// monitor keeps alive.
pub fn network_up(root: &Path, c: &Container) -> Result<(sandbox::Network, NetworkHandle)> {
    let config = &c.config;
    let ports = rbuild_net::published_ports(
        &config.host.port_bindings,
        config.host.publish_all_ports,
        &config.exposed_ports,
    )
    .map_err(|e| ContainerError::Invalid {
        what: "publish",
        value: config.host.port_bindings.join(","),
        hint: Some(e),
    })?;
    let request = rbuild_net::NetRequest {
        container_id: config.id.clone(),
        container_name: config.name.clone(),
        network: String::new(),
        ports,
        hostname: if config.hostname.is_empty() {
            config.short_id().to_string()
        } else {
            config.hostname.clone()
        },
        aliases: config.host.network_aliases.clone(),
        ip: None,
    };
    let mode = config.host.network_mode.as_str();
    let set_up =
        rbuild_net::set_up(root, Some(mode), request).map_err(|e| ContainerError::Start {
            id: config.short_id().to_string(),
            message: match e.hint() {
                Some(h) => format!("{e}\nhint: {h}"),
                None => e.to_string(),
            },
        })?;
    for w in &set_up.warnings {
        eprintln_safe(w);
    }
    let net = set_up.networking;
    let Some(attachment) = net.attachment() else {
        return Ok((net.sandbox_network(), NetworkHandle { net, record: None }));
    };
    // The networks `network connect` added, in the same namespace (a
    // bridge's; rootless, pasta's namespace takes no more networks).
    let netns = attachment.netns_path();
    let mut list = if netns.is_some() {
        connections(c.dir())
    } else {
        Vec::new()
    };
    let netns = netns.unwrap_or_default();
    for conn in &mut list {
        let got = rbuild_net::connect(
            root,
            &connect_request(c, &conn.network, conn),
            &netns,
            std::process::id(),
        )
        .map_err(|e| ContainerError::Start {
            id: config.short_id().to_string(),
            message: e.to_string(),
        })?;
        fill(conn, &got);
    }
    if !list.is_empty() {
        if let Err(e) = save_connections(c.dir(), &list) {
            eprintln_safe(&format!("warning: {e}"));
        }
    }
    let record = NetworkRecord {
        network: attachment.network_name().to_string(),
        network_id: attachment.network_id().unwrap_or_default().to_string(),
        gateway: attachment
            .gateway()
            .map(|g| g.to_string())
            .unwrap_or_default(),
        prefix_len: attachment.prefix_len().unwrap_or(0),
        disconnected: false,
        ip: attachment.ip().map(|ip| ip.to_string()).unwrap_or_default(),
        ports: attachment
            .ports()
            .iter()
            .map(|p| {
                (
                    format!("{}/{}", p.spec.container_port, p.spec.protocol),
                    p.host.ip().to_string(),
                    p.host.port(),
                )
            })
            .collect(),
    };
    let path = c.dir().join("network.json");
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&path, b));
    if let Err(e) = written {
        eprintln_safe(&format!(
            "warning: cannot record the network in {}: {e}",
            path.display()
        ));
    }
    Ok((
        net.sandbox_network(),
        NetworkHandle {
            net,
            record: Some(path),
        },
    ))
}

/// Undoes [`network_up`] after the container exited.
pub fn network_down(handle: NetworkHandle) {
    if let Some(path) = handle.record {
        let _ = std::fs::remove_file(path);
    }
    if let Err(e) = handle.net.detach() {
        eprintln_safe(&format!(
            "warning: cannot remove the container's network: {e}"
        ));
    }
}

/// The sandbox spec of the container (layers from the store).
pub fn sandbox_spec(
    root: &Path,
    c: &Container,
    network: sandbox::Network,
) -> Result<sandbox::SandboxSpec> {
    let lowers = crate::fs_ops::lowers(root, &c.config)?;
    let cfg = &c.config;
    let mut args = cfg.argv();
    let mut mounts: Vec<sandbox::Mount> = cfg
        .mounts
        .iter()
        .map(|m| sandbox::Mount {
            kind: if m.kind == "tmpfs" {
                sandbox::MountKind::Tmpfs
            } else {
                sandbox::MountKind::Bind
            },
            source: m.source.clone(),
            target: PathBuf::from(&m.destination),
            readonly: !m.rw,
        })
        .collect();
    if cfg.host.init {
        // docker's --init: tini (Debian's tini-static) as pid 1, bound
        // read-only at /sbin/docker-init, forwarding signals and reaping.
        let tini = init_binary().ok_or_else(|| ContainerError::Invalid {
            what: "--init",
            value: "tini-static".into(),
            hint: Some("install tini (apt-get install tini) or set RBUILD_INIT_BINARY".into()),
        })?;
        mounts.push(sandbox::Mount {
            kind: sandbox::MountKind::Bind,
            source: tini,
            target: PathBuf::from(INIT_PATH),
            readonly: true,
        });
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    Ok(sandbox::SandboxSpec {
        rootfs: sandbox::Rootfs::Overlay {
            lowers,
            upper: c.upper(),
            work: c.work(),
        },
        process: sandbox::Process {
            args,
            env: cfg.env.clone(),
            cwd: cfg.working_dir.clone(),
            user: cfg.user.clone(),
            tty: cfg.tty,
            groups: sandbox::SupplementaryGroups::WithPrimary,
        },
        mounts,
        network,
        hostname: cfg.hostname.clone(),
        readonly_rootfs: cfg.host.read_only,
        limits: sandbox::Limits {
            memory: cfg.host.memory,
            cpus: cfg.host.cpus,
            pids: cfg.host.pids_limit,
        },
        cgroup: Some(format!("rbuild-ctr-{}", cfg.short_id())),
    })
}

/// Where `--init`'s binary appears in the container (docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// The static init for `--init`: `RBUILD_INIT_BINARY`, else tini-static.
fn init_binary() -> Option<PathBuf> {
    std::env::var_os("RBUILD_INIT_BINARY")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/tini-static", "/usr/bin/docker-init"].map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Clears what a killed run may have left in the overlay's work dir (a
/// `volatile` marker there refuses the next mount).
fn clear_work(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let inner = work.join("work");
    let _ = fs::set_permissions(&inner, fs::Permissions::from_mode(0o700));
    let _ = fs::remove_dir_all(&inner);
}

/// How often [`find_pid1`] and [`await_exec`] look: every `first`, the
/// interval doubling up to `most` (a foreground run, which only records
/// the pid, looks gently so as not to slow the start it waits for).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Polling {
    pub first: Duration,
    pub most: Duration,
}

impl Polling {
    /// Sleeps the current interval, then doubles it (up to `most`).
    fn sleep(&mut self) {
        std::thread::sleep(self.first);
        self.first = (self.first * 2).min(self.most);
    }
}

/// The host pid of pid 1: the sandbox init's child that is pid 1 of its
/// own pid namespace.
pub(crate) fn find_pid1(init: u32, mut polling: Polling) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let children =
            fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
        // The init's other children (newuidmap's helper, the network
        // helper) live in the host's pid namespace; pid 1 is 1 in its own.
        if let Some(p) = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .find(|&p| is_pid1(p))
        {
            return p;
        }
        if crate::process_start_time(init).is_none() {
            return 0;
        }
        polling.sleep();
    }
    0
}

/// Whether host pid `pid` is pid 1 of a pid namespace below this one
/// (its `NSpid` reads `<pid> ... 1`).
fn is_pid1(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        })
}

/// Waits until pid 1 has exec'd the command (its executable is no longer
/// the init's): before that, its root and mounts are still being set up
/// and an `exec` joining it would land in the wrong place.
pub(crate) fn await_exec(init: u32, pid1: u32, mut polling: Polling) {
    let exe = |p: u32| fs::read_link(format!("/proc/{p}/exe")).ok();
    let init_exe = exe(init);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match exe(pid1) {
            None => return,
            Some(e) if Some(&e) != init_exe.as_ref() => return,
            Some(_) => polling.sleep(),
        }
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn run(root: &Path, id: &str) -> Result<()> {
    let dir = root.join(crate::CONTAINERS_DIR).join(id);
    let c = Container::load(&dir)?;
    let me = std::process::id();
    let my_start = crate::process_start_time(me).unwrap_or(0);
    let cfg = c.config.clone();
    let log = Arc::new(Mutex::new(
        LogWriter::open(&c.log_path(), cfg.host.log_max_size, cfg.host.log_max_file)
            .map_err(ContainerError::io("open", c.log_path()))?,
    ));
    let state: Shared<State> = Arc::new(Mutex::new(c.state.clone()));
    let save = |s: &State| c.write_state(s);
    let mut restarts = c.state.restart_count;
    let mut first = true;
    // stdin: a pipe whose write end this monitor keeps, fed from stdin.sock.
    let stdin_writer: Shared<Option<File>> = Arc::new(Mutex::new(None));
    if cfg.open_stdin {
        let _ = fs::remove_file(c.stdin_socket());
        let (_dir, short) = c.stdin_socket_short()?;
        let listener = UnixListener::bind(&short)
            .map_err(ContainerError::io("listen on", c.stdin_socket()))?;
        let writer = stdin_writer.clone();
        // On a tty stdin never ends (a detach, ctrl-p ctrl-q, closes the
        // connection too, and the container must keep its terminal).
        let once = cfg.stdin_once && !cfg.tty;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 8192];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(f) = w.as_mut() {
                                let _ = f.write_all(&buf[..n]);
                            }
                        }
                    }
                }
                if once {
                    *writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
        });
    }
    loop {
        clear_work(&c.work());
        let (network, net) = match network_up(root, &c) {
            Ok(n) => n,
            Err(e) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.status = Status::Exited;
                s.exit_code = 125;
                s.error = e.to_string();
                s.finished_at = now();
                let _ = save(&s);
                return Err(e);
            }
        };
        let mut spec = sandbox_spec(root, &c, network)?;
        spec.mounts.splice(0..0, net.mounts());
        let stdin: OwnedFd = if cfg.open_stdin {
            let (in_r, in_w) = pipe()?;
            *stdin_writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(in_w));
            in_r
        } else {
            sandbox::dev_null()?
        };
        let (sb, outputs) = match spawn_piped(&spec, Some(stdin)) {
            Ok(started) => started,
            Err(e) => {
                network_down(net);
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.status = Status::Exited;
                s.exit_code = i32::from(e.exit_code());
                s.error = e.to_string();
                s.finished_at = now();
                let _ = save(&s);
                return Err(e);
            }
        };
        let pid1 = find_pid1(
            sb.pid(),
            Polling {
                first: Duration::from_millis(1),
                most: Duration::from_millis(1),
            },
        );
        await_exec(
            sb.pid(),
            pid1,
            Polling {
                first: Duration::from_micros(200),
                most: Duration::from_micros(200),
            },
        );
        // The sandbox's init removes its cgroup when pid 1 ends; should the
        // init itself be killed, the monitor removes it.
        let cgroup_dirs: Vec<PathBuf> = {
            let mut probe = c.clone();
            probe.state.pid = pid1;
            probe.state.status = Status::Running;
            probe.cgroup_dirs().into_iter().map(|(_, d)| d).collect()
        };
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.status = Status::Running;
            s.pid = pid1;
            s.init_pid = sb.pid();
            s.monitor_pid = me;
            s.monitor_start = my_start;
            s.exit_code = 0;
            s.error.clear();
            s.started_at = now();
            s.finished_at = crate::ZERO_TIME.into();
            s.restart_count = restarts;
            if cfg.healthcheck.is_some() {
                s.health = Some(Health {
                    status: "starting".into(),
                    failing_streak: 0,
                    log: Vec::new(),
                });
            }
            save(&s)?;
        }
        crate::events::container(root, "start", &cfg);
        if first {
            ready("ok");
            first = false;
        }
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(from, stream)| {
                let log = log.clone();
                let tty = cfg.tty;
                std::thread::spawn(move || pump(from, stream, tty, false, &log, None))
            })
            .collect();
        let stop_health = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let health = cfg.healthcheck.clone().map(|hc| {
            let (state, stop, dir) = (state.clone(), stop_health.clone(), c.dir.clone());
            let cfg = cfg.clone();
            std::thread::spawn(move || health_loop(&hc, &cfg, pid1, &state, &stop, &dir))
        });
        let result = sb.wait();
        stop_health.store(true, std::sync::atomic::Ordering::SeqCst);
        for p in pumps {
            let _ = p.join();
        }
        if let Some(h) = health {
            let _ = h.join();
        }
        network_down(net);
        // (pid 1 may still be exiting from its parent-death signal.)
        let deadline = Instant::now() + Duration::from_secs(2);
        for d in &cgroup_dirs {
            while d.exists() && fs::remove_dir(d).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let (code, error) = match result {
            Ok(code) => (code, String::new()),
            Err(e) => (e.exit_code(), e.to_string()),
        };
        if !error.is_empty() {
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = l.write("stderr", format!("rbuild: error: {error}\n").as_bytes());
        }
        let stopped_by_user = c.stop_marker().exists();
        let again = !stopped_by_user && cfg.host.restart.restarts(code, restarts);
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.status = if again {
                Status::Restarting
            } else {
                Status::Exited
            };
            s.exit_code = code;
            s.oom_killed = sandbox::take_oom_killed();
            s.error = error;
            s.pid = 0;
            s.init_pid = 0;
            s.finished_at = now();
            if !again {
                s.monitor_pid = 0;
            }
            save(&s)?;
        }
        let code_s = code.to_string();
        crate::events::record(
            root,
            "container",
            "die",
            &cfg.id,
            &[
                ("exitCode", &code_s),
                ("image", &cfg.image),
                ("name", &cfg.name),
            ],
        );
        if !again {
            break;
        }
        restarts += 1;
        // docker's back-off: 100 ms, doubling, at most a minute.
        let delay = Duration::from_millis(100u64 << restarts.min(10).saturating_sub(1))
            .min(Duration::from_secs(60));
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if c.stop_marker().exists() {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.status = Status::Exited;
                s.monitor_pid = 0;
                save(&s)?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = fs::remove_file(c.stdin_socket());
    if cfg.host.auto_remove {
        remove(root, &c, true)?;
    }
    Ok(())
}

/// Copies `from` into the log, a line an entry; on a `tty` whatever was
/// read goes out at once (a shell's prompt ends no line). With `echo`
/// (a foreground run) it goes to this process's `stream` too; when that
/// is gone (a closed pipe), `from` is closed, so the container gets its
/// SIGPIPE as it would writing there itself.
///
/// With `stop` (the read end of a pipe whose write end is closed once
/// the container has exited) it stops at that point, after what the pipe
/// holds: the sandbox's init, still tearing down, need not close its
/// copy of the pipe first.
pub(crate) fn pump(
    mut from: File,
    stream: &'static str,
    tty: bool,
    echo: bool,
    log: &Mutex<LogWriter>,
    stop: Option<&OwnedFd>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 32 * 1024];
    let mut lines = LineSplitter::default();
    let write = |l: &[u8]| {
        let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.write(stream, l);
    };
    let mut stopping = false;
    loop {
        if let Some(stop) = stop {
            let mut fds = [
                PollFd::new(from.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            // Once stopping: only what is there now.
            let timeout = if stopping {
                PollTimeout::ZERO
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
            }
            let data = fds[0].any().unwrap_or(true);
            stopping |= fds[1].any().unwrap_or(true);
            if !data {
                continue;
            }
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let echoed = match (echo, stream) {
            (false, _) => Ok(()),
            (true, "stderr") => {
                let mut e = std::io::stderr().lock();
                e.write_all(&buf[..n]).and_then(|()| e.flush())
            }
            (true, _) => {
                let mut o = std::io::stdout().lock();
                o.write_all(&buf[..n]).and_then(|()| o.flush())
            }
        };
        lines.push(&buf[..n], write);
        if tty {
            lines.finish(write);
        }
        if echoed.is_err() {
            break;
        }
    }
    lines.finish(write);
}

/// The sandbox of `spec` started with `stdin` and its stdout and stderr
/// on pipes, whose read ends come back with it.
pub(crate) fn spawn_piped(
    spec: &sandbox::SandboxSpec,
    stdin: Option<OwnedFd>,
) -> Result<(sandbox::Sandbox, [(File, &'static str); 2])> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let sb = sandbox::spawn(
        spec,
        sandbox::SandboxStdio {
            stdin,
            stdout: Some(out_w),
            stderr: Some(err_w),
        },
    )?;
    Ok((
        sb,
        [(File::from(out_r), "stdout"), (File::from(err_r), "stderr")],
    ))
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::io("pipe", "")(e.into()))
}

/// Removes an inactive container's directory (with its anonymous volumes
/// when `volumes`, as `rm -v`) under the containers lock, and records a
/// `destroy` event.
pub fn remove(root: &Path, c: &Container, volumes: bool) -> Result<()> {
    let containers = Containers::open(root)?;
    let _lock = containers.lock()?;
    if volumes {
        crate::volume::remove_anonymous(root, &c.config);
    }
    containers.remove(c)?;
    crate::events::container(root, "destroy", &c.config);
    Ok(())
}

fn health_loop(
    hc: &crate::Healthcheck,
    cfg: &crate::ContainerConfig,
    pid1: u32,
    state: &Mutex<State>,
    stop: &std::sync::atomic::AtomicBool,
    dir: &Path,
) {
    let args: Vec<String> = match hc.test.first().map(String::as_str) {
        Some("CMD") => hc.test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), hc.test[1..].join(" ")],
        _ => return,
    };
    let started = Instant::now();
    let interval = Duration::from_nanos(hc.interval as u64);
    let timeout = Duration::from_nanos(hc.timeout as u64);
    let start_period = Duration::from_nanos(hc.start_period as u64);
    let mut next = Instant::now() + interval;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        next = Instant::now() + interval;
        let start = now();
        let (code, output) = probe(&args, cfg, pid1, timeout);
        let entry = HealthLog {
            start,
            end: now(),
            exit_code: code,
            output,
        };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let Some(h) = s.health.as_mut() else { break };
        h.log.push(entry);
        if h.log.len() > 5 {
            h.log.remove(0);
        }
        if code == 0 {
            h.failing_streak = 0;
            h.status = "healthy".into();
        } else if started.elapsed() >= start_period {
            h.failing_streak += 1;
            if h.failing_streak >= hc.retries.max(1) {
                h.status = "unhealthy".into();
            }
        }
        let _ = crate::write_json(&dir.join("state.json"), &*s);
    }
}

fn probe(
    args: &[String],
    cfg: &crate::ContainerConfig,
    pid1: u32,
    timeout: Duration,
) -> (i32, String) {
    let Ok((r, w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return (-1, "cannot create a pipe".into());
    };
    let w2 = w.try_clone().ok();
    let spec = sandbox::ExecSpec {
        pid: pid1,
        process: sandbox::Process {
            args: args.to_vec(),
            env: cfg.env.clone(),
            cwd: cfg.working_dir.clone(),
            user: cfg.user.clone(),
            tty: false,
            groups: sandbox::SupplementaryGroups::WithPrimary,
        },
    };
    let stdio = sandbox::SandboxStdio {
        stdin: sandbox::dev_null().ok(),
        stdout: Some(w),
        stderr: w2,
    };
    let sb = match sandbox::exec(&spec, stdio) {
        Ok(sb) => sb,
        Err(e) => return (-1, e.to_string()),
    };
    let pid = sb.pid();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::BufReader::new(File::from(r))
            .take(4096)
            .read_to_string(&mut out);
        out
    });
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if d2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let code = sb.wait().unwrap_or_else(|e| e.exit_code());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = killer.join();
    let out = reader.join().unwrap_or_default();
    (code, out)
}
