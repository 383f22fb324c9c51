//! `rbuild run`: run a command in a sandbox, like `docker run`.
//!
//! The image is resolved in two steps: [`resolve_image`] turns the IMAGE
//! argument into lower dirs plus an [`ImageConfig`] — the image's layer
//! snapshots from the store, or with `--rootfs DIR` (podman's flag) a
//! directory — and [`run_image`] does the rest from (lowers, config)
//! exactly as docker run applies Entrypoint, Cmd, Env, WorkingDir and User.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_sandbox as sandbox;
use rbuild_sandbox::{
    Limits, Mount, MountKind, Network, Process, Rootfs, SandboxSpec, SandboxStdio,
};
use rbuild_store::{Image, Store};

/// Flags of `rbuild run`.
#[derive(Debug, Clone, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Automatically remove the container (and its anonymous volumes)
    /// when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run the container in the background and print its ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container (with -it)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Run an init inside the container (tini-static at /sbin/docker-init)
    /// that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container (default SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait to stop the container before killing it
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Attach a filesystem mount: type=volume|bind|tmpfs,source=…,target=…[,readonly]
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Log driver options: max-size=SIZE, max-file=N
    #[arg(long, value_name = "OPT")]
    pub log_opt: Vec<String>,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short = 'l', long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Command to run to check health
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between running the check (e.g. 30s)
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Name for the container (used as default hostname)
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long, value_name = "F")]
    pub env_file: Vec<PathBuf>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro]
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Mount an empty tmpfs at DIR
    #[arg(long, value_name = "DIR")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid) and optional group: USER[:GROUP]
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Override the image's entrypoint (empty string: none)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network: bridge (own namespace on rbuild's default bridge, outbound
    /// access; the default as root), none (only loopback; the default
    /// otherwise), host, or the name of a network made with `network create`
    #[arg(long, alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Publish a container's port to the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs to a random host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Another name the container answers to on a user-defined network
    #[arg(long = "network-alias", alias = "net-alias", value_name = "NAME")]
    pub network_alias: Vec<String>,
    /// Container hostname
    #[arg(long, value_name = "H")]
    pub hostname: Option<String>,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (bytes, or with a unit: 512k, 64m, 1g)
    #[arg(long, value_name = "M", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// CPU quota in CPUs (e.g. 1.5)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Maximum number of processes
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
    /// IMAGE is a root filesystem directory (podman's flag); DIR:O runs on
    /// an overlay of it and discards the changes
    #[arg(long)]
    pub rootfs: bool,
    /// Platform (os/arch[/variant]) of a multi-platform image to run; a foreign one runs under qemu-user
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
    /// Image (with --rootfs: a directory)
    pub image: String,
    /// Command and arguments (default: the image's Cmd)
    pub command: Vec<String>,
}

/// The parts of an image config that `run` honours (OCI config names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// `ExposedPorts` keys (`80/tcp`), for `-P`.
    pub exposed_ports: Vec<String>,
}

/// What IMAGE refers to.
enum Resolved {
    /// A directory used in place (podman's `--rootfs DIR`).
    Dir(PathBuf),
    /// Lower dirs (top first) and the config: runs on a fresh overlay.
    Layers(Vec<PathBuf>, ImageConfig),
}

fn parse_memory(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.find('k').unwrap_or(s.len())], 1u64 << 10),
        Some('m') => (&s[..s.find('m').unwrap_or(s.len())], 1 << 20),
        Some('g') => (&s[..s.find('g').unwrap_or(s.len())], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("invalid memory size {s:?} (examples: 268435456, 512k, 64m, 1g)"))
}

/// Runs `rbuild run`. Like docker run, errors of rbuild itself (bad
/// flags, missing rootfs, sandbox setup) exit with 125, a command that
/// cannot be executed with 126/127, otherwise the command's own status.
pub fn run(root: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        return Ok(super::container::run_detached(root, &args));
    }
    if args.tty && args.interactive && !args.rootfs && args.platform.is_none() {
        return super::container::run_attached(root, &args);
    }
    match run_inner(root, &args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("rbuild: error: {e:#}");
            Ok(ExitCode::from(125))
        }
    }
}

