//! The one rule for a container's network at start, shared by the
//! foreground `rbuild run` and the container monitor: what `--network`
//! means (docker's default, `bridge` as root; rootless, pasta as
//! podman's), which flags conflict with it, and when a network that cannot
//! be made falls back to `none` instead of failing the run.
//!
//! The fall-back applies only to the default (no `--network`) with nothing
//! published, and only when the host lacks the means (no `ip`/`nft`/pasta,
//! or they fail): a network the user asked for, or ports they publish,
//! are never silently dropped.

use std::path::Path;

use crate::NetError;
use crate::attach::{NetAttachment, NetRequest};
use crate::network::DEFAULT_NETWORK;
use crate::pasta::PASTA_NETWORK;

/// What `--network` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// `none`: a namespace with only loopback.
    None,
    /// `host`: the host's namespace.
    Host,
    /// A network to attach to: `bridge` (the default network; with
    /// pasta when rootless), `pasta`, or a user-defined network's name.
    Attach(String),
}

/// The mode for `--network` (`None` or empty: the default, `bridge`, as
/// docker's; also rootless, where pasta serves it).
pub fn net_mode(asked: Option<&str>) -> Result<NetMode, NetError> {
    Ok(match asked.unwrap_or_default() {
        "" | "default" | "bridge" => NetMode::Attach(DEFAULT_NETWORK.into()),
        "none" => NetMode::None,
        "host" => NetMode::Host,
        other if other.starts_with("container:") => {
            return Err(NetError::ContainerMode {
                mode: other.to_string(),
            });
        }
        other => NetMode::Attach(other.to_string()),
    })
}

/// What a container starts with.
#[derive(Debug)]
pub enum Networking {
    None,
    Host,
    Attached(NetAttachment),
}

impl Networking {
    /// The sandbox's network mode.
    pub fn sandbox_network(&self) -> rbuild_sandbox::Network {
        match self {
            Networking::None => rbuild_sandbox::Network::None,
            Networking::Host => rbuild_sandbox::Network::Host,
            Networking::Attached(a) => a.sandbox_network(),
        }
    }

    /// The attachment, if any.
    pub fn attachment(&self) -> Option<&NetAttachment> {
        match self {
            Networking::Attached(a) => Some(a),
            _ => None,
        }
    }

    /// Mounts the sandbox needs (the generated /etc files of a bridge).
    pub fn sandbox_mounts(&self) -> Vec<rbuild_sandbox::Mount> {
        self.attachment()
            .map(NetAttachment::sandbox_mounts)
            .unwrap_or_default()
    }

    /// Undoes the attachment (nothing for `none` and `host`).
    pub fn detach(self) -> Result<(), NetError> {
        match self {
            Networking::Attached(a) => a.detach(),
            _ => Ok(()),
        }
    }
}

/// The network set up for a container, and the warnings to print
/// (docker's `WARNING: …` lines, without the newline).
#[derive(Debug)]
pub struct SetUp {
    pub networking: Networking,
    pub warnings: Vec<String>,
}

/// Whether an attach failure of the default network falls back to
/// `none`: only when nothing was asked for (`defaulted`), nothing is
/// published, and the failure is the host's lack of means (a missing or
/// failing `ip`, `nft` or pasta) rather than a user error.
pub fn falls_back(defaulted: bool, publishes: bool, err: &NetError) -> bool {
    defaulted && !publishes && matches!(err, NetError::Tool { .. } | NetError::Command { .. })
}

/// Sets up the network `asked` (`--network`; `None`: the default) for
/// the container of `req` (its `network` field is filled in here), under
/// the rules above. As root a bridge network is attached; rootless the
/// default network is pasta's, and a user-defined one is refused.
pub fn set_up(root: &Path, asked: Option<&str>, req: NetRequest) -> Result<SetUp, NetError> {
    let rootless = !nix::unistd::geteuid().is_root();
    set_up_with(asked, req, rootless, |req, pasta| {
        if pasta {
            crate::attach::attach_pasta(&req.ports)
        } else {
            crate::attach::attach(root, req)
        }
    })
}

