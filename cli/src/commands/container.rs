//! The container commands (`run -d`, `create`, `start`, `ps`, `logs`,
//! `exec`, `stop`, `kill`, `rm`, …): glue between clap and
//! rbuild-container, printing as docker prints and exiting as it exits.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use rbuild_container::{
    self as ctr, Container, ContainerConfig, ContainerError, Containers, HostConfig, MountPoint,
    RestartPolicy, Status, log as ctrlog, volume,
};
use rbuild_oci::time;
use rbuild_template::Template;
use serde_json::{Value, json};

use super::run::RunArgs;
use super::size::human_size;
use super::table::Table;

/// Whose words an error is in, as docker's client prints it: its own
/// (`Error: …`, as `logs`, `rm`, `exec` say of an unknown container) or
/// the daemon's (`Error response from daemon: …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Said {
    Client,
    #[default]
    Daemon,
}

fn say(e: &impl std::fmt::Display, said: Said) {
    match said {
        Said::Client => eprintln!("Error: {e}"),
        Said::Daemon => eprintln!("Error response from daemon: {e}"),
    }
}

/// Prints a container error as docker does and gives its exit code.
pub fn fail(e: &ContainerError) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(e.exit_code())
}

/// A `run` refused before its container started, as docker says it
/// (`docker: Error response from daemon: …` and a pointer to the help),
/// with docker run's exit code 125.
pub fn run_failed(e: &ContainerError) -> ExitCode {
    eprintln!("rbuild: Error response from daemon: {e}\nSee 'rbuild run --help'.");
    ExitCode::from(125)
}

/// A `create` refused, as docker says it (the daemon's words, exit 1).
pub fn create_failed(e: &ContainerError) -> ExitCode {
    say(e, Said::Daemon);
    ExitCode::from(1)
}

/// An error already printed as docker prints it: `main` exits with its
/// code and prints nothing more.
#[derive(Debug)]
pub struct Reported(pub u8);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// Prints `e` as docker does ([`fail`]) and turns it into a [`Reported`]
/// error, so a command can give up with `?`.
pub fn reported(e: ContainerError) -> anyhow::Error {
    fail(&e);
    Reported(e.exit_code()).into()
}

/// The container named `what` (name, id or id prefix), or docker's
/// `Error: No such container: X` and its exit code.
fn lookup(root: &Path, what: &str) -> anyhow::Result<Container> {
    lookup_as(root, what, Said::Client)
}

/// [`lookup`], an unknown container said in `said`'s words.
fn lookup_as(root: &Path, what: &str, said: Said) -> anyhow::Result<Container> {
    Containers::open(root)?.get(what).map_err(|e| {
        say(&e, said);
        Reported(e.exit_code()).into()
    })
}

fn now() -> String {
    let (s, n) = time::now();
    time::rfc3339_nanos(s, n)
}

fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn parse_duration_ns(s: &str) -> Option<i64> {
    ctrlog::parse_duration(s).map(|d| d as i64)
}

fn invalid(what: &'static str, value: &str, hint: Option<&str>) -> ContainerError {
    ContainerError::Invalid {
        what,
        value: value.to_string(),
        hint: hint.map(str::to_string),
    }
}

/// Makes a container from `run`/`create` flags (not started).
pub fn create_container(root: &Path, args: &RunArgs) -> Result<Container, ContainerError> {
    if args.rootfs {
        return Err(invalid(
            "--rootfs",
            &args.image,
            Some("lasting containers need an image from the store"),
        ));
    }
    let store = rbuild_store::Store::open(root)?;
    let image = store.resolve(args.image.as_str())?;
    create_from(root, args, &store, &image)
}

/// [`create_container`] from the image `args` names, resolved in `store`.
pub fn create_from(
    root: &Path,
    args: &RunArgs,
    store: &rbuild_store::Store,
    image: &rbuild_store::Image,
) -> Result<Container, ContainerError> {
    let ic = &image.config.config;
    let entrypoint = match &args.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        vec![]
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(invalid(
            "command",
            "",
            Some("no command specified: give a command after the image, or set --entrypoint"),
        ));
    }
    let spec_env = super::run::container_env(args, ic.env.clone().unwrap_or_default())
        .map_err(|e| invalid("environment", &e.to_string(), None))?;
    let restart = match &args.restart {
        Some(r) => RestartPolicy::parse(r).ok_or_else(|| {
            invalid(
                "restart policy",
                r,
                Some("use no, on-failure[:max-retries], always or unless-stopped"),
            )
        })?,
        None => RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        },
    };
    if args.rm && restart.name != "no" {
        return Err(invalid(
            "restart policy",
            &restart.name,
            Some("conflicting options: --restart and --rm"),
        ));
    }
    let mut log_max_size = None;
    let mut log_max_file = 1;
    for o in &args.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => {
                log_max_size = Some(parse_size(v).ok_or_else(|| invalid("log-opt", o, None))?)
            }
            Some(("max-file", v)) => {
                log_max_file = v.parse().map_err(|_| invalid("log-opt", o, None))?
            }
            _ => return Err(invalid("log-opt", o, Some("supported: max-size, max-file"))),
        }
    }
    let id = ctr::new_id();
    let containers = Containers::open(root)?;
    let _lock = containers.lock()?;
    let name = match &args.name {
        Some(n) => {
            containers.check_name(n, None)?;
            n.clone()
        }
        None => containers.free_name()?,
    };
    // The image's layers (top first), to seed volumes from: only read
    // when there are volumes.
    let seeds = !args.volume.is_empty()
        || !args.mount.is_empty()
        || ic.volumes.as_ref().is_some_and(|v| !v.is_empty());
    let lowers = if seeds {
        image
            .layers
            .iter()
            .rev()
            .map(|l| store.snapshot_layer(l))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let mounts = mounts(root, args, &lowers, ic.volumes.as_ref())?;
    let healthcheck = healthcheck(args, ic.healthcheck.as_ref());
    let mut labels: BTreeMap<String, String> = ic.labels.clone().unwrap_or_default();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let config = ContainerConfig {
        version: ctr::STATE_VERSION,
        id: id.clone(),
        name,
        created: now(),
        image: args.image.clone(),
        image_id: image.id.to_string(),
        manifest: image.manifest_digest.to_string(),
        entrypoint,
        cmd,
        env: spec_env,
        working_dir: args
            .workdir
            .clone()
            .unwrap_or_else(|| ic.working_dir.clone().unwrap_or_default()),
        user: args
            .user
            .clone()
            .unwrap_or_else(|| ic.user.clone().unwrap_or_default()),
        hostname: args
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string()),
        tty: args.tty,
        open_stdin: args.interactive,
        stdin_once: args.interactive && !args.detach,
        attach: !args.detach,
        labels,
        stop_signal: args
            .stop_signal
            .clone()
            .or_else(|| ic.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: args.stop_timeout,
        healthcheck,
        exposed_ports: ic
            .exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
        image_volumes: ic
            .volumes
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
        host: HostConfig {
            // docker records `default` when --network is not given.
            network_mode: args.network.clone().unwrap_or_else(|| "default".into()),
            port_bindings: args.publish.clone(),
            publish_all_ports: args.publish_all,
            network_aliases: args.network_alias.clone(),
            restart,
            auto_remove: args.rm,
            read_only: args.read_only,
            memory: args.memory,
            cpus: args.cpus,
            pids_limit: args.pids_limit,
            init: args.init,
            log_max_size,
            log_max_file,
        },
        mounts,
    };
    if parse_signal(&config.stop_signal).is_none() {
        return Err(invalid("stop signal", &config.stop_signal, None));
    }
    let c = containers.create(config)?;
    ctr::events::container(root, "create", &c.config);
    Ok(c)
}

