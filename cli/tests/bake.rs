//! End-to-end `rbuild bake`: bake files (HCL, JSON, compose) in a
//! directory, the real binary run there with a temporary `--root`, the
//! images it built inspected or run.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Rbuild, Run, s};

/// `rbuild bake ARGS…` run in `dir`, with `env` added.
fn bake(rb: &Rbuild, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["bake", "--progress", "plain"];
    all.extend_from_slice(args);
    let mut c = rb.command(&all);
    c.current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    support::run_command(c, None)
}

fn bake_ok(rb: &Rbuild, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let r = bake(rb, dir, args, env);
    assert_eq!(
        r.code, 0,
        "bake {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// The image's environment, `KEY=VALUE` each.
fn env_of(rb: &Rbuild, image: &str) -> Vec<String> {
    let out = rb.ok(&["inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_group_of_three_targets_runs_their_shared_stage_once() {
    if !is_root() {
        support::skipped(
            "a_group_of_three_targets_runs_their_shared_stage_once",
            "RUN steps need root",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    // The shared stage's RUN prints a marker (its text differs from the
    // command line's, so only the output matches) and appends a line to
    // a cache mount, which a later build reads back.
    let dir = rb.tree(
        "proj",
        &[
            (
                "Dockerfile",
                "FROM busybox AS base\n\
                 RUN --mount=type=cache,target=/c,id=bake-shared sh -c 'echo shared-$((40+2))-ran; echo x >> /c/runs; sleep 1'\n\
                 FROM base AS a\nRUN echo a > /who\n\
                 FROM base AS b\nRUN echo b > /who\n\
                 FROM base AS c\nRUN echo c > /who\n",
            ),
            (
                "docker-bake.hcl",
                r#"
group "default" {
  targets = ["a", "b", "c"]
}
target "_common" {
  dockerfile = "Dockerfile"
}
target "a" {
  inherits = ["_common"]
  target = "a"
  tags = ["bake-a:1"]
}
target "b" {
  inherits = ["_common"]
  target = "b"
  tags = ["bake-b:1"]
}
target "c" {
  inherits = ["_common"]
  target = "c"
  tags = ["bake-c:1"]
}
"#,
            ),
            (
                "probe/Dockerfile",
                "FROM busybox\nRUN --mount=type=cache,target=/c,id=bake-shared cp /c/runs /runs\n",
            ),
        ],
    );
    let r = bake_ok(&rb, &dir, &[], &[]);
    let ran = r
        .stderr
        .lines()
        .filter(|l| l.contains("shared-42-ran"))
        .count();
    assert_eq!(ran, 1, "the shared RUN ran {ran} times:\n{}", r.stderr);
    for name in ["a", "b", "c"] {
        let out = rb.ok(&["run", "--rm", &format!("bake-{name}:1"), "cat", "/who"]);
        assert_eq!(out.trim(), name);
        // Step names say which target they belong to, as buildx's.
        assert!(r.stderr.contains(&format!("[{name} ")), "{}", r.stderr);
    }
    // The cache mount saw one run of the shared step, not three.
    let probe = dir.join("probe");
    rb.ok(&["build", "--no-cache", "-q", "-t", "probe", s(&probe)]);
    assert_eq!(rb.ok(&["run", "--rm", "probe", "cat", "/runs"]), "x\n");

    // --no-cache runs everything again, the shared stage still once.
    let r = bake_ok(&rb, &dir, &["--no-cache"], &[]);
    let ran = r
        .stderr
        .lines()
        .filter(|l| l.contains("shared-42-ran"))
        .count();
    assert_eq!(
        ran, 1,
        "with --no-cache the shared RUN ran {ran} times:\n{}",
        r.stderr
    );
    rb.ok(&["build", "--no-cache", "-q", "-t", "probe", s(&probe)]);
    assert_eq!(rb.ok(&["run", "--rm", "probe", "cat", "/runs"]), "x\nx\n");
}

const MATRIX: &str = r#"
variable "GREETING" {
  default = "hello"
}
variable "REGISTRY" {
  default = "local"
}
target "_common" {
  args = { GREETING = GREETING, FLAVOR = "none" }
}
target "app" {
  inherits = ["_common"]
  name = "app-${flavor}"
  matrix = { flavor = ["plain", "fancy"] }
  args = { FLAVOR = upper(flavor) }
  tags = ["${REGISTRY}/app:${flavor}"]
}
"#;

const MATRIX_DOCKERFILE: &str =
    "FROM busybox\nARG GREETING\nARG FLAVOR\nENV MSG=\"$GREETING $FLAVOR\"\n";

#[test]
fn inherits_variables_from_the_environment_and_a_matrix() {
    let rb = Rbuild::new();
    rb.busybox();
    let dir = rb.tree(
        "proj",
        &[
            ("docker-bake.hcl", MATRIX),
            ("Dockerfile", MATRIX_DOCKERFILE),
        ],
    );
    bake_ok(&rb, &dir, &["app"], &[("GREETING", "bonjour")]);
    assert!(env_of(&rb, "local/app:plain").contains(&"MSG=bonjour PLAIN".to_string()));
    assert!(env_of(&rb, "local/app:fancy").contains(&"MSG=bonjour FANCY".to_string()));
    // Without the variable in the environment, its default.
    bake_ok(&rb, &dir, &["app-plain"], &[("REGISTRY", "other")]);
    assert!(env_of(&rb, "other/app:plain").contains(&"MSG=hello PLAIN".to_string()));
}

#[test]
fn set_overrides_and_print_shows_the_resolved_targets() {
    let rb = Rbuild::new();
    let dir = rb.tree(
        "proj",
        &[
            ("docker-bake.hcl", MATRIX),
            ("Dockerfile", MATRIX_DOCKERFILE),
        ],
    );
    let r = bake_ok(
        &rb,
        &dir,
        &[
            "--print",
            "--set",
            "app-*.args.GREETING=hey",
            "--set",
            "app-fancy.tags=x/y:z",
            "--set",
            "app-plain.tags+=extra:1",
            "app",
        ],
        &[],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["group"]["app"]["targets"],
        serde_json::json!(["app-plain", "app-fancy"])
    );
    assert_eq!(v["group"]["default"]["targets"], serde_json::json!(["app"]));
    let plain = &v["target"]["app-plain"];
    assert_eq!(plain["context"], ".");
    assert_eq!(plain["dockerfile"], "Dockerfile");
    assert_eq!(plain["args"]["GREETING"], "hey");
    assert_eq!(plain["args"]["FLAVOR"], "PLAIN");
    assert_eq!(
        plain["tags"],
        serde_json::json!(["local/app:plain", "extra:1"])
    );
    assert_eq!(
        v["target"]["app-fancy"]["tags"],
        serde_json::json!(["x/y:z"])
    );
    assert!(r.stdout.starts_with("{\n  \"group\": {"), "{}", r.stdout);
    // --print builds nothing (and needs no store).
    assert!(!rb.root().join("store-v1").exists());

    // The same overrides when building.
    rb.busybox();
    bake_ok(
        &rb,
        &dir,
        &["--set", "*.args.GREETING=hey", "app-fancy"],
        &[],
    );
    assert!(env_of(&rb, "local/app:fancy").contains(&"MSG=hey FANCY".to_string()));
    let r = bake(&rb, &dir, &["--set", "app-plain.colour=red", "app"], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unknown key: colour"), "{}", r.stderr);
}

#[test]
fn a_compose_file_builds_its_services_with_a_build_section() {
    let rb = Rbuild::new();
    rb.busybox();
    let dir = rb.tree(
        "proj",
        &[
            (
                "compose.yaml",
                "services:\n\
                 \x20 web:\n\
                 \x20   image: web:${WEB_TAG:-1}\n\
                 \x20   build: ./web\n\
                 \x20 api:\n\
                 \x20   image: api:1\n\
                 \x20   build:\n\
                 \x20     context: ./api\n\
                 \x20     dockerfile: api.Dockerfile\n\
                 \x20     args:\n\
                 \x20       PORT: \"8080\"\n\
                 \x20 db:\n\
                 \x20   image: postgres:16\n",
            ),
            ("web/Dockerfile", "FROM busybox\nENV ROLE=web\n"),
            (
                "api/api.Dockerfile",
                "FROM busybox\nARG PORT\nENV ROLE=api PORT=$PORT\n",
            ),
        ],
    );
    let r = bake_ok(&rb, &dir, &["--print"], &[]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["group"]["default"]["targets"],
        serde_json::json!(["api", "web"])
    );
    assert!(
        v["target"].get("db").is_none(),
        "a service without build: is no target"
    );
    // The environment wins over `.env`, which wins over the default.
    std::fs::write(dir.join(".env"), "# compose's env file\nWEB_TAG=3\n").unwrap();
    bake_ok(&rb, &dir, &[], &[("WEB_TAG", "2")]);
    assert!(env_of(&rb, "web:2").contains(&"ROLE=web".to_string()));
    bake_ok(&rb, &dir, &["web"], &[]);
    assert!(env_of(&rb, "web:3").contains(&"ROLE=web".to_string()));
    let api = env_of(&rb, "api:1");
    assert!(api.contains(&"PORT=8080".to_string()), "{api:?}");
}

#[test]
fn a_bad_bake_file_names_file_line_and_column_and_builds_nothing() {
    let rb = Rbuild::new();
    rb.busybox();
    let dir = rb.tree(
        "proj",
        &[
            ("Dockerfile", "FROM busybox\n"),
            (
                "docker-bake.hcl",
                "target \"ok\" {\n  tags = [\"ok:1\"]\n}\ntarget \"bad\" {\n  tags = [\"bad:1\", undefined_var]\n}\ngroup \"default\" {\n  targets = [\"ok\", \"bad\"]\n}\n",
            ),
        ],
    );
    let r = bake(&rb, &dir, &[], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("docker-bake.hcl:5:10"),
        "file:line:col in:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("undefined_var"), "{}", r.stderr);
    let images = rb.ok(&["images", "--format", "json"]);
    assert!(
        !images.contains("ok:1") && !images.contains("\"ok\""),
        "{images}"
    );

    // A syntax error too.
    std::fs::write(dir.join("docker-bake.hcl"), "target \"x\" {\n  tags = [\n").unwrap();
    let r = bake(&rb, &dir, &[], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("docker-bake.hcl:2:12: syntax error"),
        "{}",
        r.stderr
    );

    // A target that cannot be built stops every target before any runs.
    std::fs::write(
        dir.join("docker-bake.hcl"),
        "target \"ok\" {\n  tags = [\"ok:1\"]\n}\ntarget \"multi\" {\n  platforms = [\"linux/amd64\", \"linux/foo\"]\n}\ngroup \"default\" {\n  targets = [\"ok\", \"multi\"]\n}\n",
    )
    .unwrap();
    let r = bake(&rb, &dir, &[], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("unknown platform \"linux/foo\""),
        "{}",
        r.stderr
    );
    let images = rb.ok(&["images", "--format", "json"]);
    assert!(!images.contains("ok"), "{images}");

    // No bake file at all.
    let empty = rb.tree("empty", &[]);
    let r = bake(&rb, &empty, &[], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no bake file found"), "{}", r.stderr);
}

#[test]
fn a_json_bake_file_and_dockerfile_inline() {
    let rb = Rbuild::new();
    rb.busybox();
    let dir = rb.tree(
        "proj",
        &[(
            "docker-bake.json",
            r#"{
  "variable": {"V": {"default": "7"}},
  "target": {
    "inline": {
      "dockerfile-inline": "FROM busybox\nENV FROM_INLINE=${V}\n",
      "tags": ["inline:${V}"]
    }
  }
}"#,
        )],
    );
    let meta = rb.path("meta.json");
    bake_ok(&rb, &dir, &["--metadata-file", s(&meta), "inline"], &[]);
    assert!(env_of(&rb, "inline:7").contains(&"FROM_INLINE=7".to_string()));
    // buildx's bake metadata: one object per target.
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["inline"]["image.name"], "docker.io/library/inline:7");
    let id = rb.ok(&["inspect", "--format", "{{.Id}}", "inline:7"]);
    assert_eq!(m["inline"]["containerimage.config.digest"], id.trim());
}

#[test]
fn a_failing_target_fails_bake_and_the_others_still_build() {
    if !is_root() {
        support::skipped(
            "a_failing_target_fails_bake_and_the_others_still_build",
            "RUN steps need root",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let dir = rb.tree(
        "proj",
        &[
            (
                "Dockerfile",
                "FROM busybox AS good\nRUN echo good > /who\nFROM busybox AS bad\nRUN exit 3\n",
            ),
            (
                "docker-bake.hcl",
                "group \"default\" {\n  targets = [\"good\", \"bad\"]\n}\ntarget \"good\" {\n  target = \"good\"\n  tags = [\"good:1\"]\n}\ntarget \"bad\" {\n  target = \"bad\"\n  tags = [\"bad:1\"]\n}\n",
            ),
        ],
    );
    let r = bake(&rb, &dir, &[], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(">>> RUN exit 3") && r.stderr.contains("target \"bad\" failed"),
        "{}",
        r.stderr
    );
    assert_eq!(rb.ok(&["run", "--rm", "good:1", "cat", "/who"]), "good\n");
    let images = rb.ok(&["images"]);
    assert!(!images.contains("bad"), "{images}");
}

#[test]
fn list_shows_targets_and_variables() {
    let rb = Rbuild::new();
    let dir = rb.tree("proj", &[("docker-bake.hcl", MATRIX)]);
    let r = bake_ok(&rb, &dir, &["--list", "targets"], &[]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TARGET") && lines[0].contains("DESCRIPTION"),
        "{}",
        r.stdout
    );
    for name in ["app ", "app-fancy", "app-plain"] {
        assert!(r.stdout.contains(name), "{name} in:\n{}", r.stdout);
    }
    assert!(
        !r.stdout.contains("_common"),
        "hidden targets are not listed:\n{}",
        r.stdout
    );
    let r = bake_ok(
        &rb,
        &dir,
        &["--list", "type=variables,format=json"],
        &[("GREETING", "salut")],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["name"], "GREETING");
    assert_eq!(v[0]["value"], "salut");
    assert_eq!(v[1]["name"], "REGISTRY");
    assert_eq!(v[1]["value"], "local");
}
