//! End-to-end tests of build inputs besides a local context directory:
//! `--ssh` with `RUN --mount=type=ssh` (an ssh-agent started here with a
//! throw-away key, asked from inside the sandbox by the host's `ssh-add`
//! copied into the image), `--build-context` of every kind, `ADD` of git
//! repositories served by `git daemon` on 127.0.0.1, remote contexts (git
//! and a tarball served by a loopback HTTP server) and contexts on stdin.
//! Tools: `ssh-agent`, `ssh-keygen`, `ssh-add` (openssh-client), `git`
//! (with `git daemon`), `tar`.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Rbuild, Run, s, skipped, tool};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips `test` (saying so) unless every tool is on PATH.
fn tools_present(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        if !have(t) {
            skipped(
                test,
                &format!("needs {t} (apt-get install openssh-client git)"),
            );
            return false;
        }
    }
    true
}

fn build(rb: &Rbuild, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    let r = rb.run(&all);
    assert_eq!(
        r.code, 0,
        "build {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

fn try_build(rb: &Rbuild, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    rb.run(&all)
}

/// The instructions of the steps a `--report` says executed.
fn executed(rb: &Rbuild, report: &str) -> Vec<String> {
    let r: Value = serde_json::from_slice(&std::fs::read(rb.path(report)).unwrap()).unwrap();
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "executed")
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

/// Image ids in the store.
fn image_ids(rb: &Rbuild) -> String {
    rb.ok(&["images", "-q", "--no-trunc"])
}

// ---------------------------------------------------------------- ssh

/// An ssh-agent of the test's own (killed on drop) holding one
/// throw-away key with the comment `rbuild-test-key`.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(rb: &Rbuild) -> Agent {
        let key = rb.path("id_test");
        tool(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rbuild-test-key",
                "-f",
                s(&key),
            ],
        );
        let socket = rb.path("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a", s(&socket)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add: {out:?}");
        Agent { child, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A context whose `tools/` holds the host's `ssh-add` and the shared
/// libraries it loads, at their paths, to be copied onto busybox.
fn ssh_context(rb: &Rbuild, dockerfile: &str) -> PathBuf {
    let ctx = rb.tree("ssh-ctx", &[("Dockerfile", dockerfile)]);
    let ssh_add = tool("sh", &["-c", "command -v ssh-add"]).trim().to_string();
    let mut files = vec![ssh_add.clone()];
    let ldd = tool("ldd", &[&ssh_add]);
    for word in ldd.split_whitespace() {
        if word.starts_with('/') {
            files.push(word.to_string());
        }
    }
    for f in files {
        let dest = ctx.join("tools").join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        tool("cp", &["-L", &f, s(&dest)]);
    }
    ctx
}

#[test]
fn ssh_agent_answers_inside_run_and_leaves_no_trace() {
    let test = "ssh_agent_answers_inside_run_and_leaves_no_trace";
    if !tools_present(test, &["ssh-agent", "ssh-keygen", "ssh-add", "ldd"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let agent = Agent::start(&rb);
    let ctx = ssh_context(
        &rb,
        "FROM busybox\n\
         COPY tools/ /\n\
         RUN --mount=type=ssh ssh-add -l > /default.txt && echo \"sock=$SSH_AUTH_SOCK\" >> /default.txt\n\
         RUN --mount=type=ssh,id=gh,target=/tmp/gh.sock,mode=0600,uid=1000 SSH_AUTH_SOCK=/tmp/gh.sock ssh-add -l > /gh.txt && ls -ln /tmp/gh.sock | awk '{print $1, $3}' >> /gh.txt\n\
         RUN --mount=type=ssh,id=absent echo \"absent=$SSH_AUTH_SOCK\" > /absent.txt && test ! -e \"$SSH_AUTH_SOCK\"\n",
    );
    let report = rb.path("ssh-report.json");
    let gh = format!("gh={}", s(&agent.socket));
    let mut c = rb.command(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "ssh:1",
        "--ssh",
        "default",
        "--ssh",
        &gh,
        "--report",
        s(&report),
        s(&ctx),
    ]);
    c.env("SSH_AUTH_SOCK", &agent.socket);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The agent answered from inside the sandbox, at BuildKit's default
    // socket path and at a given one with the given mode and owner.
    let default = rb.ok(&["run", "--rm", "ssh:1", "cat", "/default.txt"]);
    assert!(default.contains("rbuild-test-key (ED25519)"), "{default}");
    assert!(
        default.contains("sock=/run/buildkit/ssh_agent.0"),
        "{default}"
    );
    let gh = rb.ok(&["run", "--rm", "ssh:1", "cat", "/gh.txt"]);
    assert!(gh.contains("rbuild-test-key"), "{gh}");
    assert!(gh.contains("srw------- 1000"), "{gh}");
    // An optional agent that was not given: SSH_AUTH_SOCK is still set
    // (as BuildKit does) but no socket is there.
    assert_eq!(
        rb.ok(&["run", "--rm", "ssh:1", "cat", "/absent.txt"]),
        "absent=/run/buildkit/ssh_agent.0\n"
    );
    // Nothing of the agent reaches the image, its history or the report.
    let r = rb.run(&["run", "--rm", "ssh:1", "ls", "/run/buildkit"]);
    assert_ne!(r.code, 0, "no socket dir in the image: {}", r.stdout);
    let r = rb.run(&["run", "--rm", "ssh:1", "test", "-e", "/tmp/gh.sock"]);
    assert_ne!(r.code, 0, "no socket in the image");
    let history = rb.ok(&["history", "--no-trunc", "ssh:1"]);
    let inspect = rb.ok(&["inspect", "ssh:1"]);
    let report_text = std::fs::read_to_string(&report).unwrap();
    for text in [&history, &inspect, &report_text] {
        assert!(
            !text.contains(s(&agent.socket)),
            "agent path leaked: {text}"
        );
    }
    assert!(
        !inspect.contains("SSH_AUTH_SOCK"),
        "agent env leaked: {inspect}"
    );
    // Same inputs: every step cached, the agent's socket path not in any key.
    let other = rb.path("agent-link.sock");
    std::os::unix::fs::symlink(&agent.socket, &other).unwrap();
    let again = rb.path("ssh-report-2.json");
    build(
        &rb,
        &[
            "-t",
            "ssh:1",
            "--ssh",
            &format!("default={}", s(&agent.socket)),
            "--ssh",
            &format!("gh={}", s(&agent.socket)),
            "--report",
            s(&again),
            s(&ctx),
        ],
    );
    assert!(executed(&rb, "ssh-report-2.json").is_empty());
}

#[test]
fn ssh_key_files_are_served_by_rbuilds_own_agent() {
    let test = "ssh_key_files_are_served_by_rbuilds_own_agent";
    if !tools_present(test, &["ssh-keygen", "ssh-add", "ldd"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let key = rb.path("id_files");
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "served-from-a-file",
            "-f",
            s(&key),
        ],
    );
    let ctx = ssh_context(
        &rb,
        "FROM busybox\nCOPY tools/ /\nRUN --mount=type=ssh,id=deploy ssh-add -l > /keys.txt\n",
    );
    let mut c = rb.command(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "keys:1",
        "--ssh",
        &format!("deploy={}", s(&key)),
        s(&ctx),
    ]);
    c.env_remove("SSH_AUTH_SOCK");
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keys = rb.ok(&["run", "--rm", "keys:1", "cat", "/keys.txt"]);
    assert!(keys.contains("served-from-a-file (ED25519)"), "{keys}");
    // A file that is not a key is named.
    let not_key = rb.path("not-a-key");
    std::fs::write(&not_key, "hello\n").unwrap();
    let r = try_build(&rb, &["--ssh", &format!("deploy={}", s(&not_key)), s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--ssh deploy"), "{}", r.stderr);
    assert!(
        r.stderr.contains("is not an OpenSSH private key"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_required_ssh_id_that_is_missing_fails_naming_it() {
    let rb = Rbuild::new();
    rb.busybox();
    let before = image_ids(&rb);
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh,id=deploy,required=true true\n",
        )],
    );
    let r = try_build(&rb, &["-t", "nope", s(&ctx)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("ssh agent \"deploy\" is required"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--ssh deploy"), "{}", r.stderr);
    assert_eq!(image_ids(&rb), before, "nothing tagged");
}

#[test]
fn a_socket_that_is_not_an_agent_is_a_clear_error() {
    let rb = Rbuild::new();
    rb.busybox();
    let before = image_ids(&rb);
    let sock = rb.path("not-agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 5];
            let _ = c.read_exact(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh true\n")],
    );
    let r = try_build(
        &rb,
        &[
            "-t",
            "nope",
            "--ssh",
            &format!("default={}", s(&sock)),
            s(&ctx),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--ssh default"), "{}", r.stderr);
    assert!(r.stderr.contains("is not an ssh agent"), "{}", r.stderr);
    assert!(r.stderr.contains(s(&sock)), "{}", r.stderr);
    assert_eq!(image_ids(&rb), before);
    // No SSH_AUTH_SOCK and no socket given: says how to give one.
    let mut c = rb.command(&["build", "--ssh", "default", s(&ctx)]);
    c.env_remove("SSH_AUTH_SOCK");
    let r = support::run_command(c, None);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("SSH_AUTH_SOCK is not set"),
        "{}",
        r.stderr
    );
}

// ------------------------------------------------------ named contexts

#[test]
fn named_local_context_for_copy_from_mounts_and_stage_replacement() {
    let rb = Rbuild::new();
    rb.busybox();
    let lib = rb.tree(
        "lib",
        &[
            ("lib.txt", "lib v1\n"),
            ("secret.key", "ignored\n"),
            (".dockerignore", "*.key\n"),
        ],
    );
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS prebuilt\nRUN echo this stage is replaced > /never\n\
             FROM busybox\n\
             COPY --from=lib lib.txt /lib.txt\n\
             RUN --mount=from=lib,target=/mnt cat /mnt/lib.txt > /mounted.txt && ls /mnt > /listing.txt\n\
             COPY --from=prebuilt / /pre/\n",
        )],
    );
    let pre = rb.tree("pre", &[("artifact", "prebuilt artifact\n")]);
    let args = |report: &str| -> Vec<String> {
        vec![
            "-t".into(),
            "named:1".into(),
            "--build-context".into(),
            format!("lib={}", s(&lib)),
            "--build-context".into(),
            format!("prebuilt={}", s(&pre)),
            "--report".into(),
            s(&rb.path(report)).into(),
            s(&ctx).into(),
        ]
    };
    let a = args("r1.json");
    build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        rb.ok(&["run", "--rm", "named:1", "cat", "/lib.txt"]),
        "lib v1\n"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "named:1", "cat", "/mounted.txt"]),
        "lib v1\n"
    );
    // The named context's own .dockerignore applies.
    let listing = rb.ok(&["run", "--rm", "named:1", "cat", "/listing.txt"]);
    assert!(!listing.contains("secret.key"), "{listing}");
    // The stage of the same name is replaced whole: none of its steps ran.
    assert_eq!(
        rb.ok(&["run", "--rm", "named:1", "cat", "/pre/artifact"]),
        "prebuilt artifact\n"
    );
    let r = rb.run(&["run", "--rm", "named:1", "test", "-e", "/pre/never"]);
    assert_ne!(r.code, 0);
    assert!(
        !executed(&rb, "r1.json")
            .iter()
            .any(|i| i.contains("replaced"))
    );
    // Unchanged: all cached. A changed file in the named context re-runs
    // what reads it; an ignored file changes nothing.
    let a = args("r2.json");
    build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        executed(&rb, "r2.json").is_empty(),
        "{:?}",
        executed(&rb, "r2.json")
    );
    std::fs::write(lib.join("secret.key"), "changed but ignored\n").unwrap();
    let a = args("r3.json");
    build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        executed(&rb, "r3.json").is_empty(),
        "{:?}",
        executed(&rb, "r3.json")
    );
    // Keys come from the files a step reads, as for the main context: a
    // new file the COPY does not select re-runs only the mount, which
    // shows the whole context.
    std::fs::write(lib.join("other.txt"), "not copied\n").unwrap();
    let a = args("r3b.json");
    build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let ran = executed(&rb, "r3b.json");
    assert!(
        !ran.iter().any(|i| i.starts_with("COPY --from=lib")),
        "{ran:?}"
    );
    assert!(
        ran.iter().any(|i| i.starts_with("RUN --mount=from=lib")),
        "{ran:?}"
    );
    std::fs::write(lib.join("lib.txt"), "lib v2\n").unwrap();
    let a = args("r4.json");
    build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let ran = executed(&rb, "r4.json");
    assert!(
        ran.iter().any(|i| i.starts_with("COPY --from=lib")),
        "{ran:?}"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "named:1", "cat", "/mounted.txt"]),
        "lib v2\n"
    );
}

