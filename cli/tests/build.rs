//! End-to-end builds: the real binary builds a context from
//! `testdata/contexts/` into a temporary `--root`, then `rbuild run`s the
//! image and checks what it prints — the round trip rbuild promises.
//!
//! These are the acceptance tests of `rbuild build`: they pass once the
//! planner and the worker are wired into `run_build`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Rbuild, Run, assert_contains_all};

/// A copy of `testdata/contexts/<name>` (tests edit their copy).
fn context(rb: &Rbuild, name: &str) -> PathBuf {
    let src = support::repo_root().join("testdata/contexts").join(name);
    let dest = rb.path(&format!("ctx-{name}"));
    support::tool("cp", &["-a", src.to_str().unwrap(), dest.to_str().unwrap()]);
    dest
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `rbuild build --progress plain ARGS… CTX`, which must succeed.
fn build(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let r = try_build(rb, ctx, args);
    assert_eq!(
        r.code,
        0,
        "build of {} failed:\n{}\n{}",
        ctx.display(),
        r.stdout,
        r.stderr
    );
    r
}

fn try_build(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    all.push(s(ctx));
    rb.run(&all)
}

/// A build with `--report`, returning the report.
fn build_report(rb: &Rbuild, ctx: &Path, args: &[&str], name: &str) -> Value {
    let path = rb.path(name);
    let mut all = args.to_vec();
    all.extend_from_slice(&["--report", s(&path)]);
    build(rb, ctx, &all);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The names of a report step's phases, in order.
fn phase_names(step: &Value) -> Vec<&str> {
    step["timing"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

fn executed(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "executed")
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn single_stage() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "single-stage");
    build(&rb, &ctx, &["-t", "single:1"]);
    assert_eq!(rb.ok(&["run", "--rm", "single:1"]), "hello\nbuilt\n");
    assert_eq!(rb.ok(&["run", "single:1", "pwd"]), "/app\n");
}

#[test]
fn multi_stage_with_a_slim_final_stage() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "multi-stage");
    build(&rb, &ctx, &["-t", "slim"]);
    assert_eq!(rb.ok(&["run", "slim"]), "hello from the slim stage\n");
    let inspect: Value = serde_json::from_str(&rb.ok(&["inspect", "slim"])).unwrap();
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "only the two COPY layers: {inspect}");
    // The build stage's big file is not in the image.
    let r = rb.run(&[
        "run",
        "--entrypoint",
        "/bin/busybox",
        "slim",
        "test",
        "-e",
        "/src/big",
    ]);
    assert_eq!(r.code, 1);
    // --target builds the named stage instead.
    build(&rb, &ctx, &["-t", "slim:build", "--target", "build"]);
    assert_eq!(
        rb.ok(&["run", "slim:build", "sh", "-c", "wc -c < /src/big"])
            .trim(),
        "524288"
    );
}

#[test]
fn arg_and_env_scoping() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "args-env");
    build(&rb, &ctx, &["-t", "args:default"]);
    assert_eq!(
        rb.ok(&["run", "args:default"]),
        "hello first-value arg-wins\ngreeting=unset only_first=unset from_env=unset\n"
    );
    // --build-arg overrides ARG defaults, reaches a later stage's ARG
    // without default, and (declared after the ENV) wins over it, as in
    // docker's BuildKit.
    build(
        &rb,
        &ctx,
        &[
            "-t",
            "args:cli",
            "--build-arg",
            "GREETING=hi",
            "--build-arg",
            "FROM_ENV=cli",
        ],
    );
    assert_eq!(
        rb.ok(&["run", "args:cli"]),
        "hi first-value cli\ngreeting=hi only_first=unset from_env=unset\n"
    );
    // `--build-arg NAME` takes the value from rbuild's environment.
    let mut c = rb.command(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "args:env",
        "--build-arg",
        "GREETING",
        s(&ctx),
    ]);
    let out = c.env("GREETING", "from-env").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rb.ok(&["run", "args:env"])
            .starts_with("from-env first-value")
    );
    // Build args do not become image env; the first stage's ENV stays there.
    let env = rb.ok(&["run", "args:cli", "env"]);
    assert!(
        !env.contains("GREETING") && !env.contains("FROM_ENV"),
        "{env}"
    );
}

#[test]
fn dockerignore_excludes_and_reincludes() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "dockerignore");
    build(&rb, &ctx, &["-t", "ign"]);
    assert_eq!(
        rb.ok(&["run", "ign"]),
        ".dockerignore\nDockerfile\napp.txt\nkeep.log\n"
    );
}

