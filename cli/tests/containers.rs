//! Containers as lasting objects, end to end: `run -d`, `ps`, `logs`,
//! `exec`, `top`, `stop`/`start`, `rename`, `kill`, `rm`, volumes,
//! `create` + `start -a` + `wait`, `diff`/`cp`/`commit`, restart policies,
//! a killed monitor, and no leaks after many run/rm cycles. Each test runs
//! on its own temp `--root` with the offline busybox image.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::Rbuild;

/// A store with busybox that force-removes its containers when dropped,
/// so no monitor outlives a test.
struct Env {
    rb: Rbuild,
}

impl Env {
    fn new() -> Env {
        let rb = Rbuild::new();
        rb.busybox();
        Env { rb }
    }

    fn ids(&self) -> Vec<String> {
        self.rb
            .ok(&["ps", "-aq", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn state(&self, name: &str) -> String {
        self.rb
            .ok(&["inspect", "-f", "{{.State.Status}}", name])
            .trim()
            .to_string()
    }

    /// Waits until `cond` holds on the output of `args` (5 s at most).
    fn eventually(&self, args: &[&str], cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.rb.run(args).stdout;
            if cond(&out) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn container_dir(&self, name: &str) -> PathBuf {
        let id = self.rb.ok(&["inspect", "-f", "{{.Id}}", name]);
        self.rb.root().join("containers-v1").join(id.trim())
    }

    /// `run -d --name NAME [FLAGS] busybox CMD…`; returns the id.
    fn detached(&self, name: &str, flags: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags);
        args.push("busybox");
        args.extend(cmd);
        self.rb.ok(&args).trim().to_string()
    }

    /// A pid the container's `state.json` records (`monitor_pid`,
    /// `init_pid`).
    fn recorded_pid(&self, name: &str, field: &str) -> i32 {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.container_dir(name).join("state.json")).unwrap(),
        )
        .unwrap();
        state[field].as_i64().unwrap() as i32
    }
}

fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.rb.run(&["rm", "-f", &id]);
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_detached_container_lives_through_its_lifecycle() {
    let env = Env::new();
    let rb = &env.rb;
    let id = env.detached(
        "web",
        &[],
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; while true; do sleep 0.05; done",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = rb.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    let logs = env.eventually(&["logs", "web"], |o| o.contains("hello"));
    assert_eq!(logs, "hello\n");
    let r = rb.run(&["logs", "-t", "web"]);
    assert!(r.stderr.contains("Z oops"), "{}", r.stderr);

    // exec joins the container: its hostname, pid namespace, user.
    let out = rb.ok(&[
        "exec",
        "-e",
        "X=1",
        "web",
        "sh",
        "-c",
        "hostname; echo $X; echo $$; id -u",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], &id[..12]);
    assert_eq!(lines[1], "1");
    assert!(
        lines[2].parse::<u32>().unwrap() < 100,
        "pid in the container: {out}"
    );
    assert_eq!(lines[3], "0");
    assert_eq!(rb.run(&["exec", "web", "sh", "-c", "exit 7"]).code, 7);
    let tty = rb.ok(&[
        "exec",
        "-t",
        "web",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty",
    ]);
    assert_eq!(tty.trim_end(), "tty");
    assert_eq!(rb.run(&["exec", "web", "no-such-cmd"]).code, 127);
    let top = rb.ok(&["top", "web"]);
    assert!(
        top.starts_with("UID") && top.contains("while true"),
        "{top}"
    );

    if is_root() {
        rb.ok(&["pause", "web"]);
        assert_eq!(env.state("web"), "paused");
        assert!(rb.ok(&["ps"]).contains("(Paused)"));
        rb.ok(&["unpause", "web"]);
        assert_eq!(env.state("web"), "running");
        let stats = rb.ok(&["stats", "--no-stream", "web"]);
        assert!(
            stats.contains("MEM USAGE / LIMIT") && stats.contains("web"),
            "{stats}"
        );
    } else {
        support::skipped(
            "a_detached_container_lives_through_its_lifecycle (pause, stats)",
            "pause and stats need cgroups (root)",
        );
    }

    // stop: SIGTERM is ignored by a shell as pid 1, so SIGKILL after -t.
    let t = Instant::now();
    assert_eq!(rb.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(env.state("web"), "exited");
    assert!(rb.ok(&["ps"]).lines().count() == 1, "only the header");
    assert!(rb.ok(&["ps", "-a"]).contains("Exited (137)"));
    // docker: stopping a stopped container is fine; exec into it is not.
    assert_eq!(rb.ok(&["stop", "web"]), "web\n");
    let r = rb.run(&["exec", "web", "true"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);

    rb.ok(&["start", "web"]);
    assert_eq!(env.state("web"), "running");
    env.eventually(&["logs", "web"], |o| o == "hello\nhello\n");
    rb.ok(&["rename", "web", "web2"]);
    assert!(rb.run(&["inspect", "web"]).code != 0);
    assert_eq!(
        rb.ok(&["ps", "--format", "{{.Names}} {{.State}}"]),
        "web2 running\n"
    );

    // A name in use, docker's 125.
    let r = rb.run(&["run", "-d", "--name", "web2", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("is already in use"), "{}", r.stderr);
    // rm of a running container needs -f.
    let r = rb.run(&["rm", "web2"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("You cannot remove a running container"),
        "{}",
        r.stderr
    );

    assert_eq!(rb.ok(&["kill", "web2"]), "web2\n");
    assert_eq!(env.state("web2"), "exited");
    assert_eq!(
        rb.ok(&["inspect", "-f", "{{.State.ExitCode}}", "web2"]),
        "137\n"
    );
    let r = rb.run(&["kill", "web2"]);
    assert_eq!(r.code, 1);
    assert_eq!(rb.ok(&["rm", "web2"]), "web2\n");
    assert!(env.ids().is_empty());

    let r = rb.run(&["logs", "web2"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "Error: No such container: web2\n");
    let r = rb.run(&["rm", "nope"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "Error: No such container: nope\n")
    );
}

#[test]
fn named_volume_data_outlives_containers() {
    let env = Env::new();
    let rb = &env.rb;
    assert_eq!(rb.ok(&["volume", "create", "data"]), "data\n");
    env.detached(
        "wv",
        &["-v", "data:/data"],
        &["sh", "-c", "echo kept > /data/f; sleep 100"],
    );
    env.eventually(&["exec", "wv", "cat", "/data/f"], |o| o == "kept\n");
    rb.ok(&["rm", "-f", "wv"]);
    rb.ok(&[
        "create",
        "--name",
        "rd",
        "--mount",
        "type=volume,source=data,target=/v,readonly",
        "busybox",
        "cat",
        "/v/f",
    ]);
    assert_eq!(rb.ok(&["start", "-a", "rd"]), "kept\n");
    // In use (by a stopped container): refused.
    let r = rb.run(&["volume", "rm", "data"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("volume is in use"), "{}", r.stderr);
    rb.ok(&["rm", "rd"]);
    assert!(rb.ok(&["volume", "ls"]).contains("local     data"));
    let inspect = rb.ok(&["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "data"]);
    assert_eq!(inspect, "data local\n");
    assert_eq!(rb.ok(&["volume", "rm", "data"]), "data\n");
    let r = rb.run(&["volume", "inspect", "data"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("No such volume: data"), "{}", r.stderr);
}

#[test]
fn create_then_start_attached_and_wait_give_the_exit_code() {
    let env = Env::new();
    let rb = &env.rb;
    let id = rb.ok(&[
        "create",
        "--name",
        "job",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(env.state("job"), "created");
    assert!(rb.ok(&["ps", "-a"]).contains("Created"));
    let r = rb.run(&["start", "-a", "job"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    assert_eq!(rb.ok(&["wait", "job"]), "3\n");
    assert_eq!(
        rb.ok(&["ps", "-a", "--filter", "exited=3", "-q"]).trim(),
        &id.trim()[..12]
    );
    // stdin through start -ai.
    rb.ok(&[
        "create",
        "-i",
        "--name",
        "cat",
        "busybox",
        "sh",
        "-c",
        "tr a-z A-Z",
    ]);
    let r = rb.run_with_stdin(&["start", "-ai", "cat"], Some(b"shout\n"));
    assert_eq!((r.code, r.stdout.as_str()), (0, "SHOUT\n"), "{}", r.stderr);
}

#[test]
fn diff_cp_commit_and_a_run_of_the_committed_image() {
    let env = Env::new();
    let rb = &env.rb;
    env.detached(
        "box",
        &[],
        &["sh", "-c", "mkdir -p /data && echo seed > /data/seed && echo new > /new && rm /bin/true && sleep 100"],
    );
    let diff = env.eventually(&["diff", "box"], |o| o.contains("D /bin/true"));
    for line in ["A /new", "C /bin", "D /bin/true", "A /data/seed"] {
        assert!(diff.lines().any(|l| l == line), "{line} in:\n{diff}");
    }
    // Host → container, container → host, and tar both ways.
    let host = rb.path("hostfile");
    std::fs::write(&host, "from host\n").unwrap();
    rb.ok(&["cp", host.to_str().unwrap(), "box:/tmp/"]);
    assert_eq!(
        rb.ok(&["exec", "box", "cat", "/tmp/hostfile"]),
        "from host\n"
    );
    let out = rb.path("out");
    rb.ok(&["cp", "box:/new", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "new\n");
    let tar = rb.command(&["cp", "box:/data", "-"]).output().unwrap();
    assert!(tar.status.success());
    let listing = support::run_command(
        {
            let mut c = std::process::Command::new("tar");
            c.arg("-t");
            c
        },
        Some(&tar.stdout),
    );
    assert!(listing.stdout.contains("data/seed"), "{}", listing.stdout);
    let r = rb.run(&["cp", "box:/nope", out.to_str().unwrap()]);
    assert_eq!(r.code, 1);

    let id = rb.ok(&[
        "commit",
        "-c",
        "VOLUME /data",
        "-c",
        r#"CMD ["cat", "/new", "/data/seed"]"#,
        "-m",
        "snap",
        "box",
        "snap:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(rb.ok(&["run", "--rm", "snap:1"]), "new\nseed\n");
    // The image's VOLUME: an anonymous volume seeded from the image, gone with rm -v.
    rb.ok(&[
        "run",
        "-d",
        "--name",
        "vv",
        "snap:1",
        "sh",
        "-c",
        "cat /data/seed; sleep 100",
    ]);
    env.eventually(&["logs", "vv"], |o| o == "seed\n");
    let mounts = rb.ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}",
        "vv",
    ]);
    assert_eq!(mounts, "volume /data\n");
    assert_eq!(rb.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    // The committed image is in use: rmi refuses without -f.
    let r = rb.run(&["rmi", "snap:1"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is using its referenced image"),
        "{}",
        r.stderr
    );
    rb.ok(&["rm", "-f", "-v", "vv"]);
    assert_eq!(rb.ok(&["volume", "ls", "-q"]), "");
    let export = rb.command(&["export", "box"]).output().unwrap();
    assert!(export.status.success());
    assert!(export.stdout.len() > 100_000);
}

#[test]
fn a_restart_policy_restarts_a_crashing_container() {
    let env = Env::new();
    let rb = &env.rb;
    env.detached(
        "crash",
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 2"],
    );
    let out = env.eventually(
        &[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
            "crash",
        ],
        |o| o == "2 exited 2\n",
    );
    assert_eq!(out, "2 exited 2\n");
    assert_eq!(rb.ok(&["logs", "crash"]), "run\nrun\nrun\n");
    let r = rb.run(&["run", "-d", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(r.code, 125);
    // always: restarted until stopped by the user.
    env.detached(
        "loop",
        &["--restart", "always"],
        &["sh", "-c", "echo x; sleep 0.2"],
    );
    env.eventually(&["inspect", "-f", "{{.RestartCount}}", "loop"], |o| {
        o.trim().parse::<u32>().unwrap_or(0) >= 1
    });
    rb.ok(&["stop", "-t", "1", "loop"]);
    assert_eq!(env.state("loop"), "exited");

    // --init: tini as pid 1 passes SIGTERM on, so stop needs no SIGKILL.
    if !std::path::Path::new("/usr/bin/tini-static").exists() {
        support::skipped(
            "a_restart_policy_restarts_a_crashing_container (--init)",
            "tini-static missing (apt-get install tini)",
        );
        return;
    }
    rb.ok(&[
        "run", "-d", "--init", "--name", "tini", "busybox", "sleep", "100",
    ]);
    assert!(
        rb.ok(&["top", "tini"])
            .contains("/sbin/docker-init -- sleep 100")
    );
    let t = Instant::now();
    rb.ok(&["stop", "tini"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop waited for SIGKILL"
    );
    assert_eq!(
        rb.ok(&["inspect", "-f", "{{.State.ExitCode}}", "tini"]),
        "143\n"
    );
}

#[test]
fn a_killed_monitor_leaves_an_exited_container_that_can_be_removed() {
    let env = Env::new();
    let rb = &env.rb;
    env.detached("victim", &[], &["sleep", "1000"]);
    let pid1: i32 = rb
        .ok(&["inspect", "-f", "{{.State.Pid}}", "victim"])
        .trim()
        .parse()
        .unwrap();
    sigkill(env.recorded_pid("victim", "monitor_pid"));
    let ps = env.eventually(&["ps", "-a"], |o| o.contains("Exited (-1)"));
    assert!(ps.contains("Exited (-1)"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid1}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid1}/ns")).exists(),
        "pid 1 outlived its monitor"
    );
    assert_eq!(rb.ok(&["rm", "victim"]), "victim\n");
    assert!(rb.ok(&["system", "check"]).contains("0 problems"));

    // The sandbox's init killed instead: the monitor records the exit and
    // removes the cgroup the init could not.
    let ids = vec![env.detached("victim2", &[], &["sleep", "1000"])];
    assert!(
        cgroups_of(&ids) > 0 || !is_root(),
        "the container has a cgroup"
    );
    sigkill(env.recorded_pid("victim2", "init_pid"));
    env.eventually(&["inspect", "-f", "{{.State.Status}}", "victim2"], |o| {
        o == "exited\n"
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroups_of(&ids) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cgroups_of(&ids), 0, "cgroup left behind");
    rb.ok(&["rm", "victim2"]);

    // A create killed before it wrote the config: not listed, reported by
    // system check and removed by --repair.
    let half = rb.root().join("containers-v1").join("ab".repeat(32));
    std::fs::create_dir_all(half.join("upper")).unwrap();
    assert_eq!(rb.ok(&["ps", "-aq"]), "");
    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("a create that did not finish"),
        "{}",
        r.stdout
    );
    rb.ok(&["system", "check", "--repair"]);
    assert!(!half.exists());
}

/// Mounts of this test's store or of any container's layers (other
/// processes on the machine may mount what they like meanwhile).
fn rbuild_mounts(root: &std::path::Path) -> usize {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root) || l.contains("containers-v1"))
        .count()
}

/// How many cgroup dirs exist for the containers `ids` (other tests'
/// containers run at the same time).
fn cgroups_of(ids: &[String]) -> usize {
    let names: Vec<String> = ids
        .iter()
        .map(|id| format!("rbuild-ctr-{}", &id[..12]))
        .collect();
    let mut n = 0;
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let name = e.file_name().to_string_lossy().into_owned();
                if names.contains(&name) {
                    n += 1;
                } else if d.components().count() < 8 && !name.starts_with("rbuild-ctr-") {
                    stack.push(e.path());
                }
            }
        }
    }
    n
}

#[test]
fn a_hundred_run_rm_cycles_leak_no_mounts_or_cgroups() {
    let env = Env::new();
    let rb = &env.rb;
    let mounts = rbuild_mounts(&rb.root());
    let mut ids = Vec::new();
    for i in 0..100 {
        let name = format!("c{i}");
        ids.push(env.detached(&name, &[], &["sleep", "100"]));
        if i % 10 == 0 {
            assert_eq!(rb.ok(&["exec", &name, "echo", "ok"]), "ok\n");
        }
        rb.ok(&["rm", "-f", &name]);
    }
    assert!(env.ids().is_empty());
    assert_eq!(rbuild_mounts(&rb.root()), mounts, "mounts leaked");
    assert_eq!(cgroups_of(&ids), 0, "cgroups leaked");
    assert_eq!(
        std::fs::read_dir(rb.root().join("containers-v1"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != ".lock")
            .count(),
        0
    );
}

#[test]
fn health_follow_logs_auto_remove_events_and_df() {
    let env = Env::new();
    let rb = &env.rb;
    env.detached(
        "hc",
        &[
            "--health-cmd",
            "test -f /ok",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
        ],
        &["sh", "-c", "sleep 0.3; touch /ok; sleep 100"],
    );
    let ps = env.eventually(&["ps"], |o| o.contains("(healthy)"));
    assert!(ps.contains("(healthy)"), "{ps}");
    let h = rb.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]);
    assert_eq!(h, "healthy\n");
    assert!(
        rb.ok(&["ps", "--filter", "health=healthy", "-q"])
            .trim()
            .len()
            == 12
    );

    assert_eq!(
        rb.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "hc"]),
        "false\n"
    );
    if is_root() {
        env.detached(
            "oom",
            &["--memory", "16m"],
            &["sh", "-c", "head -c 300m /dev/zero | tail; echo done"],
        );
        let oom = env.eventually(
            &[
                "inspect",
                "-f",
                "{{.State.OOMKilled}} {{.State.Status}}",
                "oom",
            ],
            |o| o == "true exited\n",
        );
        assert_eq!(
            oom,
            "true exited\n",
            "{}\n{}",
            rb.run(&["inspect", "oom"]).stdout,
            rb.run(&["logs", "oom"]).stderr
        );
        rb.ok(&["rm", "oom"]);
    } else {
        support::skipped(
            "health_follow_logs_auto_remove_events_and_df (OOMKilled)",
            "memory limits need root",
        );
    }

    // logs -f follows until the container exits.
    env.detached(
        "count",
        &[],
        &["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"],
    );
    assert_eq!(rb.ok(&["logs", "-f", "count"]), "1\n2\n3\n");
    assert_eq!(rb.ok(&["logs", "--tail", "1", "count"]), "3\n");

    // --rm: gone once it exits.
    rb.ok(&["run", "-d", "--rm", "--name", "gone", "busybox", "true"]);
    let ps = env.eventually(&["ps", "-a", "--format", "{{.Names}}"], |o| {
        !o.contains("gone")
    });
    assert!(!ps.contains("gone"), "{ps}");

    let events = rb.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "container=count",
    ]);
    for action in ["create", "start", "die"] {
        assert!(
            events.contains(&format!("container {action} ")),
            "{action} in {events}"
        );
    }
    let df = rb.ok(&["system", "df"]);
    assert!(
        df.lines()
            .any(|l| l.starts_with("Containers") && l.contains(" 2 ")),
        "{df}"
    );
    assert!(df.contains("Local Volumes"), "{df}");
    let pruned = rb.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    assert_eq!(rb.ok(&["ps", "-aq"]).lines().count(), 1, "hc keeps running");
}

/// A foreground `run` keeps a container record as docker's does: listed
/// while it runs and after it exits (with its code), logs, diff and start
/// work on it, its name is taken until `rm`; `--rm` leaves nothing.
#[test]
fn a_foreground_run_keeps_a_container_record_like_docker() {
    let env = Env::new();
    let rb = &env.rb;
    let r = rb.run(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; touch /made; exit 3",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let ps = rb.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("fg Exited (3) "), "{ps}");
    assert_eq!(rb.ok(&["ps", "-q"]), "", "not running");
    let logs = rb.run(&["logs", "fg"]);
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert!(rb.ok(&["diff", "fg"]).lines().any(|l| l == "A /made"));
    assert_eq!(
        rb.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "fg"
        ]),
        "exited 3\n"
    );
    // The name is taken (docker's conflict, 125).
    let r = rb.run(&["run", "--name", "fg", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("is already in use"), "{}", r.stderr);
    // start -a runs it again, on its own writable layer.
    let r = rb.run(&["start", "-a", "fg"]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "out\n"));
    assert_eq!(rb.ok(&["rm", "fg"]), "fg\n");

    // While it runs: listed, running, stoppable by name.
    let mut child = rb
        .command(&["run", "--name", "long", "busybox", "sleep", "100"])
        .spawn()
        .unwrap();
    let ps = env.eventually(&["ps", "--format", "{{.Names}} {{.State}}"], |o| {
        o == "long running\n"
    });
    assert_eq!(ps, "long running\n");
    let pid: i32 = rb
        .ok(&["inspect", "-f", "{{.State.Pid}}", "long"])
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    rb.ok(&["kill", "long"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(env.state("long"), "exited");
    rb.ok(&["rm", "long"]);

    // --rm: nothing left, anonymous volumes included.
    let out = rb.ok(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f; cat /anon/f",
    ]);
    assert_eq!(out, "x\n");
    assert_eq!(rb.ok(&["ps", "-aq"]), "");
    assert_eq!(rb.ok(&["volume", "ls", "-q"]), "");
    let events = rb.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        events.ends_with("create\nstart\ndie\ndestroy\n"),
        "{events}"
    );
    // A foreground run killed with its monitor (this process): exited (-1).
    let mut child = rb
        .command(&["run", "--name", "orphan", "busybox", "sleep", "100"])
        .spawn()
        .unwrap();
    env.eventually(&["ps", "-q"], |o| !o.is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let ps = env.eventually(&["ps", "-a"], |o| o.contains("Exited (-1)"));
    assert!(ps.contains("Exited (-1)"), "{ps}");
    rb.ok(&["rm", "orphan"]);
}

/// `run -it`, `attach` and `start -ai` on a tty container, as a user at a
/// terminal sees them: the terminal in raw mode (what is typed is echoed
/// once, by the container's terminal), the window size passed on and
/// followed, ctrl-p ctrl-q (or `--detach-keys`) detaching and leaving the
/// container running.
#[test]
fn a_tty_session_is_raw_sized_and_detaches_with_docker_keys() {
    use support::pty::Terminal;
    let env = Env::new();
    let rb = &env.rb;
    let mut t = Terminal::spawn(
        rb.command(&["run", "-it", "--name", "shell", "busybox", "sh"]),
        24,
        80,
        true,
    );
    t.wait_for("/ # ");
    t.type_keys(b"echo one-$((1+1)); stty size\r");
    let screen = t.wait_for("24 80");
    assert!(screen.contains("one-2"), "{screen}");
    assert_eq!(
        screen.matches("echo one-").count(),
        1,
        "typed text echoed twice: the terminal is not raw\n{screen}"
    );
    t.resize(30, 100);
    std::thread::sleep(Duration::from_millis(200));
    t.type_keys(b"stty size\r");
    let screen = t.wait_for("30 100");
    assert!(screen.contains("30 100"), "{screen}");
    t.type_keys(&[0x10, 0x11]);
    let (code, screen) = t.wait();
    assert_eq!(code, 0, "{}", screen.join("\n"));
    assert_eq!(env.state("shell"), "running");

    // attach, with other detach keys.
    let mut t = Terminal::spawn(
        rb.command(&["attach", "--detach-keys", "ctrl-x,x", "shell"]),
        20,
        60,
        true,
    );
    std::thread::sleep(Duration::from_millis(300));
    t.type_keys(b"stty size\r");
    let screen = t.wait_for("20 60");
    assert!(screen.contains("20 60"), "{screen}");
    // ctrl-p ctrl-q are keys like any other now; ctrl-x x detaches.
    t.type_keys(&[0x18, b'x']);
    let (code, _) = t.wait();
    assert_eq!(code, 0);
    assert_eq!(env.state("shell"), "running");
    let r = rb.run(&["attach", "--detach-keys", "ctrl-", "shell"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Invalid detach keys"), "{}", r.stderr);

    // start -ai of the stopped container: a new shell; its exit code.
    rb.ok(&["stop", "-t", "1", "shell"]);
    let mut t = Terminal::spawn(rb.command(&["start", "-ai", "shell"]), 24, 80, true);
    t.wait_for("/ # ");
    t.type_keys(b"exit 4\r");
    let (code, screen) = t.wait();
    assert_eq!(code, 4, "{}", screen.join("\n"));

    // run -it --rm: the exit code of a container removed as it exits.
    let mut t = Terminal::spawn(
        rb.command(&["run", "-it", "--rm", "busybox", "sh"]),
        24,
        80,
        true,
    );
    t.wait_for("/ # ");
    t.type_keys(b"exit 5\r");
    let (code, screen) = t.wait();
    assert_eq!(code, 5, "{}", screen.join("\n"));
    assert_eq!(rb.ok(&["ps", "-aq"]).lines().count(), 1, "only shell");
}

/// Builds, tags, untags, image deletes, saves, loads, volumes and
/// networks write to the one event log, with docker's action names, and
/// `events` filters them by type (alternatives within a key), time and
/// formats them.
#[test]
fn images_volumes_and_networks_write_the_event_log() {
    let env = Env::new();
    let rb = &env.rb;
    let ctx = rb.tree("ctx", &[("Dockerfile", "FROM busybox\nLABEL made=here\n")]);
    rb.ok(&["build", "-q", "-t", "built", ctx.to_str().unwrap()]);
    let built = rb.ok(&["inspect", "-f", "{{.Id}}", "built"]);
    let built = built.trim();
    rb.ok(&["tag", "built", "other:2"]);
    rb.ok(&["rmi", "other:2"]);
    let tar = rb.path("built.tar");
    rb.ok(&["save", "-o", tar.to_str().unwrap(), "built"]);
    rb.ok(&["rmi", "built"]);
    rb.ok(&["load", "-i", tar.to_str().unwrap()]);
    rb.ok(&["volume", "create", "v1"]);
    rb.ok(&["volume", "rm", "v1"]);
    if is_root() {
        rb.ok(&["network", "create", "n1"]);
        rb.ok(&["network", "rm", "n1"]);
    }
    let events = |filters: &[&str]| {
        let mut args = vec![
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
        ];
        for f in filters {
            args.extend(["--filter", f]);
        }
        rb.ok(&args)
    };
    let images = events(&["type=image"]);
    let want = [
        format!("image tag {built} built:latest"),
        format!("image tag {built} other:2"),
        format!("image untag {built} {built}"),
        format!("image save {built} {built}"),
        format!("image untag {built} {built}"),
        format!("image delete {built} {built}"),
        format!("image load {built} {built}"),
    ];
    // (The busybox image came in by `import`.)
    let lines: Vec<&str> = images.lines().collect();
    assert!(lines[0].starts_with("image import sha256:"), "{images}");
    assert_eq!(lines[1..], want, "{images}");
    let mut want = vec!["volume create v1 ", "volume destroy v1 "];
    if is_root() {
        want = vec![
            "volume create v1 ",
            "volume destroy v1 ",
            "network create",
            "network destroy",
        ];
    }
    let others = events(&["type=volume", "type=network"]);
    let got: Vec<&str> = others.lines().collect();
    assert_eq!(got.len(), want.len(), "{others}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w), "{g:?} should start with {w:?}");
    }
    if is_root() {
        assert!(
            got[2].ends_with(" n1") && got[3].ends_with(" n1"),
            "{others}"
        );
    }
    // Two keys: both hold.
    assert_eq!(
        events(&["type=image", "event=delete"]),
        format!("image delete {built} {built}\n")
    );
    // docker's JSON: the legacy status/id for images, scope and times.
    let json = rb.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=load",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (&v["status"], &v["id"], &v["Type"], &v["scope"]),
        (
            &serde_json::json!("load"),
            &serde_json::json!(built),
            &serde_json::json!("image"),
            &serde_json::json!("local")
        )
    );
    assert!(v["time"].as_i64().unwrap() > 0 && v["timeNano"].as_i64().unwrap() > 0);
    // Nothing before --since.
    assert_eq!(
        rb.ok(&["events", "--since", "2099-01-01T00:00:00Z", "--until", "0s"]),
        ""
    );
    let r = rb.run(&["events", "--filter", "colour=red", "--until", "0s"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "Error response from daemon: Invalid filter 'colour'\n")
    );
}

/// `push` and `pull` write docker's image events: actor and `name=` the
/// reference as given.
#[test]
fn pushes_and_pulls_write_the_event_log() {
    if !std::path::Path::new("/usr/bin/docker-registry").exists() {
        support::skipped(
            "pushes_and_pulls_write_the_event_log",
            "no /usr/bin/docker-registry (Debian package docker-registry)",
        );
        return;
    }
    let reg = support::registry::Registry::start(None);
    let env = Env::new();
    let rb = &env.rb;
    let name = format!("{}/ev/bb:1", reg.host());
    rb.ok(&["tag", "busybox", &name]);
    rb.ok(&["push", &name]);
    rb.ok(&["pull", &name]);
    let events = rb.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=push",
        "--filter",
        "event=pull",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        events,
        format!("push {name} {name}\npull {name} {name}\n"),
        "{events}"
    );
}
