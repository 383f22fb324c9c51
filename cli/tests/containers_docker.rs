//! The container commands against docker 20.10 on the same image: one
//! scenario (a running container, an exited one, one with volumes), then
//! what `ps`, `inspect`, `logs -t`, `wait`, `diff` and `port` print and
//! the errors (messages and exit codes) of the faults the issue names.
//!
//! docker's side is recorded here as fixtures (`EXPECTED_ERRORS`, the ps
//! columns, the inspect key sets), taken from docker 20.10.24 with the
//! offline busybox. rbuild is held to them always; where a private
//! dockerd can run (root, Debian's docker.io), the same scenario runs on
//! docker too and is held to the same fixtures, so they stay docker's.

mod support;

use std::collections::BTreeSet;

use support::Rbuild;
use support::dockerd::Dockerd;

/// What one command printed and its exit code.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// rbuild or docker, run the same way.
trait Cli {
    fn name(&self) -> &'static str;
    fn run(&self, args: &[&str]) -> Out;
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "{} {args:?}: {}", self.name(), o.stderr);
        o.stdout
    }
}

impl Cli for Rbuild {
    fn name(&self) -> &'static str {
        "rbuild"
    }
    fn run(&self, args: &[&str]) -> Out {
        let r = Rbuild::run(self, args);
        Out {
            code: r.code,
            stdout: r.stdout,
            stderr: r.stderr,
        }
    }
}