#[test]
fn docker_image_context_replaces_from_and_oci_layout_is_an_image() {
    let rb = Rbuild::new();
    rb.busybox();
    rb.ok(&["tag", "busybox", "pinned/base:1.0"]);
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM alpine:3.20\nRUN echo on-the-replacement > /where\n",
        )],
    );
    build(
        &rb,
        &[
            "-t",
            "img:1",
            "--build-context",
            "alpine:3.20=docker-image://pinned/base:1.0",
            s(&ctx),
        ],
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "img:1", "cat", "/where"]),
        "on-the-replacement\n"
    );

    // oci-layout://DIR@DIGEST: an image saved as an OCI layout.
    rb.ok(&["tag", "busybox", "layout/src:1"]);
    let tar = rb.path("img.tar");
    rb.ok(&["save", "--format", "oci", "-o", s(&tar), "layout/src:1"]);
    let layout = rb.path("layout");
    std::fs::create_dir_all(&layout).unwrap();
    tool("tar", &["-xf", s(&tar), "-C", s(&layout)]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    rb.ok(&["rmi", "layout/src:1"]);
    let ctx2 = rb.tree(
        "ctx2",
        &[("Dockerfile", "FROM base\nRUN echo from-layout > /where\n")],
    );
    build(
        &rb,
        &[
            "-t",
            "img:2",
            "--build-context",
            &format!("base=oci-layout://{}@{digest}", s(&layout)),
            s(&ctx2),
        ],
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "img:2", "cat", "/where"]),
        "from-layout\n"
    );
    // By the tag the layout's index names it with, and alone (one image).
    for spec in [format!("{}:1", s(&layout)), s(&layout).to_string()] {
        build(
            &rb,
            &[
                "-t",
                "img:3",
                "--build-context",
                &format!("base=oci-layout://{spec}"),
                s(&ctx2),
            ],
        );
        assert_eq!(
            rb.ok(&["run", "--rm", "img:3", "cat", "/where"]),
            "from-layout\n"
        );
    }
    // A layout without that digest is an error naming it.
    let r = try_build(
        &rb,
        &[
            "--build-context",
            &format!("base=oci-layout://{}@sha256:{}", s(&layout), "0".repeat(64)),
            s(&ctx2),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--build-context base=oci-layout://"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_named_contexts_are_clear_errors_and_tag_nothing() {
    let rb = Rbuild::new();
    rb.busybox();
    let before = image_ids(&rb);
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY --from=lib a /a\n")],
    );
    let r = try_build(&rb, &["-t", "x", "--build-context", "=dir", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--build-context") && r.stderr.contains("name is empty"),
        "{}",
        r.stderr
    );
    let missing = rb.path("no-such-dir");
    let r = try_build(
        &rb,
        &[
            "-t",
            "x",
            "--build-context",
            &format!("lib={}", s(&missing)),
            s(&ctx),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("--build-context lib={}", s(&missing))),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
    // A --from name that is neither a stage nor a context nor an image.
    let r = try_build(&rb, &["-t", "x", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("lib"), "{}", r.stderr);
    assert_eq!(image_ids(&rb), before);
}

// ----------------------------------------------------------------- git

/// `git daemon` on 127.0.0.1 serving the repositories under `base`.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself, not `git daemon`: the `git` wrapper runs it as
        // a child, which killing the wrapper would leave running.
        let exec_path = tool("git", &["--exec-path"]);
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", s(base)),
                s(base),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository `repo` under `base` with two commits on `main`, the
/// first tagged `v1` (annotated), a `sub/` directory and a submodule-free
/// tree.
fn make_repo(base: &Path) -> (PathBuf, String, String) {
    let repo = base.join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("file.txt"), "version 1\n").unwrap();
    std::fs::write(repo.join("sub/inner.txt"), "inner 1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("file.txt"), "version 2\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    (repo, first, second)
}

#[test]
fn add_from_git_at_a_tag_a_branch_and_a_commit() {
    let test = "add_from_git_at_a_tag_a_branch_and_a_commit";
    if !tools_present(test, &["git"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let base = rb.path("git");
    let (repo, first, second) = make_repo(&base);
    let daemon = GitDaemon::start(&base);
    let url = daemon.url("repo");
    let dockerfile = format!(
        "FROM busybox\n\
         ADD {url}#v1 /tag/\n\
         ADD {url}#{first} /commit/\n\
         ADD --checksum={second} {url}#main /pinned/\n\
         ADD {url}#main /branch/\n\
         ADD --keep-git-dir {url}#main:sub /kept/\n\
         RUN cat /branch/file.txt > /seen.txt\n"
    );
    let ctx = rb.tree("ctx", &[("Dockerfile", &dockerfile)]);
    let report = |n: &str| s(&rb.path(n)).to_string();
    let r1 = report("g1.json");
    build(&rb, &["-t", "git:1", "--report", &r1, s(&ctx)]);
    let cat = |p: &str| rb.ok(&["run", "--rm", "git:1", "cat", p]);
    assert_eq!(cat("/tag/file.txt"), "version 1\n");
    assert_eq!(cat("/branch/file.txt"), "version 2\n");
    assert_eq!(cat("/commit/file.txt"), "version 1\n");
    assert_eq!(cat("/pinned/file.txt"), "version 2\n");
    assert_eq!(cat("/kept/inner.txt"), "inner 1\n");
    // An abbreviated commit id names the same commit.
    let short = rb.tree(
        "ctx-short",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url}#{} /short/\n", &first[..8]),
        )],
    );
    build(&rb, &["-t", "git:short", s(&short)]);
    assert_eq!(
        rb.ok(&["run", "--rm", "git:short", "cat", "/short/file.txt"]),
        "version 1\n"
    );
    // .git is left out without --keep-git-dir (with it and `:DIR`, only
    // the directory is taken, and the repository's .git is not in it).
    let r = rb.run(&["run", "--rm", "git:1", "test", "-e", "/branch/.git"]);
    assert_ne!(r.code, 0, ".git left out");

    // Nothing moved: cached, no step runs.
    let r2 = report("g2.json");
    build(&rb, &["-t", "git:1", "--report", &r2, s(&ctx)]);
    assert!(
        executed(&rb, "g2.json").is_empty(),
        "{:?}",
        executed(&rb, "g2.json")
    );

    // The branch moves: its ADD and what follows run again; the tag, the
    // commit and the pinned checksum (all before it) do not, and the
    // pinned one is not even asked for.
    std::fs::write(repo.join("file.txt"), "version 3\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "three"]);
    let r3 = report("g3.json");
    let r = build(&rb, &["-t", "git:1", "--explain", "--report", &r3, s(&ctx)]);
    assert!(
        r.stderr.contains("files: changed git ref main"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("git {url}#main")),
        "the git step is named: {}",
        r.stderr
    );
    let ran = executed(&rb, "g3.json");
    assert!(ran.iter().any(|i| i.contains("#main /branch/")), "{ran:?}");
    assert!(!ran.iter().any(|i| i.contains("#v1 ")), "{ran:?}");
    assert!(!ran.iter().any(|i| i.contains("--checksum")), "{ran:?}");
    assert_eq!(
        rb.ok(&["run", "--rm", "git:1", "cat", "/seen.txt"]),
        "version 3\n"
    );

    // --keep-git-dir keeps the repository.
    let ctx2 = rb.tree(
        "ctx2",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD --keep-git-dir {url}#v1 /repo/\n"),
        )],
    );
    build(&rb, &["-t", "git:2", s(&ctx2)]);
    let head = rb.ok(&["run", "--rm", "git:2", "cat", "/repo/.git/HEAD"]);
    assert_eq!(head.trim(), first);

    // --checksum pins the commit: a rebuild does not ask the remote, so it
    // is cached even with the server gone.
    let pinned = rb.tree(
        "ctx-pinned",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD --checksum={second} {url}#{second} /p/\n"),
        )],
    );
    build(&rb, &["-t", "git:3", s(&pinned)]);
    drop(daemon);
    let r4 = report("g4.json");
    build(&rb, &["-t", "git:3", "--report", &r4, s(&pinned)]);
    assert!(executed(&rb, "g4.json").is_empty());
    // Unpinned, the same rebuild has to ask, and says where it failed.
    let r = try_build(&rb, &["-t", "git:1", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!("ls-remote of {url} failed")),
        "{}",
        r.stderr
    );
}

