//! Loading and resolving bake definitions, without the file system.

use std::path::Path;

use super::*;

fn file(name: &str, text: &str) -> BakeFile {
    BakeFile {
        name: name.to_string(),
        bytes: text.as_bytes().to_vec(),
    }
}

fn load_with(files: &[BakeFile], env: &[(&str, &str)]) -> Result<Definition, BakeError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    load(
        files,
        &LoadOptions {
            env: &lookup,
            local_platform: "linux/amd64",
            dir: Path::new("/nonexistent"),
        },
    )
}

fn resolve(def: &Definition, names: &[&str], sets: &[&str]) -> Result<Resolved, BakeError> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    def.resolve(&names, &sets, &|_| None)
}

const HCL: &str = r#"
variable "TAG" {
  default = "latest"
}
variable "REPO" {
  default = "${OWNER}/app"
}
variable "OWNER" {
  default = "acme"
}
variable "DEBUG" {
  default = false
}
group "default" {
  targets = ["app", "tools"]
}
target "_common" {
  args = { BASE = "busybox", KEEP = "1" }
  labels = { "org.opencontainers.image.source" = "x" }
}
target "app" {
  inherits = ["_common"]
  args = { KEEP = "2", DEBUG = DEBUG ? "yes" : "no" }
  tags = ["${REPO}:${TAG}", lower("ACME/App:${upper(TAG)}")]
  target = "runtime"
}
target "tools" {
  inherits = ["_common"]
  name = "tools-${item}"
  matrix = { item = ["lint", "test"] }
  dockerfile = "tools.Dockerfile"
  args = { TOOL = item }
}
"#;

#[test]
fn variables_inherits_functions_and_matrix_resolve_as_buildx() {
    let def = load_with(
        &[file("docker-bake.hcl", HCL)],
        &[("TAG", "1.2"), ("DEBUG", "true")],
    )
    .unwrap();
    let r = resolve(&def, &[], &[]).unwrap();
    let names: Vec<&String> = r.targets.keys().collect();
    assert_eq!(names, ["app", "tools-lint", "tools-test"]);
    let app = &r.targets["app"];
    // Both tags evaluate to the same name: listed once, as buildx does.
    assert_eq!(app.tags.as_deref().unwrap(), ["acme/app:1.2".to_string()]);
    assert_eq!(app.args["BASE"], "busybox");
    assert_eq!(app.args["KEEP"], "2");
    assert_eq!(
        app.args["DEBUG"], "yes",
        "env DEBUG=true typed as the bool default"
    );
    assert_eq!(app.context.as_deref(), Some("."));
    assert_eq!(app.dockerfile.as_deref(), Some("Dockerfile"));
    let lint = &r.targets["tools-lint"];
    assert_eq!(lint.args["TOOL"], "lint");
    assert_eq!(lint.dockerfile.as_deref(), Some("tools.Dockerfile"));
    // The matrix target's label is a group of its combinations.
    let r = resolve(&def, &["tools"], &[]).unwrap();
    assert_eq!(r.targets.len(), 2);
}