fn run_inner(root: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if !args.rootfs && args.platform.is_none() {
        return run_container(root, args);
    }
    // `-v NAME:/path`: a named volume, made when missing.
    let mut resolved: RunArgs;
    let args = if args.volume.iter().any(|v| is_named_volume(v)) {
        resolved = args.clone();
        for v in resolved.volume.iter_mut() {
            if is_named_volume(v) {
                let (name, rest) = v.split_once(':').expect("named volumes have a colon");
                let vol = rbuild_container::volume::create(root, Some(name), Default::default())?;
                *v = format!("{}:{rest}", vol.mountpoint.display());
            }
        }
        &resolved
    } else {
        args
    };
    if !args.rootfs {
        let store = Store::open(root)?;
        let image = store.resolve_for(args.image.as_str(), args.platform.as_ref())?;
        if let Some(p) = &args.platform {
            let host = rbuild_oci::Platform::host();
            rbuild_builder::emulation::check_platform(
                p,
                &host,
                &rbuild_builder::emulation::emulators(),
            )?;
        }
        // Held until the container exits: rmi and prune leave the image be.
        let _lease = store.lease(&image)?;
        let (lowers, config) = image_rootfs(&store, &image)?;
        return run_image(root, args, lowers, config, &|| {
            store.tmp_dir().to_path_buf()
        });
    }
    match resolve_image(args)? {
        Resolved::Dir(dir) => {
            let config = ImageConfig::default();
            let spec = build_spec(args, Rootfs::Dir(dir), &config)?;
            execute(root, args, spec, &config)
        }
        Resolved::Layers(lowers, config) => {
            run_image(root, args, lowers, config, &std::env::temp_dir)
        }
    }
}

