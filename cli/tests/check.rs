//! `rbuild check` and `rbuild debug parse`, driven through the real binary.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn rbuild(args: &[&str], dir: &std::path::Path, stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rbuild starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_a_valid_dockerfile_silently() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUN echo hi\nCOPY . /app\n",
    )
    .unwrap();
    let out = rbuild(&["check"], dir.path(), None);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_points_at_a_misspelled_instruction() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nCOPPY . /app\n",
    )
    .unwrap();
    let out = rbuild(&["check", "."], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(" Dockerfile:2:1"),
        "the path is shown as docker does: {err}"
    );
    assert!(
        err.contains("COPPY . /app"),
        "the source line is shown: {err}"
    );
    assert!(err.contains('^'), "a caret marks the culprit: {err}");
    assert!(err.contains("did you mean `COPY`?"), "{err}");
}

#[test]
fn check_reads_the_file_named_by_f_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ctx")).unwrap();
    std::fs::write(
        dir.path().join("build.Dockerfile"),
        "FROM busybox\nRUN --mount=type=bogus true\n",
    )
    .unwrap();
    let out = rbuild(
        &["check", "-f", "build.Dockerfile", "ctx"],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("build.Dockerfile:2:"), "{err}");
    assert!(err.contains("bogus"), "the bad mount type is named: {err}");
}

#[test]
fn check_reads_stdin_for_dash() {
    let dir = tempfile::tempdir().unwrap();
    let out = rbuild(
        &["check", "-f", "-"],
        dir.path(),
        Some(b"FROM busybox\nWORKDIR /x\n"),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let out = rbuild(
        &["check", "-f", "-"],
        dir.path(),
        Some(b"FROM busybox\nWORKDIRR /x\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("<stdin>:2:1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_names_a_missing_dockerfile() {
    let dir = tempfile::tempdir().unwrap();
    let out = rbuild(&["check", "nowhere"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("nowhere/Dockerfile"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn check_rejects_invalid_utf8_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        b"FROM busybox\nRUN echo \xff\xfe\n",
    )
    .unwrap();
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Dockerfile:2:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn debug_parse_json_shows_stages_and_instruction_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "ARG V=1\nFROM busybox AS base\nRUN echo $V\nFROM base\nCOPY --from=base /a /b\n",
    )
    .unwrap();
    let out = rbuild(
        &["debug", "parse", "Dockerfile", "--json"],
        dir.path(),
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let tree: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let stages = tree["stages"].as_array().expect("stages array");
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0]["name"], "base");
    assert_eq!(tree["global_args"].as_array().map(Vec::len), Some(1));
    let json = text(&out.stdout);
    assert!(
        json.contains("\"start_line\": 3"),
        "RUN carries its line: {json}"
    );
}

#[test]
fn debug_parse_prints_buildkit_s_expressions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nENV a=b\nCOPY --chown=1 x /y\n",
    )
    .unwrap();
    let out = rbuild(&["debug", "parse", "Dockerfile"], dir.path(), None);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "(from \"busybox\")\n(env \"a\" \"b\" \"=\")\n(copy [\"--chown=1\"] \"x\" \"/y\")\n"
    );
}

// --- Build Checks (issue 17) and --call (issue 16) ---

fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

#[test]
fn check_prints_build_check_warnings_as_buildkit_does_and_exits_0() {
    let dir = context("FROM alpine AS Build\nCMD echo hi\n", &[]);
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("WARNING: StageNameCasing - https://docs.docker.com/go/dockerfile/rule/stage-name-casing/\nStage name 'Build' should be lowercase\nDockerfile:1\n--------------------\n   1 | >>> FROM alpine AS Build\n   2 |     CMD echo hi\n"),
        "{s}"
    );
    assert!(s.contains("WARNING: JSONArgsRecommended"), "{s}");
    assert!(
        s.ends_with("Check complete, 2 warnings have been found!\n"),
        "{s}"
    );
}

