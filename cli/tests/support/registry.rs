//! A real registry for tests: the CNCF distribution registry
//! (`docker-registry` Debian package) on 127.0.0.1, a free port and
//! temporary storage, with its access log kept; killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `auth` is extra YAML for its `auth:` section.
    pub fn start(auth: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.path().join("storage");
        let auth = auth.map(|a| format!("auth:\n{a}\n")).unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        // distribution writes its access log (combined format) to stdout.
        let access = std::fs::File::create(dir.path().join("access.log")).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(access)
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; scripts/install-deps)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry did not start: {}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port, dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The access log so far (one line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The manifest tagged `tag` in `repo`, from the registry's storage.
    pub fn stored_manifest(&self, repo: &str, tag: &str) -> serde_json::Value {
        let link = self.dir.path().join(format!(
            "storage/docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
        ));
        let digest = std::fs::read_to_string(link).unwrap();
        serde_json::from_slice(&std::fs::read(self.blob_data(digest.trim())).unwrap()).unwrap()
    }
}

/// The blob digests (`sha256:…`) an access log shows GET requests for, in
/// order.
pub fn blob_gets(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
        .filter_map(|l| {
            let start = l.find("/blobs/")? + "/blobs/".len();
            Some(l[start..].split([' ', '?']).next()?.to_string())
        })
        .collect()
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP proxy in front of a registry: counts the bytes the
/// registry sends, and can hold them back after a limit (a stalled
/// download, to kill a pull midway) so tests see what a client fetched.
pub struct Proxy {
    pub port: u16,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    /// Bytes sent from the registry to clients, over all connections.
    sent: std::sync::atomic::AtomicU64,
    /// Server → client bytes stop flowing (the connection stays open)
    /// once `sent` reaches this.
    limit: std::sync::atomic::AtomicU64,
    /// Set on drop: copy threads end, stalled connections close.
    stop: std::sync::atomic::AtomicBool,
}

impl Proxy {
    /// Listens on `bind` (e.g. `127.0.0.1` or `0.0.0.0`), a free port,
    /// forwarding to `127.0.0.1:target`.
    pub fn start(bind: &str, target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind((bind, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState {
            sent: 0.into(),
            limit: u64::MAX.into(),
            stop: false.into(),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client → registry: unthrottled.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (c2, s2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
                let st = st.clone();
                std::thread::spawn(move || pipe_limited(server, client, &st));
            }
        });
        Proxy { port, state }
    }

    /// Bytes the registry has sent through the proxy so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds back registry bytes once `sent()` reaches `limit`
    /// (`u64::MAX`: never).
    pub fn set_limit(&self, limit: u64) {
        self.state
            .limit
            .store(limit, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pipe_limited(mut from: TcpStream, mut to: TcpStream, st: &ProxyState) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; 16 << 10];
    'outer: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if st.stop.load(Ordering::SeqCst) {
                break 'outer;
            }
            let sent = st.sent.load(Ordering::SeqCst);
            let allowed = st.limit.load(Ordering::SeqCst).saturating_sub(sent);
            if allowed == 0 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let take = chunk.len().min(allowed.min(usize::MAX as u64) as usize);
            if to.write_all(&chunk[..take]).is_err() {
                break 'outer;
            }
            st.sent.fetch_add(take as u64, Ordering::SeqCst);
            chunk = &chunk[take..];
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