/// A foreground run of an image from the store: a container record (as
/// `create` makes it: name, mounts, volumes, config), run by this process
/// as its monitor ([`rbuild_container::foreground`]). With `--rm` the
/// writable layer is a tmpfs private to the sandbox (nothing to remove
/// afterwards, see [`run_image`]); otherwise it is the container's own, so
/// `diff`, `commit`, `cp` and `start` work on it after it exits.
fn run_container(root: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    use rbuild_container as ctr;
    let store = Store::open(root)?;
    let image = store.resolve(args.image.as_str())?;
    // Held until the container exits: rmi and prune leave the image be.
    let _lease = store.lease(&image)?;
    let refused = |e: &ctr::ContainerError| match e {
        ctr::ContainerError::Sandbox(e) => {
            eprintln!("rbuild: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
        _ => super::container::run_failed(e),
    };
    let c = match super::container::create_from(root, args, &store, &image) {
        Ok(c) => c,
        Err(e) => return Ok(refused(&e)),
    };
    let given_up = |e: &ctr::ContainerError| {
        let mut s = c.state.clone();
        s.status = ctr::Status::Exited;
        s.exit_code = 125;
        s.error = e.to_string();
        let _ = c.write_state(&s);
        if args.rm {
            ctr::foreground::remove(root, &c);
        }
        refused(e)
    };
    let (network, net) = match ctr::monitor::network_up(root, &c) {
        Ok(n) => n,
        Err(e) => return Ok(given_up(&e)),
    };
    let mut spec = match ctr::monitor::sandbox_spec(root, &c, network) {
        Ok(spec) => spec,
        Err(e) => {
            ctr::monitor::network_down(net);
            return Ok(given_up(&e));
        }
    };
    spec.mounts.splice(0..0, net.mounts());
    // A named cgroup costs 10-60 ms to make and remove (cgroup v1, one dir
    // per controller): a foreground run without limits goes without, as it
    // did before it kept a record, so `pause`, `stats` and `update` need
    // `-d` or a limit.
    if args.memory.is_none() && args.cpus.is_none() && args.pids_limit.is_none() {
        spec.cgroup = None;
    }
    if args.rm && args.memory.is_none() {
        if let Rootfs::Overlay { lowers, .. } = &spec.rootfs {
            spec.rootfs = Rootfs::Ephemeral {
                lowers: lowers.clone(),
            };
        }
    }
    let stdin = if args.interactive {
        None
    } else {
        Some(sandbox::dev_null()?)
    };
    match ctr::foreground::run(root, &c, &spec, stdin, net, &forwarded_signals()) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(ctr::ContainerError::Sandbox(e)) => {
            eprintln!("rbuild: error: {e}");
            for s in rbuild_oci::error_chain::sources(&e) {
                eprintln!("  caused by: {s}");
            }
            Ok(ExitCode::from(e.exit_code() as u8))
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// The image's layer snapshots, top first (overlay's lowerdir order), and
/// the parts of its config `run` applies.
fn image_rootfs(store: &Store, image: &Image) -> anyhow::Result<(Vec<PathBuf>, ImageConfig)> {
    let mut lowers = image
        .layers
        .iter()
        .map(|layer| store.snapshot_layer(layer))
        .collect::<Result<Vec<_>, _>>()?;
    lowers.reverse();
    let config = &image.config.config;
    let config = ImageConfig {
        entrypoint: config.entrypoint.clone().unwrap_or_default(),
        cmd: config.cmd.clone().unwrap_or_default(),
        env: config.env.clone().unwrap_or_default(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        user: config.user.clone().unwrap_or_default(),
        exposed_ports: config
            .exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
    };
    Ok((lowers, config))
}

fn is_named_volume(v: &str) -> bool {
    v.split_once(':')
        .is_some_and(|(src, _)| !src.is_empty() && !src.starts_with('/') && !src.starts_with('.'))
}

/// `--rootfs DIR[:O]` → what to run on.
fn resolve_image(args: &RunArgs) -> anyhow::Result<Resolved> {
    if let Some(dir) = args.image.strip_suffix(":O") {
        let dir = canonical(Path::new(dir))?;
        return Ok(Resolved::Layers(vec![dir], ImageConfig::default()));
    }
    Ok(Resolved::Dir(canonical(Path::new(&args.image))?))
}

fn canonical(p: &Path) -> anyhow::Result<PathBuf> {
    let c =
        std::fs::canonicalize(p).with_context(|| format!("rootfs {} not found", p.display()))?;
    if !c.is_dir() {
        bail!("rootfs {} is not a directory", p.display());
    }
    Ok(c)
}

/// Runs on an overlay of `lowers` (top first; may be empty) applying
/// `config` like docker run, with a writable layer that is discarded
/// afterwards and no container record: the runs of a `--rootfs`
/// directory or a `--platform` image (a run of an image from the store
/// keeps a record: `run_container`).
///
/// The writable layer normally lives on a tmpfs private to the sandbox
/// ([`Rootfs::Ephemeral`]): nothing is written to disk, nothing can be
/// left behind, and starting costs no directory churn on the store's
/// filesystem (on ext4 with `-o discard` each directory removed is a
/// synchronous discard; this took `rbuild run IMAGE true` from ~13 ms
/// to below 10). What a container writes to its root filesystem then uses
/// memory, as with `--tmpfs`. With `--memory` that memory would count
/// against the container's limit, which docker's disk-backed layer does
/// not, so the layer then goes to a fresh dir under `scratch_parent()`
/// on disk (the store's scratch space for images), removed afterwards.
pub fn run_image(
    root: &Path,
    args: &RunArgs,
    lowers: Vec<PathBuf>,
    config: ImageConfig,
    scratch_parent: &dyn Fn() -> PathBuf,
) -> anyhow::Result<ExitCode> {
    if args.memory.is_none() {
        let spec = build_spec(args, Rootfs::Ephemeral { lowers }, &config)?;
        return execute(root, args, spec, &config);
    }
    let scratch = tempfile::Builder::new()
        .prefix("rbuild-run-")
        .tempdir_in(scratch_parent())
        .context("cannot create a scratch dir for the container's writable layer")?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    for d in [&upper, &work] {
        std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let spec = build_spec(
        args,
        Rootfs::Overlay {
            lowers,
            upper,
            work: work.clone(),
        },
        &config,
    )?;
    let result = execute(root, args, spec, &config);
    // overlayfs leaves <work>/work with mode 000; a non-root owner cannot
    // list it for removal until it is made accessible again.
    let _ = std::fs::set_permissions(
        work.join("work"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    );
    result
}

/// The ports to publish: `-p`, and with `-P` the image's EXPOSE ports.
fn port_specs(args: &RunArgs, config: &ImageConfig) -> anyhow::Result<Vec<rbuild_net::PortSpec>> {
    rbuild_net::published_ports(&args.publish, args.publish_all, &config.exposed_ports)
        .map_err(anyhow::Error::msg)
}

/// A fresh container id: 64 random hex digits, as docker's.
fn container_id() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Sets up the container's network under rbuild-net's one rule
/// ([`rbuild_net::set_up`]: as root a bridge network, rootless pasta,
/// `none`/`host` as asked, the default falling back to `none` where the
/// host cannot make it), pointing `spec` at it. The result must live
/// until the container exits.
fn attach_network(
    root: &Path,
    args: &RunArgs,
    spec: &mut SandboxSpec,
    config: &ImageConfig,
) -> anyhow::Result<rbuild_net::Networking> {
    let id = container_id()?;
    let request = rbuild_net::NetRequest {
        container_id: id.clone(),
        container_name: args.name.clone().unwrap_or_default(),
        network: String::new(),
        ports: port_specs(args, config)?,
        hostname: if spec.hostname.is_empty() {
            id[..12].to_string()
        } else {
            spec.hostname.clone()
        },
        aliases: args.network_alias.clone(),
        ip: None,
    };
    let hostname = request.hostname.clone();
    let set_up =
        rbuild_net::set_up(root, args.network.as_deref(), request).map_err(|e| match e.hint() {
            Some(hint) => anyhow::anyhow!("{e}\nhint: {hint}"),
            None => anyhow::Error::new(e),
        })?;
    for w in &set_up.warnings {
        eprintln!("{w}");
    }
    let net = set_up.networking;
    if net.attachment().is_some() {
        spec.hostname = hostname;
    }
    spec.network = net.sandbox_network();
    spec.mounts.splice(0..0, net.sandbox_mounts());
    Ok(net)
}

/// Attaches the network, runs the spec, detaches.
fn execute(
    root: &Path,
    args: &RunArgs,
    mut spec: SandboxSpec,
    config: &ImageConfig,
) -> anyhow::Result<ExitCode> {
    let net = attach_network(root, args, &mut spec, config)?;
    let result = execute_spec(&spec, args.interactive);
    if let Err(e) = net.detach() {
        eprintln!("rbuild: warning: cannot remove the container's network: {e}");
    }
    result
}

/// Runs the spec; stdin is /dev/null unless `interactive` (docker's -i).
fn execute_spec(spec: &SandboxSpec, interactive: bool) -> anyhow::Result<ExitCode> {
    let stdio = SandboxStdio::default();
    let stdio = if interactive {
        stdio
    } else {
        SandboxStdio {
            stdin: Some(sandbox::dev_null()?),
            ..stdio
        }
    };
    match run_forwarding_signals(spec, stdio) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("rbuild: error: {e}");
            for s in rbuild_oci::error_chain::sources(&e) {
                eprintln!("  caused by: {s}");
            }
            Ok(ExitCode::from(e.exit_code() as u8))
        }
    }
}

/// Runs the sandbox while this process ignores SIGINT, SIGTERM, SIGHUP
/// and SIGQUIT and forwards them to it, so `kill <rbuild>` or Ctrl-C reach
/// the container (as docker run's signal proxy) instead of killing rbuild.
fn run_forwarding_signals(
    spec: &SandboxSpec,
    stdio: SandboxStdio,
) -> Result<i32, sandbox::SandboxError> {
    let set = forwarded_signals();
    // Blocked, so they queue for wait_forwarding instead of acting; the
    // sandbox's init process starts with an empty mask.
    let _ = set.thread_block();
    sandbox::spawn(spec, stdio)?.wait_forwarding(&set)
}

/// The signals a foreground run passes on to its container (docker's
/// sig-proxy): SIGINT, SIGTERM, SIGHUP and SIGQUIT.
fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

/// `K=V` as is; a bare `K` takes the value from this process's env (and is
/// dropped when unset), as docker does.
fn env_entry(s: &str) -> Option<String> {
    if s.contains('=') {
        Some(s.to_string())
    } else {
        std::env::var(s).ok().map(|v| format!("{s}={v}"))
    }
}

fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or("").to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(entry);
}

/// The image's `env` with `--env-file` and `-e` applied, as docker does.
pub fn container_env(args: &RunArgs, mut env: Vec<String>) -> anyhow::Result<Vec<String>> {
    for f in &args.env_file {
        for e in read_env_file(f)? {
            set_env(&mut env, e);
        }
    }
    for e in &args.env {
        if let Some(e) = env_entry(e) {
            set_env(&mut env, e);
        }
    }
    Ok(env)
}

/// The sandbox spec for `args` on `rootfs` with the image's `config`.
pub fn build_spec(
    args: &RunArgs,
    rootfs: Rootfs,
    config: &ImageConfig,
) -> anyhow::Result<SandboxSpec> {
    let entrypoint = match &args.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone(),
    };
    // docker: a new entrypoint resets the image's Cmd.
    let cmd = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        vec![]
    } else {
        config.cmd.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command specified\nhint: give a command after the image, or set --entrypoint");
    }
    let env = container_env(args, config.env.clone())?;
    let mut mounts = Vec::new();
    for v in &args.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, ctr, ro) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            _ => bail!("invalid volume {v:?}\nhint: use HOST:CONTAINER or HOST:CONTAINER:ro"),
        };
        let source = std::fs::canonicalize(host)
            .with_context(|| format!("volume source {host} not found"))?;
        if !ctr.starts_with('/') {
            bail!("invalid volume {v:?}: the container path must be absolute");
        }
        mounts.push(Mount {
            kind: MountKind::Bind,
            source,
            target: PathBuf::from(ctr),
            readonly: ro,
        });
    }
    for t in &args.tmpfs {
        let dir = t.split(':').next().unwrap_or(t);
        if !dir.starts_with('/') {
            bail!("invalid tmpfs {t:?}: the container path must be absolute");
        }
        mounts.push(Mount {
            kind: MountKind::Tmpfs,
            source: PathBuf::new(),
            target: PathBuf::from(dir),
            readonly: false,
        });
    }
    // The network is settled by `attach_network` at start.
    let network = Network::None;
    Ok(SandboxSpec {
        rootfs,
        process: Process {
            args: argv,
            env,
            cwd: args
                .workdir
                .clone()
                .unwrap_or_else(|| config.working_dir.clone()),
            user: args.user.clone().unwrap_or_else(|| config.user.clone()),
            tty: args.tty,
            // docker run: the primary gid too.
            groups: sandbox::SupplementaryGroups::WithPrimary,
        },
        mounts,
        network,
        hostname: args
            .hostname
            .clone()
            .or_else(|| args.name.clone())
            .unwrap_or_default(),
        readonly_rootfs: args.read_only,
        limits: Limits {
            memory: args.memory,
            cpus: args.cpus,
            pids: args.pids_limit,
        },
        cgroup: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4kb").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
    }
}
