//! Builds under faults: `rbuild build` killed with SIGKILL at random
//! moments of a multi-stage build (some during a `RUN
//! --mount=type=secret` step) leaves a store that `system check` finds
//! clean, no tag, no scratch dir and no copy of the secret anywhere, and a
//! retry builds the right image; concurrent builds sharing steps stay
//! right while `cache prune` and `image prune` run in a loop.
//!
//! The moments come from a seeded RNG whose seed is printed;
//! `RBUILD_FAULT_SEED=N` replays a run. Every command runs with a private
//! `XDG_RUNTIME_DIR` on /dev/shm, so the sandbox's runtime dir is this
//! test's alone: what it finds there was left by these builds.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::{Rbuild, Run, run_command, s, skipped};

/// splitmix64: small, seedable, good enough to pick moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

fn seeded_rng(test: &str) -> Rng {
    let seed = std::env::var("RBUILD_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    // libtest shows it with a failure (and always with --nocapture).
    eprintln!("{test}: RBUILD_FAULT_SEED={seed}");
    Rng(seed)
}

/// A store plus a private runtime dir for the sandbox.
struct Env {
    rb: Rbuild,
    runtime: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let rb = Rbuild::new();
        let runtime = tempfile::Builder::new()
            .prefix("rbuild-faults-")
            .tempdir_in("/dev/shm")
            .unwrap();
        Env { rb, runtime }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.rb.private_command(args);
        c.env("XDG_RUNTIME_DIR", self.runtime.path());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run_command(self.command(args), None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "rbuild {args:?}:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }

    /// The sandbox's runtime dir under the private XDG_RUNTIME_DIR.
    fn runtime_dir(&self) -> PathBuf {
        self.runtime.path().join("rbuild")
    }
}

const SECRET_ID: &str = "tok";

/// Three stages, one reading a secret; each RUN sleeps a little so kills
/// land inside steps as well as between them.
const DOCKERFILE: &str = "\
FROM busybox AS a
COPY a.txt /a.txt
RUN sleep 0.2 && tr a-z A-Z < /a.txt > /a.out

FROM busybox AS b
RUN --mount=type=secret,id=tok,required=true echo secret-step-started && sleep 0.4 && wc -c < /run/secrets/tok > /b.out

FROM busybox
COPY --from=a /a.out /a.out
COPY --from=b /b.out /b.out
RUN sleep 0.1 && cat /a.out /b.out > /final
CMD [\"cat\", \"/final\"]
";

struct Fixture {
    env: Env,
    ctx: PathBuf,
    secret_file: PathBuf,
    secret: String,
    started: SystemTime,
}

impl Fixture {
    fn new(rng: &mut Rng) -> Fixture {
        let env = Env::new();
        let started = SystemTime::now();
        env.rb.busybox();
        let ctx = env.rb.tree(
            "ctx",
            &[("Dockerfile", DOCKERFILE), ("a.txt", "from stage a\n")],
        );
        // Unique per run, so finding it anywhere means this test left it.
        let secret = format!("s3cret-{:016x}-{:016x}", rng.next(), rng.next());
        let secret_file = env.rb.path("secret.txt");
        std::fs::write(&secret_file, &secret).unwrap();
        Fixture {
            env,
            ctx,
            secret_file,
            secret,
            started,
        }
    }

    fn build_command(&self, tag: &str, extra: &[&str]) -> Command {
        let secret = format!("id={SECRET_ID},src={}", s(&self.secret_file));
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "--secret",
            &secret,
            "-t",
            tag,
        ];
        args.extend_from_slice(extra);
        args.push(s(&self.ctx));
        self.env.command(&args)
    }

    /// What the image prints: stage a's file upper-cased, the secret's
    /// length.
    fn expected(&self) -> String {
        format!("FROM STAGE A\n{}\n", self.secret.len())
    }

    fn assert_image_right(&self, tag: &str) {
        let out = self.env.ok(&["run", "--rm", tag]);
        assert_eq!(out, self.expected(), "image {tag}");
    }

    fn has_tag(&self, tag: &str) -> bool {
        let out = self
            .env
            .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        out.lines().any(|l| l == tag)
    }

    /// `system check` finds nothing, and nothing a killed process made is
    /// left: no stale session dir in the store's tmp, no entry in the
    /// runtime dir but the shared ones, no copy of the secret.
    fn assert_clean(&self, what: &str) {
        let r = self.env.run(&["system", "check"]);
        assert_eq!(
            r.code, 0,
            "{what}: system check:\n{}\n{}",
            r.stdout, r.stderr
        );
        assert!(r.stdout.contains(": 0 problems"), "{what}: {}", r.stdout);
        let tmp = self.env.rb.root().join("store-v1/tmp");
        for e in std::fs::read_dir(&tmp).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: u32 = name.split(['-', '.']).next().unwrap().parse().unwrap();
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "{what}: {name} in the store's tmp was left by dead process {pid}"
            );
        }
        if let Ok(entries) = std::fs::read_dir(self.env.runtime_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    name == "scratch-mnt" || name == "init-layer-v1",
                    "{what}: {name} left in the runtime dir"
                );
            }
            let mnt = self.env.runtime_dir().join("scratch-mnt");
            if mnt.exists() {
                assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0, "{what}");
            }
        }
        let mut found = Vec::new();
        for dir in [self.env.runtime.path(), &self.env.rb.root()] {
            find_secret(dir, self.secret.as_bytes(), None, &mut found);
        }
        assert_eq!(
            found,
            Vec::<PathBuf>::new(),
            "{what}: the secret is left in"
        );
    }

    /// The secret in no file written since the test started under
    /// /dev/shm, /run, /tmp or the store root (the secret's own source
    /// file aside).
    fn assert_secret_nowhere(&self) {
        let mut found = Vec::new();
        for dir in [
            Path::new("/dev/shm"),
            Path::new("/run"),
            Path::new("/tmp"),
            &self.env.rb.root(),
        ] {
            find_secret(dir, self.secret.as_bytes(), Some(self.started), &mut found);
        }
        found.retain(|p| p != &self.secret_file);
        assert_eq!(found, Vec::<PathBuf>::new(), "the secret is left in");
    }
}

