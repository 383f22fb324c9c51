//! Published ports: docker's `-p [IP:][HOST:]CTR[/tcp|udp]` syntax. Pure.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p` (or, with no host port, one `-P` EXPOSE port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address to bind; `None`: every address (`0.0.0.0`).
    pub host_ip: Option<IpAddr>,
    /// Host port; `None`: a free port the kernel picks.
    pub host_port: Option<u16>,
    /// Port inside the container.
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortSpec {
    /// What `-P` publishes for an image's `EXPOSE` entry (`80`, `53/udp`):
    /// a random host port on every address.
    pub fn exposed(entry: &str) -> Result<PortSpec, String> {
        let (port, protocol) = split_protocol(entry)?;
        Ok(PortSpec {
            host_ip: None,
            host_port: None,
            container_port: parse_port(port, "containerPort", entry)?,
            protocol,
        })
    }
}

/// The ports a container publishes: each `-p` value, then with `-P`
/// (`publish_all`) every `exposed` port (`80/tcp`) no `-p` already names,
/// as docker does. An error names the bad value.
pub fn published_ports(
    publish: &[String],
    publish_all: bool,
    exposed: &[String],
) -> Result<Vec<PortSpec>, String> {
    let mut ports = Vec::new();
    for p in publish {
        ports.push(
            p.parse::<PortSpec>()
                .map_err(|e| format!("invalid publish {p:?}: {e}"))?,
        );
    }
    if publish_all {
        for e in exposed {
            let spec = PortSpec::exposed(e).map_err(|err| format!("image exposes {e:?}: {err}"))?;
            if !ports
                .iter()
                .any(|p| p.container_port == spec.container_port && p.protocol == spec.protocol)
            {
                ports.push(spec);
            }
        }
    }
    Ok(ports)
}

fn split_protocol(s: &str) -> Result<(&str, Protocol), String> {
    match s.rsplit_once('/') {
        None => Ok((s, Protocol::Tcp)),
        Some((p, "tcp")) => Ok((p, Protocol::Tcp)),
        Some((p, "udp")) => Ok((p, Protocol::Udp)),
        Some((_, other)) => Err(format!("invalid proto: {other}")),
    }
}

fn parse_port(s: &str, what: &str, spec: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 || what == "hostPort" => Ok(p),
        _ => Err(format!("invalid {what}: {s} (in {spec:?})")),
    }
}

impl FromStr for PortSpec {
    type Err = String;
    /// docker's forms: `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, each
    /// with an optional `/tcp` or `/udp`; `[::1]:HOST:CTR` for IPv6.
    fn from_str(spec: &str) -> Result<PortSpec, String> {
        let (rest, protocol) = split_protocol(spec)?;
        // The container port is after the last colon; the host port before
        // it; the address is whatever precedes (may hold colons: IPv6).
        let (front, ctr) = match rest.rsplit_once(':') {
            Some((f, c)) => (Some(f), c),
            None => (None, rest),
        };
        let container_port = parse_port(ctr, "containerPort", spec)?;
        let (ip, host) = match front {
            None => (None, None),
            Some(f) => match f.rsplit_once(':') {
                Some((ip, host)) => (Some(ip), Some(host)),
                None => (None, Some(f)),
            },
        };
        let host_port = match host {
            None | Some("") => None,
            Some(h) => match parse_port(h, "hostPort", spec)? {
                0 => None,
                p => Some(p),
            },
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(ip) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                Some(
                    ip.parse::<IpAddr>()
                        .map_err(|_| format!("invalid IP address: {ip}"))?,
                )
            }
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_take_p_then_exposed_ports_no_p_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ports =
            published_ports(&s(&["127.0.0.1:8080:80"]), true, &s(&["80/tcp", "53/udp"])).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].host_port, Some(8080));
        assert_eq!(
            (ports[1].container_port, ports[1].protocol),
            (53, Protocol::Udp)
        );
        assert_eq!(ports[1].host_port, None);
        assert!(
            published_ports(&s(&["80"]), false, &s(&["443"]))
                .unwrap()
                .len()
                == 1
        );
        let e = published_ports(&s(&["x:y"]), false, &[]).unwrap_err();
        assert!(e.contains("invalid publish \"x:y\""), "{e}");
    }

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn docker_forms() {
        assert_eq!(
            p("127.0.0.1:8080:80"),
            PortSpec {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: Some(8080),
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(p("8080:80/udp").protocol, Protocol::Udp);
        assert_eq!(p("8080:80").host_ip, None);
        assert_eq!(p("80").host_port, None);
        assert_eq!(p("127.0.0.1::80").host_port, None);
        assert_eq!(
            p("[::1]:9000:90").host_ip,
            Some("::1".parse::<IpAddr>().unwrap())
        );
        assert!("80/sctp".parse::<PortSpec>().is_err());
        assert!("x:80".parse::<PortSpec>().is_err());
        assert!("8080:0".parse::<PortSpec>().is_err());
        assert!("nope:1:80".parse::<PortSpec>().is_err());
        assert_eq!(PortSpec::exposed("53/udp").unwrap().container_port, 53);
    }
}
