//! Everything that changes the host's network: links (`ip`), the rbuild
//! nftables table (`nft`), network namespace files and ip_forward. The
//! rest of the crate decides what should exist; this module makes it so.
//!
//! Links and routes are configured with iproute2's `ip -batch`, one
//! process per namespace per attach (a few milliseconds), rather than a
//! netlink implementation of our own: the commands are the reference
//! tools, their errors are readable, and an administrator can replay them.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::NetError;
use crate::addr::Subnet;

/// The nftables table (family `ip`) holding every rule rbuild adds; it is
/// rewritten whole in one transaction, and deleted when no bridge is left.
pub const NFT_TABLE: &str = "rbuild";

fn run(mut cmd: Command, input: Option<&str>) -> Result<String, NetError> {
    let shown = format!("{cmd:?}").replace('"', "");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| NetError::Tool {
        command: shown.clone(),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| NetError::Tool {
        command: shown.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command: shown,
            input: input.unwrap_or_default().trim_end().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with `commands` in this process's network namespace.
pub(crate) fn ip_batch(commands: &str) -> Result<(), NetError> {
    let mut c = Command::new("ip");
    c.args(["-batch", "-"]);
    run(c, Some(commands)).map(drop)
}

/// Runs `ip -batch -` in the network namespace opened at `netns`:
/// from a short-lived thread that joined it, since a child process starts
/// in its spawning thread's namespaces (`ip -n` takes names, not paths).
pub(crate) fn ip_batch_in(netns: &Path, commands: &str) -> Result<(), NetError> {
    let file =
        fs_err::File::open(netns).map_err(|e| NetError::io("open network namespace", netns, e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::io("join network namespace", netns, std::io::Error::from(e))
            })?;
            ip_batch(commands)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetError::io(
                "configure network namespace",
                netns,
                std::io::Error::other("thread panicked"),
            ))
        })
    })
}

/// Makes a new network namespace and returns a handle on it: a thread
/// unshares one and opens `/proc/thread-self/ns/net`. The namespace lives
/// while this fd is open or a process is in it, and no longer: nothing is
/// mounted on the host, so a holder killed with its container leaves no
/// namespace, and with it no veth (a veth goes with its namespace).
pub(crate) fn create_netns() -> Result<std::os::fd::OwnedFd, NetError> {
    let path = Path::new("/proc/thread-self/ns/net");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::io("unshare network namespace", path, std::io::Error::from(e))
            })?;
            std::fs::File::open(path)
                .map(std::os::fd::OwnedFd::from)
                .map_err(|e| NetError::io("open network namespace", path, e))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetError::io(
                "create network namespace",
                path,
                std::io::Error::other("thread panicked"),
            ))
        })
    })
}

/// Whether a link of this name exists in the host's namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Host links whose name starts with one of `prefixes`.
pub(crate) fn links_with_prefix(prefixes: &[&str]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

/// Deletes a host link; missing is fine.
pub(crate) fn delete_link(name: &str) -> Result<(), NetError> {
    if !link_exists(name) {
        return Ok(());
    }
    match ip_batch(&format!("link del {name}\n")) {
        Err(_) if !link_exists(name) => Ok(()),
        r => r,
    }
}

/// Creates bridge `name` with `gateway` as its address, up.
pub(crate) fn create_bridge(name: &str, subnet: Subnet, gateway: Ipv4Addr) -> Result<(), NetError> {
    ip_batch(&format!(
        "link add {name} type bridge\naddr add {gateway}/{} dev {name}\nlink set {name} up\n",
        subnet.prefix()
    ))
}

/// The host's IPv4 routes (destination, device), from /proc/net/route;
/// the default route is left out.
pub(crate) fn routes() -> Vec<(Subnet, String)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    // The kernel prints each big-endian address as a native-endian word.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, dst, mask) = (f.first()?, hex(f.get(1)?)?, hex(f.get(7)?)?);
            let mask = u32::from_be_bytes(mask);
            if mask == 0 {
                return None;
            }
            let dst = Ipv4Addr::from(dst);
            Some((Subnet::new(dst, mask.count_ones() as u8)?, dev.to_string()))
        })
        .collect()
}

/// The nftables script that makes the rbuild table hold exactly the rules
/// for `bridges` (name, subnet): outbound masquerading per bridge and no
/// forwarding between different bridges (docker's network isolation).
/// With no bridge, the table is deleted. One transaction either way.
pub(crate) fn nft_ruleset(bridges: &[(String, Subnet)]) -> String {
    // Declaring the table first makes the delete valid when it is absent.
    let mut s = format!("table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n");
    if bridges.is_empty() {
        return s;
    }
    s.push_str(&format!("table ip {NFT_TABLE} {{\n"));
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    for (name, subnet) in bridges {
        s.push_str(&format!(
            "\t\tip saddr {subnet} oifname != \"{name}\" masquerade\n"
        ));
    }
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    for (a, _) in bridges {
        for (b, _) in bridges {
            if a != b {
                s.push_str(&format!("\t\tiifname \"{a}\" oifname \"{b}\" drop\n"));
            }
        }
    }
    s.push_str("\t}\n}\n");
    s
}

/// Applies [`nft_ruleset`].
pub(crate) fn nft_apply(bridges: &[(String, Subnet)]) -> Result<(), NetError> {
    let mut c = Command::new("nft");
    c.args(["-f", "-"]);
    run(c, Some(&nft_ruleset(bridges))).map(drop)
}

/// Whether the rbuild nftables table exists.
pub(crate) fn nft_table_exists() -> bool {
    let mut c = Command::new("nft");
    c.args(["list", "table", "ip", NFT_TABLE]);
    run(c, None).is_ok()
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Whether the kernel forwards IPv4 between interfaces.
pub(crate) fn ip_forward() -> bool {
    std::fs::read_to_string(IP_FORWARD).is_ok_and(|s| s.trim() == "1")
}

/// Turns IPv4 forwarding on or off.
pub(crate) fn set_ip_forward(on: bool) -> Result<(), NetError> {
    std::fs::write(IP_FORWARD, if on { "1\n" } else { "0\n" })
        .map_err(|e| NetError::io("set ip_forward", Path::new(IP_FORWARD), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_is_exact() {
        let s: Subnet = "10.200.0.0/16".parse().unwrap();
        let t: Subnet = "172.18.0.0/16".parse().unwrap();
        assert_eq!(
            nft_ruleset(&[]),
            "table ip rbuild {}\ndelete table ip rbuild\n"
        );
        let r = nft_ruleset(&[("rbuild0".into(), s), ("rbr-x".into(), t)]);
        assert!(r.contains("ip saddr 10.200.0.0/16 oifname != \"rbuild0\" masquerade"));
        assert!(r.contains("iifname \"rbuild0\" oifname \"rbr-x\" drop"));
        assert!(r.contains("iifname \"rbr-x\" oifname \"rbuild0\" drop"));
    }

    #[test]
    fn routes_parse() {
        // Whatever the host has: every entry is a valid subnet, no default.
        for (s, dev) in routes() {
            assert!(!dev.is_empty());
            assert!(s.prefix() > 0);
        }
    }
}