#[test]
fn add_from_git_checks_out_submodules() {
    let test = "add_from_git_checks_out_submodules";
    if !tools_present(test, &["git"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let base = rb.path("git");
    let lib = base.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    std::fs::write(lib.join("lib.txt"), "from the submodule\n").unwrap();
    git(&lib, &["add", "."]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    let daemon = GitDaemon::start(&base);
    let app = base.join("app");
    std::fs::create_dir_all(&app).unwrap();
    git(&app, &["init", "-q", "-b", "main"]);
    std::fs::write(app.join("app.txt"), "app\n").unwrap();
    git(
        &app,
        &["submodule", "add", "-q", &daemon.url("lib"), "vendor/lib"],
    );
    git(&app, &["add", "."]);
    git(&app, &["commit", "-q", "-m", "app with a submodule"]);
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {}#main /app/\n", daemon.url("app")),
        )],
    );
    build(&rb, &["-t", "sub:1", s(&ctx)]);
    assert_eq!(
        rb.ok(&["run", "--rm", "sub:1", "cat", "/app/vendor/lib/lib.txt"]),
        "from the submodule\n"
    );
    for git_path in ["/app/.git", "/app/vendor/lib/.git"] {
        let r = rb.run(&["run", "--rm", "sub:1", "test", "-e", git_path]);
        assert_ne!(r.code, 0, "{git_path} left out");
    }
}