#[test]
fn copy_flags() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "copy-flags");
    build(&rb, &ctx, &["-t", "copies"]);
    assert_eq!(
        rb.ok(&[
            "run",
            "copies",
            "stat",
            "-c",
            "%U:%G %a %n",
            "/data/owned.txt",
            "/data/mode.txt"
        ]),
        "nobody:nogroup 644 /data/owned.txt\nroot:root 640 /data/mode.txt\n"
    );
    assert_eq!(
        rb.ok(&["run", "copies", "sh", "-c", "find /tree -type f | sort"]),
        "/tree/src/a/one.txt\n/tree/src/b/two.txt\n"
    );
    assert_eq!(rb.ok(&["run", "copies", "ls", "/files"]), "keep.txt\n");
    assert_eq!(
        rb.ok(&["run", "copies", "cat", "/data/from-stage.txt"]),
        "made-in-stage\n"
    );
}

#[test]
fn heredocs_in_run_and_copy() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "heredocs");
    build(&rb, &ctx, &["-t", "here"]);
    assert_eq!(
        rb.ok(&["run", "here"]),
        "line one\nline two\n[app]\nname=heredoc\n"
    );
}

#[test]
fn a_cache_mount_survives_between_builds_and_stays_out_of_the_image() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "cache-mount");
    build(&rb, &ctx, &["-t", "counted:1"]);
    assert_eq!(rb.ok(&["run", "counted:1"]), "1\n");
    // --no-cache re-executes the RUN; the cache mount's content is kept.
    build(&rb, &ctx, &["-t", "counted:2", "--no-cache"]);
    assert_eq!(rb.ok(&["run", "counted:2"]), "2\n");
    let r = rb.run(&["run", "counted:2", "test", "-e", "/cache/count"]);
    assert_eq!(r.code, 1, "the cache mount's files are not in the image");
}

#[test]
fn secrets_are_readable_during_run_and_absent_from_the_image() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "secret");
    let secret_file = rb.path("token.txt");
    std::fs::write(&secret_file, "s3cret").unwrap();
    let report = build_report(
        &rb,
        &ctx,
        &[
            "-t",
            "sec",
            "--secret",
            &format!("id=token,src={}", s(&secret_file)),
        ],
        "report.json",
    );
    assert_eq!(rb.ok(&["run", "sec"]), "6\nenv-ok\n");
    let r = rb.run(&["run", "sec", "cat", "/run/secrets/token"]);
    assert_ne!(r.code, 0, "the secret is not in the image: {}", r.stdout);
    let history = rb.ok(&["history", "--no-trunc", "sec"]);
    assert!(!history.contains("s3cret"), "{history}");
    // BuildKit's history has the command, not the RUN flags.
    assert!(history.contains("wc -c < /run/secrets/token"), "{history}");
    rb.ok(&["export", "sec", "-o", s(&rb.path("sec.tar"))]);
    let tar = std::fs::read(rb.path("sec.tar")).unwrap();
    assert!(!tar.windows(6).any(|w| w == b"s3cret"));
    // The report: every step, with the documented fields.
    assert_eq!(report["version"], 1);
    assert_eq!(report["build"]["dockerfile"], "Dockerfile");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "FROM and two RUNs: {report}");
    for step in steps {
        for field in [
            "id",
            "stage",
            "position",
            "line",
            "instruction",
            "cache_key",
            "status",
            "duration_seconds",
        ] {
            assert!(step.get(field).is_some(), "{field} missing in {step}");
        }
        assert!(step["cache_key"].as_str().unwrap().starts_with("sha256:"));
    }
    assert_eq!(report["totals"]["steps"], 3);
    // Without the secret the steps are still cached (a secret is never
    // part of a key, as with BuildKit); executed, they fail, naming it.
    let r = try_build(&rb, &ctx, &["-t", "sec:none", "--no-cache"]);
    assert_eq!(r.code, 1);
    // busybox's own error about the missing secret file, not the RUN line.
    assert!(
        r.stderr
            .contains("can't open /run/secrets/token: no such file"),
        "{}",
        r.stderr
    );
}

#[test]
fn add_extracts_a_local_tar_gz() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "add-tar");
    let pkg = rb.tree("pkg-src", &[("pkg/readme.txt", "from the archive\n")]);
    support::tool(
        "tar",
        &["-czf", s(&ctx.join("archive.tar.gz")), "-C", s(&pkg), "pkg"],
    );
    build(&rb, &ctx, &["-t", "added"]);
    assert_eq!(rb.ok(&["run", "added"]), "from the archive\n");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let rb = Rbuild::new();
    rb.busybox();
    let base = context(&rb, "onbuild-base");
    build(&rb, &base, &["-t", "onbuild-base:1"]);
    let r = rb.run(&["run", "onbuild-base:1", "test", "-e", "/onbuild.txt"]);
    assert_eq!(r.code, 1, "triggers do not run in the base's own build");
    let child = context(&rb, "onbuild-child");
    build(&rb, &child, &["-t", "onbuild-child"]);
    assert_eq!(
        rb.ok(&["run", "onbuild-child"]),
        "base\ntrigger-from-child\nonbuild-ran\n"
    );
}