fn healthcheck(
    args: &RunArgs,
    image: Option<&rbuild_oci::image_config::HealthConfig>,
) -> Option<ctr::Healthcheck> {
    if args.no_healthcheck {
        return None;
    }
    let mut test = image.map(|h| h.test.clone()).unwrap_or_default();
    if let Some(cmd) = &args.health_cmd {
        test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let pick = |flag: &Option<String>, img: i64, default: i64| {
        flag.as_deref()
            .and_then(parse_duration_ns)
            .unwrap_or(if img > 0 { img } else { default })
    };
    Some(ctr::Healthcheck {
        test,
        interval: pick(
            &args.health_interval,
            image.map_or(0, |h| h.interval),
            30_000_000_000,
        ),
        timeout: pick(
            &args.health_timeout,
            image.map_or(0, |h| h.timeout),
            30_000_000_000,
        ),
        start_period: pick(&None, image.map_or(0, |h| h.start_period), 0),
        retries: args
            .health_retries
            .or(image.map(|h| h.retries).filter(|r| *r > 0))
            .unwrap_or(3),
    })
}

/// `-v`, `--mount`, `--tmpfs` and the image's VOLUMEs as mounts; volumes
/// are made (and seeded from the image) here.
fn mounts(
    root: &Path,
    args: &RunArgs,
    lowers: &[PathBuf],
    image_volumes: Option<&BTreeMap<String, rbuild_oci::image_config::EmptyObject>>,
) -> Result<Vec<MountPoint>, ContainerError> {
    let mut out: Vec<MountPoint> = Vec::new();
    let add_volume = |out: &mut Vec<MountPoint>, name: Option<&str>, dest: &str, rw: bool| {
        let v = volume::create(root, name, BTreeMap::new())?;
        volume::seed(&v, lowers, dest)?;
        out.push(MountPoint {
            kind: "volume".into(),
            name: v.name.clone(),
            source: v.mountpoint.clone(),
            destination: dest.to_string(),
            rw,
            anonymous: v.anonymous,
        });
        Ok::<(), ContainerError>(())
    };
    let bind = |out: &mut Vec<MountPoint>, src: &str, dest: &str, rw: bool| {
        let p = Path::new(src);
        if !p.exists() {
            std::fs::create_dir_all(p).map_err(|e| ContainerError::Io {
                step: "create bind source",
                path: p.to_path_buf(),
                source: e,
            })?;
        }
        let source = std::fs::canonicalize(p).map_err(|e| ContainerError::Io {
            step: "resolve bind source",
            path: p.to_path_buf(),
            source: e,
        })?;
        out.push(MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source,
            destination: dest.to_string(),
            rw,
            anonymous: false,
        });
        Ok::<(), ContainerError>(())
    };
    for v in &args.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dest, rw) = match parts.as_slice() {
            [d] => (None, *d, true),
            [s, d] => (Some(*s), *d, true),
            [s, d, "ro"] => (Some(*s), *d, false),
            [s, d, "rw"] => (Some(*s), *d, true),
            _ => {
                return Err(invalid(
                    "volume",
                    v,
                    Some("use NAME:/path[:ro], /host:/path[:ro] or /path"),
                ));
            }
        };
        if !dest.starts_with('/') {
            return Err(invalid(
                "volume",
                v,
                Some("the container path must be absolute"),
            ));
        }
        match src {
            None => add_volume(&mut out, None, dest, rw)?,
            Some(s) if s.starts_with('/') || s.starts_with('.') => bind(&mut out, s, dest, rw)?,
            Some(name) => add_volume(&mut out, Some(name), dest, rw)?,
        }
    }
    for m in &args.mount {
        let mut kind = "volume";
        let (mut src, mut dest, mut rw) = (None::<String>, None::<String>, true);
        for kv in m.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "type" => {
                    kind = match v {
                        "volume" => "volume",
                        "bind" => "bind",
                        "tmpfs" => "tmpfs",
                        _ => return Err(invalid("mount type", v, Some("volume, bind or tmpfs"))),
                    }
                }
                "source" | "src" => src = Some(v.to_string()),
                "target" | "destination" | "dst" => dest = Some(v.to_string()),
                "readonly" | "ro" => rw = !(v.is_empty() || v == "true" || v == "1"),
                _ => {}
            }
        }
        let Some(dest) = dest.filter(|d| d.starts_with('/')) else {
            return Err(invalid(
                "mount",
                m,
                Some("target=/absolute/path is required"),
            ));
        };
        match kind {
            "bind" => {
                let Some(s) = src else {
                    return Err(invalid("mount", m, Some("a bind needs source=")));
                };
                if !Path::new(&s).exists() {
                    return Err(invalid(
                        "mount",
                        m,
                        Some(&format!("bind source path does not exist: {s}")),
                    ));
                }
                bind(&mut out, &s, &dest, rw)?;
            }
            "tmpfs" => out.push(MountPoint {
                kind: "tmpfs".into(),
                name: String::new(),
                source: PathBuf::new(),
                destination: dest,
                rw: true,
                anonymous: false,
            }),
            _ => add_volume(&mut out, src.as_deref(), &dest, rw)?,
        }
    }
    for t in &args.tmpfs {
        let dir = t.split(':').next().unwrap_or(t);
        out.push(MountPoint {
            kind: "tmpfs".into(),
            name: String::new(),
            source: PathBuf::new(),
            destination: dir.to_string(),
            rw: true,
            anonymous: false,
        });
    }
    for path in image_volumes.into_iter().flat_map(|v| v.keys()) {
        let norm = path.trim_end_matches('/');
        if !out
            .iter()
            .any(|m| m.destination.trim_end_matches('/') == norm)
        {
            add_volume(&mut out, None, path, true)?;
        }
    }
    Ok(out)
}

