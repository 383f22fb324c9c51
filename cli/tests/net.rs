//! Container networking end to end: published ports reached from the host
//! over loopback, outbound traffic to a network namespace the test makes
//! (nothing else is contacted), containers on a user-defined network
//! reaching each other by name, docker's errors, and nothing left on the
//! host after many runs or after a holder is killed.
//!
//! Bridges, veths and nftables need root and `ip`/`nft`: without them the
//! tests say they are skipped. They share host-wide state (the default
//! bridge, the nftables table), so they run one at a time.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::Rbuild;

static HOST_NETWORK: Mutex<()> = Mutex::new(());

/// The lock on host network state, or `None` (and a skip line) when the
/// tests cannot run here.
fn net_test(name: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !nix::unistd::geteuid().is_root() {
        support::skipped(name, "bridge networking needs root");
        return None;
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            support::skipped(
                name,
                &format!("{tool} is not installed (scripts/install-deps)"),
            );
            return None;
        }
    }
    Some(HOST_NETWORK.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`, retrying until `deadline` while the
/// container starts; the body of a 200.
fn http_get(port: u16, path: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut resp = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut resp).is_ok()
                && resp.starts_with("HTTP/1.")
                && resp.split(' ').nth(1) == Some("200")
            {
                return resp.split("\r\n\r\n").nth(1).map(str::to_string);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// An httpd serving `www` as a foreground `rbuild run` in the background;
/// SIGTERM makes its shell exit (a pid 1 without a handler ignores it).
fn serve(rb: &Rbuild, www: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["run", "--rm", "-v"];
    let volume = format!("{}:/www:ro", www.display());
    args.push(&volume);
    args.extend(extra);
    args.extend([
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait",
    ]);
    rb.command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a [`serve`]d container the way `docker stop` starts: SIGTERM to
/// `rbuild run`, which forwards it; asserts it exits 0.
fn stop(child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "run ended with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn www(rb: &Rbuild, body: &str) -> PathBuf {
    rb.tree("www", &[("index.html", body)])
}

/// What rbuild could leave on the host: its links, namespace files,
/// endpoint records (leases) and nftables table.
fn host_state() -> Vec<String> {
    let mut out = Vec::new();
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with("rbv") || name.starts_with("rbr-") || name == "rbuild0" {
            out.push(format!("link {name}"));
        }
    }
    for sub in ["netns", "endpoints", "etc"] {
        let dir = Path::new(rbuild_net_runtime()).join(sub);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts.lines().filter(|l| l.contains(rbuild_net_runtime())) {
        out.push(format!("mount {l}"));
    }
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    for t in String::from_utf8_lossy(&tables.stdout).lines() {
        if t.trim() == "table ip rbuild" {
            out.push(t.to_string());
        }
    }
    out
}

fn rbuild_net_runtime() -> &'static str {
    "/run/rbuild/net-v1"
}

#[test]
fn a_published_port_serves_the_host_over_loopback() {
    let Some(_lock) = net_test("a_published_port_serves_the_host_over_loopback") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "hello from the container\n");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let server = serve(&rb, &www, &["-p", &publish]);
    let body = http_get(port, "/index.html", Duration::from_secs(20));
    stop(server);
    assert_eq!(body.as_deref(), Some("hello from the container\n"));
    assert_eq!(host_state(), Vec::<String>::new());
}

#[test]
fn a_port_already_bound_is_refused_with_dockers_message() {
    let Some(_lock) = net_test("a_port_already_bound_is_refused_with_dockers_message") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = rb.run(&[
        "run",
        "--rm",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(host_state(), Vec::<String>::new());
    // -p needs a network to publish on.
    let r = rb.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("conflicting options: port publishing"),
        "{}",
        r.stderr
    );
}

/// A namespace the test owns, joined to the host by a veth pair:
/// host side `10.254.<n>.1/24`, namespace side `.2`, with no route back
/// to any container subnet (replies only work through masquerading).
struct Peer {
    file: PathBuf,
    host_link: String,
    addr: String,
    httpd: Option<Child>,
}

impl Peer {
    fn new(dir: &Path, www: &Path) -> Peer {
        let n = std::process::id() % 200 + 20;
        let file = dir.join("peer-netns");
        std::fs::write(&file, "").unwrap();
        let ok = |c: &mut Command| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(Command::new("unshare")
            .arg(format!("--net={}", file.display()))
            .arg("true"));
        let host_link = format!("rbtest{n}h");
        let ns_link = format!("rbtest{n}n");
        let addr = format!("10.254.{n}.2");
        ok(Command::new("ip").args([
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
        ]));
        ok(Command::new("ip")
            .args(["link", "set", &ns_link, "netns"])
            .arg(&file));
        ok(Command::new("ip").args([
            "addr",
            "add",
            &format!("10.254.{n}.1/24"),
            "dev",
            &host_link,
        ]));
        ok(Command::new("ip").args(["link", "set", &host_link, "up"]));
        let in_ns = |args: &[&str]| {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", file.display())).args(args);
            c
        };
        ok(&mut in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &ns_link,
        ]));
        ok(&mut in_ns(&["ip", "link", "set", &ns_link, "up"]));
        ok(&mut in_ns(&["ip", "link", "set", "lo", "up"]));
        let httpd = in_ns(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            &format!("{addr}:8080"),
            "-h",
        ])
        .arg(www)
        .spawn()
        .unwrap();
        Peer {
            file,
            host_link,
            addr,
            httpd: Some(httpd),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut h) = self.httpd.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = nix::mount::umount2(&self.file, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_container_reaches_out_through_the_bridge_with_masquerading() {
    let Some(_lock) = net_test("a_container_reaches_out_through_the_bridge_with_masquerading")
    else {
        return;
    };
    if Command::new("busybox").arg("true").status().is_err() {
        support::skipped(
            "a_container_reaches_out_through_the_bridge_with_masquerading",
            "the host has no busybox (busybox-static)",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "outside\n");
    let peer = Peer::new(rb.dir.path(), &www);
    let url = format!("http://{}:8080/index.html", peer.addr);
    // The default network as root is the bridge; retry while httpd starts.
    let script =
        format!("for i in $(seq 50); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1");
    let out = rb.ok(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert_eq!(out, "outside\n");
    // --network none has only loopback.
    let r = rb.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "wget",
        "-q",
        "-T",
        "2",
        "-O-",
        &url,
    ]);
    assert_ne!(r.code, 0);
    let links = rb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(links, "lo\n");
    drop(peer);
    assert_eq!(host_state(), Vec::<String>::new());
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let Some(_lock) = net_test("containers_on_a_user_network_reach_each_other_by_name") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "by name\n");
    let id = rb.ok(&["network", "create", "appnet"]);
    assert_eq!(id.trim().len(), 64);
    let server = serve(
        &rb,
        &www,
        &[
            "--network",
            "appnet",
            "--name",
            "web",
            "--network-alias",
            "www",
        ],
    );
    let fetch = |host: &str| {
        let script = format!(
            "for i in $(seq 100); do wget -q -O- http://{host}/index.html && exit 0; sleep 0.1; done; exit 1"
        );
        rb.run(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "sh",
            "-c",
            &script,
        ])
    };
    let by_name = fetch("web");
    let by_alias = fetch("www");
    // While web runs, its network cannot go.
    let rm = rb.run(&["network", "rm", "appnet"]);
    let inspect = rb.ok(&["network", "inspect", "appnet"]);
    // The default bridge resolves no container names (as docker's).
    let on_default = rb.run(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-q",
        "-T",
        "2",
        "-O-",
        "http://web/",
    ]);
    stop(server);
    assert_eq!(by_name.stdout, "by name\n", "{}", by_name.stderr);
    assert_eq!(by_alias.stdout, "by name\n", "{}", by_alias.stderr);
    assert_eq!(rm.code, 1);
    assert!(
        rm.stderr
            .contains("error while removing network: network appnet id ")
            && rm.stderr.contains(" has active endpoints"),
        "{}",
        rm.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let containers = v[0]["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1, "{inspect}");
    assert_eq!(containers.values().next().unwrap()["Name"], "web");
    assert_ne!(on_default.code, 0);
    assert_eq!(rb.ok(&["network", "rm", "appnet"]), "appnet\n");
    assert_eq!(host_state(), Vec::<String>::new());
}

/// The leak check: 100 runs, alternating the default bridge and
/// a user network, each publishing a TCP and a UDP port, leave no link,
/// namespace file or mount, lease, /etc directory or nftables table
/// behind (about 40 s on 2 busy cores).
#[test]
fn a_hundred_runs_leave_nothing_on_the_host() {
    let Some(_lock) = net_test("a_hundred_runs_leave_nothing_on_the_host") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    rb.ok(&["network", "create", "leaknet"]);
    let before = host_state();
    assert_eq!(before, Vec::<String>::new());
    let started = Instant::now();
    for i in 0..100 {
        let network = if i % 2 == 0 { "bridge" } else { "leaknet" };
        let out = rb.ok(&[
            "run",
            "--rm",
            "--network",
            network,
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::53/udp",
            "busybox",
            "sh",
            "-c",
            "ip -4 -o addr show eth0 | wc -l",
        ]);
        assert_eq!(out, "1\n", "run {i}");
    }
    eprintln!("100 runs in {:?}", started.elapsed());
    assert_eq!(host_state(), before);
    rb.ok(&["network", "rm", "leaknet"]);
}

#[test]
fn a_killed_run_is_swept_by_system_check() {
    let Some(_lock) = net_test("a_killed_run_is_swept_by_system_check") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "x\n");
    let port = free_port();
    let server = serve(&rb, &www, &["-p", &format!("127.0.0.1:{port}:80")]);
    assert!(http_get(port, "/index.html", Duration::from_secs(20)).is_some());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = server.wait_with_output();
    assert_ne!(host_state(), Vec::<String>::new());
    let check = rb.ok(&["system", "check"]);
    assert!(
        check.contains("removed network endpoint of container "),
        "{check}"
    );
    assert_eq!(host_state(), Vec::<String>::new());
}

#[test]
fn network_commands_speak_docker() {
    // Definitions need no root: only attaching does.
    let rb = Rbuild::new();
    let ls = rb.ok(&["network", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines[0].starts_with("NETWORK ID     NAME      DRIVER    SCOPE"),
        "{ls}"
    );
    assert!(lines[1].contains("   bridge    bridge    local"), "{ls}");
    assert!(lines[2].contains("   host      host      local"), "{ls}");
    assert!(lines[3].contains("   none      null      local"), "{ls}");
    rb.ok(&["network", "create", "--subnet", "10.251.0.0/24", "n1"]);
    let dup = rb.fails(&["network", "create", "n1"]);
    assert_eq!(dup.code, 1);
    assert_eq!(
        dup.stderr,
        "Error response from daemon: network with name n1 already exists\n"
    );
    let overlap = rb.fails(&["network", "create", "--subnet", "10.251.0.0/16", "n2"]);
    assert!(
        overlap
            .stderr
            .contains("Pool overlaps with other one on this address space"),
        "{}",
        overlap.stderr
    );
    let predefined = rb.fails(&["network", "rm", "bridge"]);
    assert_eq!(
        predefined.stderr,
        "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"
    );
    let missing = rb.fails(&["network", "inspect", "nope"]);
    assert_eq!(missing.stdout, "[]\n");
    assert_eq!(
        missing.stderr,
        "Error response from daemon: network nope not found\n"
    );
    let v: serde_json::Value = serde_json::from_str(&rb.ok(&["network", "inspect", "n1"])).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.251.0.0/24");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.251.0.1");
    assert_eq!(v[0]["Driver"], "bridge");
    let connect = rb.fails(&["network", "connect", "n1", "somecontainer"]);
    assert_eq!(
        connect.stderr,
        "Error response from daemon: No such container: somecontainer\n"
    );
    rb.ok(&["network", "create", "n3"]);
    let pruned = rb.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nn1\nn3\n");
    assert_eq!(rb.ok(&["network", "ls", "-q"]).lines().count(), 3);
}

/// The material's walk-through with lasting containers: a web server run
/// detached with a published port, fetched from the host; `port` and
/// `inspect` show the bound port; a second detached container on a user
/// network reaches another by name; after `rm -f` nothing is left.
#[test]
fn detached_containers_publish_ports_and_reach_each_other_by_name() {
    let Some(_lock) = net_test("detached_containers_publish_ports_and_reach_each_other_by_name")
    else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "detached\n");
    let port = free_port();
    let volume = format!("{}:/www:ro", www.display());
    let publish = format!("127.0.0.1:{port}:80");
    rb.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", &volume, "busybox", "httpd", "-f",
        "-p", "80", "-h", "/www",
    ]);
    let body = http_get(port, "/index.html", Duration::from_secs(10));
    let port_line = rb.ok(&["port", "web"]);
    let ports = rb.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web"]);
    let ip = rb.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);

    rb.ok(&["network", "create", "detnet"]);
    rb.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "detnet",
        "--network-alias",
        "files",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    rb.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "detnet",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 100); do wget -q -O- http://srv/index.html && wget -q -O- http://files/index.html && exit 0; sleep 0.1; done; exit 1",
    ]);
    let code = rb.ok(&["wait", "client"]);
    let logs = rb.run(&["logs", "client"]);
    for c in ["web", "srv", "client"] {
        rb.ok(&["rm", "-f", c]);
    }
    rb.ok(&["network", "rm", "detnet"]);

    assert_eq!(body.as_deref(), Some("detached\n"));
    assert_eq!(port_line, format!("80/tcp -> 127.0.0.1:{port}\n"));
    assert!(
        ports.contains(&format!("\"HostPort\":\"{port}\"")),
        "{ports}"
    );
    assert!(ip.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{ip:?}");
    assert_eq!(code.trim(), "0", "{}{}", logs.stdout, logs.stderr);
    assert_eq!(
        logs.stdout, "detached\ndetached\n",
        "by name, then by alias"
    );
    assert_eq!(host_state(), Vec::<String>::new());
}

/// A store and a copy of the binary that user nobody (65534) owns, to run
/// rbuild rootless through setpriv.
struct Nobody {
    bin: PathBuf,
    root: PathBuf,
    home: PathBuf,
}

impl Nobody {
    fn new(rb: &Rbuild) -> Nobody {
        let top = rb.dir.path();
        std::fs::set_permissions(top, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let bin = rb.path("rbuild-nobody");
        std::fs::copy(support::bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (root, home) = (rb.path("nobody-root"), rb.path("nobody-home"));
        for d in [&root, &home] {
            std::fs::create_dir_all(d).unwrap();
            support::tool("chown", &["-R", "65534:65534", support::s(d)]);
        }
        let me = Nobody { bin, root, home };
        let made = me
            .command(&support::repo_root().join("testdata/make-busybox"), &[])
            .arg(&me.bin)
            .arg(&me.root)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        me
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(program)
            .args(args)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.home)
            .stdin(Stdio::null());
        c
    }

    fn rbuild(&self, args: &[&str]) -> Command {
        let mut full = vec!["--root", support::s(&self.root)];
        full.extend(args);
        self.command(&self.bin, &full)
    }

    fn run(&self, args: &[&str]) -> support::Run {
        support::to_run(self.rbuild(args).output().unwrap())
    }
}

/// pasta processes of user nobody (and `cat`, which held pasta's own
/// namespaces before the sandbox made them): what a rootless container
/// could leak.
fn nobodys_pastas() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let name = status.lines().next().unwrap_or("").to_string();
        let nobody = status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534"));
        if nobody && (name.contains("pasta") || name.contains("passt") || name.ends_with("\tcat")) {
            out.push(format!("{} {name}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// Why the rootless tests cannot run here, if they cannot.
fn rootless_unavailable() -> Option<String> {
    for tool in ["pasta", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed (scripts/install-deps)"));
        }
    }
    let tun = std::fs::metadata("/dev/net/tun")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006);
    if !tun.unwrap_or(false) {
        return Some(
            "/dev/net/tun is not open to other users (scripts/install-deps sets 0666)".into(),
        );
    }
    None
}

/// Rootless networking through pasta, as podman's: the default network
/// reaches out (to a namespace the test made), `-p` publishes on the
/// host's loopback for a foreground and a detached run, `none` and `host`
/// are unchanged, user-defined networks are refused with a hint, and no
/// pasta outlives its container, even when the holder is killed.
#[test]
fn a_rootless_container_reaches_out_and_publishes_through_pasta() {
    let test = "a_rootless_container_reaches_out_and_publishes_through_pasta";
    let Some(_lock) = net_test(test) else {
        return;
    };
    if let Some(why) = rootless_unavailable() {
        support::skipped(test, &why);
        return;
    }
    let rb = Rbuild::new();
    let nobody = Nobody::new(&rb);
    let www = www(&rb, "rootless\n");
    support::tool("chmod", &["-R", "a+rX", support::s(&www)]);
    let before = nobodys_pastas();
    assert_eq!(before, Vec::<String>::new());

    // Outbound: the peer's address is routed on the host only.
    let peer = Peer::new(rb.dir.path(), &www);
    let url = format!("http://{}:8080/index.html", peer.addr);
    let script =
        format!("for i in $(seq 50); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1");
    let out = nobody.run(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert_eq!(out.stdout, "rootless\n", "{}", out.stderr);
    let none = nobody.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(none.stdout, "lo\n", "{}", none.stderr);
    let links = nobody.run(&["run", "--rm", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(links.stdout, "eth0\nlo\n", "{}", links.stderr);
    drop(peer);

    // -p in the foreground, fetched from the host.
    let volume = format!("{}:/www:ro", www.display());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let server = nobody
        .rbuild(&[
            "run",
            "--rm",
            "-p",
            &publish,
            "-v",
            &volume,
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = http_get(port, "/index.html", Duration::from_secs(20));
    // Killing the holder: its pasta goes with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = server.wait_with_output();
    assert_eq!(body.as_deref(), Some("rootless\n"));

    // -p on a detached container, with `port`.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let started = nobody.run(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", &volume, "busybox", "httpd", "-f",
        "-p", "80", "-h", "/www",
    ]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let body = http_get(port, "/index.html", Duration::from_secs(10));
    let port_line = nobody.run(&["port", "web"]);
    let rm = nobody.run(&["rm", "-f", "web"]);
    assert_eq!(body.as_deref(), Some("rootless\n"));
    assert_eq!(port_line.stdout, format!("80/tcp -> 127.0.0.1:{port}\n"));
    assert_eq!(rm.code, 0, "{}", rm.stderr);

    // kill -9 of a detached container's monitor (pasta's parent): pasta
    // and its placeholder go with it, and the container reads as exited.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !nobodys_pastas().is_empty() && Instant::now() < deadline {
        // (web's monitor may still be on its way out.)
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(nobodys_pastas(), before);
    let started = nobody.run(&["run", "-d", "--name", "doomed", "busybox", "sleep", "60"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let monitor = nobodys_pastas()
        .iter()
        .find(|p| p.contains("pass"))
        .and_then(|p| {
            // pasta's parent is the sandbox's init, whose parent is the
            // monitor.
            let ppid = |pid: &str| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("PPid:"))
                    .map(|v| v.trim().to_string())
            };
            ppid(&ppid(p.split(' ').next()?)?)?.parse::<i32>().ok()
        })
        .expect("the detached container's pasta and its monitor");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !nobodys_pastas().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(nobodys_pastas(), before, "pasta outlived its monitor");
    let ps = nobody.run(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.stdout.contains("doomed Exited"), "{}", ps.stdout);
    assert_eq!(nobody.run(&["rm", "doomed"]).code, 0);

    // A user-defined network stays root's.
    let user_net = nobody.run(&["run", "--rm", "--network", "appnet", "busybox", "true"]);
    assert_eq!(user_net.code, 125);
    assert!(
        user_net.stderr.contains("user-defined networks need root")
            && user_net
                .stderr
                .contains("hint: rootless containers get outbound access and -p through pasta"),
        "{}",
        user_net.stderr
    );

    // Many runs leave no pasta behind either.
    for i in 0..20 {
        let r = nobody.run(&[
            "run",
            "--rm",
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::53/udp",
            "busybox",
            "true",
        ]);
        assert_eq!(r.code, 0, "run {i}: {}", r.stderr);
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    while !nobodys_pastas().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(nobodys_pastas(), before);
}

/// The range [`give_nobody_subids`] adds.
const NOBODY_SUBIDS: &str = "nobody:300000:65536\n";

/// Subordinate id ranges this test gave nobody; taken back on drop
/// (even when the test fails), so the host's files end as they were.
struct NobodySubids {
    added: Vec<&'static str>,
}

impl Drop for NobodySubids {
    fn drop(&mut self) {
        for file in &self.added {
            if let Ok(text) = std::fs::read_to_string(file) {
                let _ = std::fs::write(file, text.replacen(NOBODY_SUBIDS, "", 1));
            }
        }
    }
}

/// Gives user nobody subordinate uid and gid ranges (as `useradd` does
/// for a new user) where it has none, until the guard is dropped.
fn give_nobody_subids() -> NobodySubids {
    let mut added = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.starts_with("nobody:") || l.starts_with("65534:"))
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .unwrap();
            std::io::Write::write_all(&mut f, NOBODY_SUBIDS.as_bytes()).unwrap();
            added.push(file);
        }
    }
    NobodySubids { added }
}

/// Rootless default networking keeps the user's subordinate ids, as
/// podman's: the container's own user namespace owns the network
/// namespace pasta serves, so a process of another uid (USER 1000), and
/// a file given to yet another, work while the container reaches the
/// test's address and serves a published port.
#[test]
fn a_rootless_container_on_pasta_keeps_its_subordinate_ids() {
    let test = "a_rootless_container_on_pasta_keeps_its_subordinate_ids";
    let Some(_lock) = net_test(test) else {
        return;
    };
    if let Some(why) = rootless_unavailable() {
        support::skipped(test, &why);
        return;
    }
    let _subids = give_nobody_subids();
    let rb = Rbuild::new();
    let nobody = Nobody::new(&rb);
    let www = www(&rb, "ids\n");
    support::tool("chmod", &["-R", "a+rX", support::s(&www)]);
    let before = nobodys_pastas();

    // Another uid, and a file chowned to a third, with outbound access.
    let peer = Peer::new(rb.dir.path(), &www);
    let url = format!("http://{}:8080/index.html", peer.addr);
    let script = format!(
        "id -u; for i in $(seq 50); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1"
    );
    let out = nobody.run(&["run", "--rm", "-u", "1000", "busybox", "sh", "-c", &script]);
    drop(peer);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1000\nids\n", "{}", out.stderr);
    let chowned = nobody.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/f && chown 1234:2345 /tmp/f && stat -c %u:%g /tmp/f",
    ]);
    assert_eq!(chowned.stdout, "1234:2345\n", "{}", chowned.stderr);

    // A server running as uid 1000 behind -p, detached.
    let volume = format!("{}:/www:ro", www.display());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let started = nobody.run(&[
        "run", "-d", "--name", "web", "-u", "1000", "-p", &publish, "-v", &volume, "busybox",
        "httpd", "-f", "-p", "8080", "-h", "/www",
    ]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let body = http_get(port, "/index.html", Duration::from_secs(10));
    let top = nobody.run(&["exec", "web", "id", "-u"]);
    let rm = nobody.run(&["rm", "-f", "web"]);
    assert_eq!(body.as_deref(), Some("ids\n"));
    assert_eq!(top.stdout, "1000\n", "{}", top.stderr);
    assert_eq!(rm.code, 0, "{}", rm.stderr);

    let deadline = Instant::now() + Duration::from_secs(5);
    while nobodys_pastas() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(nobodys_pastas(), before, "pasta outlived its container");
}

/// `stats` shows the bytes through the container's interfaces (not
/// loopback's) in NET I/O: a 200 kB page served through `-p` counts as
/// sent.
#[test]
fn stats_counts_network_io_of_the_containers_interfaces() {
    let Some(_lock) = net_test("stats_counts_network_io_of_the_containers_interfaces") else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, &"x".repeat(200_000));
    let port = free_port();
    let volume = format!("{}:/www:ro", www.display());
    let publish = format!("127.0.0.1:{port}:80");
    rb.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", &volume, "busybox", "httpd", "-f",
        "-p", "80", "-h", "/www",
    ]);
    let idle = rb.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]);
    let body = http_get(port, "/index.html", Duration::from_secs(10));
    let busy = rb.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.NetIO}}",
        "web",
    ]);
    let table = rb.ok(&["stats", "--no-stream", "web"]);
    let none = {
        rb.ok(&[
            "run",
            "-d",
            "--name",
            "quiet",
            "--network",
            "none",
            "busybox",
            "sleep",
            "30",
        ]);
        rb.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "quiet"])
    };
    rb.ok(&["rm", "-f", "web", "quiet"]);
    assert_eq!(body.map(|b| b.len()), Some(200_000));
    // Before the fetch: at most the few bytes of the link coming up.
    assert!(idle.trim().ends_with('B'), "{idle}");
    let (name, io) = busy.trim().split_once(' ').unwrap();
    assert_eq!(name, "web");
    let (_rx, tx) = io.split_once(" / ").unwrap();
    let kb: f64 = tx.strip_suffix("kB").unwrap_or("0").parse().unwrap();
    assert!(kb >= 200.0, "sent {tx}");
    assert!(table.lines().next().unwrap().contains("NET I/O"), "{table}");
    // (A few bytes more may have gone through since: ARP, TCP close.)
    assert!(table.contains(&format!(" / {}", &tx[..2])), "{table}");
    assert_eq!(none.trim(), "0B / 0B");
    assert_eq!(host_state(), Vec::<String>::new());
}

/// `network connect` / `disconnect` on running and created containers:
/// an interface appears (with `--ip` and `--alias`) and goes, peers
/// resolve the names, `inspect` follows, docker's errors for a second
/// connect, an unknown network or container, and a network it is not on.
#[test]
fn network_connect_and_disconnect_change_a_containers_networks() {
    let Some(_lock) = net_test("network_connect_and_disconnect_change_a_containers_networks")
    else {
        return;
    };
    let rb = Rbuild::new();
    rb.busybox();
    let www = www(&rb, "connected\n");
    let volume = format!("{}:/www:ro", www.display());
    rb.ok(&["network", "create", "--subnet", "10.252.7.0/24", "front"]);
    rb.ok(&["network", "create", "back"]);
    rb.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    rb.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "back",
        "busybox",
        "sleep",
        "120",
    ]);
    let get = |ctr: &str| {
        rb.run(&[
            "exec", ctr, "sh", "-c",
            "for i in $(seq 30); do wget -q -O- http://web/index.html && exit 0; sleep 0.1; done; exit 1",
        ])
    };
    let before = rb.run(&[
        "exec",
        "client",
        "wget",
        "-q",
        "-T",
        "1",
        "-O-",
        "http://web/",
    ]);

    let connected = rb.run(&[
        "network",
        "connect",
        "--ip",
        "10.252.7.50",
        "--alias",
        "files",
        "front",
        "client",
    ]);
    let after = get("client");
    let eth1 = rb.ok(&["exec", "client", "ip", "-o", "-4", "addr", "show", "eth1"]);
    let web_hosts = rb.ok(&["exec", "web", "cat", "/etc/hosts"]);
    let networks = rb.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        "client",
    ]);
    let again = rb.run(&["network", "connect", "front", "client"]);
    let no_net = rb.run(&["network", "connect", "nope", "client"]);
    let no_ctr = rb.run(&["network", "connect", "front", "nosuch"]);

    let disconnected = rb.run(&["network", "disconnect", "front", "client"]);
    let gone = rb.run(&[
        "exec",
        "client",
        "wget",
        "-q",
        "-T",
        "1",
        "-O-",
        "http://web/",
    ]);
    let links = rb.ok(&["exec", "client", "ls", "/sys/class/net"]);
    let networks_after = rb.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        "client",
    ]);
    let twice = rb.run(&["network", "disconnect", "front", "client"]);
    let forced = rb.run(&["network", "disconnect", "-f", "gone-net", "client"]);

    // A created container gets the connected network when it starts.
    rb.ok(&[
        "create", "--name", "later", "--network", "back", "busybox", "sh", "-c",
        "for i in $(seq 30); do wget -q -O- http://web/index.html && exit 0; sleep 0.1; done; exit 1",
    ]);
    let created = rb.run(&["network", "connect", "front", "later"]);
    let started = rb.run(&["start", "-a", "later"]);

    for c in ["web", "client", "later"] {
        rb.ok(&["rm", "-f", c]);
    }
    rb.ok(&["network", "rm", "front", "back"]);

    assert_ne!(before.code, 0, "not on the same network yet");
    assert_eq!(connected.code, 0, "{}", connected.stderr);
    assert_eq!(after.stdout, "connected\n", "{}", after.stderr);
    assert!(eth1.contains("inet 10.252.7.50/24"), "{eth1}");
    assert!(
        web_hosts.lines().any(|l| l.starts_with("10.252.7.50\t")
            && l.contains(" client")
            && l.contains(" files")),
        "{web_hosts}"
    );
    let v: serde_json::Value = serde_json::from_str(&networks).unwrap();
    assert_eq!(v["front"]["IPAddress"], "10.252.7.50", "{networks}");
    assert_eq!(v["front"]["Aliases"][0], "files", "{networks}");
    assert!(
        v["back"]["IPAddress"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{networks}"
    );
    assert_eq!(again.code, 1);
    assert_eq!(
        again.stderr,
        "Error response from daemon: endpoint with name client already exists in network front\n"
    );
    assert_eq!(no_net.code, 1);
    assert_eq!(
        no_net.stderr,
        "Error response from daemon: network nope not found\n"
    );
    assert_eq!(no_ctr.code, 1);
    assert_eq!(
        no_ctr.stderr,
        "Error response from daemon: No such container: nosuch\n"
    );
    assert_eq!(disconnected.code, 0, "{}", disconnected.stderr);
    assert_ne!(gone.code, 0);
    assert_eq!(links, "eth0\nlo\n");
    let v: serde_json::Value = serde_json::from_str(&networks_after).unwrap();
    assert!(
        v.get("front").is_none() && v.get("back").is_some(),
        "{networks_after}"
    );
    assert_eq!(twice.code, 1);
    assert_eq!(
        twice.stderr,
        "Error response from daemon: container client is not connected to network front\n"
    );
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(started.stdout, "connected\n", "{}", started.stderr);
    assert_eq!(host_state(), Vec::<String>::new());
}
