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
        // Wake the accept loop so it sees `stop`; wait for it only when
        // that worked (else it would wait forever; the thread then ends
        // at its next connection or with the process).
        let woken = UnixStream::connect(&self.path).is_ok();
        if let Some(t) = self.thread.take()
            && woken
        {
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

/// Why a key file cannot be served by [`KeyAgent`].
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the ssh key {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not an OpenSSH private key ({why})", path.display())]
    Parse { path: PathBuf, why: String },
    #[error(
        "{} is protected by a passphrase, which rbuild's agent cannot ask for\nhint: ssh-add it to an ssh-agent and pass --ssh ID=$SSH_AUTH_SOCK",
        path.display()
    )]
    Encrypted { path: PathBuf },
    #[error("cannot start rbuild's ssh agent at {}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
const SSH_AGENT_RSA_SHA2_256: u32 = 2;
const SSH_AGENT_RSA_SHA2_512: u32 = 4;

/// An ssh agent in this process serving key files (`--ssh ID=KEY[,KEY…]`,
/// as buildx does): it answers the two requests a client needs —
/// the identities and a signature — and refuses everything else (adding,
/// removing, locking). RSA keys sign with the SHA-2 hash the client asks
/// for (`rsa-sha2-256`/`-512`); SHA-1 (`ssh-rsa`) is refused. Ed25519 and
/// ECDSA (P-256, P-384) keys sign as OpenSSH's agent does. Listens until
/// dropped.
pub struct KeyAgent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeyAgent {
    /// Reads unencrypted OpenSSH private keys.
    pub fn load(paths: &[PathBuf]) -> Result<Vec<ssh_key::PrivateKey>, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let text = std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })?;
            let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|e| KeyError::Parse {
                path: path.clone(),
                why: e.to_string(),
            })?;
            if key.is_encrypted() {
                return Err(KeyError::Encrypted { path: path.clone() });
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// Serves `keys` on a new socket at `path` (in a directory only this
    /// user can enter).
    pub fn start(path: &Path, keys: Vec<ssh_key::PrivateKey>) -> Result<KeyAgent, KeyError> {
        let listener = UnixListener::bind(path).map_err(|source| KeyError::Listen {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let keys = Arc::new(keys);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ssh-key-agent".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let keys = keys.clone();
                    let _ = std::thread::Builder::new()
                        .name("ssh-key-agent-conn".into())
                        .spawn(move || serve(conn, &keys));
                }
            })
            .map_err(|source| KeyError::Listen {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(KeyAgent {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let woken = UnixStream::connect(&self.path).is_ok();
        if let Some(t) = self.thread.take()
            && woken
        {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl std::fmt::Debug for KeyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAgent")
            .field("socket", &self.path)
            .finish()
    }
}

/// Appends an SSH `string` (u32 length, bytes).
fn put_string(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Reads an SSH `string` at `*at`, moving past it.
fn get_string<'b>(buf: &'b [u8], at: &mut usize) -> Option<&'b [u8]> {
    let len = u32::from_be_bytes(buf.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let s = buf.get(*at + 4..(*at + 4).checked_add(len)?)?;
    *at += 4 + len;
    Some(s)
}

/// The `rsa` crate's key from an OpenSSH one. Built here from the
/// components: ssh-key 0.6's own conversion passes `p` twice instead of
/// `p` and `q`, so every key fails its consistency check.
fn rsa_private_key(k: &ssh_key::private::RsaKeypair) -> Option<rsa::RsaPrivateKey> {
    let big = |m: &ssh_key::Mpint| m.as_positive_bytes().map(rsa::BigUint::from_bytes_be);
    rsa::RsaPrivateKey::from_components(
        big(&k.public.n)?,
        big(&k.public.e)?,
        big(&k.private.d)?,
        vec![big(&k.private.p)?, big(&k.private.q)?],
    )
    .ok()
}

/// Answers one client's requests until it hangs up.
fn serve(mut conn: UnixStream, keys: &[ssh_key::PrivateKey]) {
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > 256 * 1024 {
            return;
        }
        let mut msg = vec![0u8; len];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let reply = answer(&msg, keys).unwrap_or_else(|| vec![SSH_AGENT_FAILURE]);
        let mut out = (reply.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

/// The reply to one request (without its length); `None` is a failure.
fn answer(msg: &[u8], keys: &[ssh_key::PrivateKey]) -> Option<Vec<u8>> {
    match msg[0] {
        SSH_AGENTC_REQUEST_IDENTITIES => {
            let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for k in keys {
                put_string(&mut out, &k.public_key().to_bytes().ok()?);
                put_string(&mut out, k.comment().as_bytes());
            }
            Some(out)
        }
        SSH_AGENTC_SIGN_REQUEST => {
            let mut at = 1;
            let blob = get_string(msg, &mut at)?;
            let data = get_string(msg, &mut at)?;
            let flags = msg
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes);
            let key = keys
                .iter()
                .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(blob))?;
            let (name, bytes) = match key.key_data() {
                // RSA: the hash the flags ask for; neither flag means
                // SHA-1 (`ssh-rsa`), which is refused.
                ssh_key::private::KeypairData::Rsa(rsa_key) => {
                    use signature::{SignatureEncoding as _, Signer as _};
                    let private = rsa_private_key(rsa_key)?;
                    if flags & SSH_AGENT_RSA_SHA2_512 != 0 {
                        let k = rsa::pkcs1v15::SigningKey::<ssh_key::sha2::Sha512>::new(private);
                        ("rsa-sha2-512".to_string(), k.try_sign(data).ok()?.to_vec())
                    } else if flags & SSH_AGENT_RSA_SHA2_256 != 0 {
                        let k = rsa::pkcs1v15::SigningKey::<ssh_key::sha2::Sha256>::new(private);
                        ("rsa-sha2-256".to_string(), k.try_sign(data).ok()?.to_vec())
                    } else {
                        return None;
                    }
                }
                _ => {
                    let sig: ssh_key::Signature = signature::Signer::try_sign(key, data).ok()?;
                    (
                        sig.algorithm().as_str().to_string(),
                        sig.as_bytes().to_vec(),
                    )
                }
            };
            let mut sig_blob = Vec::new();
            put_string(&mut sig_blob, name.as_bytes());
            put_string(&mut sig_blob, &bytes);
            let mut out = vec![SSH_AGENT_SIGN_RESPONSE];
            put_string(&mut out, &sig_blob);
            Some(out)
        }
        _ => None,
    }
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

    /// ssh-keygen makes a key; rbuild's agent serves it; `ssh-keygen -Y
    /// sign` signs through the agent and the signature verifies.
    #[test]
    fn the_key_agent_lists_and_signs_with_openssh_keys() {
        let have = std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_ok();
        if !have {
            rbuild_testkit::skipped(
                "the_key_agent_lists_and_signs_with_openssh_keys",
                "needs ssh-keygen (openssh-client)",
            );
            return;
        }
        for kind in ["ed25519", "rsa", "ecdsa"] {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("id");
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "agent-test", "-f"])
                .arg(&key)
                .status()
                .unwrap();
            assert!(ok.success());
            let keys = KeyAgent::load(std::slice::from_ref(&key)).unwrap();
            let sock = dir.path().join("agent.sock");
            let agent = KeyAgent::start(&sock, keys).unwrap();
            assert_eq!(probe(agent.socket()).unwrap(), 1, "{kind}");
            let data = dir.path().join("data");
            std::fs::write(&data, "signed through the agent").unwrap();
            let pubkey = dir.path().join("id.pub");
            // Only the public key on disk: ssh-keygen must ask the agent.
            std::fs::remove_file(&key).unwrap();
            let out = std::process::Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(&pubkey)
                .arg(&data)
                .env("SSH_AUTH_SOCK", agent.socket())
                .output()
                .unwrap();
            assert!(out.status.success(), "{kind}: {out:?}");
            let check = std::process::Command::new("sh")
                .arg("-c")
                .arg("ssh-keygen -Y check-novalidate -n file -f \"$1\" -s \"$2.sig\" < \"$2\"")
                .arg("sh")
                .arg(&pubkey)
                .arg(&data)
                .output()
                .unwrap();
            assert!(check.status.success(), "{kind}: {check:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let not_key = dir.path().join("not-a-key");
        std::fs::write(&not_key, "hello").unwrap();
        let e = KeyAgent::load(&[not_key]).unwrap_err().to_string();
        assert!(e.contains("is not an OpenSSH private key"), "{e}");
        let enc = dir.path().join("enc");
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"])
            .arg(&enc)
            .status()
            .unwrap();
        let e = KeyAgent::load(&[enc]).unwrap_err().to_string();
        assert!(e.contains("passphrase"), "{e}");
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