impl Cli for Dockerd {
    fn name(&self) -> &'static str {
        "docker"
    }
    fn run(&self, args: &[&str]) -> Out {
        let o = self.docker(args);
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The containers of the scenario, by the placeholders the fixtures use.
struct Scenario {
    ids: Vec<(&'static str, String)>,
}

impl Scenario {
    /// `web` runs, `done` exited 3 after changing its filesystem, `vu`
    /// runs with a named and an anonymous volume.
    fn set_up(cli: &dyn Cli) -> Scenario {
        let net = ["--network", "none"];
        let mut web = vec!["run", "-d", "--name", "web"];
        web.extend(net);
        web.extend([
            "busybox",
            "sh",
            "-c",
            "echo hello; echo oops >&2; sleep 1000",
        ]);
        cli.ok(&web);
        let mut done = vec!["run", "--name", "done"];
        done.extend(net);
        done.extend([
            "busybox",
            "sh",
            "-c",
            "echo a; mkdir /newdir; touch /newdir/f; rm /bin/true; echo b >&2; exit 3",
        ]);
        let r = cli.run(&done);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (3, "a\n", "b\n"),
            "{}",
            cli.name()
        );
        cli.ok(&["volume", "create", "vol1"]);
        let mut vu = vec!["run", "-d", "--name", "vu", "-v", "vol1:/v", "-v", "/anon"];
        vu.extend(net);
        vu.extend(["busybox", "sleep", "1000"]);
        cli.ok(&vu);
        let ids = [("WEB", "web"), ("DONE", "done"), ("VU", "vu")]
            .into_iter()
            .map(|(k, name)| {
                let id = cli.ok(&["inspect", "-f", "{{.Id}}", name]);
                (k, id.trim().to_string())
            })
            .collect();
        Scenario { ids }
    }

    /// `text` with the scenario's ids as `<WEB>`…, short ids as `<web>`…,
    /// and the program's name as `PROG`.
    fn normalize(&self, cli: &dyn Cli, text: &str) -> String {
        let mut t = text.to_string();
        for (k, id) in &self.ids {
            t = t.replace(id.as_str(), &format!("<{k}>"));
            t = t.replace(&id[..12], &format!("<{}>", k.to_lowercase()));
        }
        t.replace(&format!("{}: ", cli.name()), "PROG: ")
            .replace(&format!("'{} ", cli.name()), "'PROG ")
    }

    fn tear_down(cli: &dyn Cli) {
        let _ = cli.run(&["rm", "-f", "-v", "web", "done", "vu"]);
        let _ = cli.run(&["volume", "rm", "vol1"]);
    }
}

/// docker 20.10's errors for the faults: (args, exit code,
/// stdout, stderr), ids and the program's name normalized.
const EXPECTED_ERRORS: &[(&[&str], i32, &str, &str)] = &[
    // An unknown container: each command's own words.
    (&["logs", "nope"], 1, "", "Error: No such container: nope\n"),
    (&["rm", "nope"], 1, "", "Error: No such container: nope\n"),
    (
        &["rm", "-f", "nope"],
        0,
        "",
        "Error: No such container: nope\n",
    ),
    (
        &["exec", "nope", "true"],
        1,
        "",
        "Error: No such container: nope\n",
    ),
    (&["port", "nope"], 1, "", "Error: No such container: nope\n"),
    (
        &["attach", "nope"],
        1,
        "",
        "Error: No such container: nope\n",
    ),
    (
        &["stop", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["wait", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["diff", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["top", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["restart", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["pause", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\n",
    ),
    (
        &["start", "nope"],
        1,
        "",
        "Error response from daemon: No such container: nope\nError: failed to start containers: nope\n",
    ),
    (
        &["kill", "nope"],
        1,
        "",
        "Error response from daemon: Cannot kill container: nope: No such container: nope\n",
    ),
    (
        &["rename", "nope", "x"],
        1,
        "",
        "Error response from daemon: No such container: nope\nError: failed to rename container named nope\n",
    ),
    // A name taken: create (exit 1), run (125), rename.
    (
        &["create", "--name", "web", "busybox"],
        1,
        "",
        "Error response from daemon: Conflict. The container name \"/web\" is already in use by container \"<WEB>\". You have to remove (or rename) that container to be able to reuse that name.\n",
    ),
    (
        &["run", "--name", "web", "--network", "none", "busybox"],
        125,
        "",
        "PROG: Error response from daemon: Conflict. The container name \"/web\" is already in use by container \"<WEB>\". You have to remove (or rename) that container to be able to reuse that name.\nSee 'PROG run --help'.\n",
    ),
    (
        &["rename", "done", "web"],
        1,
        "",
        "Error response from daemon: Error when allocating new name: Conflict. The container name \"/web\" is already in use by container \"<WEB>\". You have to remove (or rename) that container to be able to reuse that name.\nError: failed to rename container named done\n",
    ),
    // A stop of a stopped container is fine; kill, exec, top, pause of one
    // are not.
    (&["stop", "done"], 0, "done\n", ""),
    (
        &["kill", "done"],
        1,
        "",
        "Error response from daemon: Cannot kill container: done: Container <DONE> is not running\n",
    ),
    (
        &["exec", "done", "true"],
        1,
        "",
        "Error response from daemon: Container <DONE> is not running\n",
    ),
    (
        &["top", "done"],
        1,
        "",
        "Error response from daemon: Container <DONE> is not running\n",
    ),
    (
        &["pause", "done"],
        1,
        "",
        "Error response from daemon: Container <DONE> is not running\n",
    ),
    (
        &["unpause", "web"],
        1,
        "",
        "Error response from daemon: Container <WEB> is not paused\n",
    ),
    (
        &["attach", "done"],
        1,
        "",
        "You cannot attach to a stopped container, start it first\n",
    ),
    // rm of a running container without -f.
    (
        &["rm", "web"],
        1,
        "",
        "Error response from daemon: You cannot remove a running container <WEB>. Stop the container before attempting removal or force remove\n",
    ),
    // Volumes: unknown, in use.
    (
        &["volume", "inspect", "nov"],
        1,
        "[]\n",
        "Error: No such volume: nov\n",
    ),
    (
        &["volume", "rm", "nov"],
        1,
        "",
        "Error: No such volume: nov\n",
    ),
    (
        &["volume", "rm", "vol1"],
        1,
        "",
        "Error response from daemon: remove vol1: volume is in use - [<VU>]\n",
    ),
];

/// docker's `ps --format` placeholders that do not move with time, per
/// container (newest first): ID|Image|Command|Ports|Names|Labels|
/// Networks|State|LocalVolumes, and Mounts as a set.
const EXPECTED_PS: &[(&str, &[&str])] = &[
    (
        "<vu>|busybox|\"sleep 1000\"||vu||none|running|2",
        &["vol1", "<ANON>"],
    ),
    (
        "<done>|busybox|\"sh -c 'echo a; mkdi…\"||done||none|exited|0",
        &[],
    ),
    (
        "<web>|busybox|\"sh -c 'echo hello; …\"||web||none|running|0",
        &[],
    ),
];

/// docker 20.10's inspect keys (at the top and in the objects the issue
/// names) for `vu`.
const TOP_KEYS: &[&str] = &[
    "AppArmorProfile",
    "Args",
    "Config",
    "Created",
    "Driver",
    "ExecIDs",
    "GraphDriver",
    "HostConfig",
    "HostnamePath",
    "HostsPath",
    "Id",
    "Image",
    "LogPath",
    "MountLabel",
    "Mounts",
    "Name",
    "NetworkSettings",
    "Path",
    "Platform",
    "ProcessLabel",
    "ResolvConfPath",
    "RestartCount",
    "State",
];
const STATE_KEYS: &[&str] = &[
    "Dead",
    "Error",
    "ExitCode",
    "FinishedAt",
    "OOMKilled",
    "Paused",
    "Pid",
    "Restarting",
    "Running",
    "StartedAt",
    "Status",
];
const CONFIG_KEYS: &[&str] = &[
    "AttachStderr",
    "AttachStdin",
    "AttachStdout",
    "Cmd",
    "Domainname",
    "Entrypoint",
    "Env",
    "Hostname",
    "Image",
    "Labels",
    "OnBuild",
    "OpenStdin",
    "StdinOnce",
    "Tty",
    "User",
    "Volumes",
    "WorkingDir",
];
const HOST_CONFIG_KEYS: &[&str] = &[
    "AutoRemove",
    "Binds",
    "BlkioDeviceReadBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps",
    "BlkioWeight",
    "BlkioWeightDevice",
    "CapAdd",
    "CapDrop",
    "Cgroup",
    "CgroupParent",
    "CgroupnsMode",
    "ConsoleSize",
    "ContainerIDFile",
    "CpuCount",
    "CpuPercent",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "DeviceCgroupRules",
    "DeviceRequests",
    "Devices",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IOMaximumBandwidth",
    "IOMaximumIOps",
    "IpcMode",
    "Isolation",
    "KernelMemory",
    "KernelMemoryTCP",
    "Links",
    "LogConfig",
    "MaskedPaths",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "NetworkMode",
    "OomKillDisable",
    "OomScoreAdj",
    "PidMode",
    "PidsLimit",
    "PortBindings",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyPaths",
    "ReadonlyRootfs",
    "RestartPolicy",
    "Runtime",
    "SecurityOpt",
    "ShmSize",
    "UTSMode",
    "Ulimits",
    "UsernsMode",
    "VolumeDriver",
    "VolumesFrom",
];
/// Mounts of `vu`: the named volume, then the anonymous one (sorted by
/// destination), keys and the values that do not name the host.
const MOUNTS: &[&str] = &[
    "Destination=/anon Driver=local Mode= Propagation= RW=true Type=volume",
    "Destination=/v Driver=local Mode=z Name=vol1 Propagation= RW=true Type=volume",
];

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Holds `cli` (with the scenario set up) to the fixtures.
fn check(cli: &dyn Cli, sc: &Scenario) {
    let who = cli.name();
    // ps: default columns.
    let ps = cli.ok(&["ps", "-a"]);
    let mut lines = ps.lines();
    let header: Vec<&str> = lines.next().unwrap().split("   ").map(str::trim).collect();
    let header: Vec<&str> = header.into_iter().filter(|h| !h.is_empty()).collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{who}: {ps}"
    );
    let rows: Vec<String> = lines.map(|l| sc.normalize(cli, l)).collect();
    assert_eq!(rows.len(), 3, "{who}: {ps}");
    for (row, name) in rows.iter().zip(["<vu>", "<done>", "<web>"]) {
        assert!(
            row.starts_with(&format!("{name}   busybox   ")),
            "{who}: {row}"
        );
    }
    assert!(rows[1].contains("Exited (3) "), "{who}: {ps}");
    assert!(rows[0].contains("Up "), "{who}: {ps}");
    // ps: placeholders.
    let format = "{{.ID}}|{{.Image}}|{{.Command}}|{{.Ports}}|{{.Names}}|{{.Labels}}|{{.Networks}}|{{.State}}|{{.LocalVolumes}}";
    let out = sc.normalize(cli, &cli.ok(&["ps", "-a", "--format", format]));
    let want: Vec<&str> = EXPECTED_PS.iter().map(|(l, _)| *l).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{who}");
    let mounts = cli.ok(&["ps", "-a", "--format", "{{.Mounts}}"]);
    for (line, (_, want)) in mounts.lines().zip(EXPECTED_PS) {
        let got: BTreeSet<String> = line
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| {
                if m.ends_with('…') && m.chars().count() == 15 {
                    "<ANON>".to_string()
                } else {
                    m.to_string()
                }
            })
            .collect();
        assert_eq!(got, set(want), "{who}: {mounts}");
    }
    let created = cli.ok(&["ps", "-n", "1", "--format", "{{.CreatedAt}}|{{.Size}}"]);
    let (at, size) = created.trim().split_once('|').unwrap();
    assert!(
        at.len() == 29 && at.ends_with(" +0000 UTC") && at.as_bytes()[10] == b' ',
        "{who}: {at}"
    );
    assert!(
        size.contains(" (virtual ") && size.ends_with(')'),
        "{who}: {size}"
    );
    assert_eq!(
        sc.normalize(cli, &cli.ok(&["ps", "-q"])),
        "<vu>\n<web>\n",
        "{who}"
    );
    let table = cli.ok(&["ps", "-n", "1", "--format", "table {{.Names}}\t{{.State}}"]);
    assert_eq!(table, "NAMES     STATE\nvu        running\n", "{who}");

    // inspect: the key sets, and the mounts.
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["inspect", "vu"])).unwrap();
    let v = &v[0];
    assert_eq!(keys(v), set(TOP_KEYS), "{who} top");
    assert_eq!(keys(&v["State"]), set(STATE_KEYS), "{who} State");
    assert_eq!(keys(&v["Config"]), set(CONFIG_KEYS), "{who} Config");
    assert_eq!(
        keys(&v["HostConfig"]),
        set(HOST_CONFIG_KEYS),
        "{who} HostConfig"
    );
    let mut mounts: Vec<String> = v["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "Source" && (*k != "Name" || m["Mode"] == "z"))
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    mounts.sort();
    assert_eq!(mounts, MOUNTS, "{who}");
    assert_eq!(
        (
            &v["HostConfig"]["Binds"],
            &v["HostConfig"]["LogConfig"],
            &v["Config"]["Volumes"]
        ),
        (
            &serde_json::json!(["vol1:/v"]),
            &serde_json::json!({"Type": "json-file", "Config": {}}),
            &serde_json::json!({"/anon": {}})
        ),
        "{who}"
    );

    // logs -t, wait, diff, port.
    let logs = cli.run(&["logs", "-t", "web"]);
    for (stream, text) in [(&logs.stdout, "hello"), (&logs.stderr, "oops")] {
        let (ts, rest) = stream.trim_end().split_once(' ').unwrap();
        assert_eq!(rest, text, "{who}");
        assert!(
            ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
            "{who}: RFC 3339 with nanoseconds: {ts}"
        );
    }
    assert_eq!(cli.ok(&["wait", "done"]), "3\n", "{who}");
    // (docker's order varies from run to run: compared as a set.)
    let diff = cli.ok(&["diff", "done"]);
    let mut diff: Vec<&str> = diff.lines().collect();
    diff.sort_by_key(|l| &l[2..]);
    assert_eq!(
        diff,
        ["C /bin", "D /bin/true", "A /newdir", "A /newdir/f"],
        "{who}"
    );
    assert_eq!(cli.ok(&["port", "web"]), "", "{who}");

    // The errors.
    let mut wrong = Vec::new();
    for (args, code, stdout, stderr) in EXPECTED_ERRORS {
        let o = cli.run(args);
        let got = (
            o.code,
            sc.normalize(cli, &o.stdout),
            sc.normalize(cli, &o.stderr),
        );
        if got != (*code, stdout.to_string(), stderr.to_string()) {
            wrong.push(format!(
                "{args:?}: want {code} {stdout:?} {stderr:?}\n      got {} {:?} {:?}",
                got.0, got.1, got.2
            ));
        }
    }
    assert!(wrong.is_empty(), "{who}:\n{}", wrong.join("\n"));
}

#[test]
fn container_commands_print_what_docker_prints() {
    if !nix::unistd::geteuid().is_root() {
        // (Without root the default network is none as well; what is
        // compared does not depend on root.)
        println!("note: not root; rbuild alone is held to docker's fixtures");
    }
    let rb = Rbuild::new();
    rb.busybox();
    let sc = Scenario::set_up(&rb);
    check(&rb, &sc);
    Scenario::tear_down(&rb);
}

#[test]
fn the_fixtures_are_what_a_private_docker_prints() {
    let docker = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            support::skipped("the_fixtures_are_what_a_private_docker_prints", &why);
            return;
        }
    };
    let rb = Rbuild::new();
    rb.busybox();
    let archive = rb.command(&["save", "busybox"]).output().unwrap();
    assert!(archive.status.success());
    let tar = rb.path("busybox.tar");
    std::fs::write(&tar, &archive.stdout).unwrap();
    let load = docker.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let sc = Scenario::set_up(&docker);
    check(&docker, &sc);
    Scenario::tear_down(&docker);
}

/// A private dockerd leaves the host's `docker0` alone: one started with
/// `--bridge=none` deletes it, which broke the host docker's builds (its
/// RUN steps could no longer attach to the default bridge).
#[test]
fn a_private_dockerd_leaves_the_hosts_docker0_alone() {
    const TEST: &str = "a_private_dockerd_leaves_the_hosts_docker0_alone";
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !nix::unistd::geteuid().is_root() {
        support::skipped(TEST, "making a stand-in docker0 needs root");
        return;
    }
    // A stand-in when the host has none, taken away at the end.
    let made = !ip(&["link", "show", "docker0"]);
    if made && !ip(&["link", "add", "docker0", "type", "bridge"]) {
        support::skipped(TEST, "cannot make a stand-in docker0 (ip link add)");
        return;
    }
    let kept = match Dockerd::start() {
        Ok(docker) => {
            let while_up = ip(&["link", "show", "docker0"]);
            drop(docker);
            Some(while_up && ip(&["link", "show", "docker0"]))
        }
        Err(why) => {
            support::skipped(TEST, &format!("no private dockerd: {why}"));
            None
        }
    };
    if made {
        ip(&["link", "del", "docker0"]);
    }
    assert_ne!(
        kept,
        Some(false),
        "the host's docker0 went with the private dockerd"
    );
}
