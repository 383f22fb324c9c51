//! A private docker 20.10 daemon for interop tests (Debian's `docker.io`):
//! its own data root, exec root and socket under a temporary directory,
//! a bridge of its own, no firewall rules, vfs storage; stopped on drop,
//! its bridge deleted. Nothing of the host's docker (if any) is used or
//! touched: `--bridge=none` would have been simpler, but a dockerd started
//! with it deletes the host's `docker0` (the default bridge interface).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running private dockerd.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    _bridge: Bridge,
}

/// A bridge made for one private dockerd (`--bridge=NAME`, with an
/// address in 10.199.0.0/16, clear of docker's, podman's and rbuild's
/// pools), deleted on drop.
struct Bridge {
    name: String,
}

impl Bridge {
    fn create() -> Result<Bridge, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = std::process::id() * 8 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bridge = Bridge {
            name: format!("rbdk{:x}", n % 0xff_ffff),
        };
        let address = format!("10.199.{}.1/24", n % 250 + 1);
        for args in [
            vec!["link", "add", &bridge.name, "type", "bridge"],
            vec!["addr", "add", &address, "dev", &bridge.name],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(bridge)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

const DOCKERD: &str = "/usr/sbin/dockerd";
/// The 20.10 client: a newer `docker` earlier on PATH lacks parts of it.
const DOCKER: &str = "/usr/bin/docker";

impl Dockerd {
    /// Starts the daemon, or says why it cannot (for the test's skip line).
    pub fn start() -> Result<Dockerd, String> {
        for tool in [DOCKERD, DOCKER] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "no {tool} (Debian package docker.io; scripts/install-deps)"
                ));
            }
        }
        if !nix::unistd::geteuid().is_root() {
            return Err("dockerd needs root".into());
        }
        // Short: the daemon's sockets live under it (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        let bridge = Bridge::create()?;
        let child = Command::new(DOCKERD)
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("x").display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--host=unix://{}", d.join("sock").display()))
            .arg(format!("--bridge={}", bridge.name))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--storage-driver=vfs",
                "--containerd-namespace=rbuild-test",
                "--containerd-plugins-namespace=rbuild-test-plugins",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {DOCKERD}: {e}"))?;
        let mut daemon = Dockerd {
            child,
            dir,
            _bridge: bridge,
        };
        let start = Instant::now();
        loop {
            let up = daemon
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success();
            if up {
                return Ok(daemon);
            }
            if start.elapsed() > Duration::from_secs(60)
                || daemon.child.try_wait().ok().flatten().is_some()
            {
                let log = std::fs::read_to_string(daemon.dir.path().join("dockerd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "the private dockerd did not come up; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs the docker client against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg(format!(
                "--host=unix://{}",
                self.dir.path().join("sock").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: the daemon stops its containerd and unmounts what it
        // mounted; then its files go with the temporary directory.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