/// Regular files under `dir` (not following symlinks, not crossing into
/// /proc-like trees) holding `needle`; with `since`, only files changed
/// since then are read.
fn find_secret(dir: &Path, needle: &[u8], since: Option<SystemTime>, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            find_secret(&e.path(), needle, since, found);
        } else if meta.is_file() && meta.len() < (1 << 20) {
            let changed = meta.modified().ok().zip(since).is_none_or(|(m, s)| m >= s);
            if changed
                && std::fs::read(e.path())
                    .is_ok_and(|d| d.windows(needle.len()).any(|w| w == needle))
            {
                found.push(e.path());
            }
        }
    }
}

/// Starts a build, waits `delay` (or until the secret step prints that it
/// started, then `delay`), and SIGKILLs it. Returns whether it was killed
/// (false: it finished first).
fn kill_build(mut child: Child, delay: Duration, at_secret: bool) -> bool {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("secret-step-started") && !line.contains("RUN") {
                let _ = tx.send(());
            }
        }
    });
    if at_secret {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if rx.try_recv().is_ok() {
                break;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                panic!("the build ended before its secret step started");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let end = Instant::now() + delay;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

/// Waits until no process is a child sandbox of a killed build: their
/// init gets SIGTERM when the build dies and ends its sandbox.
fn settle(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let busy = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|env_bytes| {
                let needle = env.runtime.path().as_os_str().as_encoded_bytes();
                env_bytes.windows(needle.len()).any(|w| w == needle)
            })
        });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sandboxes of a killed build still run after 10 s");
}

