//! Transport security: TLS on the system's root certificates (Mozilla's
//! bundled roots when it has none), plain HTTP only for loopback
//! registries and those listed as insecure (by `HOST[:PORT]`, `HOST`, or a
//! CIDR range holding the registry's address), and the hint naming the
//! flag and config file when a registry does not speak TLS.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Client, RegistryError};

impl Client {
    pub(crate) fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(system_roots())
                .build();
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls)
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(300)))
                // A stalled transfer fails (and is retried) instead of
                // hanging the pull.
                .timeout_per_read(Some(
                    self.options
                        .read_timeout
                        .unwrap_or(crate::client::DEFAULT_READ_TIMEOUT),
                ))
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                // Blob GETs redirect to storage (S3, a CDN); credentials must
                // not follow to another host.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
                .build()
                .into()
        })
    }

    /// True when `registry` is reached over plain HTTP: loopback (as
    /// docker: `localhost`, `127.0.0.0/8`, `::1`) or listed as insecure,
    /// by `HOST[:PORT]`, `HOST`, or a CIDR range holding its IP address.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let hostname = registry_hostname(registry);
        let ip = hostname.parse::<std::net::IpAddr>().ok();
        hostname == "localhost"
            || ip.is_some_and(|ip| ip.is_loopback())
            || self.options.insecure_registries.iter().any(|h| {
                h == registry || h == hostname || ip.is_some_and(|ip| cidr_contains(h, ip))
            })
    }

    /// The error for a failed request to `url`: a TLS failure with a
    /// registry not listed as insecure hints at the flag and the config
    /// file, since the usual cause is a plain-HTTP registry.
    pub(crate) fn transport_error(&self, url: &str, source: ureq::Error) -> RegistryError {
        let tls_failure = matches!(source, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || matches!(&source, ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData);
        if tls_failure && let Some(rest) = url.strip_prefix("https://") {
            let registry = rest.split('/').next().unwrap_or(rest).to_string();
            let config = match self.options.config_files.as_slice() {
                [] => "rbuild's config.json".to_string(),
                files => files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            return RegistryError::NotTls {
                registry,
                url: url.to_string(),
                config,
                source: Box::new(source),
            };
        }
        RegistryError::Transport {
            url: url.to_string(),
            source: Box::new(source),
        }
    }
}

/// The root certificates of the system (Debian's ca-certificates bundle,
/// or `SSL_CERT_FILE`); Mozilla's bundled roots when none can be read.
fn system_roots() -> ureq::tls::RootCerts {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::RootCerts::new_with_certs(&certs);
        }
    }
    ureq::tls::RootCerts::WebPki
}

/// The host part of a registry name: `[::1]:5000` → `::1`,
/// `reg.lan:5000` → `reg.lan`.
fn registry_hostname(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    }
}

/// True when `range` is a CIDR range (`10.0.0.0/8`, `fd00::/8`) holding
/// `ip`; false for anything else (host names, bad ranges).
fn cidr_contains(range: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let Some((net, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientOptions;

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let c = Client::new(ClientOptions {
            insecure_registries: vec![
                "reg.lan:5000".into(),
                "other.lan".into(),
                "10.1.0.0/16".into(),
                "fd00::/8".into(),
            ],
            ..ClientOptions::default()
        });
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000/v2");
        // All of 127.0.0.0/8 is loopback, as docker's default.
        assert_eq!(c.base_url("127.0.0.2:5000"), "http://127.0.0.2:5000/v2");
        assert_eq!(c.base_url("10.1.2.3:5000"), "http://10.1.2.3:5000/v2");
        assert_eq!(c.base_url("10.2.0.1:5000"), "https://10.2.0.1:5000/v2");
        assert_eq!(c.base_url("[fd00::2]:5000"), "http://[fd00::2]:5000/v2");
        assert_eq!(c.base_url("[fe80::1]:5000"), "https://[fe80::1]:5000/v2");
        // A name is not matched by a range, nor by a longer name.
        assert_eq!(
            c.base_url("reg.lan.evil:5000"),
            "https://reg.lan.evil:5000/v2"
        );
        assert_eq!(c.base_url("vm:5000"), "https://vm:5000/v2");
        assert_eq!(c.base_url("localhost"), "http://localhost/v2");
        assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000/v2");
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000/v2");
        assert_eq!(c.base_url("reg.lan:6000"), "https://reg.lan:6000/v2");
        assert_eq!(c.base_url("other.lan:1234"), "http://other.lan:1234/v2");
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io/v2");
        assert_eq!(c.base_url("ghcr.io"), "https://ghcr.io/v2");
    }

    #[test]
    fn insecure_registries_from_the_flag_or_env_lose_a_scheme_like_config_entries() {
        // Regression: only config-file entries were normalised, so
        // `--insecure-registry http://reg.lan:5000/` never matched.
        let c = Client::new(ClientOptions {
            insecure_registries: vec!["http://reg.lan:5000/".into(), "HTTPS://b.lan".into()],
            ..ClientOptions::default()
        });
        assert!(c.is_insecure("reg.lan:5000"));
        assert!(c.is_insecure("b.lan:443"));
        assert!(!c.is_insecure("reg.lan:6000"));
    }

    #[test]
    fn cidr_ranges_match_only_addresses_of_their_family_and_prefix() {
        let v4 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(cidr_contains("0.0.0.0/0", v4("203.0.113.9")));
        assert!(cidr_contains("192.0.2.2/32", v4("192.0.2.2")));
        assert!(!cidr_contains("192.0.2.2/32", v4("192.0.2.3")));
        assert!(cidr_contains("192.0.2.0/24", v4("192.0.2.255")));
        assert!(!cidr_contains("192.0.2.0/24", v4("fd00::2")));
        assert!(cidr_contains("::/0", v4("fd00::2")));
        assert!(!cidr_contains("192.0.2.0/33", v4("192.0.2.1")));
        assert!(!cidr_contains("reg.lan", v4("192.0.2.1")));
        assert!(!cidr_contains("192.0.2.0/x", v4("192.0.2.1")));
    }
}
