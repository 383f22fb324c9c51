//! Container networking for rbuild, docker's bridge model without a
//! daemon.
//!
//! # What a container on a bridge gets
//!
//! [`attach`] gives a container (identified by the caller's id) its own
//! network namespace, which the sandbox joins
//! ([`rbuild_sandbox::Network::Join`]) by the path of the holder's handle
//! on it (`/proc/<pid>/fd/<n>`), with:
//!
//! - `eth0`, one end of a veth pair whose host end (`rbv<id12>`) is
//!   enslaved to the network's bridge: `rbuild0` for the default `bridge`
//!   network (the first free 10.200-209.0.0/16: docker's and podman's
//!   pools are left to them), `rbr-<netid11>` for a user-defined network
//!   (its own subnet, the first free 10.210-254.0.0/16, or `--subnet`);
//! - the lowest free address of the subnet (the lease is the endpoint
//!   record, written under a host-wide file lock) and a default route via
//!   the bridge's address;
//! - outbound access: masquerading of the subnet in rbuild's own
//!   nftables table (`table ip rbuild`), rewritten whole in one
//!   transaction whenever the set of bridges changes, so removing it is
//!   exact and nothing else on the host is touched; ip_forward turned on
//!   (and back off with the last bridge, if rbuild turned it on);
//! - `/etc/hosts` and `/etc/resolv.conf` generated per container (to bind
//!   over the sandbox's own with [`NetAttachment::sandbox_mounts`]): on a
//!   user-defined network the hosts file lists every other container of
//!   the network by name, hostname, `--network-alias` and short id, and
//!   is rewritten in place when one comes or goes, so containers reach
//!   each other by name, as with docker's embedded DNS; resolv.conf is the
//!   host's without loopback resolvers;
//! - published ports (`-p`, `-P`): a userspace forwarder, threads of the
//!   process holding the [`NetAttachment`] (docker-proxy's role; see
//!   `proxy.rs` for why not DNAT).
//! - more networks on demand: [`connect`] adds `eth1`… on another bridge
//!   network to a running container's namespace (an address, no default
//!   route: the first network keeps it), with the container's monitor as
//!   the endpoint's holder; [`disconnect`] removes one. Hosts files list
//!   the peers of every network a container is on.
//!
//! The namespace is held by an open fd, not bind-mounted on a file (as
//! `ip netns add` does): it lives exactly as long as the holder or the
//! container, so a holder killed with its container leaves no namespace
//! and no veth behind (a veth goes with its namespace), and runs never
//! change the host's mount table.
//!
//! Dropping the attachment (or [`NetAttachment::detach`]) removes the
//! veth, the namespace and the lease; with the network's last
//! container its bridge and nftables rules go, with the last bridge the
//! table. If the holder is killed first, [`sweep`] (run at every attach
//! and by `rbuild system check`) finds the endpoint's holder gone and
//! removes the same things.
//!
//! Everything host-wide (bridges, leases, the table) lives in
//! `/run/rbuild/net-v1`, shared by every store root: two stores must not
//! hand out the same address on the same bridge. Network definitions
//! (names, subnets) are per store root, like docker's per daemon.
//!
//! # Rootless
//!
//! A bridge, veths and nftables need CAP_NET_ADMIN in the host's network
//! namespace, so [`attach`] needs root ([`NetError::NeedsRoot`]). A
//! rootless container's default network is pasta's (Debian's `passt`
//! package; `pasta.rs`), as podman's: pasta maps the namespace's traffic
//! onto host sockets without a TCP/IP stack of its own in between (podman's
//! default since 5.0 for that reason: higher throughput, lower latency, no
//! NAT subnet of its own, the host's addresses and routes copied in), and it
//! forwards published ports itself (`-t`/`-u`), which slirp4netns needs a
//! separate port forwarder for. User-defined networks stay root-only
//! ([`NetError::RootlessUserNetwork`]).
//!
//! [`set_up`] holds the one rule both the foreground `run` and the
//! container monitor follow: what `--network` means, which flags conflict
//! with it, and when the default network falls back to `none`.
//!
//! # Layout
//!
//! `addr` (subnets, pools), `port` (`-p` syntax) and `dns` (hosts and
//! resolv.conf text) are pure; `network` keeps the definitions; `state`
//! the host-wide records; `host` runs `ip`, `nft` and the namespace calls;
//! `proxy` forwards ports; `attach` ties them together; `pasta` says
//! how pasta is to run (the sandbox runs it, in the container's own user
//! namespace); `setup` decides between them.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod addr;
mod attach;
mod dns;
mod host;
mod netdev;
mod network;
mod pasta;
mod port;
mod proxy;
mod setup;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use addr::Subnet;
pub use attach::{
    Connected, NetAttachment, NetRequest, PublishedPort, SweepReport, VETH_PREFIX, attach,
    attach_pasta, connect, disconnect, sweep,
};
pub use host::NFT_TABLE;
pub use netdev::{net_dev_totals, net_io};
pub use network::{
    CreateOptions, DEFAULT_BRIDGE, DEFAULT_NETWORK, EndpointInfo, NetworkDef, Networks,
    USER_BRIDGE_PREFIX,
};
pub use pasta::{PASTA, PASTA_NETWORK};
pub use port::{PortSpec, Protocol, published_ports};
pub use setup::{NetMode, Networking, SetUp, falls_back, net_mode, set_up, set_up_with};
pub use state::RUNTIME_DIR;

