//! A pseudo-terminal a test runs `rbuild` on, as a user's terminal: the
//! bytes it prints go through a terminal emulator (vt100) and the test
//! reads the screen, not the escape codes; keys can be typed and the
//! window resized.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command running on a pty of its own.
pub struct Terminal {
    child: Child,
    master: std::fs::File,
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    rows: u16,
    cols: u16,
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    /// Runs `cmd` on a `rows`×`cols` pty: stdout and stderr on it, and
    /// stdin too when `keys` (else /dev/null).
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16, keys: bool) -> Terminal {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).unwrap();
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let child = cmd
            .stdin(if keys {
                slave(&pty.slave)
            } else {
                Stdio::null()
            })
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .env("TERM", "xterm-256color")
            .spawn()
            .unwrap();
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (mut from, bytes) = (master.try_clone().unwrap(), bytes.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                // EIO: every slave descriptor is closed (the command ended).
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Terminal {
            child,
            master,
            bytes,
            reader: Some(reader),
            rows,
            cols,
        }
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// The pid of the command.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every row so far, the scrolled-off ones first, trailing blanks
    /// trimmed.
    pub fn screen(&self) -> Vec<String> {
        screen_of(&self.bytes.lock().unwrap(), self.rows, self.cols)
    }

    /// Waits until the screen shows `text` (10 s at most); returns the
    /// screen.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen().join("\n");
            if screen.contains(text) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the window as a terminal emulator does: the pty's size,
    /// then SIGWINCH to the command (which does not have the pty as its
    /// controlling terminal, so the kernel would not signal it).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, ws).unwrap();
        (self.rows, self.cols) = (rows, cols);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGWINCH,
        )
        .unwrap();
    }

    /// Waits for the command (10 s at most, then kills it) and returns
    /// its exit code and the final screen.
    pub fn wait(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Processes the command left (a container's monitor) may hold the
        // slave: read what is there, do not wait for EOF.
        std::thread::sleep(Duration::from_millis(100));
        drop(self.reader.take());
        (status.code().unwrap_or(-1), self.screen())
    }
}

/// Runs `rbuild ARGS` on a `rows`×`cols` pseudo-terminal (stdout and
/// stderr; stdin /dev/null) until it ends; returns the exit code and what
/// the emulated terminal shows, scrolled-off rows included, one string
/// per row, trailing blanks trimmed.
pub fn on_terminal(rb: &super::Rbuild, args: &[&str], rows: u16, cols: u16) -> (i32, Vec<String>) {
    let mut t = Terminal::spawn(rb.command(args), rows, cols, false);
    let status = t.child.wait().unwrap();
    if let Some(r) = t.reader.take() {
        let _ = r.join();
    }
    (status.code().unwrap_or(-1), t.screen())
}

/// The rows `bytes` leave on a `rows`×`cols` terminal, the ones that
/// scrolled off the top first.
pub fn screen_of(bytes: &[u8], rows: u16, cols: u16) -> Vec<String> {
    let mut term = vt100::Parser::new(rows, cols, 10_000);
    term.process(bytes);
    term.screen_mut().set_scrollback(usize::MAX);
    let history = term.screen().scrollback();
    let mut lines = vec![String::new(); history + usize::from(rows)];
    let mut offset = history;
    loop {
        term.screen_mut().set_scrollback(offset);
        for (i, row) in term.screen().rows(0, cols).enumerate() {
            lines[history - offset + i] = row.trim_end().to_string();
        }
        if offset == 0 {
            break;
        }
        offset = offset.saturating_sub(usize::from(rows));
    }
    lines
}