/// `run -d`: create, start, print the id.
pub fn run_detached(root: &Path, args: &RunArgs) -> ExitCode {
    let c = match create_container(root, args) {
        Ok(c) => c,
        Err(e) => return run_failed(&e),
    };
    if let Err(e) = ctr::monitor::start(root, &c) {
        return run_failed(&e);
    }
    println!("{}", c.config.id);
    ExitCode::SUCCESS
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach the container's stdin
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn start_one(root: &Path, c: &Container) -> Result<(), ContainerError> {
    if c.is_active() {
        return Ok(());
    }
    ctr::monitor::start(root, c)
}

pub fn start(root: &Path, args: StartArgs) -> anyhow::Result<ExitCode> {
    if args.attach || args.interactive {
        let [one] = args.containers.as_slice() else {
            eprintln!("Error: you cannot start and attach multiple containers at once");
            return Ok(ExitCode::from(1));
        };
        let keys = detach_keys(args.detach_keys.as_deref())?;
        let c = lookup(root, one)?;
        let offset = ctrlog::current_len(&c.log_path());
        if let Err(e) = start_one(root, &c) {
            return Ok(fail(&e));
        }
        return Ok(attach_session(&c, offset, args.interactive, &keys));
    }
    let each = Each {
        summary: Some("failed to start containers"),
        ..Each::default()
    };
    for_each_as(root, &args.containers, each, |c| start_one(root, c))
}

/// docker's default detach keys: ctrl-p, ctrl-q.
const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys` as bytes (docker's syntax: comma-separated `a`…`z`
/// or `ctrl-a`…`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\`, `ctrl-]`,
/// `ctrl-^`, `ctrl-_`).
fn detach_keys(spec: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let spec = spec.unwrap_or(DEFAULT_DETACH_KEYS);
    let bad = || anyhow::anyhow!("Invalid detach keys ({spec}) provided");
    let mut out = Vec::new();
    for key in spec.split(',') {
        let lower = key.to_ascii_lowercase();
        let byte = match lower.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => match k.as_bytes()[0] {
                b @ b'a'..=b'z' => b - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            },
            Some(_) => return Err(bad()),
            None if key.len() == 1 => key.as_bytes()[0],
            None => return Err(bad()),
        };
        out.push(byte);
    }
    Ok(out)
}

/// The caller's terminal in raw mode while attached to a tty container
/// (keys, ctrl-c included, go to the container); restored when dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Gives the container's terminal this terminal's window size (the pty's
/// slave is pid 1's stdin; setting its size signals SIGWINCH inside).
fn pass_window_size(c: &Container) {
    let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout()) else {
        return;
    };
    let Ok(c) = c.reload() else { return };
    if !c.is_running() {
        return;
    }
    if let Ok(tty) = std::fs::File::options()
        .write(true)
        .open(format!("/proc/{}/fd/0", c.state.pid))
    {
        if rustix::termios::isatty(&tty) {
            let _ = rustix::termios::tcsetwinsize(&tty, ws);
        }
    }
}

/// Attaches this process to the running (or just started) container `c`
/// from log offset `offset` until it exits or the user detaches, as
/// docker's attach: its output here; with `stdin`, this stdin there; on a
/// tty container this terminal in raw mode, its window size passed on
/// (and again on SIGWINCH), and `detach` (the key sequence) detaching.
/// Returns the container's exit code, or 0 after a detach.
fn attach_session(c: &Container, offset: u64, stdin: bool, detach: &[u8]) -> ExitCode {
    use std::io::IsTerminal;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tty = c.config.tty;
    // Blocked before the stdin thread starts, so it inherits the mask and
    // the signals reach the proxy.
    let proxy = proxy_signals();
    let _raw = (tty && stdin && std::io::stdin().is_terminal())
        .then(RawTerminal::enter)
        .flatten();
    if tty {
        pass_window_size(c);
    }
    let detached = Arc::new(AtomicBool::new(false));
    if stdin && c.config.open_stdin {
        let keys = if tty { detach.to_vec() } else { Vec::new() };
        forward_stdin(c, keys, detached.clone());
    }
    let code = follow(c, offset, tty, proxy.as_ref(), &detached);
    drop(_raw);
    if detached.load(Ordering::SeqCst) {
        eprintln!("read escape sequence");
        return ExitCode::SUCCESS;
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Copies this process's stdin to the container's (`stdin.sock`); when
/// `detach` (a key sequence) is typed, stops and sets `detached`. As with
/// docker, the keys of an unfinished sequence are held back and go on
/// together when the next key does not continue it.
fn forward_stdin(
    c: &Container,
    detach: Vec<u8>,
    detached: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let Ok((dir, sock)) = c.stdin_socket_short() else {
        return;
    };
    std::thread::spawn(move || {
        let _dir = dir;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conn = loop {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        };
        let mut buf = [0u8; 8192];
        let mut stdin = std::io::stdin();
        let mut matched = 0;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if !detach.is_empty() && b == detach[matched] {
                    matched += 1;
                    if matched == detach.len() {
                        let _ = conn.write_all(&out);
                        detached.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    continue;
                }
                out.extend_from_slice(&detach[..matched]);
                matched = 0;
                out.push(b);
            }
            if conn.write_all(&out).is_err() {
                break;
            }
        }
        let _ = conn.shutdown(std::net::Shutdown::Write);
    });
}

/// docker's sig-proxy: SIGINT, SIGTERM, SIGHUP and SIGQUIT reaching
/// this process go to the container instead of ending the attach; and
/// SIGWINCH, for a tty's size. Blocks them in this thread (and the
/// threads it starts after) and reads them from the returned fd.
fn proxy_signals() -> Option<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGWINCH,
    ] {
        set.add(sig);
    }
    set.thread_block().ok()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
}

/// Prints the log from `offset` as it grows until the container stops
/// (or `detached` is set) and returns its exit code; signals from
/// `proxy` ([`proxy_signals`]) go to the container, and on a `tty`
/// window size changes are passed on.
fn follow(
    c: &Container,
    offset: u64,
    tty: bool,
    proxy: Option<&nix::sys::signalfd::SignalFd>,
    detached: &std::sync::atomic::AtomicBool,
) -> i32 {
    let mut offset = offset;
    let path = c.log_path();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut idle_after_exit = 0;
    loop {
        let (entries, next) = ctrlog::read_from(&path, offset);
        offset = next;
        for e in &entries {
            if e.stream == "stderr" {
                let _ = err.write_all(e.log.as_bytes());
            } else {
                let _ = out.write_all(e.log.as_bytes());
            }
        }
        let _ = out.flush();
        if detached.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        let state = match c.reload() {
            Ok(c) => c,
            Err(_) => return c.exit_code_when_gone(),
        };
        if let Some(sfd) = proxy {
            while let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo as i32 == libc::SIGWINCH {
                    if tty {
                        pass_window_size(&state);
                    }
                } else {
                    let _ = state.signal(info.ssi_signo as i32);
                }
            }
        }
        if !state.is_active() {
            if entries.is_empty() {
                idle_after_exit += 1;
                if idle_after_exit > 1 {
                    return state.state.exit_code;
                }
            }
        } else if entries.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach stdin
    #[arg(long)]
    pub no_stdin: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    pub container: String,
}

pub fn attach(root: &Path, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let c = lookup(root, &args.container)?;
    if !c.is_running() {
        eprintln!("You cannot attach to a stopped container, start it first");
        return Ok(ExitCode::from(1));
    }
    Ok(attach_session(
        &c,
        ctrlog::current_len(&c.log_path()),
        !args.no_stdin,
        &keys,
    ))
}

/// `run -it` (a terminal, interactive, not detached): as `run -d`, then
/// attached as `start -ai` is, so ctrl-p ctrl-q (or `--detach-keys`)
/// leaves the container running in the background, as docker's.
pub fn run_attached(root: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let c = match create_container(root, args) {
        Ok(c) => c,
        Err(e) => return Ok(run_failed(&e)),
    };
    if let Err(e) = ctr::monitor::start(root, &c) {
        return Ok(run_failed(&e));
    }
    Ok(attach_session(&c, 0, true, &keys))
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long)]
    pub last: Option<usize>,
    /// Show the latest created container
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Filter output (id=, name=, status=, label=, ancestor=, exited=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Pretty-print containers using a Go template, or `json`
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

fn matches_filter(c: &Container, f: &str) -> anyhow::Result<bool> {
    let (k, v) = f
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
    Ok(match k {
        "id" => c.config.id.starts_with(v),
        "name" => c.config.name.contains(v),
        "status" => c.state.status.as_str() == v,
        "exited" => c.state.status == Status::Exited && c.state.exit_code.to_string() == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
            None => c.config.labels.contains_key(v),
        },
        "ancestor" => c.config.image == v || c.config.image_id.contains(v),
        "volume" => c
            .config
            .mounts
            .iter()
            .any(|m| m.name == v || m.destination == v),
        "health" => c.state.health.as_ref().is_some_and(|h| h.status == v),
        _ => anyhow::bail!("invalid filter '{k}'"),
    })
}

/// Prints `rows` as docker's formatter does: a table of `columns`
/// (header, key) by default; one JSON object a line with `json`; a Go
/// template per row, after `table ` through the tab aligner with a header
/// row made by rendering the template on the header names (`headers`:
/// key → header). `\t` in a template is a tab.
fn print_rows(
    rows: &[Value],
    format: Option<&str>,
    columns: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    match format {
        None | Some("table") => {
            let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            let mut t = Table::new(&header);
            for r in rows {
                t.row(
                    columns
                        .iter()
                        .map(|(_, k)| r[*k].as_str().unwrap_or("").to_string())
                        .collect(),
                );
            }
            print!("{}", t.render());
        }
        Some("json") => {
            for r in rows {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        Some(f) => {
            let (table, body) = match f.strip_prefix("table") {
                Some(b) => (true, b),
                None => (false, f),
            };
            let body = body.trim().replace("\\t", "\t").replace("\\n", "\n");
            let t = Template::parse(&body)?;
            if table {
                let names: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, h)| (k.to_string(), json!(h)))
                    .collect();
                let mut lines = vec![t.render(&Value::Object(names))?];
                for r in rows {
                    lines.push(t.render(r)?);
                }
                let mut out = Table::default();
                for l in &lines {
                    out.row(l.split('\t').map(str::to_string).collect());
                }
                print!("{}", out.render());
            } else {
                for r in rows {
                    println!("{}", t.render(r)?);
                }
            }
        }
    }
    Ok(())
}

/// `ps` placeholders and their table headers (docker's).
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// Go's `strconv.Quote` for the text docker shows (JSON string escaping
/// agrees with it on printable text).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// docker's `stringutils.Ellipsis`: at most `n` characters, the last `…`.
fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

/// docker's COMMAND: the path, then the args, those with a space in
/// single quotes; quoted as Go quotes, cut to 20 characters by default.
fn command_text(c: &Container, trunc: bool) -> String {
    let argv = c.config.argv();
    let cmd = argv
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    go_quote(&if trunc { ellipsis(&cmd, 20) } else { cmd })
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp` for each port bound now,
/// `80/tcp` for an exposed one that is not; nothing when not running.
fn ports_text(c: &Container) -> String {
    if !c.is_running() {
        return String::new();
    }
    let bound = ctr::monitor::network_record(c.dir())
        .map(|r| r.ports)
        .unwrap_or_default();
    let mut out: Vec<String> = bound
        .iter()
        .map(|(p, ip, port)| format!("{ip}:{port}->{p}"))
        .collect();
    for p in &c.config.exposed_ports {
        if !bound.iter().any(|(b, _, _)| b == p) {
            out.push(p.clone());
        }
    }
    out.join(", ")
}

/// Go's `time.Time.String()` of an RFC 3339 UTC time, as docker's
/// `CreatedAt` shows it: `2021-03-12 10:13:35 +0000 UTC`.
fn go_time(rfc3339: &str) -> String {
    let t = time::rfc3339(time::parse_rfc3339(rfc3339).unwrap_or(0));
    format!("{} {} +0000 UTC", &t[..10], &t[11..19])
}