/// Errors of networking, with docker's wording where docker has one.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network {name} not found")]
    NotFound { name: String },
    #[error("network with name {name} already exists")]
    Exists { name: String },
    #[error(
        "invalid network name {name:?}: it must start with a letter or digit and hold only [a-zA-Z0-9_.-]"
    )]
    InvalidName { name: String },
    #[error("plugin \"{driver}\" not found (only the bridge driver is supported)")]
    Driver { driver: String },
    #[error("{name} is a pre-defined network and cannot be removed")]
    Predefined { name: String },
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse { name: String, id: String },
    #[error("Pool overlaps with other one on this address space ({subnet})")]
    PoolOverlap { subnet: Subnet },
    #[error("no free subnet left in the address pools for a new network")]
    NoSubnet,
    #[error("no free address left in {subnet} of network {network}")]
    NoAddress { network: String, subnet: Subnet },
    #[error("invalid gateway {gateway}: not a host address of subnet {subnet}")]
    Gateway { gateway: Ipv4Addr, subnet: Subnet },
    /// docker's message, whole (the cause is always EADDRINUSE).
    #[error("Bind for {addr} failed: port is already allocated")]
    PortAllocated { addr: SocketAddr },
    #[error("cannot bind {addr} for a published port")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bridge networking needs root")]
    NeedsRoot,
    #[error("network {name}: user-defined networks need root")]
    RootlessUserNetwork { name: String },
    /// docker's message, whole.
    #[error("conflicting options: port publishing and the container type network mode")]
    PortsWithoutNetwork,
    /// docker's message, whole.
    #[error("network-scoped alias is supported only for containers in user defined networks")]
    AliasOnDefaultBridge,
    #[error("--network {mode}: joining another container's network is not supported")]
    ContainerMode { mode: String },
    /// docker's message, whole.
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected { container: String, network: String },
    /// docker's message, whole.
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    /// docker's message, whole.
    #[error("container cannot be disconnected from host network or connected to host network")]
    ConnectNonBridge { name: String },
    /// docker's message, whole.
    #[error("user specified IP address is supported on user defined networks only")]
    UserIpOnDefaultSubnet,
    /// docker's message, whole.
    #[error("Address already in use")]
    AddressInUse,
    #[error("invalid network request: {reason}")]
    InvalidRequest { reason: String },
    #[error("cannot run {command}")]
    Tool {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}{}", if input.is_empty() { String::new() } else { format!("\ninput:\n{input}") })]
    Command {
        command: String,
        input: String,
        stderr: String,
    },
    #[error("cannot {step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt network definition {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl NetError {
    pub(crate) fn io(step: &'static str, path: &Path, source: std::io::Error) -> NetError {
        NetError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A `hint:` for the user, where there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            NetError::NeedsRoot => Some("run as root, or use --network none or --network host"),
            NetError::RootlessUserNetwork { .. } => Some(
                "rootless containers get outbound access and -p through pasta on the default network (leave out --network); run as root for user-defined networks",
            ),
            NetError::Tool { command, .. } if command == pasta::PASTA => Some(
                "install pasta (Debian package passt; scripts/install-deps does), or use --network none or --network host",
            ),
            NetError::Command { command, .. } if command.starts_with(pasta::PASTA) => Some(
                "pasta needs /dev/net/tun readable and writable by you (mode 0666) and unprivileged user namespaces",
            ),
            NetError::Tool { .. } => {
                Some("install iproute2 and nftables (scripts/install-deps does)")
            }
            NetError::PoolOverlap { .. } => Some("choose another --subnet"),
            _ => None,
        }
    }
}