/// A loopback smart-HTTP git server (`git http-backend` as CGI) that
/// answers 401 unless a request carries `Authorization: <auth>`.
struct GitHttp {
    port: u16,
}

impl GitHttp {
    fn serve(root: &Path, auth: String) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(c) = conn else { continue };
                let (root, auth) = (root.clone(), auth.clone());
                std::thread::spawn(move || git_http_exchange(c, &root, &auth));
            }
        });
        GitHttp { port }
    }

    fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

/// One request: headers, then `git http-backend` with the CGI variables.
fn git_http_exchange(mut c: TcpStream, root: &Path, auth: &str) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default().to_string();
    let mut parts = request.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = std::collections::HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if headers.get("authorization").map(String::as_str) != Some(auth) {
        let _ = c.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if c.read_exact(&mut body).is_err() {
        return;
    }
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", len.to_string())
        .env(
            "CONTENT_TYPE",
            headers.get("content-type").cloned().unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = headers.get("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    let mut child = cgi.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        });
    let Some((at, sep)) = split else { return };
    let cgi_head = String::from_utf8_lossy(&out.stdout[..at]).into_owned();
    let cgi_body = &out.stdout[at + sep..];
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for l in cgi_head.lines() {
        match l.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => response.push_str(&format!("{}\r\n", l.trim_end())),
            None => {}
        }
    }
    let _ = c.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
            cgi_body.len()
        )
        .as_bytes(),
    );
    let _ = c.write_all(cgi_body);
}

