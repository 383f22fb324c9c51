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
