//! SSH agent forwarding for `RUN --mount=type=ssh` (`--ssh ID=SOCKET`).
//!
//! A RUN step never sees the user's agent socket itself: for the length
//! of the step the worker listens on a socket of its own, in the step's
//! private directory on the sandbox runtime tmpfs, owned by the mount's
//! `uid:gid` with its `mode` (BuildKit's defaults: 0:0, 0600), bind-mounted
//! at the target; each connection to it is joined to a new connection to
//! the agent. When the step ends the listener stops and the socket goes
//! with the private directory, so the agent reaches no layer, key, log or
//! report: only the id is in the step's key.
//!
//! [`probe`] checks that a socket is an agent before a build starts, with
//! the one request every agent answers (`SSH_AGENTC_REQUEST_IDENTITIES`,
//! RFC draft-miller-ssh-agent §3.4).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The agents `--ssh` gave, by id. `Debug` shows ids and socket paths
/// only.
#[derive(Debug, Default, Clone)]
pub struct SshAgents(BTreeMap<String, PathBuf>);

impl SshAgents {
    pub fn new() -> SshAgents {
        SshAgents::default()
    }

    /// Adds (or replaces) the agent `id` listening on `socket`.
    pub fn insert(&mut self, id: impl Into<String>, socket: PathBuf) {
        self.0.insert(id.into(), socket);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Path> {
        self.0.get(id).map(PathBuf::as_path)
    }

    /// The socket of the agent `id`, if given.
    pub fn get_path(&self, id: &str) -> Option<PathBuf> {
        self.0.get(id).cloned()
    }

    /// The ids given.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// A socket that does not answer as an ssh agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot connect to the ssh agent socket {}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not an ssh agent: {why}", socket.display())]
    NotAnAgent { socket: PathBuf, why: String },
}

const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;

/// Asks the agent on `socket` for its identities; returns how many keys
/// it holds, or why it is not an agent.
pub fn probe(socket: &Path) -> Result<u32, AgentError> {
    let not = |why: String| AgentError::NotAnAgent {
        socket: socket.to_path_buf(),
        why,
    };
    let mut s = UnixStream::connect(socket).map_err(|source| AgentError::Connect {
        socket: socket.to_path_buf(),
        source,
    })?;
    let timeout = Some(Duration::from_secs(5));
    let _ = s.set_read_timeout(timeout);
    let _ = s.set_write_timeout(timeout);
    s.write_all(&[0, 0, 0, 1, SSH_AGENTC_REQUEST_IDENTITIES])
        .map_err(|e| not(format!("writing a request failed ({e})")))?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head)
        .map_err(|e| not(format!("no answer to a request for identities ({e})")))?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[4] != SSH_AGENT_IDENTITIES_ANSWER || !(5..=256 * 1024).contains(&len) {
        return Err(not(format!(
            "it answered message type {} of {len} bytes to a request for identities",
            head[4]
        )));
    }
    let mut count = [0u8; 4];
    s.read_exact(&mut count)
        .map_err(|e| not(format!("the answer was cut short ({e})")))?;
    Ok(u32::from_be_bytes(count))
}

/// A socket forwarding to an agent for one RUN step; stops when dropped.
pub(crate) struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens on `path` (mode `mode`, owned by `uid:gid` as the sandbox
    /// sees them), forwarding each connection to `agent`.
    pub(crate) fn start(
        path: &Path,
        agent: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<AgentProxy, crate::BuildError> {
        let io_err = crate::BuildError::io(path);
        let listener = UnixListener::bind(path).map_err(io_err)?;
        crate::upper_dir::chown_for_sandbox(path, uid, gid)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(crate::BuildError::io(path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_path_buf();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ssh-agent-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let Ok(upstream) = UnixStream::connect(&agent) else {
                        // The client sees its connection closed, as with
                        // an agent that went away.
                        continue;
                    };
                    splice(client, upstream);
                }
            })
            .map_err(crate::BuildError::io(path))?;
        Ok(AgentProxy {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies bytes both ways between `a` and `b` on two threads; each side's
/// end of input shuts the other's writing half.
fn splice(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let _ = std::thread::Builder::new()
        .name("ssh-agent-fwd".into())
        .spawn(one_way(a, b2));
    let _ = std::thread::Builder::new()
        .name("ssh-agent-fwd".into())
        .spawn(one_way(b, a2));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake agent answering one identities request with `answer`.
    fn fake_agent(dir: &Path, answer: Vec<u8>) -> PathBuf {
        let path = dir.join("agent.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut req = [0u8; 5];
                if c.read_exact(&mut req).is_ok() {
                    let _ = c.write_all(&answer);
                }
            }
        });
        path
    }

    #[test]
    fn an_agent_answers_and_a_stranger_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let agent = fake_agent(dir.path(), vec![0, 0, 0, 5, 12, 0, 0, 0, 2]);
        assert_eq!(probe(&agent).unwrap(), 2);

        let other = tempfile::tempdir().unwrap();
        let not = fake_agent(other.path(), b"HTTP/1.1 400 Bad Request\r\n".to_vec());
        let e = probe(&not).unwrap_err().to_string();
        assert!(e.contains("is not an ssh agent"), "{e}");
        assert!(e.contains(&not.display().to_string()), "{e}");

        let e = probe(&dir.path().join("missing.sock"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot connect to the ssh agent socket"),
            "{e}"
        );
    }

    #[test]
    fn the_proxy_forwards_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let agent = fake_agent(dir.path(), vec![0, 0, 0, 5, 12, 0, 0, 0, 1]);
        let sock = dir.path().join("proxy.sock");
        let proxy = AgentProxy::start(&sock, &agent, 0o600, 0, 0).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(probe(&sock).unwrap(), 1);
        drop(proxy);
        assert!(!sock.exists());
    }
}