#[test]
fn a_failing_run_shows_the_line_exit_code_and_output_and_tags_nothing() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "failing-run");
    let r = try_build(&rb, &ctx, &["-t", "failing:1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert!(r.stderr.contains("exit code: 3"), "{}", r.stderr);
    // The step's own output lines (`#N 0.049 about to fail`), not the RUN
    // line that also holds these words.
    for line in ["about to fail", "to stderr"] {
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with('#') && l.ends_with(&format!(" {line}"))),
            "{line}: {}",
            r.stderr
        );
    }
    // The Dockerfile excerpt shows line 4, but the step never starts.
    assert!(
        !r.stderr.contains("] RUN echo never"),
        "later steps do not run: {}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
    let r = rb.run(&["inspect", "failing:1"]);
    assert_ne!(r.code, 0, "no image is tagged");
    assert_eq!(rb.ok(&["images", "-q", "failing"]), "");
}

/// Progress names steps as BuildKit does: only the steps that make a
/// vertex are numbered, so each stage ends at n/n; variables are expanded
/// in the names; a failed build counts the steps that ran, the failed one
/// included.
#[test]
fn progress_numbers_and_names_steps_like_buildkit_and_counts_what_ran() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-numbering",
        &[
            (
                "Dockerfile",
                "FROM busybox\nENV APP_HOME=/srv/app\nLABEL a=b\nWORKDIR ${APP_HOME}\n\
                 RUN echo one > one\nEXPOSE 80\nCOPY f .\nRUN echo ran in $APP_HOME; exit 3\n",
            ),
            ("f", "f\n"),
        ],
    );
    let r = try_build(&rb, &ctx, &["-t", "numbered"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_contains_all(
        &r.stderr,
        &[
            "#1 [1/5] FROM docker.io/library/busybox:latest@sha256:",
            " [2/5] WORKDIR /srv/app\n",
            " [3/5] RUN echo one > one\n",
            " [4/5] COPY f .\n",
            " [5/5] RUN echo ran in /srv/app; exit 3\n",
            "ran in /srv/app",
            "Failed in ",
            ": 5 steps, 0 cached, 5 executed\n",
        ],
    );
}

/// A step that fails because the sandbox refused an operation (EPERM from
/// seccomp or a missing capability) says so, with a hint; other failures
/// get no such hint.
#[test]
fn a_step_the_sandbox_refused_gets_a_hint() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-eperm",
        &[("Dockerfile", "FROM busybox\nRUN unshare -n true\n")],
    );
    let r = try_build(&rb, &ctx, &["-t", "refused"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_contains_all(
        &r.stderr,
        &[
            "Operation not permitted",
            "exit code: 1\nhint: the step's output reports \"Operation not permitted\": RUN steps are sandboxed",
            "Docker's default seccomp profile and capabilities",
        ],
    );
    let ctx = rb.tree(
        "ctx-plain-failure",
        &[("Dockerfile", "FROM busybox\nRUN echo nope; exit 2\n")],
    );
    let r = try_build(&rb, &ctx, &["-t", "failed"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("hint:"), "{}", r.stderr);
}

/// `--report` says rbuild's own peak memory apart from its RUN steps'
/// processes (which `/usr/bin/time` counts as rbuild's): a RUN holding
/// 64 MiB shows there, not in rbuild's own figure.
#[test]
fn report_keeps_rbuilds_own_peak_memory_apart_from_the_run_processes() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-memory",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN dd if=/dev/zero of=/dev/null bs=64M count=1\n",
        )],
    );
    let report_file = rb.path("memory-report.json");
    build(&rb, &ctx, &["--report", s(&report_file), "-t", "memory"]);
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let memory = &report["timing"]["memory"];
    let own = memory["peak_rss_bytes"].as_u64().unwrap();
    let run = memory["run_peak_rss_bytes"].as_u64().unwrap();
    assert!(run >= 64 << 20, "{memory}");
    assert!(own > 1 << 20 && own < 64 << 20, "{memory}");
}

