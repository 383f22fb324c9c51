//! The `/etc/hosts` and `/etc/resolv.conf` a container on a bridge gets.
//! Pure text generation.

use std::net::Ipv4Addr;

/// One container as seen by the others on its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer<'a> {
    pub ip: Ipv4Addr,
    /// Container name, hostname, aliases and short id: the names it answers to.
    pub names: Vec<&'a str>,
}

/// Docker's generated hosts file: localhost lines, the container's own
/// address and hostname, then (user-defined networks only) one line per
/// other container on the network, so containers reach each other by
/// name, network alias or short id.
pub(crate) fn hosts(own: &Peer<'_>, others: &[Peer<'_>]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for p in std::iter::once(own).chain(others) {
        let mut names: Vec<&str> = Vec::new();
        for n in &p.names {
            if !n.is_empty() && !names.contains(n) {
                names.push(n);
            }
        }
        out.push_str(&format!("{}\t{}\n", p.ip, names.join(" ")));
    }
    out
}

/// The host's resolv.conf without loopback nameservers (a local resolver
/// such as systemd-resolved's 127.0.0.53 is unreachable from the
/// container's namespace); when none is left, Google's public resolvers,
/// as docker falls back to.
pub(crate) fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let Some(addr) = words.next() else { continue };
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
            if loopback || addr.contains(':') {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_peers_by_every_name() {
        let own = Peer {
            ip: Ipv4Addr::new(172, 18, 0, 2),
            names: vec!["web", "web", "0123456789ab"],
        };
        let other = Peer {
            ip: Ipv4Addr::new(172, 18, 0, 3),
            names: vec!["db", "database"],
        };
        let text = hosts(&own, &[other]);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("172.18.0.2\tweb 0123456789ab\n"));
        assert!(text.ends_with("172.18.0.3\tdb database\n"));
    }

    #[test]
    fn loopback_resolvers_are_dropped() {
        assert_eq!(
            resolv_conf("search lan\nnameserver 127.0.0.53\noptions edns0\n"),
            "search lan\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.255.255.53\n"),
            "nameserver 10.255.255.53\n"
        );
    }
}
