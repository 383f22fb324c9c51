//! `rbuild network create|ls|inspect|rm|connect|disconnect|prune`, with
//! docker's flags, output and messages. The definitions are the store's;
//! what containers use now comes from rbuild-net's host-wide state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rbuild_net::{CreateOptions, NetworkDef, Networks};

use super::table::Table;

/// `rbuild network …`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only bridge)
    #[arg(short = 'd', long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// Subnet in CIDR format (e.g. 172.30.0.0/16)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// IPv4 gateway for the subnet
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// Set metadata on the network (KEY=VALUE)
    #[arg(long, value_name = "LABEL")]
    pub label: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long, value_name = "ALIAS")]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// Runs a `network` subcommand.
pub fn run(root: &Path, cmd: NetworkCommand) -> anyhow::Result<ExitCode> {
    let nets = Networks::new(root);
    if matches!(
        cmd,
        NetworkCommand::Create(_) | NetworkCommand::Rm(_) | NetworkCommand::Prune(_)
    ) {
        // What killed containers left goes first (a network they used
        // becomes removable, their subnets free).
        let _ = rbuild_net::sweep();
    }
    // Networks made or removed by this command go to the event log, as
    // docker's network `create`/`destroy` events.
    let changes = matches!(
        cmd,
        NetworkCommand::Create(_) | NetworkCommand::Rm(_) | NetworkCommand::Prune(_)
    );
    let before = if changes { nets.list()? } else { Vec::new() };
    let code = dispatch(root, &nets, cmd)?;
    if changes {
        let after = nets.list()?;
        let record = |def: &rbuild_net::NetworkDef, action: &str| {
            rbuild_container::events::record(
                root,
                "network",
                action,
                &def.id,
                &[("name", &def.name), ("type", &def.driver)],
            )
        };
        for def in after
            .iter()
            .filter(|d| !before.iter().any(|b| b.id == d.id))
        {
            record(def, "create");
        }
        for def in before
            .iter()
            .filter(|b| !after.iter().any(|d| d.id == b.id))
        {
            record(def, "destroy");
        }
    }
    Ok(code)
}

fn dispatch(root: &Path, nets: &Networks, cmd: NetworkCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommand::Create(a) => create(nets, a),
        NetworkCommand::Ls(a) => ls(nets, a),
        NetworkCommand::Inspect(a) => inspect(nets, a),
        NetworkCommand::Rm(a) => rm(nets, a),
        NetworkCommand::Connect(a) => connect(root, nets, a),
        NetworkCommand::Disconnect(a) => disconnect(root, nets, a),
        NetworkCommand::Prune(a) => prune(nets, a),
    }
}

/// docker's daemon error line, exit 1.
fn daemon_error(e: &dyn std::fmt::Display, hint: Option<&str>) -> ExitCode {
    eprintln!("Error response from daemon: {e}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
    ExitCode::from(1)
}

/// The network (first, as docker resolves it) and the container of a
/// connect or disconnect, or the exit code of docker's error.
fn resolve(
    root: &Path,
    nets: &Networks,
    network: &str,
    container: &str,
    force: bool,
) -> Result<rbuild_container::Container, ExitCode> {
    if let Err(e) = nets.get(network) {
        if !force {
            return Err(daemon_error(&e, None));
        }
    }
    let found = rbuild_container::Containers::open(root).and_then(|cs| cs.get(container));
    found.map_err(|e| match e {
        rbuild_container::ContainerError::NoSuchContainer(_) => {
            daemon_error(&format!("No such container: {container}"), None)
        }
        e => daemon_error(&e, None),
    })
}

fn connect(root: &Path, nets: &Networks, a: ConnectArgs) -> anyhow::Result<ExitCode> {
    let c = match resolve(root, nets, &a.network, &a.container, false) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let ip = match a.ip.as_deref().map(str::parse::<std::net::Ipv4Addr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return Ok(daemon_error(
                &format!("invalid IPv4 address: {}", a.ip.unwrap_or_default()),
                None,
            ));
        }
    };
    match rbuild_container::monitor::connect(root, &c, &a.network, a.alias, ip) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(daemon_error(&e, e.hint())),
    }
}