/// `--trace` writes a Chrome trace of the build: the build's phases on
/// track 0, parallel steps on tracks of their own, each step's phases
/// nested in it; `--report` has the same timings and the critical path;
/// plain progress ends with the slowest steps.
#[test]
fn trace_report_timings_and_slowest_steps_show_where_the_time_went() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-trace",
        &[(
            "Dockerfile",
            "FROM busybox AS slow\nRUN sleep 1.2 && echo slow > /slow\n\
             FROM busybox AS quick\nRUN sleep 0.4 && echo quick > /quick\n\
             FROM busybox\nCOPY --from=slow /slow /\nCOPY --from=quick /quick /\n",
        )],
    );
    let trace_file = rb.path("trace.json");
    let report_file = rb.path("report.json");
    let r = build(
        &rb,
        &ctx,
        &[
            "--trace",
            s(&trace_file),
            "--report",
            s(&report_file),
            "-t",
            "traced",
        ],
    );
    // Slowest first, after the steps.
    let slowest = r.stderr.find("Slowest steps:\n").expect(&r.stderr);
    let tail = &r.stderr[slowest..];
    let first = tail.lines().nth(1).unwrap();
    assert!(
        first.ends_with("[slow 2/2] RUN sleep 1.2 && echo slow > /slow"),
        "{tail}"
    );
    assert!(tail.contains("[quick 2/2] RUN sleep 0.4"), "{tail}");

    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let id_of = |needle: &str| {
        steps
            .iter()
            .find(|s| s["instruction"].as_str().unwrap().contains(needle))
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    for step in steps {
        let t = &step["timing"];
        assert!(t["started_seconds"].as_f64().unwrap() >= t["ready_seconds"].as_f64().unwrap());
        if step["instruction"].as_str().unwrap().starts_with("RUN") {
            let names = phase_names(step);
            for want in [
                "key", "lookup", "execute", "mounts", "sandbox", "process", "pack",
            ] {
                assert!(names.contains(&want), "{want} in {names:?}");
            }
            // As root the upper dir becomes the snapshot (its blob is
            // written in the step or in the background); rootless, the
            // blob is committed and unpacked when a step reads it.
            let expected = if nix::unistd::geteuid().is_root() {
                "snapshot"
            } else {
                "commit"
            };
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
    }
    let path: Vec<u64> = report["timing"]["critical_path"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(path.contains(&id_of("sleep 1.2")), "{path:?}");
    assert!(!path.contains(&id_of("sleep 0.4")), "{path:?}");
    assert_eq!(*path.last().unwrap(), id_of("/quick /"));
    let build_phases: Vec<&str> = report["timing"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(build_phases, ["plan", "solve", "export", "blobs"]);

    let trace: Value = serde_json::from_slice(&std::fs::read(&trace_file).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let spans: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    for e in &spans {
        for field in ["name", "ts", "dur", "pid", "tid"] {
            assert!(!e[field].is_null(), "{field} in {e}");
        }
    }
    let step_spans: Vec<&&Value> = spans.iter().filter(|e| e["cat"] == "step").collect();
    assert_eq!(step_spans.len(), steps.len());
    let span_of = |needle: &str| {
        *step_spans
            .iter()
            .find(|e| e["name"].as_str().unwrap().contains(needle))
            .unwrap()
    };
    let (slow, quick) = (span_of("sleep 1.2"), span_of("sleep 0.4"));
    assert_ne!(slow["tid"], quick["tid"], "parallel steps share a track");
    assert_eq!(slow["args"]["critical_path"], true);
    // Each phase lies within a step on its track.
    let ts = |e: &Value| e["ts"].as_i64().unwrap();
    let end = |e: &Value| ts(e) + e["dur"].as_i64().unwrap();
    for p in spans.iter().filter(|e| e["cat"] == "phase") {
        assert!(
            step_spans
                .iter()
                .any(|s| s["tid"] == p["tid"] && ts(s) <= ts(p) && end(p) <= end(s) + 1000),
            "phase outside its step: {p}"
        );
    }
    assert!(
        spans
            .iter()
            .any(|e| e["cat"] == "phase" && e["name"] == "process" && e["tid"] == slow["tid"])
    );
    let build_spans = spans
        .iter()
        .filter(|e| e["cat"] == "build" && e["tid"] == 0)
        .count();
    assert_eq!(build_spans, 4, "plan, solve, export and blobs within it");
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name")
    );
}

#[test]
fn the_cache_index_reuses_steps_and_explains_misses() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "cache-count");
    let first = build_report(&rb, &ctx, &["-t", "cc"], "r1.json");
    assert!(executed(&first).len() >= 4, "{first}");
    // The same build again: nothing executes.
    let second = build_report(&rb, &ctx, &["-t", "cc"], "r2.json");
    assert_eq!(executed(&second), Vec::<String>::new(), "{second}");
    assert_eq!(second["totals"]["misses"], 0);
    assert_eq!(second["totals"]["hit_ratio"], 1.0);
    // Only the mtime changes: still nothing (keys use content, not mtimes).
    support::tool("touch", &["-d", "2001-01-01", s(&ctx.join("a.txt"))]);
    let third = build_report(&rb, &ctx, &["-t", "cc"], "r3.json");
    assert_eq!(executed(&third), Vec::<String>::new(), "{third}");
    // Editing b.txt re-executes only what depends on it, and says why.
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let explain = {
        let path = rb.path("r4.json");
        let r = build(&rb, &ctx, &["-t", "cc", "--report", s(&path), "--explain"]);
        let report: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            executed(&report),
            ["COPY b.txt .", "RUN cat b.txt > b.out"],
            "{report}"
        );
        let copy = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["instruction"] == "COPY b.txt .")
            .unwrap();
        assert!(copy["reason"].to_string().contains("b.txt"), "{copy}");
        // The dependent RUN names the step that changed under it.
        let run = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["instruction"] == "RUN cat b.txt > b.out")
            .unwrap();
        assert!(
            run["reason"]["message"]
                .as_str()
                .unwrap()
                .contains("it changed: [5/6] COPY b.txt ."),
            "{run}"
        );
        r.stderr
    };
    assert!(explain.contains("COPY b.txt . (Dockerfile:5)"), "{explain}");
    assert_eq!(rb.ok(&["run", "cc"]), "a1\nb2\n");
}