#[test]
fn git_over_https_takes_the_token_secret_and_keeps_it_out_of_the_image() {
    let test = "git_over_https_takes_the_token_secret_and_keeps_it_out_of_the_image";
    if !tools_present(test, &["git"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let base = rb.path("git");
    let (repo, _, _) = make_repo(&base);
    let served = rb.path("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["clone", "-q", "--bare", s(&repo), "private.git"]);
    let token = "tok-3141592653";
    // BuildKit's header: basic base64("x-access-token:" + token).
    let basic = tool(
        "sh",
        &[
            "-c",
            &format!("printf 'x-access-token:{token}' | base64 -w0"),
        ],
    );
    let server = GitHttp::serve(&served, format!("basic {basic}"));
    let url = server.url("private.git");
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url}#main /src/\n"),
        )],
    );
    // Without the token the remote refuses, and the error names it.
    let before = image_ids(&rb);
    let r = try_build(&rb, &["-t", "priv:1", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert_eq!(image_ids(&rb), before);
    // With it (per host first, as BuildKit), the files arrive.
    let report = rb.path("priv.json");
    let mut c = rb.command(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "priv:1",
        "--secret",
        "id=GIT_AUTH_TOKEN.127.0.0.1,env=RBUILD_TEST_TOKEN",
        "--report",
        s(&report),
        s(&ctx),
    ]);
    c.env("RBUILD_TEST_TOKEN", token);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rb.ok(&["run", "--rm", "priv:1", "cat", "/src/file.txt"]),
        "version 2\n"
    );
    let history = rb.ok(&["history", "--no-trunc", "priv:1"]);
    let inspect = rb.ok(&["inspect", "priv:1"]);
    let report = std::fs::read_to_string(&report).unwrap();
    for text in [&history, &inspect, &report, &r.stderr] {
        assert!(
            !text.contains(token) && !text.contains(basic.trim()),
            "token leaked: {text}"
        );
    }
}