fn disconnect(root: &Path, nets: &Networks, a: DisconnectArgs) -> anyhow::Result<ExitCode> {
    let c = match resolve(root, nets, &a.network, &a.container, a.force) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match rbuild_container::monitor::disconnect(root, &c, &a.network, a.force) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(daemon_error(&e, e.hint())),
    }
}

fn create(nets: &Networks, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut opts = CreateOptions {
        driver: a.driver,
        internal: a.internal,
        ..Default::default()
    };
    if let Some(s) = &a.subnet {
        opts.subnet = Some(s.parse().map_err(|e: String| anyhow::anyhow!(e))?);
    }
    if let Some(g) = &a.gateway {
        if opts.subnet.is_none() {
            anyhow::bail!("every ip-range or gateway must have a corresponding subnet");
        }
        opts.gateway = Some(
            g.parse()
                .map_err(|_| anyhow::anyhow!("invalid gateway address {g:?}"))?,
        );
    }
    opts.labels = labels(&a.label);
    match nets.create(&a.name, &opts) {
        Ok(def) => {
            println!("{}", def.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn labels(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

fn ls(nets: &Networks, a: LsArgs) -> anyhow::Result<ExitCode> {
    let all = nets.list()?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for n in &all {
            writeln!(out, "{}", if a.no_trunc { &n.id } else { n.short_id() })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
    for n in &all {
        let id = if a.no_trunc {
            n.id.clone()
        } else {
            n.short_id().to_string()
        };
        t.row(vec![id, n.name.clone(), n.driver.clone(), "local".into()]);
    }
    write!(out, "{}", t.render())?;
    Ok(ExitCode::SUCCESS)
}

/// docker's network JSON.
fn inspect_json(nets: &Networks, n: &NetworkDef) -> NetworkJson {
    use serde_json::json;
    let mut config = Vec::new();
    let subnet = match (n.subnet, n.name.as_str()) {
        (Some(s), _) => Some(s),
        // The default bridge's subnet exists while its bridge does.
        (None, rbuild_net::DEFAULT_NETWORK) => nets
            .endpoints(n)
            .first()
            .and_then(|e| rbuild_net::Subnet::new(e.ip, e.prefix)),
        _ => None,
    };
    if let Some(s) = subnet {
        config.push(json!({
            "Subnet": s.to_string(),
            "Gateway": n.gateway.unwrap_or(s.first_host()).to_string(),
        }));
    }
    let mut containers = serde_json::Map::new();
    for e in nets.endpoints(n) {
        containers.insert(
            e.container_id.clone(),
            json!({
                "Name": e.container_name,
                "EndpointID": e.veth,
                "MacAddress": "",
                "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                "IPv6Address": "",
            }),
        );
    }
    let mut options = serde_json::Map::new();
    if let Some(br) = n.bridge() {
        options.insert("com.docker.network.bridge.name".into(), br.into());
    }
    NetworkJson {
        name: n.name.clone(),
        id: n.id.clone(),
        created: rbuild_oci::time::rfc3339_nanos(n.created.0, n.created.1),
        scope: "local",
        driver: n.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: json!({ "Driver": "default", "Options": {}, "Config": config }),
        internal: n.internal,
        attachable: false,
        ingress: false,
        config_from: json!({ "Network": "" }),
        config_only: false,
        containers,
        options,
        labels: n.labels.clone(),
    }
}

/// docker's network JSON: a struct, not `json!`, for docker's field
/// order (serde_json's maps sort their keys).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkJson {
    name: String,
    id: String,
    created: String,
    scope: &'static str,
    driver: String,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: serde_json::Value,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_from: serde_json::Value,
    config_only: bool,
    containers: serde_json::Map<String, serde_json::Value>,
    options: serde_json::Map<String, serde_json::Value>,
    labels: BTreeMap<String, String>,
}

fn inspect(nets: &Networks, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.networks {
        match nets.get(name) {
            Ok(n) => found.push(inspect_json(nets, &n)),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&found)?
    )?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn rm(nets: &Networks, a: RmArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in &a.networks {
        match nets.remove(name) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn prune(nets: &Networks, a: PruneArgs) -> anyhow::Result<ExitCode> {
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = nets.prune()?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