/// A miss whose key did not change still says why: the cache was not
/// asked (`--no-cache`), or the step's result was pruned since the last
/// build ("evicted", found from the saved fingerprint's key alone).
#[test]
fn misses_with_an_unchanged_key_say_why() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-why",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n",
            ),
            ("a.txt", "a\n"),
        ],
    );
    let reasons = |report: &Value| -> Vec<(String, String)> {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "executed")
            .map(|s| {
                (
                    s["instruction"].as_str().unwrap().to_string(),
                    s["reason"]["detail"]["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let first = build_report(&rb, &ctx, &["-t", "why"], "r1.json");
    assert!(
        reasons(&first).iter().all(|(_, r)| r == "first-build"),
        "{first}"
    );
    let no_cache = build_report(&rb, &ctx, &["-t", "why", "--no-cache"], "r2.json");
    let got = reasons(&no_cache);
    assert_eq!(got.len(), 3, "{no_cache}");
    assert!(got.iter().all(|(_, r)| r == "no-cache"), "{no_cache}");
    let r = rb.run(&["cache", "prune", "-a", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pruned = build_report(&rb, &ctx, &["-t", "why"], "r3.json");
    let got = reasons(&pruned);
    assert!(
        got.contains(&("COPY a.txt /a.txt".to_string(), "evicted".to_string())),
        "{pruned}"
    );
    std::fs::write(ctx.join("a.txt"), "b\n").unwrap();
    let edited = build_report(&rb, &ctx, &["-t", "why"], "r4.json");
    let got = reasons(&edited);
    assert!(
        got.contains(&("COPY a.txt /a.txt".to_string(), "changed".to_string())),
        "{edited}"
    );
    assert_eq!(rb.ok(&["run", "--rm", "why", "cat", "/b.txt"]), "b\n");
}

/// A COPY of more files than a build holds in memory (its per-file
/// digests spill to temporary files, merged as they are read, and so do
/// the stat cache's fresh entries) explains a miss as a small one does:
/// the edited, added and removed files by name, against the list the
/// build before saved, itself from a spilled list.
#[test]
fn a_large_copy_explains_its_misses_by_file() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.path("ctx-large");
    for d in 0..40 {
        std::fs::create_dir_all(ctx.join(format!("d{d:02}"))).unwrap();
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY . /app\nCMD [\"cat\", \"/app/d05/f05005\", \"/app/d39/f19999\"]\n",
    )
    .unwrap();
    // Past two runs of the per-file list and of the stat cache.
    for i in 0..20_000 {
        let path = ctx.join(format!("d{:02}/f{i:05}", i % 40));
        std::fs::write(path, format!("{i}\n")).unwrap();
    }
    build(&rb, &ctx, &["-t", "large"]);
    assert_eq!(rb.ok(&["run", "--rm", "large"]), "5005\n19999\n");

    std::fs::write(ctx.join("d05/f05005"), "edited\n").unwrap();
    std::fs::write(ctx.join("d39/f19999"), "edited too\n").unwrap();
    std::fs::remove_file(ctx.join("d00/f00000")).unwrap();
    std::fs::write(ctx.join("new.txt"), "new\n").unwrap();
    let r = build(&rb, &ctx, &["-t", "large", "--explain"]);
    assert!(
        r.stderr
            .contains("files: changed d05/f05005, d39/f19999; added new.txt; removed d00/f00000"),
        "{}",
        r.stderr
    );
    assert_eq!(rb.ok(&["run", "--rm", "large"]), "edited\nedited too\n");

    // Against what the second build saved.
    std::fs::write(ctx.join("d05/f05005"), "again\n").unwrap();
    let r = build(&rb, &ctx, &["-t", "large", "--explain"]);
    assert!(
        r.stderr.contains(": files: changed d05/f05005\n"),
        "{}",
        r.stderr
    );
    let cached = build_report(&rb, &ctx, &["-t", "large"], "cached.json");
    assert_eq!(executed(&cached), Vec::<String>::new(), "{cached}");
}

/// Regression: a RUN reading the context through `--mount=type=bind` was
/// a cache hit after the bound files changed (the key named the mount's
/// source path only), so the image kept the old result. BuildKit re-runs it.
#[test]
fn a_run_with_a_context_bind_mount_reruns_when_the_bound_files_change() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-bind",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN --mount=type=bind,source=src,target=/src cat /src/a.txt /src/sub/b.txt > /out.txt\n\
                 RUN --mount=type=bind,target=/ctx,rw cat /ctx/top.txt > /top.txt\n\
                 CMD [\"cat\", \"/out.txt\", \"/top.txt\"]\n",
            ),
            (".dockerignore", "ignored.txt\n"),
            ("src/a.txt", "a1\n"),
            ("src/sub/b.txt", "b1\n"),
            ("top.txt", "t1\n"),
            ("ignored.txt", "i1\n"),
        ],
    );
    build(&rb, &ctx, &["-t", "bind"]);
    assert_eq!(rb.ok(&["run", "--rm", "bind"]), "a1\nb1\nt1\n");

    // Unchanged, touched, or only an ignored file edited: all cached.
    support::tool("touch", &["-d", "2001-01-01", s(&ctx.join("src/a.txt"))]);
    std::fs::write(ctx.join("ignored.txt"), "i2\n").unwrap();
    let cached = build_report(&rb, &ctx, &["-t", "bind"], "r1.json");
    assert_eq!(executed(&cached), Vec::<String>::new(), "{cached}");

    // A file under the first mount: both RUNs read it (the second mounts
    // the whole context), and the report names it.
    std::fs::write(ctx.join("src/sub/b.txt"), "b2\n").unwrap();
    let path = rb.path("r2.json");
    let r = build(
        &rb,
        &ctx,
        &["-t", "bind", "--report", s(&path), "--explain"],
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let runs = executed(&report);
    assert_eq!(runs.len(), 2, "{report}");
    assert!(
        r.stderr.contains("files: changed src/sub/b.txt"),
        "{}",
        r.stderr
    );
    assert_eq!(rb.ok(&["run", "--rm", "bind"]), "a1\nb2\nt1\n");

    // A file only the second mount shows: only the second RUN.
    std::fs::write(ctx.join("top.txt"), "t2\n").unwrap();
    let third = build_report(&rb, &ctx, &["-t", "bind"], "r3.json");
    assert_eq!(executed(&third).len(), 1, "{third}");
    assert!(executed(&third)[0].contains("/ctx"), "{third}");
    assert_eq!(rb.ok(&["run", "--rm", "bind"]), "a1\nb2\nt2\n");
}

/// Regression: RUN as `USER name` or `uid:gid` listed the primary gid among
/// the supplementary groups; BuildKit gives only the user's `/etc/group`
/// memberships (none when the group is given). `rbuild run` keeps docker
/// run's list, primary gid first.
#[test]
fn run_steps_get_only_the_users_group_memberships() {
    let rb = Rbuild::new();
    rb.busybox();
    let groups = "awk '/^Groups/{$1=$1; print}' /proc/self/status";
    let ctx = rb.tree(
        "ctx-groups",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && \
                     echo 'app:x:1000:' >> /etc/group && echo 'wheel:x:10:app' >> /etc/group\n\
                 USER app\n\
                 RUN {groups} > /tmp/name\n\
                 USER 1000:1000\n\
                 RUN {groups} > /tmp/ids\n\
                 USER root\n\
                 RUN {groups} > /tmp/root\n\
                 CMD cat /tmp/name /tmp/ids /tmp/root\n"
            ),
        )],
    );
    build(&rb, &ctx, &["-t", "groups"]);
    assert_eq!(
        rb.ok(&["run", "--rm", "groups"]),
        "Groups: 10\nGroups:\nGroups:\n"
    );
    // docker run's list: the primary gid and the memberships (the kernel
    // keeps them sorted).
    assert_eq!(
        rb.ok(&["run", "--rm", "-u", "app", "groups", "sh", "-c", groups]),
        "Groups: 10 1000\n"
    );
}