/// ssh remotes (`ssh://`, `git@host:path`) reach git's ssh with the
/// `--ssh default` agent. There is no sshd here: a stand-in `ssh` first on
/// PATH records what it was given (the agent socket, and the keys that
/// agent lists) and runs the remote command (`git-upload-pack 'PATH'`)
/// locally, as sshd would on the far side.
#[test]
fn git_over_ssh_uses_the_ssh_agent() {
    let test = "git_over_ssh_uses_the_ssh_agent";
    if !tools_present(test, &["git", "ssh-agent", "ssh-keygen", "ssh-add"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let agent = Agent::start(&rb);
    let base = rb.path("git");
    let (repo, _, _) = make_repo(&base);
    let bin = rb.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = rb.path("ssh.log");
    let fake = bin.join("ssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         echo \"agent=$SSH_AUTH_SOCK\" >> \"$FAKE_SSH_LOG\"\n\
         ssh-add -l >> \"$FAKE_SSH_LOG\" 2>&1\n\
         for a; do last=$a; done\n\
         exec sh -c \"$last\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let repo_path = s(&repo).to_string();
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nADD ssh://git@gitserver{repo_path}#main /url/\nADD git@gitserver:{repo_path}#v1 /scp/\n"
            ),
        )],
    );
    let path = format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default());
    let mut c = rb.command(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "viassh:1",
        "--ssh",
        &format!("default={}", s(&agent.socket)),
        s(&ctx),
    ]);
    c.env("PATH", &path)
        .env("FAKE_SSH_LOG", &log)
        .env_remove("SSH_AUTH_SOCK");
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rb.ok(&["run", "--rm", "viassh:1", "cat", "/url/file.txt"]),
        "version 2\n"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "viassh:1", "cat", "/scp/file.txt"]),
        "version 1\n"
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains(&format!("agent={}", s(&agent.socket))),
        "{seen}"
    );
    assert!(seen.contains("rbuild-test-key"), "{seen}");
    // Without --ssh, git's ssh gets no agent at all (not the caller's).
    std::fs::write(&log, "").unwrap();
    let ctx2 = rb.tree(
        "ctx2",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD git@gitserver:{repo_path}#main /x/\n"),
        )],
    );
    let mut c = rb.command(&["build", "--progress", "plain", s(&ctx2)]);
    c.env("PATH", &path)
        .env("FAKE_SSH_LOG", &log)
        .env("SSH_AUTH_SOCK", &agent.socket);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("agent=\n"), "{seen}");
}