fn ps_row(root: &Path, c: &Container, trunc: bool, size: bool) -> Value {
    let names = |m: &MountPoint| {
        let n = if m.name.is_empty() {
            m.source.display().to_string()
        } else {
            m.name.clone()
        };
        if trunc { ellipsis(&n, 15) } else { n }
    };
    let mut row = json!({
        "ID": if trunc { c.config.short_id().to_string() } else { c.config.id.clone() },
        "Image": c.config.image,
        "Command": command_text(c, trunc),
        "CreatedAt": go_time(&c.config.created),
        "RunningFor": format!("{} ago", time::human_duration(time::now_secs() - time::parse_rfc3339(&c.config.created).unwrap_or(0))),
        "Status": c.status_text(),
        "State": c.state.status.as_str(),
        "Ports": ports_text(c),
        "Names": c.config.name,
        "Labels": c.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": c.config.mounts.iter().map(names).collect::<Vec<_>>().join(","),
        "Networks": match c.config.host.network_mode.as_str() {
            "" | "default" if nix::unistd::geteuid().is_root() => "bridge",
            "" | "default" => "none",
            other => other,
        },
        "LocalVolumes": c.config.mounts.iter().filter(|m| m.kind == "volume").count().to_string(),
    });
    if size {
        let upper = rbuild_store::tree_size(&c.upper());
        let image: u64 = ctr::fs_ops::lowers(root, &c.config)
            .unwrap_or_default()
            .iter()
            .map(|l| rbuild_store::tree_size(l))
            .sum();
        row["Size"] = json!(format!(
            "{} (virtual {})",
            human_size(upper),
            human_size(upper + image)
        ));
    }
    row
}