/// Regression: hard links in the build context arrived as separate files;
/// BuildKit keeps them linked in the layer.
#[test]
fn hard_links_in_the_context_stay_linked() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-links",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /d\n\
                 CMD stat -c %h /d/a /d/b /d/c && [ $(stat -c %i /d/a) = $(stat -c %i /d/b) ] && echo same\n",
            ),
            ("a", "shared\n"),
            ("c", "alone\n"),
        ],
    );
    std::fs::hard_link(ctx.join("a"), ctx.join("b")).unwrap();
    build(&rb, &ctx, &["-t", "links"]);
    assert_eq!(rb.ok(&["run", "--rm", "links"]), "2\n2\n1\nsame\n");
}

/// Regression: `rbuild inspect` dropped `Config.Healthcheck`, `OnBuild` and
/// `Shell` (the store read configs through a model without Docker's
/// fields). Every field of the config blob's `config` must be in
/// inspect's `Config`, and a child image inherits them through FROM.
#[test]
fn inspect_shows_every_config_field_docker_writes() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-fields",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             SHELL [\"/bin/sh\", \"-ec\"]\n\
             HEALTHCHECK --interval=5s --retries=2 CMD true\n\
             ONBUILD RUN echo child\n\
             STOPSIGNAL SIGTERM\n\
             EXPOSE 8080\n\
             VOLUME /data\n\
             CMD echo hi\n",
        )],
    );
    build(&rb, &ctx, &["-t", "fields"]);
    let inspected: Value = serde_json::from_str(&rb.ok(&["inspect", "fields"])).unwrap();
    let config = &inspected[0]["Config"];
    assert_eq!(
        config["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 2})
    );
    assert_eq!(config["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(config["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(config["StopSignal"], "SIGTERM");
    // Everything the config blob says, inspect says.
    let id = inspected[0]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let blob = rb.root().join("store-v1/blobs/sha256").join(id);
    let blob: Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
    assert_eq!(&blob["config"], config);
    assert_eq!(
        rb.ok(&["inspect", "--format", "{{json .Config.Shell}}", "fields"])
            .trim(),
        r#"["/bin/sh","-ec"]"#
    );
    // A child inherits them through FROM (ONBUILD triggers run, and are
    // not inherited), and a save/load round trip keeps them.
    let child = rb.tree(
        "ctx-child",
        &[("Dockerfile", "FROM fields\nLABEL child=1\n")],
    );
    build(&rb, &child, &["-t", "child"]);
    let archive = rb.path("child.tar");
    rb.ok(&["save", "-o", s(&archive), "child"]);
    rb.ok(&["rmi", "child"]);
    rb.ok(&["load", "-i", s(&archive)]);
    let inspected: Value = serde_json::from_str(&rb.ok(&["inspect", "child"])).unwrap();
    let child = &inspected[0]["Config"];
    assert_eq!(child["Healthcheck"], config["Healthcheck"]);
    assert_eq!(child["Shell"], config["Shell"]);
    assert_eq!(child["StopSignal"], "SIGTERM");
    assert!(child.get("OnBuild").is_none_or(|v| v.is_null()), "{child}");
}

#[test]
fn an_unused_stage_never_executes() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "unused-stage");
    let r = build(&rb, &ctx, &["-t", "used"]);
    assert!(!r.stderr.contains("the unused stage ran"), "{}", r.stderr);
    assert_eq!(rb.ok(&["run", "used"]), "ok\n");
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "parallel-stages");
    build(&rb, &ctx, &["-t", "par", "--jobs", "2"]);
    let out = rb.ok(&["run", "par"]);
    let t: Vec<f64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    let (a, b) = ((t[0], t[1]), (t[2], t[3]));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two RUNs' intervals overlap: a={a:?} b={b:?}"
    );
}