#[test]
fn git_errors_name_the_ref_and_the_remote() {
    let test = "git_errors_name_the_ref_and_the_remote";
    if !tools_present(test, &["git"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let base = rb.path("git");
    make_repo(&base);
    let daemon = GitDaemon::start(&base);
    let before = image_ids(&rb);
    let url = daemon.url("repo");
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url}#no-such-branch /src/\n"),
        )],
    );
    let r = try_build(&rb, &["-t", "x", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("\"no-such-branch\" not found in"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    // An unreachable host: nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = format!("git://127.0.0.1:{closed}/repo");
    let ctx = rb.tree(
        "ctx-unreachable",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {bad}#main /src/\n"),
        )],
    );
    let r = try_build(&rb, &["-t", "x", s(&ctx)]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!("ls-remote of {bad} failed")),
        "{}",
        r.stderr
    );
    assert_eq!(image_ids(&rb), before);
}

#[test]
fn git_and_tarball_contexts_main_and_named() {
    let test = "git_and_tarball_contexts_main_and_named";
    if !tools_present(test, &["git", "tar"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let base = rb.path("git");
    let (repo, _, _) = make_repo(&base);
    std::fs::write(
        repo.join("sub/Dockerfile"),
        "FROM busybox\nCOPY inner.txt /inner.txt\nCOPY --from=extra data.txt /data.txt\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "dockerfile"]);
    let daemon = GitDaemon::start(&base);

    // A tarball served over loopback HTTP, used as a named context.
    let tree = rb.tree("tar-src", &[("data.txt", "from the tarball\n")]);
    let tarball = rb.path("ctx.tar.gz");
    tool("tar", &["-czf", s(&tarball), "-C", s(&tree), "."]);
    let server = HttpServer::serve(std::fs::read(&tarball).unwrap());

    let git_ctx = format!("{}#main:sub", daemon.url("repo"));
    build(
        &rb,
        &[
            "-t",
            "remote:1",
            "--build-context",
            &format!("extra={}", server.url("ctx.tar.gz")),
            &git_ctx,
        ],
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "remote:1", "cat", "/inner.txt"]),
        "inner 1\n"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "remote:1", "cat", "/data.txt"]),
        "from the tarball\n"
    );

    // The tarball as the main context, and a git repository as a named one.
    let main = rb.tree(
        "tar-main",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY hello.txt /hello.txt\nCOPY --from=src file.txt /file.txt\n",
            ),
            ("hello.txt", "hello from a tarball context\n"),
        ],
    );
    let main_tar = rb.path("main.tar.gz");
    tool("tar", &["-czf", s(&main_tar), "-C", s(&main), "."]);
    let server2 = HttpServer::serve(std::fs::read(&main_tar).unwrap());
    build(
        &rb,
        &[
            "-t",
            "remote:2",
            "--build-context",
            &format!("src={}#v1", daemon.url("repo")),
            &server2.url("main.tar.gz"),
        ],
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "remote:2", "cat", "/hello.txt"]),
        "hello from a tarball context\n"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", "remote:2", "cat", "/file.txt"]),
        "version 1\n"
    );
}

