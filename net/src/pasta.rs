//! Rootless networking through pasta (Debian's `passt` package), as
//! podman does: the container's own user namespace (with the user's
//! subordinate ids, so images that switch users work) owns a fresh
//! network namespace, and pasta, run as the user from the host's
//! namespaces, joins both (`pasta ... PID`), gives the namespace a tap
//! interface with the host's address and routes, carries its traffic over
//! ordinary sockets of the host (so outbound access needs no privilege),
//! and binds published ports on the host itself (`-t`/`-u`), splicing
//! connections into the namespace.
//!
//! The sandbox runs pasta ([`rbuild_sandbox::Network::Helper`]): its init
//! process starts it once the namespaces exist, waits for pasta's pid
//! file (written once the interface is configured), stops it when the
//! container ends, and pasta gets SIGTERM if the init process is killed
//! (which it is when its holder, the monitor or a foreground `rbuild
//! run`, is), so nothing outlives the container. This module only says
//! what pasta is asked to do.
//!
//! pasta's own port-forwarding defaults (`auto`: every port the namespace
//! listens on) would publish what docker does not: every direction is set
//! explicitly, `none` where nothing is published, and `--no-map-gw` keeps
//! the host's loopback services out of reach, as on docker's bridge.

use crate::NetError;
use crate::attach::PublishedPort;
use crate::port::{PortSpec, Protocol};

/// The program pasta runs; its name in errors and hints.
pub const PASTA: &str = "pasta";

/// The name rootless containers' network goes by (podman's).
pub const PASTA_NETWORK: &str = "pasta";

/// pasta's arguments for `ports` (bound host addresses already chosen):
/// one `-t`/`-u` per port, `none` for a direction with nothing in it.
/// `{ready}` and `{pid}` are the sandbox's ([`rbuild_sandbox::NetHelper`]).
pub(crate) fn pasta_args(ports: &[PublishedPort]) -> Vec<String> {
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
        "{ready}",
    ]
    .map(String::from)
    .to_vec();
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
    args.push("{pid}".into());
    args
}

/// A container's network through pasta: the ports it publishes, which
/// pasta binds once the sandbox starts it.
#[derive(Debug)]
pub(crate) struct Pasta {
    pub(crate) ports: Vec<PublishedPort>,
}

impl Pasta {
    /// The sandbox's network mode: a namespace of its own, pasta's.
    pub(crate) fn sandbox_network(&self) -> rbuild_sandbox::Network {
        rbuild_sandbox::Network::Helper(rbuild_sandbox::NetHelper {
            program: PASTA.into(),
            args: pasta_args(&self.ports),
        })
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

/// pasta for a container publishing `ports`, with their host addresses
/// chosen (pasta binds them when the sandbox starts it). Fails where
/// pasta is not installed.
pub(crate) fn prepare(ports: &[PortSpec]) -> Result<Pasta, NetError> {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(PASTA).is_file()));
    if !installed {
        return Err(NetError::Tool {
            command: PASTA.into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    // pasta opens /dev/net/tun as the user: where it cannot, say so now,
    // so that the default network falls back to none as it would with no
    // pasta at all.
    let tun = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
    if let Err(e) = nix::unistd::access("/dev/net/tun", tun) {
        return Err(NetError::Command {
            command: PASTA.into(),
            input: String::new(),
            stderr: format!("cannot open /dev/net/tun: {e}"),
        });
    }
    Ok(Pasta {
        ports: choose_ports(ports)?,
    })
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
        let a = pasta_args(&[]);
        let joined = a.join(" ");
        assert!(joined.contains("-T none -U none"), "{joined}");
        assert!(joined.ends_with("-t none -u none {pid}"), "{joined}");
        assert!(joined.contains("--pid {ready}"), "{joined}");
        assert!(joined.contains("--no-map-gw"));
    }

    #[test]
    fn published_ports_become_pasta_forwards_with_their_address() {
        let a = pasta_args(&[
            published("127.0.0.1:8080:80", "127.0.0.1:8080"),
            published("5353:53/udp", "0.0.0.0:5353"),
            published("127.0.0.1::443", "127.0.0.1:40001"),
        ]);
        let joined = a.join(" ");
        assert!(
            joined.ends_with("-t 127.0.0.1/8080:80 -t 127.0.0.1/40001:443 -u 5353:53 {pid}"),
            "{joined}"
        );
    }
}