#[test]
fn exporters_iidfile_metadata_and_quiet() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "single-stage");
    let iid = rb.path("iid");
    let meta = rb.path("meta.json");
    let r = rb.run(&[
        "build",
        "-q",
        "-t",
        "exp:1",
        "--iidfile",
        s(&iid),
        "--metadata-file",
        s(&meta),
        s(&ctx),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(r.stderr, "", "-q prints no progress");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.config.digest"], id.as_str());
    assert!(
        m["containerimage.digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(m["image.name"], "docker.io/library/exp:1");
    let inspect: Value = serde_json::from_str(&rb.ok(&["inspect", "exp:1"])).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());

    // The default subcommand builds too.
    rb.ok(&["-q", "-t", "exp:2", s(&ctx)]);
    assert_eq!(rb.ok(&["run", "exp:2"]), "hello\nbuilt\n");

    let local = rb.path("local-out");
    let oci = rb.path("img-oci.tar");
    let docker = rb.path("img-docker.tar");
    let rootfs = rb.path("rootfs.tar");
    build(
        &rb,
        &ctx,
        &[
            "-o",
            s(&local),
            "-o",
            &format!("type=oci,dest={}", s(&oci)),
            "-o",
            &format!("type=docker,dest={}", s(&docker)),
            "-o",
            &format!("type=tar,dest={}", s(&rootfs)),
            "-t",
            "exp:3",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(local.join("app/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(local.join("app/built.txt")).unwrap(),
        "built\n"
    );
    let list = support::tool("tar", &["-tf", s(&rootfs)]);
    assert!(
        list.lines()
            .any(|l| l.trim_end_matches('/') == "app/built.txt"),
        "{list}"
    );
    let list = support::tool("tar", &["-tf", s(&oci)]);
    assert!(
        list.contains("oci-layout") && list.contains("index.json"),
        "{list}"
    );
    // The docker archive loads back into a fresh store and runs.
    let other = Rbuild::new();
    other.ok(&["load", "-i", s(&docker)]);
    assert_eq!(other.ok(&["run", "exp:3"]), "hello\nbuilt\n");
    // A tar to stdout.
    let out = rb
        .command(&[
            "build",
            "--progress",
            "plain",
            "-o",
            "type=tar,dest=-",
            s(&ctx),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = tar::Archive::new(&out.stdout[..]);
    assert!(
        a.entries()
            .unwrap()
            .any(|e| e.unwrap().path().unwrap() == Path::new("app/hello.txt"))
    );
}

#[test]
fn progress_formats() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb, "single-stage");
    let r = build(&rb, &ctx, &["-t", "prog"]);
    // BuildKit's plain format.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with('#') && l.ends_with("RUN echo built > /app/built.txt")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with('#') && l.contains(" DONE ")),
        "{}",
        r.stderr
    );
    let again = build(&rb, &ctx, &["-t", "prog"]);
    assert!(
        again
            .stderr
            .lines()
            .any(|l| l.starts_with('#') && l.ends_with(" CACHED")),
        "{}",
        again.stderr
    );
    // JSON: every stderr line is an object with an event.
    let r = rb.run(&["build", "--progress", "json", "--no-cache", s(&ctx)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "started"));
    assert_eq!(events.last().unwrap()["event"], "summary");
}

/// Ctrl-C during a RUN: the build stops within seconds, the step's
/// processes are gone, nothing is tagged and the store keeps no scratch.
#[test]
fn ctrl_c_stops_a_running_step_and_cleans_up() {
    interrupt_a_running_step(false);
}

/// Ctrl-C at a terminal signals the whole process group, the step's
/// shell included, which exits 130 on its own: still a cancelled build,
/// not a failed step ("exit code: 130").
#[test]
fn ctrl_c_to_the_process_group_reports_a_cancelled_build() {
    interrupt_a_running_step(true);
}

fn interrupt_a_running_step(whole_group: bool) {
    // Each variant sleeps for its own length, so that the two tests, run
    // in parallel, never see each other's process.
    let secs = if whole_group { "4322" } else { "4321" };
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    use std::time::{Duration, Instant};

    let rb = Rbuild::new();
    rb.busybox();
    // A distinctive duration names the step's process on the host.
    let ctx = rb.tree(
        "ctx-interrupt",
        &[(
            "Dockerfile",
            // The step's shell handles SIGINT as many tools do, exiting
            // 130 at once when the sandbox's init forwards it the signal.
            &format!("FROM busybox\nRUN trap 'exit 130' INT; echo started; sleep {secs} & wait\nRUN echo never\n"),
        )],
    );
    /// Kills the build if the test fails before it does.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        rb.command(&["build", "--progress", "plain", "-t", "interrupted", s(&ctx)])
            .process_group(0)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.0.stderr.take().unwrap();
    // Read until the step has printed its first line.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&seen).contains("started") {
        assert!(Instant::now() < deadline, "the step never started");
        let n = stderr.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "rbuild ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
            .any(|c| c == format!("sleep\0{secs}\0").as_bytes())
    };
    // "started" is printed just before the shell execs sleep.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleeping() {
        assert!(Instant::now() < deadline, "the step's process never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let interrupted = Instant::now();
    let pid = child.0.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(if whole_group { -pid } else { pid }),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = stderr.read_to_end(&mut seen);
    let status = child.0.wait().unwrap();
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        interrupted.elapsed()
    );
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("\n#2 CANCELED\n"), "{text}");
    assert!(text.contains("Cancelled in "), "{text}");
    assert!(
        text.contains("cancelled: the build was interrupted") && !text.contains("exit code"),
        "{text}"
    );
    assert!(!sleeping(), "the step's processes were killed");
    assert!(!String::from_utf8_lossy(&seen).contains("] RUN echo never"));
    assert_ne!(
        rb.run(&["inspect", "interrupted"]).code,
        0,
        "nothing tagged"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(s(&rb.root())),
        "no mount of the store is left"
    );
    let tmp = rb.root().join("store-v1/tmp");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "scratch left in the store: {leftovers:?}"
    );
}

/// As root a RUN's upper dir becomes its snapshot, and its blob is written
/// in the background while later steps run: the step has no `commit`
/// phase. A RUN that ends the build (no step reads it) writes its blob in
/// the pass that hashes it instead, since the export needs it at once.
#[test]
fn only_a_run_that_ends_the_build_writes_its_blob_in_the_step() {
    const TEST: &str = "only_a_run_that_ends_the_build_writes_its_blob_in_the_step";
    if !nix::unistd::geteuid().is_root() {
        support::skipped(TEST, "RUN steps adopt their upper dir as root only");
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx-last-step",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo a > /a\nRUN echo b > /b\nCMD [\"cat\", \"/a\", \"/b\"]\n",
        )],
    );
    let report = build_report(&rb, &ctx, &["-t", "last-step"], "last-step.json");
    let phases = |needle: &str| {
        let steps = report["steps"].as_array().unwrap();
        let step = steps
            .iter()
            .find(|s| s["instruction"].as_str().unwrap().contains(needle))
            .unwrap();
        phase_names(step)
    };
    let first = phases("echo a");
    assert!(first.contains(&"snapshot"), "{first:?}");
    assert!(!first.contains(&"commit"), "{first:?}");
    let last = phases("echo b");
    assert!(last.contains(&"snapshot"), "{last:?}");
    assert!(last.contains(&"commit"), "{last:?}");
    assert_eq!(rb.ok(&["run", "--rm", "last-step"]), "a\nb\n");
}