#[test]
fn stdin_holds_a_context_tar_or_a_bare_dockerfile() {
    let rb = Rbuild::new();
    rb.busybox();
    let tree = rb.tree(
        "stdin-ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY msg.txt /msg.txt\n"),
            ("msg.txt", "piped context\n"),
            // As with BuildKit, a context that is not a local directory
            // gets no .dockerignore.
            (".dockerignore", "msg.txt\n"),
        ],
    );
    let tar = rb.path("ctx.tar");
    tool("tar", &["-cf", s(&tar), "-C", s(&tree), "."]);
    let r = rb.run_with_stdin(
        &["build", "--progress", "plain", "-t", "piped:1", "-"],
        Some(&std::fs::read(&tar).unwrap()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rb.ok(&["run", "--rm", "piped:1", "cat", "/msg.txt"]),
        "piped context\n"
    );

    let r = rb.run_with_stdin(
        &["build", "--progress", "plain", "-t", "piped:2", "-"],
        Some(b"FROM busybox\nRUN echo no context > /msg.txt\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rb.ok(&["run", "--rm", "piped:2", "cat", "/msg.txt"]),
        "no context\n"
    );

    // Both from stdin: refused.
    let r = rb.run_with_stdin(&["build", "-f", "-", "-"], Some(b"FROM busybox\n"));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot both come from stdin"),
        "{}",
        r.stderr
    );
}

/// A loopback HTTP server answering every GET with `body`.
struct HttpServer {
    port: u16,
}

impl HttpServer {
    fn serve(body: Vec<u8>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(head.as_bytes());
                let _ = c.write_all(&body);
            }
        });
        HttpServer { port }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

/// A rootless build (as nobody, in a user namespace) reaches the agent
/// too: the step's socket is owned as the sandbox maps it.
#[test]
fn ssh_mount_works_in_a_rootless_build() {
    let test = "ssh_mount_works_in_a_rootless_build";
    if !tools_present(test, &["setpriv", "ssh-keygen", "ssh-add", "ldd"]) {
        return;
    }
    if !is_root() {
        skipped(test, "needs root (to become nobody with setpriv)");
        return;
    }
    let rb = Rbuild::new();
    let top = rb.dir.path();
    std::fs::set_permissions(top, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = rb.path("rbuild-copy");
    std::fs::copy(support::bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let key = rb.path("id_rootless");
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "rootless-key",
            "-f",
            s(&key),
        ],
    );
    let ctx = ssh_context(
        &rb,
        "FROM busybox\nCOPY tools/ /\nRUN --mount=type=ssh ssh-add -l > /k.txt\n",
    );
    let home = rb.path("home");
    let root = rb.path("nobody-root");
    for d in [&home, &root] {
        std::fs::create_dir_all(d).unwrap();
    }
    for p in [&key, &ctx, &home, &root] {
        tool("chown", &["-R", "65534:65534", s(p)]);
    }
    let as_nobody = |program: &Path, args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(program)
            .args(args)
            .env("HOME", &home)
            .env("TMPDIR", &home)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        support::to_run(out)
    };
    let made = as_nobody(
        &support::repo_root().join("testdata/make-busybox"),
        &[s(&bin), s(&root)],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let r = as_nobody(
        &bin,
        &[
            "--root",
            s(&root),
            "build",
            "--progress",
            "plain",
            "-t",
            "rootless:1",
            "--ssh",
            &format!("default={}", s(&key)),
            s(&ctx),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = as_nobody(
        &bin,
        &[
            "--root",
            s(&root),
            "run",
            "--rm",
            "rootless:1",
            "cat",
            "/k.txt",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("rootless-key (ED25519)"), "{}", r.stdout);
}

fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

/// A bake target's `contexts` and `ssh` are `--build-context` and `--ssh`.
#[test]
fn bake_targets_take_contexts_and_ssh() {
    let test = "bake_targets_take_contexts_and_ssh";
    if !tools_present(test, &["ssh-keygen"]) {
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let key = rb.path("id_bake");
    tool(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", s(&key)],
    );
    let dir = rb.tree(
        "bake",
        &[
            ("lib/lib.txt", "from the named context\n"),
            (
                "app/Dockerfile",
                "FROM busybox\nCOPY --from=lib lib.txt /lib.txt\nRUN --mount=type=ssh,required test -S \"$SSH_AUTH_SOCK\"\n",
            ),
            (
                "docker-bake.hcl",
                &format!(
                    "target \"app\" {{\n  context = \"app\"\n  contexts = {{ lib = \"lib\" }}\n  ssh = [\"default={}\"]\n  tags = [\"baked:1\"]\n}}\n",
                    s(&key)
                ),
            ),
        ],
    );
    let mut c = rb.command(&["bake", "--progress", "plain", "app"]);
    c.current_dir(&dir);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rb.ok(&["run", "--rm", "baked:1", "cat", "/lib.txt"]),
        "from the named context\n"
    );
}
