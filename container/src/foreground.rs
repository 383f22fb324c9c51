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

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::SigSet;
use rbuild_sandbox as sandbox;

use crate::log::LogWriter;
use crate::monitor::{NetworkHandle, network_down};
use crate::{Container, ContainerError, Result, Status};

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
    let (sb, outputs) = match crate::monitor::spawn_piped(spec, stdin) {
        Ok(started) => started,
        Err(e) => {
            network_down(net);
            finish(root, c, i32::from(e.exit_code()), e.to_string());
            return Err(e);
        }
    };
    let tty = cfg.tty;
    // Closed once pid 1 has exited: the pumps stop there.
    let (stop_r, stop_w) = crate::monitor::pipe()?;
    let stop_r = Arc::new(stop_r);
    let pumps: Vec<_> = outputs
        .into_iter()
        .map(|(from, stream)| {
            let (log, stop) = (log.clone(), stop_r.clone());
            std::thread::spawn(move || {
                crate::monitor::pump(from, stream, tty, true, &log, Some(&stop))
            })
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
    drop(stop_w);
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
    crate::events::container(root, "start", cfg);
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

/// Removes the container and its anonymous volumes (`--rm`), best
/// effort.
pub fn remove(root: &Path, c: &Container) {
    let _ = crate::monitor::remove(root, c, true);
}
