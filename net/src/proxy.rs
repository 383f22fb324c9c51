//! The userspace port forwarder (docker-proxy's job, as threads of the
//! process holding the attachment): a listener on the host address of each
//! published port, relaying every connection (TCP) or datagram flow (UDP)
//! to the container's address on the bridge.
//!
//! Userspace rather than DNAT rules: it works for connections to
//! 127.0.0.1 (which nftables DNAT to a bridge address would need
//! `route_localnet` for), an address in use is reported at bind time
//! exactly as docker reports it, and nothing about ports is left on the
//! host when the holder dies: the kernel closes its sockets.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::NetError;
use crate::port::{PortSpec, Protocol};

/// A bound, not yet forwarding, host socket.
pub(crate) enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host side of `spec`. An address in use is docker's
/// "port is already allocated".
pub(crate) fn bind(spec: &PortSpec) -> Result<(Bound, SocketAddr), NetError> {
    let ip = spec.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let want = SocketAddr::new(ip, spec.host_port.unwrap_or(0));
    let fail = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            NetError::PortAllocated { addr: want }
        } else {
            NetError::Bind { addr: want, source }
        }
    };
    match spec.protocol {
        Protocol::Tcp => {
            let l = TcpListener::bind(want).map_err(fail)?;
            let at = l.local_addr().map_err(fail)?;
            Ok((Bound::Tcp(l), at))
        }
        Protocol::Udp => {
            let s = UdpSocket::bind(want).map_err(fail)?;
            let at = s.local_addr().map_err(fail)?;
            Ok((Bound::Udp(s), at))
        }
    }
}

/// A running forwarder; stopped (and its port released) by [`Forwarder::stop`]
/// or drop.
pub(crate) struct Forwarder {
    stop: Arc<AtomicBool>,
    at: SocketAddr,
    tcp: bool,
    thread: Option<JoinHandle<()>>,
}

/// Spawns a thread that cannot take the process's asynchronous signals:
/// they stay for the thread that waits for them (a foreground `run`
/// forwards SIGINT and SIGTERM to the container through a signalfd).
fn spawn_quiet(f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rbuild-port".into())
        .spawn(move || {
            let _ = nix::sys::signal::SigSet::all().thread_block();
            f()
        })
}

impl Forwarder {
    /// Starts relaying `bound` (bound at `at`) to `backend`.
    pub(crate) fn start(
        bound: Bound,
        at: SocketAddr,
        backend: SocketAddr,
    ) -> Result<Forwarder, NetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tcp = matches!(bound, Bound::Tcp(_));
        let thread = match bound {
            Bound::Tcp(l) => spawn_quiet(move || accept_loop(l, backend, flag)),
            Bound::Udp(s) => spawn_quiet(move || udp_loop(s, backend, flag)),
        }
        .map_err(|source| NetError::Bind { addr: at, source })?;
        Ok(Forwarder {
            stop,
            at,
            tcp,
            thread: Some(thread),
        })
    }

    /// Stops accepting and closes the host socket (connections already
    /// relayed end when either side closes).
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        if self.tcp {
            // Wake the blocking accept.
            let mut wake = self.at;
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                });
            }
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        }
        let _ = thread.join();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, backend: SocketAddr, stop: Arc<AtomicBool>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                let _ = spawn_quiet(move || relay_tcp(client, backend));
            }
            // E.g. EMFILE: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn relay_tcp(client: TcpStream, backend: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&backend, Duration::from_secs(5)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = spawn_quiet(move || pipe(c2, s2));
    pipe(server, client);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Copies until EOF, then half-closes the writer so the peer sees it too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// A UDP flow unused this long is forgotten (docker-proxy: 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);

fn udp_loop(host: UdpSocket, backend: SocketAddr, stop: Arc<AtomicBool>) {
    let _ = host.set_read_timeout(Some(Duration::from_millis(200)));
    let host = Arc::new(host);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = host.recv_from(&mut buf) else {
            continue;
        };
        let existing = flows.lock().ok().and_then(|f| f.get(&client).cloned());
        let sock = match existing {
            Some(s) => s,
            None => {
                let Ok(s) = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
                else {
                    continue;
                };
                if s.connect(backend).is_err() {
                    continue;
                }
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let s = Arc::new(s);
                if let Ok(mut f) = flows.lock() {
                    f.insert(client, s.clone());
                }
                let (reply, host, flows, stop) =
                    (s.clone(), host.clone(), flows.clone(), stop.clone());
                let _ = spawn_quiet(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut last = Instant::now();
                    while !stop.load(Ordering::SeqCst) && last.elapsed() < UDP_IDLE {
                        if let Ok(n) = reply.recv(&mut buf) {
                            last = Instant::now();
                            let _ = host.send_to(&buf[..n], client);
                        }
                    }
                    if let Ok(mut f) = flows.lock() {
                        f.remove(&client);
                    }
                });
                s
            }
        };
        let _ = sock.send(&buf[..n]);
    }
}