#[test]
fn check_format_json_lists_rule_line_column_message_level_url() {
    let dir = context("FROM alpine\nRUN apt-get update\nMAINTAINER me\n", &[]);
    let out = rbuild(&["check", "--format", "json"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let arr = v.as_array().unwrap();
    let rules: Vec<&str> = arr.iter().map(|f| f["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["AptUpdateWithoutInstall", "MaintainerDeprecated"]);
    let m = &arr[1];
    assert_eq!(m["line"], 3);
    assert_eq!(m["column"], 1);
    assert_eq!(m["level"], "warning");
    assert_eq!(
        m["message"],
        "Maintainer instruction is deprecated in favor of using label"
    );
    assert_eq!(
        m["url"],
        "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"
    );
    assert!(
        arr[0]["url"]
            .as_str()
            .unwrap()
            .ends_with("lint/docs/AptUpdateWithoutInstall.md")
    );
}

#[test]
fn check_format_sarif_is_a_sarif_log() {
    let dir = context("FROM alpine AS Bad\n", &[]);
    let out = rbuild(&["check", "--format", "sarif"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "StageNameCasing");
}

#[test]
fn check_exits_1_on_error_true_and_on_a_missing_copy_source() {
    let dir = context("# check=error=true\nFROM alpine AS Bad\n", &[]);
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("ERROR: StageNameCasing"));

    let dir = context("# check=skip=StageNameCasing\nFROM alpine AS Bad\n", &[]);
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "", "skipped, nothing left to say");

    let dir = context(
        "FROM alpine\nCOPY app.py nope.txt /app/\n",
        &[("app.py", "")],
    );
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("ERROR: CopySourceNotFound"), "{s}");
    assert!(s.contains("\"nope.txt\""), "{s}");
    assert!(!s.contains("\"app.py\" is not"), "{s}");
}

#[test]
fn check_build_arg_replaces_the_directive() {
    let dir = context("# check=skip=all\nFROM alpine AS Bad\n", &[]);
    let out = rbuild(
        &[
            "check",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=error=true",
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_uses_the_context_s_dockerignore() {
    let dir = context(
        "FROM alpine\nCOPY secret.txt /\nCOPY . /src\n",
        &[("secret.txt", "x"), (".dockerignore", "secret.txt\n")],
    );
    let out = rbuild(&["check", "--format", "json"], dir.path(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"CopyIgnoredFile"), "{rules:?}");
    assert!(!rules.contains(&"MissingDockerignore"), "{rules:?}");

    let dir = context("FROM alpine\nCOPY . /src\n", &[(".git/HEAD", "ref")]);
    let out = rbuild(&["check", "--format", "json"], dir.path(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["rule"], "MissingDockerignore", "{v}");
}

#[test]
fn check_explain_prints_a_rule_s_rationale() {
    let dir = tempfile::tempdir().unwrap();
    let out = rbuild(
        &["check", "--explain", "CopyAllBeforeInstall"],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.starts_with("# CopyAllBeforeInstall"), "{s}");
    assert!(s.contains("package-lock.json"), "{s}");
    let out = rbuild(
        &["check", "--explain", "CopyAllBeforeInstal"],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("did you mean CopyAllBeforeInstall?"));
    let out = rbuild(&["check", "--explain", "all"], dir.path(), None);
    assert_eq!(text(&out.stdout).lines().count(), rbuild_lint_rule_count());
}

fn rbuild_lint_rule_count() -> usize {
    // 22 Build Checks and 9 rules of rbuild's own.
    31
}

fn build(args: &[&str], dir: &std::path::Path) -> Output {
    let root = dir.join(".root");
    let mut full = vec!["--root", root.to_str().unwrap(), "build"];
    full.extend_from_slice(args);
    rbuild(&full, dir, None)
}

#[test]
fn build_check_runs_the_checks_instead_of_building() {
    let dir = context("FROM scratch AS Bad\nCOPY a.txt /\n", &[("a.txt", "a")]);
    for flags in [&["--check"][..], &["--call=check"][..]] {
        let mut args = flags.to_vec();
        args.push(".");
        let out = build(&args, dir.path());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(s.contains("WARNING: StageNameCasing"), "{s}");
        assert!(
            s.contains("Check complete, 1 warning has been found!"),
            "{s}"
        );
        assert!(!text(&out.stderr).contains("COPY a.txt"), "nothing built");
    }
    let out = build(&["--call=check,format=json", "."], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["rule"], "StageNameCasing");
}

#[test]
fn build_with_error_true_fails_before_any_step_runs() {
    let dir = context(
        "# check=error=true\nFROM scratch AS Bad\nCOPY a.txt /\n",
        &[("a.txt", "a")],
    );
    let out = build(&["--progress", "plain", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("lint violation found for rules: StageNameCasing"),
        "{err}"
    );
    assert!(!err.contains("#1 "), "no step ran: {err}");
}

#[test]
fn build_shows_check_warnings_and_records_them_in_the_report() {
    let dir = context("FROM scratch AS Bad\nCOPY a.txt /\n", &[("a.txt", "a")]);
    let report = dir.path().join("report.json");
    let out = build(
        &[
            "--progress",
            "plain",
            "--report",
            report.to_str().unwrap(),
            ".",
        ],
        dir.path(),
    );
    if !out.status.success() && text(&out.stderr).contains("permission") {
        rbuild_testkit::skipped(
            "build_shows_check_warnings_and_records_them_in_the_report",
            "this machine cannot build here",
        );
        return;
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            " 1 warning found:\n - StageNameCasing: Stage name 'Bad' should be lowercase (line 1)\n"
        ),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["warnings"][0]["rule"], "StageNameCasing");
    assert_eq!(r["warnings"][0]["line"], 1);
}

const OUTLINED: &str = "# VERSION the release\nARG VERSION=1.0\n\n# base has the tools\nFROM scratch AS base\n# MODE build mode\nARG MODE=release\nCOPY a.txt /\n\nFROM base AS app\nRUN --mount=type=secret,id=token,required=true --mount=type=ssh true\n";

#[test]
fn build_call_targets_lists_stages_with_descriptions() {
    let dir = context(OUTLINED, &[("a.txt", "a")]);
    let out = build(&["--call=targets", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "TARGET        DESCRIPTION\nbase          has the tools\napp (default)\n"
    );
    let out = build(&["--call=targets", "--format", "json", "."], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["targets"][0]["name"], "base");
    assert_eq!(v["targets"][0]["description"], "has the tools");
    assert_eq!(v["targets"][1]["default"], true);
}

#[test]
fn build_call_outline_lists_args_secrets_and_ssh() {
    let dir = context(OUTLINED, &[("a.txt", "a")]);
    let out = build(&["--call=outline,format=json", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "app");
    assert_eq!(v["args"][0]["name"], "MODE");
    assert_eq!(v["args"][0]["value"], "release");
    assert_eq!(v["args"][0]["description"], "build mode");
    assert_eq!(v["secrets"][0]["name"], "token");
    assert_eq!(v["secrets"][0]["required"], true);
    assert_eq!(v["ssh"][0]["name"], "default");
    let out = build(&["--call=outline", "--target", "base", "."], dir.path());
    let s = text(&out.stdout);
    assert!(s.starts_with("TARGET:      base\nDESCRIPTION: has the tools\n\nBUILD ARG   VALUE     DESCRIPTION\nMODE        release   build mode\n"), "{s}");
    let out = build(&["--call=outline", "--target", "nope", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("target stage \"nope\" could not be found"));
    let out = build(&["--call=bogus", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown method \"bogus\""));
}

#[test]
fn build_is_not_stopped_by_a_missing_source_in_a_stage_it_does_not_build() {
    let dir = context(
        "FROM scratch AS unused\nCOPY generated.jar /\n\nFROM scratch AS app\nCOPY a.txt /\n",
        &[("a.txt", "a")],
    );
    let out = build(&["--progress", "plain", "--target", "app", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        !err.contains("CopySourceNotFound"),
        "not a stage this build runs: {err}"
    );
    // Without --target the build runs (and checks) the last stage only.
    let out = build(&["--progress", "plain", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `rbuild check` checks every stage, as BuildKit's lint request does.
    let out = rbuild(&["check"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("generated.jar"));
    let out = rbuild(&["check", "--target", "app"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn build_progress_json_reports_check_warnings_as_json_lines() {
    let dir = context("FROM scratch AS Bad\nCOPY a.txt /\n", &[("a.txt", "a")]);
    let out = build(&["--progress", "json", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let warnings: Vec<serde_json::Value> = err
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .filter(|v| v["event"] == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert_eq!(warnings[0]["rule"], "StageNameCasing");
    assert_eq!(warnings[0]["line"], 1);
}

#[test]
fn build_checks_undefined_vars_against_a_local_base_image_s_env() {
    let base = context(
        "FROM scratch\nENV MYVAR=1\nCOPY a.txt /\n",
        &[("a.txt", "a")],
    );
    let root = base.path().join(".root");
    let out = rbuild(
        &[
            "--root",
            root.to_str().unwrap(),
            "build",
            "-q",
            "-t",
            "lintbase:1",
            ".",
        ],
        base.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let app = base.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        "FROM lintbase:1\nENV A=$MYVAR B=$JAVA_HOME\n",
    )
    .unwrap();
    let out = rbuild(
        &[
            "--root",
            root.to_str().unwrap(),
            "build",
            "--progress",
            "plain",
            ".",
        ],
        &app,
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains("'$MYVAR'"), "the base image sets it: {err}");
    assert!(
        err.contains("UndefinedVar: Usage of undefined variable '$JAVA_HOME' (line 2)"),
        "nothing is assumed of a known image: {err}"
    );
}

#[test]
fn check_json_and_sarif_report_a_parse_error_too() {
    let dir = context("FROM alpine\nCOPPY . /\n", &[]);
    let out = rbuild(&["check", "--format", "json"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v[0]["rule"], "DockerfileParseError");
    assert_eq!(v[0]["line"], 2);
    assert!(
        text(&out.stderr).contains("Dockerfile:2:1"),
        "and the usual snippet"
    );
    let out = rbuild(&["check", "--format", "sarif"], dir.path(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("SARIF on stdout");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "DockerfileParseError");
}