#[test]
fn sigkill_at_random_moments_of_a_build_leaves_nothing_and_a_retry_is_right() {
    const TEST: &str = "sigkill_at_random_moments_of_a_build_leaves_nothing_and_a_retry_is_right";
    if !nix::unistd::geteuid().is_root() {
        skipped(TEST, "RUN steps need root");
        return;
    }
    let t0 = Instant::now();
    let mut rng = seeded_rng(TEST);
    let f = Fixture::new(&mut rng);

    // One whole uncached build gives the span to pick moments in.
    let start = Instant::now();
    let r = run_command(f.build_command("app:reference", &["--no-cache"]), None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let span = start.elapsed();
    f.assert_image_right("app:reference");
    // And a cached one, for the rounds that use the cache index.
    let start = Instant::now();
    let r = run_command(f.build_command("app:reference", &[]), None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cached_span = start.elapsed();
    f.env.ok(&["rmi", "app:reference"]);

    // 12 kills (rounds whose build ends first are checked too, and do
    // not count): every third round during the secret step, the others
    // anywhere.
    // Some rounds build with the cache index (so kills also land in cache
    // hits and exports), the others (and the secret ones, whose step must
    // run) with --no-cache.
    let mut killed = 0;
    let mut round = 0;
    while killed < 12 {
        assert!(
            round < 30,
            "only {killed} of {round} builds were killed before they ended"
        );
        let tag = format!("app:round{round}");
        let at_secret = round % 3 == 0;
        let cached = !at_secret && round % 2 == 1;
        let delay = if at_secret {
            rng.below(Duration::from_millis(400))
        } else if cached {
            rng.below(cached_span + cached_span / 10)
        } else {
            rng.below(span + span / 10)
        };
        let extra: &[&str] = if cached { &[] } else { &["--no-cache"] };
        let child = f
            .build_command(&tag, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let what = format!("round {round} (kill after {delay:?}, at_secret={at_secret})");
        let was_killed = kill_build(child, delay, at_secret);
        killed += usize::from(was_killed);
        settle(&f.env);
        // Finished (or killed after tagging): the image must be whole.
        if f.has_tag(&tag) {
            f.assert_image_right(&tag);
        } else {
            assert!(was_killed, "{what}: the build finished without tagging");
        }
        f.assert_clean(&what);
        // The retry builds the right image (reusing what the killed one
        // recorded, so a bad record would show here).
        let r = run_command(f.build_command(&tag, &[]), None);
        assert_eq!(r.code, 0, "{what}: retry:\n{}", r.stderr);
        f.assert_image_right(&tag);
        f.env.ok(&["rmi", &tag]);
        round += 1;
    }
    f.assert_clean("the end");
    f.assert_secret_nowhere();
    eprintln!(
        "{TEST}: {killed} kills in {round} rounds, {:?}",
        t0.elapsed()
    );
}

#[test]
fn system_check_removes_what_a_killed_build_left_in_the_runtime_dir() {
    let env = Env::new();
    let runtime = env.runtime_dir();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // What an older rbuild killed in a secret step left (a pid above any
    // pid_max, so surely gone), with overlay's mode-000 work dir.
    let stale = runtime.join("build-run-4194305-3");
    std::fs::create_dir_all(stale.join("work/work")).unwrap();
    std::fs::write(stale.join("secret-0"), "s3cret").unwrap();
    std::fs::set_permissions(
        stale.join("work/work"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // A live process's dir (ours) stays.
    let live = runtime.join(format!("build-run-{}-0", std::process::id()));
    std::fs::create_dir(&live).unwrap();

    let r = env.run(&["system", "check"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "removed {}: scratch dir of process 4194305, which is gone",
            stale.display()
        )),
        "{}",
        r.stdout
    );
    assert!(!stale.exists());
    assert!(live.exists(), "a live process's dir is never taken");
    let r = env.run(&["system", "check"]);
    assert!(!r.stdout.contains("removed"), "{}", r.stdout);
}

#[test]
fn concurrent_builds_sharing_steps_stay_right_while_prunes_run() {
    const TEST: &str = "concurrent_builds_sharing_steps_stay_right_while_prunes_run";
    if !nix::unistd::geteuid().is_root() {
        skipped(TEST, "RUN steps need root");
        return;
    }
    let mut rng = seeded_rng(TEST);
    let env = Env::new();
    env.rb.busybox();
    // Two contexts sharing their first stage's steps, each with a step of
    // its own.
    let shared = "FROM busybox AS base\nCOPY shared.txt /shared.txt\nRUN sleep 0.1 && cp /shared.txt /base.out\n";
    let ctx = |name: &str| {
        env.rb.tree(
            name,
            &[
                (
                    "Dockerfile",
                    &format!(
                        "{shared}FROM base\nCOPY own.txt /own.txt\nRUN cat /base.out /own.txt > /final\nCMD [\"cat\", \"/final\"]\n"
                    ),
                ),
                ("shared.txt", "shared\n"),
                ("own.txt", &format!("own {name}\n")),
            ],
        )
    };
    let contexts = [ctx("one"), ctx("two")];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let stop = stop.clone();
        let mut cache = env.command(&["cache", "prune", "-a", "-f"]);
        let mut image = env.command(&["image", "prune", "-f"]);
        let jitter: Vec<u64> = (0..64).map(|_| rng.next() % 50).collect();
        std::thread::spawn(move || {
            let mut runs = 0usize;
            let mut failures = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in [&mut cache, &mut image] {
                    let out = c.output().unwrap();
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                    runs += 1;
                }
                std::thread::sleep(Duration::from_millis(jitter[runs % jitter.len()]));
            }
            (runs, failures)
        })
    };

    for round in 0..3 {
        let builds: Vec<(String, &PathBuf, Child)> = (0..4)
            .map(|i| {
                let ctx = &contexts[i % 2];
                let tag = format!("app:r{round}-{i}");
                let child = env
                    .command(&["build", "--progress", "plain", "-t", &tag, s(ctx)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (tag, ctx, child)
            })
            .collect();
        for (tag, ctx, child) in builds {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "build {tag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let name = ctx.file_name().unwrap().to_string_lossy();
            let printed = env.ok(&["run", "--rm", &tag]);
            assert_eq!(printed, format!("shared\nown {name}\n"), "{tag}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runs, failures) = pruner.join().unwrap();
    assert!(runs >= 2, "the prunes ran {runs} times");
    assert_eq!(failures, Vec::<String>::new(), "prunes failed");
    let r = env.run(&["system", "check"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// Serves one response on 127.0.0.1 that promises `total` bytes, sends
/// the first half and stalls; says on `sent` when that half is out.
fn stalling_server(total: usize, sent: std::sync::mpsc::Sender<()>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&vec![b'x'; total / 2]);
        let _ = stream.flush();
        let _ = sent.send(());
        // Stall until the client goes away.
        let _ = stream.read(&mut buf);
        std::thread::sleep(Duration::from_secs(30));
    });
    format!("http://{addr}/big.bin")
}

#[test]
fn sigkill_during_an_add_download_leaves_no_temporary_file() {
    let env = Env::new();
    let url = {
        let (tx, rx) = std::sync::mpsc::channel();
        let url = stalling_server(8 << 20, tx);
        (url, rx)
    };
    let ctx = env.rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {} /big.bin\n", url.0),
        )],
    );
    // rbuild's temporaries go to TMPDIR: a dir of this test's own.
    let tmpdir = env.rb.path("tmpdir");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let mut child = env
        .command(&["build", "--progress", "plain", "-t", "add:1", s(&ctx)])
        .env("TMPDIR", &tmpdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    url.1
        .recv_timeout(Duration::from_secs(60))
        .expect("the build never asked for the URL");
    // The half sent is written by now (or very soon): give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<PathBuf> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "a killed download stays on disk"
    );
    env.ok(&["system", "check"]);
}

/// The size of the largest file under `dir` whose name starts with
/// `prefix`, recursively (0 when none).
fn largest_named(dir: &Path, prefix: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                largest_named(&p, prefix)
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0)
}

/// A RUN step's layer blob is written in the background while the next
/// step runs. SIGKILL in the middle of that write: no cache record names
/// the blob that never got stored (`system check` would count it), no
/// snapshot or temporary file is left, and the retry builds the step again
/// and gives the right image.
#[test]
fn sigkill_while_a_run_layers_blob_is_written_leaves_a_clean_store() {
    const TEST: &str = "sigkill_while_a_run_layers_blob_is_written_leaves_a_clean_store";
    if !nix::unistd::geteuid().is_root() {
        skipped(TEST, "RUN steps need root");
        return;
    }
    let env = Env::new();
    env.rb.busybox();
    let ctx = env.rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN head -c 200000000 /dev/zero > /pad && echo padded > /p.txt\n\
             RUN sleep 3 && echo done > /done.txt\n\
             CMD [\"cat\", \"/p.txt\", \"/done.txt\"]\n",
        )],
    );
    let tmp = env.rb.root().join("store-v1/tmp");
    let mut child = env
        .command(&["build", "--progress", "plain", "-t", "pad:1", s(&ctx)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The blob's temporary file grows in the build's scratch space only
    // once the first RUN is done: the step itself writes no blob.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before its blob was being written"
        );
        assert!(Instant::now() < deadline, "no blob was being written");
        if largest_named(&tmp, "blob-") > 1_000_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    settle(&env);

    let r = env.run(&["system", "check"]);
    assert_eq!(r.code, 0, "system check:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(": 0 problems"), "{}", r.stdout);
    let images = env.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("pad"), "{images}");
    // The retry runs the step again (nothing recorded it) and is right.
    let r = env.run(&["build", "--progress", "plain", "-t", "pad:1", s(&ctx)]);
    assert_eq!(r.code, 0, "retry:\n{}", r.stderr);
    assert!(
        r.stderr.contains("#2 [2/3] RUN head") && !r.stderr.contains("#2 CACHED"),
        "a step whose blob never got stored was taken from the cache:\n{}",
        r.stderr
    );
    assert_eq!(env.ok(&["run", "--rm", "pad:1"]), "padded\ndone\n");
    let r = env.run(&["system", "check"]);
    assert!(r.stdout.contains(": 0 problems"), "{}", r.stdout);
}