/// [`set_up`] with the attach step given (`pasta`: attach through pasta
/// rather than a bridge), so the rule is tested without root.
pub fn set_up_with(
    asked: Option<&str>,
    mut req: NetRequest,
    rootless: bool,
    attach: impl FnOnce(&NetRequest, bool) -> Result<NetAttachment, NetError>,
) -> Result<SetUp, NetError> {
    let defaulted = matches!(asked, None | Some("" | "default"));
    let mut warnings = Vec::new();
    let network = match net_mode(asked)? {
        NetMode::None => {
            if !req.ports.is_empty() {
                return Err(NetError::PortsWithoutNetwork);
            }
            return Ok(SetUp {
                networking: Networking::None,
                warnings,
            });
        }
        NetMode::Host => {
            if !req.ports.is_empty() {
                warnings.push(
                    "WARNING: Published ports are discarded when using host network mode".into(),
                );
            }
            return Ok(SetUp {
                networking: Networking::Host,
                warnings,
            });
        }
        NetMode::Attach(n) => n,
    };
    let pasta = rootless && (network == DEFAULT_NETWORK || network == PASTA_NETWORK);
    if network == DEFAULT_NETWORK && !req.aliases.is_empty() {
        return Err(NetError::AliasOnDefaultBridge);
    }
    if rootless && !pasta {
        return Err(NetError::RootlessUserNetwork { name: network });
    }
    req.network = network;
    let publishes = !req.ports.is_empty();
    match attach(&req, pasta) {
        Ok(a) => Ok(SetUp {
            networking: Networking::Attached(a),
            warnings,
        }),
        Err(e) if falls_back(defaulted, publishes, &e) => {
            let why = e.to_string();
            let what = if pasta {
                "rootless networking (pasta)"
            } else {
                "bridge networking"
            };
            warnings.push(format!(
                "WARNING: {what} is unavailable ({}); running with --network none",
                why.lines().next().unwrap_or_default()
            ));
            Ok(SetUp {
                networking: Networking::None,
                warnings,
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::PortSpec;

    fn req(ports: &[&str], aliases: &[&str]) -> NetRequest {
        NetRequest {
            container_id: "0123456789ab".repeat(2),
            ports: ports
                .iter()
                .map(|p| p.parse::<PortSpec>().unwrap())
                .collect(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ..NetRequest::default()
        }
    }

    fn missing_tool() -> NetError {
        NetError::Tool {
            command: "nft".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }

    /// Runs the rule with an attach step that fails with `err`, recording
    /// what it was asked.
    fn with_failing(
        asked: Option<&str>,
        r: NetRequest,
        rootless: bool,
        err: fn() -> NetError,
    ) -> (Result<SetUp, NetError>, Option<(String, bool)>) {
        let mut seen = None;
        let out = set_up_with(asked, r, rootless, |req, pasta| {
            seen = Some((req.network.clone(), pasta));
            Err(err())
        });
        (out, seen)
    }

    #[test]
    fn the_default_falls_back_to_none_when_the_host_cannot_make_bridges() {
        for asked in [None, Some(""), Some("default")] {
            let (out, seen) = with_failing(asked, req(&[], &[]), false, missing_tool);
            let out = out.unwrap();
            assert!(matches!(out.networking, Networking::None));
            assert_eq!(seen, Some(("bridge".into(), false)));
            assert!(
                out.warnings[0].starts_with("WARNING: bridge networking is unavailable (")
                    && out.warnings[0].ends_with("); running with --network none"),
                "{:?}",
                out.warnings
            );
        }
    }

    #[test]
    fn an_asked_network_or_published_ports_never_fall_back() {
        let (out, _) = with_failing(Some("bridge"), req(&[], &[]), false, missing_tool);
        assert!(matches!(out, Err(NetError::Tool { .. })));
        let (out, _) = with_failing(None, req(&["8080:80"], &[]), false, missing_tool);
        assert!(matches!(out, Err(NetError::Tool { .. })));
        // A user error is never a fall-back either.
        let (out, _) = with_failing(None, req(&[], &[]), false, || NetError::NotFound {
            name: "x".into(),
        });
        assert!(matches!(out, Err(NetError::NotFound { .. })));
    }

    #[test]
    fn rootless_the_default_and_pasta_go_through_pasta_and_user_networks_are_refused() {
        for asked in [None, Some("bridge"), Some("pasta")] {
            let (_, seen) = with_failing(asked, req(&[], &[]), true, missing_tool);
            assert!(seen.is_some_and(|(_, pasta)| pasta), "{asked:?}");
        }
        let (out, seen) = with_failing(Some("appnet"), req(&[], &[]), true, missing_tool);
        assert!(seen.is_none());
        let err = out.unwrap_err();
        assert!(matches!(err, NetError::RootlessUserNetwork { .. }));
        assert!(err.hint().unwrap().contains("pasta"));
        // Missing pasta: the default falls back with a warning naming it.
        let (out, _) = with_failing(None, req(&[], &[]), true, missing_tool);
        assert!(out.unwrap().warnings[0].contains("rootless networking (pasta)"));
    }

    #[test]
    fn none_and_host_follow_dockers_rules_for_ports_and_aliases() {
        let never = |_: &NetRequest, _: bool| -> Result<NetAttachment, NetError> {
            panic!("no attach for none or host")
        };
        assert!(matches!(
            set_up_with(Some("none"), req(&["80"], &[]), false, never),
            Err(NetError::PortsWithoutNetwork)
        ));
        let host = set_up_with(Some("host"), req(&["80"], &[]), false, never).unwrap();
        assert!(matches!(host.networking, Networking::Host));
        assert_eq!(
            host.warnings,
            ["WARNING: Published ports are discarded when using host network mode"]
        );
        assert!(matches!(
            set_up_with(None, req(&[], &["www"]), false, never),
            Err(NetError::AliasOnDefaultBridge)
        ));
        assert!(matches!(
            set_up_with(Some("container:web"), req(&[], &[]), false, never),
            Err(NetError::ContainerMode { .. })
        ));
    }
}
