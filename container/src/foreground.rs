//! A container run in the foreground (`rbuild run` without `-d`): the
//! `rbuild` process itself is the container's monitor while it runs, so a
//! foreground run costs no monitor process, yet keeps a container record
//! as docker does — `ps -a` lists it (running, then exited with its code),
//! `logs` reads what it printed, `rm` removes it, `--rm` removes it on exit
//! and its name stays taken while the record lives.
//!
//! The container's stdout and stderr are pipes this process copies both to
//! its own stdout/stderr and into the container's json-file log; stdin is
//! the caller's (`-i`) or /dev/null, so with `-t` the sandbox's init still
//! puts the caller's terminal in raw mode and follows its window size.
//! Signals to this process go to the container (docker's sig-proxy). If
//! this process is killed, the sandbox's init gets its parent-death signal
//! and readers see a dead monitor: the container is reported exited (-1).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::SigSet;
use rbuild_sandbox as sandbox;

use crate::log::{LineSplitter, LogWriter};
use crate::monitor::{NetworkHandle, network_down};
use crate::{Container, ContainerError, Containers, Result, Status};

fn now() -> String {
    let (s, n) = rbuild_oci::time::now();
    rbuild_oci::time::rfc3339_nanos(s, n)
}

/// Runs the container `c` (just created) in the foreground on `spec`
/// with `stdin` (`None`: this process's), forwarding `signals` to it;
/// `net` is undone when it exits. Records its state and exit as the
/// monitor would, removes it afterwards with `--rm`, and returns pid 1's
/// exit status. A sandbox that cannot start is recorded exited with the
/// sandbox's exit code and returned as [`ContainerError::Sandbox`].
pub fn run(
    root: &Path,
    c: &Container,
    spec: &sandbox::SandboxSpec,
    stdin: Option<OwnedFd>,
    net: NetworkHandle,
    signals: &SigSet,
) -> Result<i32> {
    // Blocked before any thread starts, so every thread inherits the mask
    // and the signals queue for `wait_forwarding`.
    let _ = signals.thread_block();
    let cfg = &c.config;
    let log = LogWriter::open(&c.log_path(), cfg.host.log_max_size, cfg.host.log_max_file)
        .map_err(ContainerError::io("open", c.log_path()))?;
    let log = Arc::new(Mutex::new(log));
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ContainerError::io("pipe", "")(e.into()))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let started = sandbox::spawn(
        spec,
        sandbox::SandboxStdio {
            stdin,
            stdout: Some(out_w),
            stderr: Some(err_w),
        },
    );
    let sb = match started {
        Ok(sb) => sb,
        Err(e) => {
            network_down(net);
            finish(root, c, e.exit_code(), e.to_string());
            return Err(e.into());
        }
    };
    let pumps: Vec<_> = [(out_r, "stdout"), (err_r, "stderr")]
        .into_iter()
        .map(|(fd, stream)| {
            let log = log.clone();
            std::thread::spawn(move || tee(File::from(fd), stream, &log))
        })
        .collect();
    // The running state is written beside the wait, so a short command
    // need not wait for it; the phase (exited before the exit is
    // recorded) keeps it from landing after the exit.
    let phase = Arc::new(Mutex::new(Phase::Starting));
    {
        let (root, c, init, phase) = (root.to_path_buf(), c.clone(), sb.pid(), phase.clone());
        std::thread::spawn(move || record_running(&root, &c, init, &phase));
    }
    let result = sb.wait_forwarding(signals);
    if let Ok(mut p) = phase.lock() {
        // Too short-lived to have been seen running: it started all the same.
        if *p == Phase::Starting {
            started_event(root, c);
        }
        *p = Phase::Exited;
    }
    for p in pumps {
        let _ = p.join();
    }
    network_down(net);
    let (code, error) = match &result {
        Ok(code) => (*code, String::new()),
        Err(e) => (e.exit_code(), e.to_string()),
    };
    if !error.is_empty() {
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = l.write("stderr", format!("rbuild: error: {error}\n").as_bytes());
    }
    drop(log);
    finish(root, c, code, error);
    result.map_err(Into::into)
}

/// Where a foreground container is, for the thread that records it
/// running and the one that records its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Exited,
}

fn started_event(root: &Path, c: &Container) {
    let cfg = &c.config;
    crate::events::record(
        root,
        "container",
        "start",
        &cfg.id,
        &[("image", &cfg.image), ("name", &cfg.name)],
    );
}

/// Records the container running once pid 1 has exec'd its command,
/// unless it has exited meanwhile.
fn record_running(root: &Path, c: &Container, init: u32, phase: &Mutex<Phase>) {
    let gently = crate::monitor::Polling {
        first: Duration::from_millis(2),
        most: Duration::from_millis(25),
    };
    let pid1 = crate::monitor::find_pid1(init, gently);
    crate::monitor::await_exec(init, pid1, gently);
    let Ok(mut phase) = phase.lock() else { return };
    if *phase != Phase::Starting {
        return;
    }
    let me = std::process::id();
    let mut s = c.state.clone();
    s.status = Status::Running;
    s.pid = pid1;
    s.init_pid = init;
    s.monitor_pid = me;
    s.monitor_start = crate::process_start_time(me).unwrap_or(0);
    s.started_at = now();
    s.finished_at = crate::ZERO_TIME.into();
    let _ = c.write_state(&s);
    started_event(root, c);
    *phase = Phase::Running;
}

/// Records the exit (and with `--rm` removes the container), as the
/// monitor does; best effort, the exit code is the caller's to report.
fn finish(root: &Path, c: &Container, code: i32, error: String) {
    let cfg = &c.config;
    let code_s = code.to_string();
    let die = [
        ("exitCode", code_s.as_str()),
        ("image", &cfg.image),
        ("name", &cfg.name),
    ];
    if cfg.host.auto_remove {
        // Nobody reads the state of a container about to go.
        crate::events::record(root, "container", "die", &cfg.id, &die);
        remove(root, c);
        return;
    }
    let mut s = c
        .reload()
        .map(|c| c.state)
        .unwrap_or_else(|_| c.state.clone());
    s.status = Status::Exited;
    s.exit_code = code;
    s.oom_killed = sandbox::take_oom_killed();
    s.error = error;
    s.pid = 0;
    s.init_pid = 0;
    s.monitor_pid = 0;
    s.finished_at = now();
    let _ = c.write_state(&s);
    crate::events::record(root, "container", "die", &cfg.id, &die);
}

/// Removes the container and its anonymous volumes (`--rm`).
pub fn remove(root: &Path, c: &Container) {
    let Ok(containers) = Containers::open(root) else {
        return;
    };
    let Ok(_lock) = containers.lock() else {
        return;
    };
    crate::volume::remove_anonymous(root, &c.config);
    if containers.remove(c).is_ok() {
        crate::events::record(
            root,
            "container",
            "destroy",
            &c.config.id,
            &[("image", &c.config.image), ("name", &c.config.name)],
        );
    }
}

/// Copies `from` to this process's `stream` and into the log. When this
/// process's output is gone (a closed pipe), `from` is closed too, so the
/// container gets its SIGPIPE as it would writing there itself.
fn tee(mut from: File, stream: &'static str, log: &Mutex<LogWriter>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut lines = LineSplitter::default();
    let to_log = |l: &[u8]| {
        let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.write(stream, l);
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let written = if stream == "stderr" {
            let mut e = std::io::stderr().lock();
            e.write_all(&buf[..n]).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&buf[..n]).and_then(|()| o.flush())
        };
        lines.push(&buf[..n], to_log);
        if written.is_err() {
            break;
        }
    }
    lines.finish(to_log);
}
