//! `rbuild run` end to end through the real binary on a busybox rootfs:
//! what the container prints, exit codes, and the docker-run flags.

mod run_support;

use run_support::*;

#[test]
fn echo_prints_hi() {
    let r = busybox_rootfs();
    let o = run(r.path(), &["echo", "hi"]);
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn exit_codes_pass_through() {
    let r = busybox_rootfs();
    for code in [0, 1, 42] {
        let o = run(r.path(), &["sh", "-c", &format!("exit {code}")]);
        assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(&o));
    }
}

/// Host pids of the direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let c = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// Starts `rbuild run` with `script`, waits for "ready" on stdout, and
/// returns the child and the host pid of the container's pid 1.
fn start_ready(r: &Rootfs, script: &str) -> (std::process::Child, u32) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(RBUILD)
        .args([
            "run",
            "--rootfs",
            r.path().to_str().unwrap(),
            "sh",
            "-c",
            script,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let init = children(child.id());
    assert_eq!(
        init.len(),
        1,
        "rbuild should have one child, the init process"
    );
    let pid1 = children(init[0]);
    assert_eq!(
        pid1.len(),
        1,
        "the init process should have one child, pid 1"
    );
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, pid1[0])
}

#[test]
fn killed_by_signal_is_128_plus_n() {
    let r = busybox_rootfs();
    let (mut child, pid1) = start_ready(&r, "echo ready; sleep 30");
    // SIGKILL from the host (an ancestor pid namespace) reaches pid 1.
    std::process::Command::new("kill")
        .args(["-KILL", &pid1.to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn sigterm_to_rbuild_is_forwarded_to_the_container() {
    let r = busybox_rootfs();
    let (mut child, _) = start_ready(
        &r,
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn missing_command_is_127_and_not_executable_is_126() {
    let r = busybox_rootfs();
    let o = run(r.path(), &["no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("no-such-command"), "{}", stderr(&o));
    let o = run(r.path(), &["/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126));
}

#[test]
fn env_flags_set_variables() {
    let r = busybox_rootfs();
    let envf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(envf.path(), "# comment\nFROM_FILE=file\nOVERRIDDEN=file\n").unwrap();
    let o = run_with(
        r.path(),
        &[
            "-e",
            "GREETING=hello world",
            "--env-file",
            envf.path().to_str().unwrap(),
            "-e",
            "OVERRIDDEN=flag",
        ],
        &[
            "sh",
            "-c",
            "echo \"$GREETING|$FROM_FILE|$OVERRIDDEN|$PATH\"",
        ],
    );
    assert_eq!(
        stdout(&o),
        "hello world|file|flag|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[test]
fn workdir_is_created_and_used() {
    let r = busybox_rootfs();
    let o = run_with(r.path(), &["-w", "/srv/app"], &["pwd"]);
    assert_eq!(stdout(&o), "/srv/app\n");
}

#[test]
fn user_nobody_by_name_and_by_number() {
    let r = busybox_rootfs();
    let o = run_with(r.path(), &["-u", "nobody"], &["id"]);
    assert_eq!(
        stdout(&o),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    );
    let o = run_with(r.path(), &["-u", "1234:65534"], &["id"]);
    assert_eq!(
        stdout(&o),
        "uid=1234 gid=65534(nogroup) groups=65534(nogroup)\n"
    );
    let o = run_with(r.path(), &["-u", "ghost"], &["id"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("unable to find user ghost"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn volumes_bind_host_dirs_read_write_and_read_only() {
    let r = busybox_rootfs();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let vol = format!("{}:/data", host.path().display());
    let o = run_with(
        r.path(),
        &["-v", &vol],
        &["sh", "-c", "cat /data/in; echo back > /data/out"],
    );
    assert_eq!(stdout(&o), "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/data:ro", host.path().display());
    let o = run_with(r.path(), &["-v", &ro], &["sh", "-c", "echo no > /data/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!host.path().join("x").exists());
}

#[test]
fn tmpfs_mount_is_writable_and_empty() {
    let r = busybox_rootfs();
    let o = run_with(
        r.path(),
        &["--tmpfs", "/scratch"],
        &[
            "sh",
            "-c",
            "ls -A /scratch; echo x > /scratch/f && grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
        ],
    );
    assert_eq!(stdout(&o), "tmpfs\n");
}

#[test]
fn entrypoint_replaces_the_command_head() {
    let r = busybox_rootfs();
    let o = run_with(
        r.path(),
        &["--entrypoint", "/bin/echo"],
        &["from", "entrypoint"],
    );
    assert_eq!(stdout(&o), "from entrypoint\n");
}

#[test]
fn hostname_flag_sets_hostname_and_etc_files() {
    let r = busybox_rootfs();
    let out = run_with(
        r.path(),
        &["--hostname", "box1"],
        &[
            "sh",
            "-c",
            "hostname; cat /etc/hostname; grep -c box1 /etc/hosts",
        ],
    );
    assert_eq!(stdout(&out), "box1\nbox1\n1\n");
    // The generated files were bind-mounted: the rootfs has none of them.
    assert!(!r.path().join("etc/hostname").exists());
    assert!(!r.path().join("etc/hosts").exists());
    assert!(!r.path().join("proc").exists());
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let r = busybox_rootfs();
    let o = run_with(r.path(), &["--read-only"], &["sh", "-c", "touch /newfile"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!r.path().join("newfile").exists());
}

#[test]
fn overlay_rootfs_discards_changes() {
    let r = busybox_rootfs();
    let spec = format!("{}:O", r.path().display());
    let o = std::process::Command::new(RBUILD)
        .args([
            "run",
            "--rootfs",
            &spec,
            "sh",
            "-c",
            "echo x > /etc/added; rm /etc/group; ls /etc",
        ])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("added"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("group"));
    assert!(r.path().join("etc/group").exists());
    assert!(!r.path().join("etc/added").exists());
}

#[test]
fn pids_limit_caps_process_count() {
    if !is_root() {
        skipped(
            "pids_limit_caps_process_count",
            "needs root (a cgroup for the limit)",
        );
        return;
    }
    let r = busybox_rootfs();
    let o = run_with(
        r.path(),
        &["--pids-limit", "8"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; echo started",
        ],
    );
    assert!(
        stderr(&o).contains("can't fork"),
        "stdout {} stderr {}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn memory_limit_is_applied() {
    if !is_root() {
        skipped(
            "memory_limit_is_applied",
            "needs root (a cgroup for the limit)",
        );
        return;
    }
    let r = busybox_rootfs();
    let o = run_with(
        r.path(),
        &["--memory", "64m"],
        &["cat", "/proc/self/cgroup"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cg = stdout(&o);
    let line = cg
        .lines()
        .find(|l| l.contains("memory") || l.starts_with("0::"))
        .unwrap();
    let path = line.splitn(3, ':').nth(2).unwrap();
    assert!(path.contains("rbuild-"), "not in an rbuild cgroup: {cg}");
    // The cgroup is removed after the run.
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    let v2 = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    assert!(!v1.exists() && !v2.exists());
}

#[test]
fn tty_session_shows_a_prompt_and_follows_window_size() {
    let r = busybox_rootfs();
    let cmd = format!(
        "stty cols 97 rows 31; {} run -it --rootfs {} sh",
        RBUILD,
        r.path().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-eqc", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        stdin.write_all(b"stty size; tty; exit 3\n").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/ # "), "no prompt in {text:?}");
    assert!(text.contains("31 97"), "window size not passed: {text:?}");
    assert!(text.contains("/dev/console"), "{text:?}");
    assert_eq!(out.status.code(), Some(3));
}

/// Reads from `fd` until `needle` shows up or 10 s pass; returns all text.
fn read_until(fd: &std::os::fd::OwnedFd, needle: &str) -> String {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains(needle) && std::time::Instant::now() < deadline {
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap_or(0) == 0 {
            continue;
        }
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    text
}

#[test]
fn tty_follows_window_size_changes() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let r = busybox_rootfs();
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let slave = pty.slave.as_raw_fd();
    let mut cmd = std::process::Command::new(RBUILD);
    cmd.args(["run", "-it", "--rootfs", r.path().to_str().unwrap(), "sh"])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe; they make
    // the pty rbuild's controlling terminal, as a terminal emulator would.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if nix::libc::ioctl(slave, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let master = pty.master;
    let first = read_until(&master, "# ");
    assert!(first.contains("# "), "no prompt: {first:?}");
    nix::unistd::write(&master, b"stty size\n").unwrap();
    assert!(read_until(&master, "24 80").contains("24 80"));
    // Resize the outer terminal: the kernel sends SIGWINCH to rbuild's
    // process group, and the size must reach the container's pty.
    // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
    unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size(40, 132)) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::unistd::write(&master, b"stty size; exit 5\n").unwrap();
    let text = read_until(&master, "40 132");
    assert!(text.contains("40 132"), "size not followed: {text:?}");
    assert_eq!(child.wait().unwrap().code(), Some(5));
}

#[test]
fn stdin_reaches_the_container_only_with_i() {
    use std::io::Write;
    let r = busybox_rootfs();
    for (flags, expected) in [(vec!["-i"], "piped\n"), (vec![], "")] {
        let mut child = std::process::Command::new(RBUILD)
            .arg("run")
            .args(&flags)
            .args(["--rootfs", r.path().to_str().unwrap(), "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(b"piped\n");
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "flags {flags:?}"
        );
    }
}