#[test]
fn set_overrides_with_globs_and_append() {
    let def = load_with(&[file("docker-bake.hcl", HCL)], &[]).unwrap();
    let r = resolve(
        &def,
        &["app", "tools"],
        &[
            "*.args.KEEP=9",
            "app.tags+=extra:1",
            "tools-*.no-cache=true",
        ],
    )
    .unwrap();
    assert_eq!(r.targets["app"].args["KEEP"], "9");
    assert_eq!(r.targets["tools-test"].args["KEEP"], "9");
    assert_eq!(
        r.targets["app"].tags.as_ref().unwrap().last().unwrap(),
        "extra:1"
    );
    assert_eq!(r.targets["tools-lint"].no_cache, Some(true));
    assert!(resolve(&def, &["app"], &["nope.tags=x"]).is_err());
    let e = resolve(&def, &["app"], &["app.colour=x"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key: colour"), "{e}");
}

#[test]
fn print_is_buildx_json() {
    let def = load_with(&[file("docker-bake.hcl", HCL)], &[]).unwrap();
    let r = resolve(&def, &["app"], &[]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.print_json()).unwrap();
    assert_eq!(v["group"]["default"]["targets"], serde_json::json!(["app"]));
    assert_eq!(v["target"]["app"]["context"], ".");
    assert_eq!(v["target"]["app"]["dockerfile"], "Dockerfile");
    assert_eq!(v["target"]["app"]["target"], "runtime");
    assert_eq!(v["target"]["app"]["tags"][0], "acme/app:latest");
    // `${` is escaped as buildx prints it, so the JSON reads back the same.
    let hcl = "target \"x\" {\n  args = { A = \"$${HOME}\" }\n}\n";
    let def = load_with(&[file("docker-bake.hcl", hcl)], &[]).unwrap();
    let printed = resolve(&def, &["x"], &[]).unwrap().print_json();
    assert!(printed.contains(r#""A": "$${HOME}""#), "{printed}");
    let again = load_with(&[file("again.json", &printed)], &[]).unwrap();
    assert_eq!(
        resolve(&again, &["x"], &[]).unwrap().targets["x"].args["A"],
        "${HOME}"
    );
}

#[test]
fn json_bake_files_interpolate_like_hcl() {
    let json = r#"{
      "variable": {"V": {"default": "1"}},
      "target": {"a": {"tags": ["x:${V}"], "args": {"N": null, "M": "m"}}}
    }"#;
    let def = load_with(&[file("docker-bake.json", json)], &[("V", "2")]).unwrap();
    let r = resolve(&def, &["a"], &[]).unwrap();
    assert_eq!(r.targets["a"].tags.as_deref().unwrap(), ["x:2".to_string()]);
    assert!(
        !r.targets["a"].args.contains_key("N"),
        "null leaves an arg unset"
    );
}

#[test]
fn compose_services_with_build_are_targets() {
    let yaml = r#"
services:
  web:
    image: acme/web:${TAG:-dev}
    build:
      context: ./web
      args:
        - A=1
      target: prod
  db:
    image: postgres
  worker.jobs:
    build: ./worker
"#;
    let def = load_with(&[file("compose.yaml", yaml)], &[]).unwrap();
    let r = resolve(&def, &[], &[]).unwrap();
    let names: Vec<&String> = r.targets.keys().collect();
    assert_eq!(names, ["web", "worker_jobs"]);
    assert_eq!(
        r.targets["web"].tags.as_deref().unwrap(),
        ["acme/web:dev".to_string()]
    );
    assert_eq!(r.targets["web"].context.as_deref(), Some("./web"));
    assert_eq!(r.targets["web"].args["A"], "1");
    assert_eq!(
        r.targets["worker_jobs"].context.as_deref(),
        Some("./worker")
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let e = load_with(
        &[file(
            "docker-bake.hcl",
            "target \"a\" {\n  tags = [\"x\"\n}\n",
        )],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("docker-bake.hcl:3:1: syntax error"), "{e}");
    let e = load_with(
        &[file(
            "docker-bake.hcl",
            "target \"a\" {\n  tags = [nope]\n}\n",
        )],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("docker-bake.hcl:2:10: tags:"), "{e}");
    assert!(e.contains("nope"), "{e}");
    let e = load_with(
        &[file("docker-bake.hcl", "target \"a\" {\n  colour = 1\n}\n")],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("docker-bake.hcl:2:12") && e.contains("colour"),
        "{e}"
    );
    let e = load_with(&[file("b.json", "{\n \"target\": [}")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("b.json:2:"), "{e}");
    let e = load_with(&[file("compose.yaml", "services:\n  a: [\n")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("compose.yaml:"), "{e}");
}

#[test]
fn unknown_targets_and_inherit_cycles_are_errors() {
    let def = load_with(
        &[file(
            "docker-bake.hcl",
            "target \"a\" {\n inherits = [\"b\"]\n}\ntarget \"b\" {\n inherits = [\"a\"]\n}\n",
        )],
        &[],
    )
    .unwrap();
    let e = resolve(&def, &["a"], &[]).unwrap_err().to_string();
    assert!(e.contains("inherits from itself"), "{e}");
    let e = resolve(&def, &["zzz"], &[]).unwrap_err().to_string();
    assert_eq!(e, "failed to find target zzz");
    let e = resolve(&def, &[], &[]).unwrap_err().to_string();
    assert!(
        e.starts_with("failed to find target default\nhint:") && e.contains("(a, b)"),
        "{e}"
    );
    let e = resolve(&def, &["q*"], &[]).unwrap_err().to_string();
    assert!(e.contains("could not find any target matching"), "{e}");
}

#[test]
fn glob_matches_like_go_path_match() {
    assert!(glob_match("app-*", "app-web"));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("[ab]x", "bx"));
    assert!(!glob_match("app-*", "tools"));
}

#[test]
fn variable_validation_blocks_are_checked() {
    let hcl = r#"
variable "PORT" {
  default = "80"
  validation {
    condition = PORT != ""
    error_message = "PORT must be set"
  }
}
target "a" {
  args = { PORT = PORT }
}
"#;
    let def = load_with(&[file("docker-bake.hcl", hcl)], &[("PORT", "8080")]).unwrap();
    assert_eq!(
        resolve(&def, &["a"], &[]).unwrap().targets["a"].args["PORT"],
        "8080"
    );
    let e = load_with(&[file("docker-bake.hcl", hcl)], &[("PORT", "")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "docker-bake.hcl:5:17: validation failed for variable \"PORT\": PORT must be set"
        ),
        "{e}"
    );
}

#[test]
fn json_errors_name_the_line_of_the_key() {
    let json = "{\n  \"target\": {\n    \"a\": {\n      \"tags\": [\"${nope}\"]\n    }\n  }\n}\n";
    let e = load_with(&[file("docker-bake.json", json)], &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("docker-bake.json:4:7: tags:"), "{e}");
}

#[test]
fn user_functions_are_called_from_targets_templates_and_variables() {
    let hcl = r#"
function "tag" {
  params = [name, version]
  variadic_params = extra
  result = concat(["${REPO}/${name}:${version}"], [for e in extra : "${REPO}/${name}:${e}"])
}
function "major" {
  params = [v]
  result = split(".", v)[0]
}
variable "REPO" {
  default = "acme"
}
variable "VERSION" {
  default = "1.2.3"
}
variable "MAJOR" {
  default = major(VERSION)
}
target "app" {
  tags = tag("app", VERSION, "v${major(VERSION)}", "latest")
  args = { M = "major=${MAJOR}" }
}
"#;
    let def = load_with(&[file("docker-bake.hcl", hcl)], &[]).unwrap();
    let r = resolve(&def, &["app"], &[]).unwrap();
    assert_eq!(
        r.targets["app"].tags.as_deref().unwrap(),
        ["acme/app:1.2.3", "acme/app:v1", "acme/app:latest"].map(String::from)
    );
    assert_eq!(r.targets["app"].args["M"], "major=1");
    let e = load_with(
        &[file(
            "docker-bake.hcl",
            "function \"f\" {\n  params = [x]\n  result = f(x)\n}\ntarget \"a\" {\n  tags = [f(1)]\n}\n",
        )],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nest too deep"), "{e}");
}

#[test]
fn targets_refer_to_other_targets_attributes() {
    let hcl = r#"
target "app" {
  dockerfile = "${target.base.name}.Dockerfile"
  tags = concat(target.base.tags, ["app:1"])
  args = { FROM_BASE = target.base.args.V }
}
target "base" {
  tags = ["base:1"]
  args = { V = "x" }
}
"#;
    let def = load_with(&[file("docker-bake.hcl", hcl)], &[]).unwrap();
    let r = resolve(&def, &["app"], &[]).unwrap();
    let app = &r.targets["app"];
    assert_eq!(app.dockerfile.as_deref(), Some("base.Dockerfile"));
    assert_eq!(
        app.tags.as_deref().unwrap(),
        ["base:1", "app:1"].map(String::from)
    );
    assert_eq!(app.args["FROM_BASE"], "x");
    let names: Vec<&str> = def.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["app", "base"], "definition order is kept");
    // A reference to what no target has is an error at its position.
    let e = load_with(
        &[file(
            "docker-bake.hcl",
            "target \"a\" {\n  tags = target.b.tags\n}\n",
        )],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("docker-bake.hcl:2:10: tags:"), "{e}");
}
