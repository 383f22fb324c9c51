//! Rootless networking through pasta (Debian's `passt` package), as
//! podman does: pasta creates a user and a network namespace, gives the
//! namespace a tap interface with the host's address and routes, and
//! carries the namespace's traffic over ordinary sockets of the host
//! (so outbound access needs no privilege), and binds published ports on
//! the host itself (`-t`/`-u`), splicing connections into the namespace.
//!
//! pasta runs in the foreground as a child of the holder (the monitor or
//! a foreground `rbuild run`). The namespaces are kept alive by a
//! placeholder command pasta spawns inside them (`cat`, reading a pipe
//! whose only writer is the holder): when the holder detaches or is
//! killed, `cat` reads end-of-file and exits, and pasta quits with it, so
//! nothing outlives the holder. The sandbox joins the user namespace that
//! owns the network namespace (rootless, a sibling user namespace could
//! not join it), so in such a container only the user is mapped (to
//! root).
//!
//! pasta's own port-forwarding defaults (`auto`: every port the namespace
//! listens on) would publish what docker does not: every direction is set
//! explicitly, `none` where nothing is published, and `--no-map-gw` keeps
//! the host's loopback services out of reach, as on docker's bridge.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::NetError;
use crate::attach::PublishedPort;
use crate::port::{PortSpec, Protocol};

/// The program pasta runs; its name in errors and hints.
pub const PASTA: &str = "pasta";

/// The name rootless containers' network goes by (podman's).
pub const PASTA_NETWORK: &str = "pasta";

/// How long pasta may take to set the namespace up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// pasta's arguments for `ports` (bound host addresses already chosen):
/// one `-t`/`-u` per port, `none` for a direction with nothing in it.
pub(crate) fn pasta_args(ports: &[PublishedPort], pidfile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config-net",
        "--quiet",
        "--foreground",
        "--no-map-gw",
        "-T",
        "none",
        "-U",
        "none",
        "--pid",
    ]
    .map(String::from)
    .to_vec();
    args.push(pidfile.display().to_string());
    for (flag, proto) in [("-t", Protocol::Tcp), ("-u", Protocol::Udp)] {
        let mine: Vec<&PublishedPort> = ports.iter().filter(|p| p.spec.protocol == proto).collect();
        if mine.is_empty() {
            args.extend([flag.to_string(), "none".to_string()]);
        }
        for p in mine {
            let addr = if p.spec.host_ip.is_some() {
                format!("{}/", p.host.ip())
            } else {
                String::new()
            };
            args.push(flag.to_string());
            args.push(format!("{addr}{}:{}", p.host.port(), p.spec.container_port));
        }
    }
    args
}

/// A container's network through pasta; dropping it stops pasta.
#[derive(Debug)]
pub(crate) struct Pasta {
    child: Option<Child>,
    /// The write end of the placeholder's stdin: closing it ends it.
    keep: Option<OwnedFd>,
    /// The placeholder's pid: its network namespace is the container's.
    holder: u32,
    pub(crate) ports: Vec<PublishedPort>,
}

impl Pasta {
    /// The network namespace, for `Network::Join`.
    pub(crate) fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder))
    }

    pub(crate) fn stop(&mut self) {
        self.keep.take();
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Picks the host address of each port (a free one where none is given),
/// as the bridge's forwarders would, so "port is already allocated"
/// reads the same; pasta binds them itself right after.
fn choose_ports(ports: &[PortSpec]) -> Result<Vec<PublishedPort>, NetError> {
    ports
        .iter()
        .map(|p| {
            let (bound, host) = crate::proxy::bind(p)?;
            drop(bound);
            Ok(PublishedPort {
                spec: p.clone(),
                host,
            })
        })
        .collect()
}

/// Starts pasta for a container publishing `ports`; returns once the
/// namespace is configured (pasta writes its pid file then).
pub(crate) fn start(container_id: &str, ports: &[PortSpec]) -> Result<Pasta, NetError> {
    let ports = choose_ports(ports)?;
    let dir = std::env::temp_dir().join(format!(
        "rbuild-pasta-{}-{}",
        std::process::id(),
        &container_id[..container_id.len().min(12)]
    ));
    std::fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let result = spawn(&dir, &ports);
    let _ = std::fs::remove_dir_all(&dir);
    let (child, keep, holder) = result?;
    Ok(Pasta {
        child: Some(child),
        keep: Some(keep),
        holder,
        ports,
    })
}

fn spawn(dir: &Path, ports: &[PublishedPort]) -> Result<(Child, OwnedFd, u32), NetError> {
    let pidfile = dir.join("pasta.pid");
    let log = dir.join("pasta.err");
    let err_file = File::create(&log).map_err(|e| NetError::io("create", &log, e))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetError::Io {
        step: "create a pipe for",
        path: PathBuf::from(PASTA),
        source: e.into(),
    })?;
    let args = pasta_args(ports, &pidfile);
    let shown = format!("{PASTA} {}", args.join(" "));
    let mut child = Command::new(PASTA)
        .args(&args)
        .args(["--", "cat"])
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|source| NetError::Tool {
            command: PASTA.into(),
            source,
        })?;
    let failed = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        let mut stderr = String::new();
        let _ = File::open(&log).and_then(|mut f| f.read_to_string(&mut stderr));
        let stderr = stderr
            .lines()
            .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        NetError::Command {
            command: shown.clone(),
            input: String::new(),
            stderr: if stderr.is_empty() { why } else { stderr },
        }
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if std::fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(&mut child, format!("exited with {status}")));
        }
        if Instant::now() > deadline {
            return Err(failed(&mut child, "did not start within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let Some(holder) = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
    else {
        return Err(failed(
            &mut child,
            "its namespace's placeholder process is gone".into(),
        ));
    };
    Ok((child, w, holder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(spec: &str, host: &str) -> PublishedPort {
        PublishedPort {
            spec: spec.parse().unwrap(),
            host: host.parse().unwrap(),
        }
    }

    #[test]
    fn nothing_published_forwards_nothing_in_any_direction() {
        let a = pasta_args(&[], Path::new("/p"));
        let joined = a.join(" ");
        assert!(joined.contains("-T none -U none"), "{joined}");
        assert!(joined.ends_with("-t none -u none"), "{joined}");
        assert!(joined.contains("--no-map-gw"));
    }

    #[test]
    fn published_ports_become_pasta_forwards_with_their_address() {
        let a = pasta_args(
            &[
                published("127.0.0.1:8080:80", "127.0.0.1:8080"),
                published("5353:53/udp", "0.0.0.0:5353"),
                published("127.0.0.1::443", "127.0.0.1:40001"),
            ],
            Path::new("/p"),
        );
        let joined = a.join(" ");
        assert!(
            joined.ends_with("-t 127.0.0.1/8080:80 -t 127.0.0.1/40001:443 -u 5353:53"),
            "{joined}"
        );
    }
}