pub fn ps(root: &Path, args: PsArgs) -> anyhow::Result<ExitCode> {
    let mut list = Containers::open(root)?.list()?;
    list.reverse(); // newest first, as docker
    let all = args.all || args.last.is_some() || args.latest;
    if !all {
        list.retain(|c| c.is_running());
    }
    for f in &args.filter {
        let mut keep = Vec::new();
        for c in list {
            if matches_filter(&c, f)? {
                keep.push(c);
            }
        }
        list = keep;
    }
    if let Some(n) = args.last {
        list.truncate(n);
    }
    if args.latest {
        list.truncate(1);
    }
    let trunc = !args.no_trunc;
    if args.quiet {
        for c in &list {
            println!(
                "{}",
                if trunc {
                    c.config.short_id()
                } else {
                    &c.config.id
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // docker computes sizes for -s, or when the format shows them.
    let size = args.size || args.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let rows: Vec<Value> = list.iter().map(|c| ps_row(root, c, trunc, size)).collect();
    let mut columns = vec![
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    if args.size {
        columns.push(("SIZE", "Size"));
    }
    print_rows(&rows, args.format.as_deref(), &columns, PS_HEADERS)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" or N)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

pub fn logs(root: &Path, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let c = lookup(root, &args.container)?;
    let nowns = ctrlog::now_nanos();
    let since = match &args.since {
        Some(s) => Some(
            ctrlog::parse_time(s, nowns)
                .ok_or_else(|| anyhow::anyhow!("invalid value for \"since\": {s}"))?,
        ),
        None => None,
    };
    let until = match &args.until {
        Some(s) => Some(
            ctrlog::parse_time(s, nowns)
                .ok_or_else(|| anyhow::anyhow!("invalid value for \"until\": {s}"))?,
        ),
        None => None,
    };
    let path = c.log_path();
    let files = ctrlog::files(&path);
    let mut entries = Vec::new();
    for f in &files[..files.len() - 1] {
        entries.extend(ctrlog::read_from(f, 0).0);
    }
    let (current, offset) = ctrlog::read_from(&path, 0);
    entries.extend(current);
    let keep = |e: &ctrlog::Entry| {
        let t = time::parse_rfc3339_nanos(&e.time).unwrap_or(0);
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
    };
    entries.retain(keep);
    if args.tail != "all" {
        let n: usize = args.tail.parse().unwrap_or(usize::MAX);
        if entries.len() > n {
            entries.drain(..entries.len() - n);
        }
    }
    let print = |e: &ctrlog::Entry| {
        let text = if args.timestamps {
            format!("{} {}", e.time, e.log)
        } else {
            e.log.clone()
        };
        if e.stream == "stderr" {
            let _ = std::io::stderr().write_all(text.as_bytes());
        } else {
            let mut o = std::io::stdout();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        }
    };
    entries.iter().for_each(print);
    if args.follow && until.is_none() {
        let mut offset = offset;
        let mut quiet_after_stop = 0;
        loop {
            let (more, next) = ctrlog::read_from(&path, offset);
            offset = next;
            more.iter().filter(|e| keep(e)).for_each(print);
            let active = c.reload().map(|c| c.is_active()).unwrap_or(false);
            if !active {
                if more.is_empty() {
                    quiet_after_stop += 1;
                    if quiet_after_stop > 1 {
                        break;
                    }
                }
            } else if more.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(required = true)]
    pub command: Vec<String>,
}

pub fn exec(root: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let c = lookup(root, &args.container)?;
    if c.state.status == Status::Paused {
        eprintln!(
            "Error response from daemon: Container {} is paused, unpause the container before exec",
            args.container
        );
        return Ok(ExitCode::from(1));
    }
    if !c.is_running() {
        say(
            &ContainerError::NotRunning(c.config.id.clone()),
            Said::Daemon,
        );
        return Ok(ExitCode::from(1));
    }
    let mut env = c.config.env.clone();
    for e in &args.env {
        let e = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        let key = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    let spec = rbuild_sandbox::ExecSpec {
        pid: c.state.pid,
        process: rbuild_sandbox::Process {
            args: args.command.clone(),
            env,
            cwd: args
                .workdir
                .clone()
                .unwrap_or_else(|| c.config.working_dir.clone()),
            user: args.user.clone().unwrap_or_else(|| c.config.user.clone()),
            tty: args.tty && !args.detach,
            groups: rbuild_sandbox::SupplementaryGroups::WithPrimary,
        },
    };
    let null = rbuild_sandbox::dev_null()?;
    let stdio = if args.detach {
        rbuild_sandbox::SandboxStdio {
            stdin: Some(null.try_clone()?),
            stdout: Some(null.try_clone()?),
            stderr: Some(null),
        }
    } else if args.interactive {
        rbuild_sandbox::SandboxStdio::default()
    } else {
        rbuild_sandbox::SandboxStdio {
            stdin: Some(null),
            ..Default::default()
        }
    };
    let sb = match rbuild_sandbox::exec(&spec, stdio) {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(126));
        }
    };
    if args.detach {
        std::mem::forget(sb);
        return Ok(ExitCode::SUCCESS);
    }
    match sb.wait() {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("Error: {e}");
            for s in rbuild_oci::error_chain::sources(&e) {
                eprintln!("  caused by: {s}");
            }
            Ok(ExitCode::from(e.exit_code() as u8))
        }
    }
}

/// Waits until the container's monitor is gone (or `timeout`).
fn wait_inactive(c: &Container, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match c.reload() {
            Ok(now) if now.is_active() => {}
            _ => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops a container: its stop signal, then SIGKILL after `timeout`.
fn stop_container(c: &Container, timeout: Option<u64>) -> Result<(), ContainerError> {
    if !c.is_active() {
        return Ok(());
    }
    std::fs::write(c.stop_marker(), b"").map_err(|e| ContainerError::Io {
        step: "write",
        path: c.stop_marker(),
        source: e,
    })?;
    if c.is_running() {
        let was_paused = c.state.status == Status::Paused;
        let sig = parse_signal(&c.config.stop_signal).unwrap_or(libc::SIGTERM);
        let secs = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if !was_paused {
            c.signal(sig)?;
        }
        if was_paused || !wait_inactive(c, Duration::from_secs(secs)) {
            if let Ok(now) = c.reload() {
                if now.is_running() {
                    now.signal(libc::SIGKILL)?;
                    if was_paused {
                        let _ = now.set_frozen(false);
                    }
                }
            }
        }
    }
    wait_inactive(c, Duration::from_secs(30));
    Ok(())
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u64>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// How a command of several containers reports (docker's client).
#[derive(Debug, Clone, Copy, Default)]
struct Each {
    /// An unknown container is reported but fails nothing (`rm -f`).
    missing_ok: bool,
    /// Whose words an unknown container is in (`rm`: the client's).
    missing: Said,
    /// Every error as `CONTEXT: NAME: error` (`Cannot kill container`).
    context: Option<&'static str>,
    /// A closing line naming the failed ones (`Error: failed to start
    /// containers: a, b`).
    summary: Option<&'static str>,
}

/// Runs `f` on each named container, printing the name as given (as
/// docker does) or the error in the daemon's words; exits 1 when any
/// failed.
fn for_each(
    root: &Path,
    names: &[String],
    f: impl FnMut(&Container) -> Result<(), ContainerError>,
) -> anyhow::Result<ExitCode> {
    for_each_as(root, names, Each::default(), f)
}

/// [`for_each`] reporting as `each` says.
fn for_each_as(
    root: &Path,
    names: &[String],
    each: Each,
    mut f: impl FnMut(&Container) -> Result<(), ContainerError>,
) -> anyhow::Result<ExitCode> {
    each_printing(root, names, each, |name, c| f(c).map(|()| name.to_string()))
}

/// [`for_each_as`] printing what `f` returns.
fn each_printing(
    root: &Path,
    names: &[String],
    each: Each,
    mut f: impl FnMut(&str, &Container) -> Result<String, ContainerError>,
) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(root)?;
    let mut failed = Vec::new();
    for name in names {
        match containers.get(name).and_then(|c| f(name, &c)) {
            Ok(out) => println!("{out}"),
            Err(e) => {
                let missing = matches!(e, ContainerError::NoSuchContainer(_));
                let said = if missing { each.missing } else { Said::Daemon };
                match each.context {
                    Some(context) => say(&format!("{context}: {name}: {e}"), said),
                    None => say(&e, said),
                }
                if !(missing && each.missing_ok) {
                    failed.push(name.as_str());
                }
            }
        }
    }
    if let (Some(summary), false) = (each.summary, failed.is_empty()) {
        eprintln!("Error: {summary}: {}", failed.join(", "));
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn stop(root: &Path, args: StopArgs) -> anyhow::Result<ExitCode> {
    for_each(root, &args.containers, |c| {
        let mut c = c.clone();
        if let Some(s) = &args.signal {
            c.config.stop_signal = s.clone();
        }
        stop_container(&c, args.time)?;
        ctr::events::record(
            root,
            "container",
            "stop",
            &c.config.id,
            &[("name", &c.config.name)],
        );
        Ok(())
    })
}

pub fn restart(root: &Path, args: StopArgs) -> anyhow::Result<ExitCode> {
    for_each(root, &args.containers, |c| {
        stop_container(c, args.time)?;
        let c = c.reload()?;
        ctr::monitor::start(root, &c)?;
        ctr::events::record(
            root,
            "container",
            "restart",
            &c.config.id,
            &[("name", &c.config.name)],
        );
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn kill(root: &Path, args: KillArgs) -> anyhow::Result<ExitCode> {
    let Some(sig) = parse_signal(&args.signal) else {
        eprintln!("Error: invalid signal: {}", args.signal);
        return Ok(ExitCode::from(1));
    };
    let each = Each {
        context: Some("Cannot kill container"),
        ..Each::default()
    };
    for_each_as(root, &args.containers, each, |c| {
        if !c.is_running() {
            return Err(ContainerError::NotRunning(c.config.id.clone()));
        }
        let _ = std::fs::write(c.stop_marker(), b"");
        c.signal(sig)?;
        if sig == libc::SIGKILL {
            if c.state.status == Status::Paused {
                let _ = c.set_frozen(false);
            }
            wait_inactive(c, Duration::from_secs(10));
        }
        ctr::events::record(
            root,
            "container",
            "kill",
            &c.config.id,
            &[("name", &c.config.name), ("signal", &sig.to_string())],
        );
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn pause(root: &Path, args: NamesArgs, frozen: bool) -> anyhow::Result<ExitCode> {
    for_each(root, &args.containers, |c| {
        let paused = c.state.status == Status::Paused;
        match (frozen, paused) {
            (false, false) => {
                return Err(ContainerError::State(format!(
                    "Container {} is not paused",
                    c.config.id
                )));
            }
            (true, true) => {
                return Err(ContainerError::State(format!(
                    "Container {} is already paused",
                    c.config.id
                )));
            }
            (true, false) if !c.is_running() => {
                return Err(ContainerError::NotRunning(c.config.id.clone()));
            }
            _ => {}
        }
        c.set_frozen(frozen)?;
        let action = if frozen { "pause" } else { "unpause" };
        ctr::events::record(
            root,
            "container",
            action,
            &c.config.id,
            &[("name", &c.config.name)],
        );
        Ok(())
    })
}

pub fn wait(root: &Path, args: NamesArgs) -> anyhow::Result<ExitCode> {
    each_printing(root, &args.containers, Each::default(), |_, c| {
        // docker: a container not started yet is waited for too.
        while c.reload().is_ok_and(|c| c.state.status == Status::Created) {
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_inactive(c, Duration::from_secs(u64::MAX / 4));
        let code = match c.reload() {
            Ok(c) => c.state.exit_code,
            Err(_) => c.exit_code_when_gone(),
        };
        Ok(code.to_string())
    })
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn remove_container(
    root: &Path,
    c: &Container,
    force: bool,
    volumes: bool,
) -> Result<(), ContainerError> {
    if c.is_active() {
        if !force {
            return Err(ContainerError::Running(c.config.id.clone()));
        }
        let _ = std::fs::write(c.stop_marker(), b"");
        if c.is_running() {
            c.signal(libc::SIGKILL)?;
            if c.state.status == Status::Paused {
                let _ = c.set_frozen(false);
            }
        }
        wait_inactive(c, Duration::from_secs(30));
    }
    ctr::monitor::remove(root, c, volumes)
}

pub fn rm(root: &Path, args: RmArgs) -> anyhow::Result<ExitCode> {
    let each = Each {
        missing_ok: args.force,
        missing: Said::Client,
        ..Each::default()
    };
    each_printing(root, &args.containers, each, |name, c| {
        remove_container(root, c, args.force, args.volumes).map(|()| name.to_string())
    })
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub fn rename(root: &Path, args: RenameArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(root)?;
    let r = (|| {
        let _lock = containers.lock()?;
        let c = containers.get(&args.container)?;
        containers.check_name(&args.new_name, Some(&c.config.id))?;
        let mut cfg = c.config.clone();
        let old = std::mem::replace(&mut cfg.name, args.new_name.clone());
        c.write_config(&cfg)?;
        ctr::events::record(
            root,
            "container",
            "rename",
            &cfg.id,
            &[("name", &cfg.name), ("oldName", &old)],
        );
        Ok::<(), ContainerError>(())
    })();
    Ok(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e {
                ContainerError::NameInUse { .. } => say(
                    &format!("Error when allocating new name: {e}"),
                    Said::Daemon,
                ),
                _ => say(&e, Said::Daemon),
            }
            eprintln!("Error: failed to rename container named {}", args.container);
            ExitCode::from(1)
        }
    })
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options (accepted for compatibility)
    pub ps_options: Vec<String>,
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64
}

pub fn top(root: &Path, args: TopArgs) -> anyhow::Result<ExitCode> {
    let c = lookup_as(root, &args.container, Said::Daemon)?;
    if !c.is_running() {
        say(
            &ContainerError::NotRunning(c.config.id.clone()),
            Said::Daemon,
        );
        return Ok(ExitCode::from(1));
    }
    let hz = clock_ticks();
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        })
        .unwrap_or(0);
    let mut t = Table::new(&["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    for p in ctr::fs_ops::processes(&c) {
        let start = boot + (p.start_ticks / hz) as i64;
        let stime = time::rfc3339(start);
        let cpu = p.cpu_ticks / hz;
        t.row(vec![
            if p.uid == 0 {
                "root".into()
            } else {
                p.uid.to_string()
            },
            p.pid.to_string(),
            p.ppid.to_string(),
            "0".into(),
            stime[11..16].to_string(),
            "?".into(),
            format!("{:02}:{:02}:{:02}", cpu / 3600, cpu / 60 % 60, cpu % 60),
            p.cmd,
        ]);
    }
    print!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}

pub fn diff(root: &Path, args: NamesArgs) -> anyhow::Result<ExitCode> {
    let c = lookup_as(root, &args.containers[0], Said::Daemon)?;
    let lowers = ctr::fs_ops::lowers(root, &c.config)?;
    for ch in ctr::fs_ops::diff(&c, &lowers) {
        println!("{} {}", ch.kind, ch.path);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (accepted; owners are kept)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol links in SRC_PATH (accepted)
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (tar to stdout)
    pub dest: String,
}

fn split_container_path(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(src)
        .arg(dest)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp -a {} {} failed",
            src.display(),
            dest.display()
        )))
    }
}

pub fn cp(root: &Path, args: CpArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(root)?;
    match (
        split_container_path(&args.src),
        split_container_path(&args.dest),
    ) {
        (Some((name, path)), None) => {
            let Ok(c) = containers.get(name) else {
                eprintln!("Error: No such container:path: {}", args.src);
                return Ok(ExitCode::from(1));
            };
            let lowers = ctr::fs_ops::lowers(root, &c.config)?;
            let store = rbuild_store::Store::open(root)?;
            let tmp = tempfile::tempdir_in(store.tmp_dir())?;
            let base = Path::new(path.trim_end_matches('/'))
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "root".into());
            let staged = tmp.path().join(&base);
            if !ctr::fs_ops::copy_out(&c, &lowers, path, &staged)? {
                eprintln!(
                    "Error response from daemon: Could not find the file {path} in container {name}"
                );
                return Ok(ExitCode::from(1));
            }
            if args.dest == "-" {
                let mut b = tar::Builder::new(std::io::stdout().lock());
                b.follow_symlinks(false);
                if staged.is_dir() {
                    b.append_dir_all(&base, &staged)?;
                } else {
                    b.append_path_with_name(&staged, &base)?;
                }
                b.finish()?;
            } else {
                let dest = Path::new(&args.dest);
                let target = if dest.is_dir() {
                    dest.join(&base)
                } else {
                    dest.to_path_buf()
                };
                if staged.is_dir() && target.is_dir() {
                    copy_tree(&staged.join("."), &target)?;
                } else {
                    copy_tree(&staged, &target)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        (None, Some((name, path))) => {
            let Ok(c) = containers.get(name) else {
                eprintln!("Error: No such container:path: {}", args.dest);
                return Ok(ExitCode::from(1));
            };
            let lowers = ctr::fs_ops::lowers(root, &c.config)?;
            if args.src == "-" {
                let dir = ctr::fs_ops::copy_in_target(&c, &lowers, path).map_err(reported)?;
                let mut a = tar::Archive::new(std::io::stdin().lock());
                a.set_preserve_permissions(true);
                a.set_preserve_ownerships(true);
                a.unpack(&dir)?;
                return Ok(ExitCode::SUCCESS);
            }
            let src = Path::new(&args.src);
            if !src.exists() {
                eprintln!("Error: lstat {}: no such file or directory", src.display());
                return Ok(ExitCode::from(1));
            }
            // DEST an existing dir: copy into it; else DEST is the new name.
            let parent = Path::new(path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            let (dir_path, name_in) = match ctr::fs_ops::copy_in_target(&c, &lowers, path) {
                Ok(d) if d.is_dir() => (d, src.file_name().map(|n| n.to_os_string())),
                _ => (
                    ctr::fs_ops::copy_in_target(&c, &lowers, &parent).map_err(reported)?,
                    Path::new(path).file_name().map(|n| n.to_os_string()),
                ),
            };
            let target = dir_path.join(name_in.unwrap_or_default());
            if src.is_dir() && target.is_dir() {
                copy_tree(&src.join("."), &target)?;
            } else {
                copy_tree(src, &target)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!(
                "Error: copying between containers or between host paths is not supported\nhint: one of SRC and DEST must be CONTAINER:PATH"
            );
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit (accepted)
    #[arg(short, long, default_value_t = true)]
    pub pause: bool,
    pub container: String,
    pub reference: Option<String>,
}

pub fn commit(root: &Path, args: CommitArgs) -> anyhow::Result<ExitCode> {
    let c = lookup_as(root, &args.container, Said::Daemon)?;
    let tags = args
        .reference
        .as_deref()
        .map(rbuild_oci::reference::ImageRef::parse)
        .transpose()?
        .into_iter()
        .collect();
    let opts = ctr::fs_ops::CommitOptions {
        changes: args.change,
        message: args.message,
        author: args.author,
        tags,
    };
    match ctr::fs_ops::commit(root, &c, &opts) {
        Ok(id) => {
            ctr::events::record(
                root,
                "container",
                "commit",
                &c.config.id,
                &[("name", &c.config.name)],
            );
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

/// `export CONTAINER`: the container's filesystem as a tar.
pub fn export(root: &Path, c: &Container, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut out = super::output::Output::open(output)?;
    if let Err(e) = ctr::fs_ops::export(root, c, &mut out) {
        return Ok(fail(&e));
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation (always the case)
    #[arg(short, long)]
    pub force: bool,
}

/// Removes every stopped container; returns (ids, bytes).
pub fn prune_containers(root: &Path) -> anyhow::Result<(Vec<String>, u64)> {
    let mut ids = Vec::new();
    let mut bytes = 0;
    for c in Containers::open(root)?.list()? {
        if !c.is_active() {
            bytes += rbuild_store::tree_size(&c.upper());
            remove_container(root, &c, false, false)?;
            ids.push(c.config.id);
        }
    }
    Ok((ids, bytes))
}

pub fn prune(root: &Path, _args: PruneArgs) -> anyhow::Result<ExitCode> {
    let (ids, bytes) = prune_containers(root)?;
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Pretty-print using a Go template, or `json`
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

pub fn stats(root: &Path, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(root)?;
    let list: Vec<Container> = if args.containers.is_empty() {
        containers
            .list()?
            .into_iter()
            .filter(|c| args.all || c.is_running())
            .collect()
    } else {
        let mut v = Vec::new();
        for n in &args.containers {
            v.push(lookup_as(root, n, Said::Daemon)?);
        }
        v
    };
    let total_mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0)
        * 1024;
    loop {
        let first: Vec<_> = list
            .iter()
            .map(|c| (ctr::fs_ops::stats(c), Instant::now()))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let mut rows = Vec::new();
        for (c, (s0, t0)) in list.iter().zip(first) {
            let s = ctr::fs_ops::stats(c);
            let dt = t0.elapsed().as_nanos() as f64;
            let cpu = if dt > 0.0 {
                (s.cpu_nanos.saturating_sub(s0.cpu_nanos)) as f64 / dt * 100.0
            } else {
                0.0
            };
            let limit = if s.memory_limit == 0 || s.memory_limit > total_mem {
                total_mem
            } else {
                s.memory_limit
            };
            let memp = if limit > 0 {
                s.memory as f64 / limit as f64 * 100.0
            } else {
                0.0
            };
            let _ = cpus;
            // The namespace's interfaces but lo, as docker's (none of
            // the host's for --network host).
            let (rx, tx) = (c.is_running() && c.config.host.network_mode != "host")
                .then(|| rbuild_net::net_io(c.state.pid))
                .flatten()
                .unwrap_or((0, 0));
            let net_io = format!("{} / {}", human_size(rx), human_size(tx));
            rows.push(json!({
                "ID": c.config.short_id(),
                "Container": c.config.short_id(),
                "Name": c.config.name,
                "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", binary_size(s.memory), binary_size(limit)),
                "MemPerc": format!("{memp:.2}%"),
                "NetIO": net_io,
                "BlockIO": format!("{} / {}", human_size(s.block_read), human_size(s.block_write)),
                "PIDs": s.pids.to_string(),
            }));
        }
        print_rows(
            &rows,
            args.format.as_deref(),
            &[
                ("CONTAINER ID", "ID"),
                ("NAME", "Name"),
                ("CPU %", "CPUPerc"),
                ("MEM USAGE / LIMIT", "MemUsage"),
                ("MEM %", "MemPerc"),
                ("NET I/O", "NetIO"),
                ("BLOCK I/O", "BlockIO"),
                ("PIDS", "PIDs"),
            ],
            &[
                ("ID", "CONTAINER ID"),
                ("Container", "CONTAINER"),
                ("Name", "NAME"),
                ("CPUPerc", "CPU %"),
                ("MemUsage", "MEM USAGE / LIMIT"),
                ("MemPerc", "MEM %"),
                ("NetIO", "NET I/O"),
                ("BlockIO", "BLOCK I/O"),
                ("PIDs", "PIDS"),
            ],
        )?;
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn binary_size(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        return format!("{b}B");
    }
    // Go's %.4g: four significant digits.
    let decimals = 3usize.saturating_sub(v.log10().floor().max(0.0) as usize);
    let n = format!("{v:.decimals$}");
    let n = if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        n
    };
    format!("{n}{}", units[i])
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Tune container pids limit
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn update(root: &Path, args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let memory = match &args.memory {
        Some(m) => match parse_size(m) {
            Some(v) => Some(v),
            None => {
                eprintln!("Error: invalid memory {m:?}");
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    let restart = match &args.restart {
        Some(r) => match RestartPolicy::parse(r) {
            Some(p) => Some(p),
            None => {
                eprintln!("Error: invalid restart policy {r:?}");
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    for_each(root, &args.containers, |c| {
        ctr::fs_ops::update_limits(c, memory, args.cpus, args.pids_limit)?;
        let mut cfg = c.config.clone();
        cfg.host.memory = memory.or(cfg.host.memory);
        cfg.host.cpus = args.cpus.or(cfg.host.cpus);
        cfg.host.pids_limit = args.pids_limit.or(cfg.host.pids_limit);
        if let Some(r) = &restart {
            cfg.host.restart = r.clone();
        }
        c.write_config(&cfg)
    })
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
}

pub fn port(root: &Path, args: PortArgs) -> anyhow::Result<ExitCode> {
    let c = lookup(root, &args.container)?;
    // docker's lines (`80/tcp -> 127.0.0.1:8080`) of the ports bound now.
    if c.is_running() {
        if let Some(rec) = ctr::monitor::network_record(c.dir()) {
            for (ctr_port, ip, port) in &rec.ports {
                println!("{ctr_port} -> {ip}:{port}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output (type=container|image|volume|network, event=,
    /// container=, image=, volume=, network=, label=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format the output using a Go template, or `json`
    #[arg(long)]
    pub format: Option<String>,
}

pub fn events(root: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let nowns = ctrlog::now_nanos();
    let time_arg = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i128>> {
        v.as_deref()
            .map(|s| {
                ctrlog::parse_time(s, nowns)
                    .ok_or_else(|| anyhow::anyhow!("invalid value for \"{flag}\": {s:?}"))
            })
            .transpose()
    };
    let since = time_arg("since", &args.since)?;
    let until = time_arg("until", &args.until)?;
    let template = match args.format.as_deref() {
        None | Some("json") => None,
        Some(t) => Some(Template::parse(t)?),
    };
    // docker: values of one key are alternatives, different keys all hold.
    let mut filters: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in &args.filter {
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        if !matches!(
            k,
            "type" | "event" | "action" | "container" | "image" | "volume" | "network" | "label"
        ) {
            eprintln!("Error response from daemon: Invalid filter '{k}'");
            return Ok(ExitCode::from(1));
        }
        filters.entry(k).or_default().push(v);
    }
    let keep = |e: &ctr::events::Event| {
        if since.is_some_and(|s| e.time_nano < s) || until.is_some_and(|u| e.time_nano > u) {
            return false;
        }
        let names = |v: &str| {
            e.actor.id.starts_with(v) || e.actor.attributes.get("name").is_some_and(|n| n == v)
        };
        filters.iter().all(|(k, vs)| {
            vs.iter().any(|v| match *k {
                "type" => e.kind == *v,
                "event" | "action" => e.action == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.actor.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.actor.attributes.contains_key(*v),
                },
                // A container event names its image too.
                "image" => {
                    (e.kind == "image" && names(v))
                        || (e.kind == "container"
                            && e.actor.attributes.get("image").is_some_and(|i| i == v))
                }
                kind => e.kind == kind && names(v),
            })
        })
    };
    let print = |e: &ctr::events::Event| -> anyhow::Result<()> {
        let json = e.docker_json();
        match (&template, args.format.as_deref()) {
            (_, Some("json")) => println!("{}", serde_json::to_string(&json)?),
            (Some(t), _) => {
                // Templates see Go's field names.
                let data = json!({
                    "Status": json.get("status"),
                    "ID": json.get("id"),
                    "From": json.get("from"),
                    "Type": e.kind,
                    "Action": e.action,
                    "Actor": json["Actor"],
                    "Scope": "local",
                    "Time": json["time"],
                    "TimeNano": json["timeNano"],
                });
                println!("{}", t.render(&data)?)
            }
            _ => println!("{}", e.line()),
        }
        std::io::stdout().flush()?;
        Ok(())
    };
    // Without --since and --until docker streams only new events.
    let start = if since.is_none() && until.is_none() {
        std::fs::metadata(ctr::events::path(root))
            .map(|m| m.len())
            .unwrap_or(0)
    } else {
        0
    };
    let (list, mut offset) = ctr::events::read_from(root, start);
    for e in list.iter().filter(|e| keep(e)) {
        print(e)?;
    }
    if until.is_some_and(|u| u <= ctrlog::now_nanos()) {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (more, next) = ctr::events::read_from(root, offset);
        offset = next;
        for e in more.iter().filter(|e| keep(e)) {
            print(e)?;
        }
        if until.is_some_and(|u| u <= ctrlog::now_nanos()) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// docker's container inspect object.
pub fn inspect_json(root: &Path, c: &Container) -> Value {
    let cfg = &c.config;
    let st = &c.state;
    let net = c
        .is_running()
        .then(|| ctr::monitor::network_record(c.dir()))
        .flatten();
    let health = st.health.as_ref().map(|h| {
        json!({
            "Status": h.status,
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|l| json!({"Start": l.start, "End": l.end, "ExitCode": l.exit_code, "Output": l.output})).collect::<Vec<_>>(),
        })
    });
    let mut state = json!({
        "Status": st.status.as_str(),
        "Running": matches!(st.status, Status::Running | Status::Paused),
        "Paused": st.status == Status::Paused,
        "Restarting": st.status == Status::Restarting,
        "OOMKilled": st.oom_killed,
        "Dead": st.status == Status::Dead,
        "Pid": st.pid,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": st.started_at,
        "FinishedAt": st.finished_at,
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let ports: serde_json::Map<String, Value> = cfg
        .host
        .port_bindings
        .iter()
        .map(|p| {
            let (host, ctr_port) = p.rsplit_once(':').unwrap_or(("", p));
            let (ip, hp) = host.rsplit_once(':').unwrap_or(("", host));
            let key = if ctr_port.contains('/') {
                ctr_port.to_string()
            } else {
                format!("{ctr_port}/tcp")
            };
            (key, json!([{"HostIp": ip, "HostPort": hp}]))
        })
        .collect();
    let binds: Vec<String> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind == "bind" || (m.kind == "volume" && !m.anonymous))
        .map(|m| {
            let src = if m.name.is_empty() {
                m.source.display().to_string()
            } else {
                m.name.clone()
            };
            format!("{src}:{}{}", m.destination, if m.rw { "" } else { ":ro" })
        })
        .collect();
    let mut log_config = serde_json::Map::new();
    if let Some(size) = cfg.host.log_max_size {
        log_config.insert("max-size".into(), json!(size.to_string()));
    }
    if cfg.host.log_max_file > 1 {
        log_config.insert("max-file".into(), json!(cfg.host.log_max_file.to_string()));
    }
    // docker's HostConfig: every key, the ones rbuild has no use for at
    // docker's defaults.
    let mut host = json!({
        "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
        "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": log_config},
        "NetworkMode": cfg.host.network_mode,
        "PortBindings": ports,
        "RestartPolicy": {"Name": cfg.host.restart.name, "MaximumRetryCount": cfg.host.restart.maximum_retry_count},
        "AutoRemove": cfg.host.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": null,
        "CapAdd": null,
        "CapDrop": null,
        "CgroupnsMode": if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "private" } else { "host" },
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": null,
        "GroupAdd": null,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": null,
        "OomScoreAdj": 0,
        "PidMode": "",
        "Privileged": false,
        "PublishAllPorts": cfg.host.publish_all_ports,
        "ReadonlyRootfs": cfg.host.read_only,
        "SecurityOpt": null,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 67108864,
    });
    let resources = json!({
        "Runtime": "rbuild",
        "ConsoleSize": [0, 0],
        "Isolation": "",
        "CpuShares": 0,
        "Memory": cfg.host.memory.unwrap_or(0),
        "NanoCpus": cfg.host.cpus.map(|c| (c * 1e9) as u64).unwrap_or(0),
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": null,
        "BlkioDeviceWriteBps": null,
        "BlkioDeviceReadIOps": null,
        "BlkioDeviceWriteIOps": null,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "Devices": [],
        "DeviceCgroupRules": null,
        "DeviceRequests": null,
        "KernelMemory": 0,
        "KernelMemoryTCP": 0,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": null,
        "OomKillDisable": false,
        "PidsLimit": cfg.host.pids_limit,
        "Ulimits": null,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
        "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    if let (Some(h), Value::Object(r)) = (host.as_object_mut(), resources) {
        h.extend(r);
    }
    let tmpfs: serde_json::Map<String, Value> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind == "tmpfs")
        .map(|m| (m.destination.clone(), json!("")))
        .collect();
    if !tmpfs.is_empty() {
        host["Tmpfs"] = Value::Object(tmpfs);
    }
    if cfg.host.init {
        host["Init"] = json!(true);
    }
    // docker's Mounts: volumes and binds (not tmpfs); `Name`/`Driver` only
    // for volumes, `Mode` "z" for a named one.
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind != "tmpfs")
        .map(|m| {
            let mut v = json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": if m.kind == "volume" && !m.anonymous { "z" } else { "" },
                "RW": m.rw,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            });
            if m.kind == "volume" {
                v["Name"] = json!(m.name);
                v["Driver"] = json!("local");
            }
            v
        })
        .collect();
    let mut exposed: BTreeMap<String, Value> = cfg
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    for key in ports.keys() {
        exposed.insert(key.clone(), json!({}));
    }
    let volumes: BTreeMap<String, Value> = cfg
        .image_volumes
        .iter()
        .chain(
            cfg.mounts
                .iter()
                .filter(|m| m.anonymous)
                .map(|m| &m.destination),
        )
        .map(|p| (p.clone(), json!({})))
        .collect();
    let mut config = json!({
        "Hostname": cfg.hostname,
        "Domainname": "",
        "User": cfg.user,
        "AttachStdin": cfg.stdin_once,
        "AttachStdout": cfg.attach,
        "AttachStderr": cfg.attach,
        "Tty": cfg.tty,
        "OpenStdin": cfg.open_stdin,
        "StdinOnce": cfg.stdin_once,
        "Env": if cfg.env.is_empty() { Value::Null } else { json!(cfg.env) },
        "Cmd": if cfg.cmd.is_empty() { Value::Null } else { json!(cfg.cmd) },
        "Image": cfg.image,
        "Volumes": if volumes.is_empty() { Value::Null } else { json!(volumes) },
        "WorkingDir": cfg.working_dir,
        "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
        "OnBuild": null,
        "Labels": cfg.labels,
    });
    if !exposed.is_empty() {
        config["ExposedPorts"] = json!(exposed);
    }
    if let Some(h) = &cfg.healthcheck {
        config["Healthcheck"] = json!({"Test": h.test, "Interval": h.interval, "Timeout": h.timeout, "StartPeriod": h.start_period, "Retries": h.retries});
    }
    if cfg.stop_signal != "SIGTERM" {
        config["StopSignal"] = json!(cfg.stop_signal);
    }
    if let Some(t) = cfg.stop_timeout {
        config["StopTimeout"] = json!(t);
    }
    json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": cfg.argv().first().cloned().unwrap_or_default(),
        "Args": cfg.argv().iter().skip(1).cloned().collect::<Vec<_>>(),
        "State": state,
        "Image": cfg.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": c.log_path(),
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host,
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": {
            "Ports": Value::Object(ports_for_settings(cfg, net.as_ref())),
            "SandboxKey": if c.is_running() { format!("/proc/{}/ns/net", st.pid) } else { String::new() },
            "IPAddress": net.as_ref().map(|n| n.ip.clone()).unwrap_or_default(),
            "Networks": ctr::monitor::inspect_networks(c),
        },
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": c.upper(), "WorkDir": c.work(), "LowerDir": ctr::fs_ops::lowers(root, cfg).unwrap_or_default().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")}},
    })
}

fn ports_for_settings(
    cfg: &ContainerConfig,
    net: Option<&ctr::monitor::NetworkRecord>,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for p in &cfg.exposed_ports {
        m.insert(p.clone(), Value::Null);
    }
    // Running on a network: the ports actually bound (-P's random ones).
    if let Some(net) = net {
        for (ctr_port, ip, port) in &net.ports {
            m.insert(
                ctr_port.clone(),
                json!([{"HostIp": ip, "HostPort": port.to_string()}]),
            );
        }
        return m;
    }
    for p in &cfg.host.port_bindings {
        let (host, ctr_port) = p.rsplit_once(':').unwrap_or(("", p));
        let (ip, hp) = host.rsplit_once(':').unwrap_or(("0.0.0.0", host));
        let key = if ctr_port.contains('/') {
            ctr_port.to_string()
        } else {
            format!("{ctr_port}/tcp")
        };
        m.insert(key, json!([{"HostIp": ip, "HostPort": hp}]));
    }
    m
}

// ---- volumes ----

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Specify volume driver name (only "local")
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (dangling=true|false, name=, label=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a Go template, or `json`
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeInspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes (accepted)
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation (always the case)
    #[arg(short, long)]
    pub force: bool,
}

fn volume_json(v: &volume::Volume) -> Value {
    json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

/// Removes unused volumes (anonymous only unless `all`); (names, bytes).
pub fn prune_volumes(root: &Path, all: bool) -> anyhow::Result<(Vec<String>, u64)> {
    let mut names = Vec::new();
    let mut bytes = 0;
    for v in volume::list(root)? {
        if (all || v.anonymous) && volume::users(root, &v.name)?.is_empty() {
            let size = volume::size(&v);
            if volume::remove(root, &v.name).is_ok() {
                bytes += size;
                names.push(v.name);
            }
        }
    }
    Ok((names, bytes))
}

pub fn volume_cmd(root: &Path, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                eprintln!("Error: plugin \"{}\" not found", a.driver);
                return Ok(ExitCode::from(1));
            }
            let labels = a
                .label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            match volume::create(root, a.name.as_deref(), labels) {
                Ok(v) => {
                    println!("{}", v.name);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
        VolumeCommand::Ls(a) => {
            let mut list = volume::list(root)?;
            for f in &a.filter {
                let (k, v) = f.split_once('=').unwrap_or((f, ""));
                let mut keep = Vec::new();
                for vol in list {
                    let ok = match k {
                        "dangling" => {
                            volume::users(root, &vol.name)?.is_empty() == (v == "true" || v == "1")
                        }
                        "name" => vol.name.contains(v),
                        "label" => match v.split_once('=') {
                            Some((lk, lv)) => vol.labels.get(lk).is_some_and(|x| x == lv),
                            None => vol.labels.contains_key(v),
                        },
                        _ => anyhow::bail!("invalid filter '{k}'"),
                    };
                    if ok {
                        keep.push(vol);
                    }
                }
                list = keep;
            }
            if a.quiet {
                for v in &list {
                    println!("{}", v.name);
                }
            } else {
                let rows: Vec<Value> = list.iter().map(volume_json).collect();
                print_rows(
                    &rows,
                    a.format.as_deref(),
                    &[("DRIVER", "Driver"), ("VOLUME NAME", "Name")],
                    &[
                        ("Name", "VOLUME NAME"),
                        ("Driver", "DRIVER"),
                        ("Scope", "SCOPE"),
                        ("Mountpoint", "MOUNTPOINT"),
                        ("Labels", "LABELS"),
                        ("CreatedAt", "CREATED AT"),
                    ],
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Inspect(a) => {
            let t = a
                .format
                .as_deref()
                .filter(|f| *f != "json")
                .map(Template::parse)
                .transpose()?;
            let mut out = Vec::new();
            let mut failed = false;
            for n in &a.volumes {
                match volume::get(root, n) {
                    Ok(v) => out.push(volume_json(&v)),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed = true;
                    }
                }
            }
            match t {
                Some(t) => {
                    for v in &out {
                        println!("{}", t.render(v)?);
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out)?),
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        VolumeCommand::Rm(a) => {
            let mut failed = false;
            for n in &a.volumes {
                match volume::remove(root, n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        let missing = matches!(e, ContainerError::NoSuchVolume(_));
                        say(&e, if missing { Said::Client } else { Said::Daemon });
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        VolumeCommand::Prune(a) => {
            let (names, bytes) = prune_volumes(root, a.all)?;
            if !names.is_empty() {
                println!("Deleted Volumes:");
                for n in &names {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Images (manifest digests) that containers use, with a container id:
/// roots for rmi/prune.
pub fn images_in_use(root: &Path) -> Vec<(String, String)> {
    Containers::open(root)
        .and_then(|c| c.list())
        .map(|l| {
            l.into_iter()
                .flat_map(|c| {
                    [
                        (c.config.manifest.clone(), c.config.id.clone()),
                        (c.config.image_id.clone(), c.config.id),
                    ]
                })
                .collect()
        })
        .unwrap_or_default()
}
