//! `--cache-to type=registry` / `--cache-from type=registry` end to end
//! against a real registry (the CNCF distribution registry, `docker-registry`
//! Debian package, on 127.0.0.1 with temporary storage): machine A pushes
//! its cache, a fresh machine B builds the same context from it.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use support::registry::Registry;
use support::{Rbuild, Run};

/// Digests of the blobs served by `GET …/blobs/DIGEST` in an access log.
fn blob_gets(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let req = l.split('"').nth(1)?;
            let mut parts = req.split(' ');
            (parts.next()? == "GET").then_some(())?;
            let path = parts.next()?;
            let (_, digest) = path.split_once("/blobs/")?;
            digest.starts_with("sha256:").then(|| digest.to_string())
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A build with `--report`, never reading the user's Docker config;
/// returns the report.
fn build_report(rb: &Rbuild, ctx: &Path, args: &[&str], name: &str) -> (Value, Run) {
    let report = rb.path(name);
    let mut all = vec!["build", "--progress", "plain", "--report", s(&report)];
    all.extend_from_slice(args);
    all.push(s(ctx));
    let mut c = rb.command(&all);
    c.env("DOCKER_CONFIG", rb.path("docker-config"))
        .env_remove("RBUILD_INSECURE_REGISTRIES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let r = support::to_run(c.spawn().unwrap().wait_with_output().unwrap());
    assert_eq!(
        r.code, 0,
        "build {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    (
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap(),
        r,
    )
}

fn steps(report: &Value) -> &Vec<Value> {
    report["steps"].as_array().unwrap()
}

fn executed(report: &Value) -> Vec<String> {
    steps(report)
        .iter()
        .filter(|s| s["status"] == "executed")
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

/// Two stages sharing a cache mount: the first fills it, the second reads it.
const CONTEXT: &str = "\
FROM busybox AS base
COPY a.txt /a.txt
RUN --mount=type=cache,target=/cache,id=pkgs echo from-a > /cache/note && cp /a.txt /built

FROM base AS final
RUN --mount=type=cache,target=/cache,id=pkgs cat /cache/note > /seen || echo missing > /seen
CMD [\"cat\", \"/seen\"]
";

fn context(rb: &Rbuild) -> std::path::PathBuf {
    rb.tree(
        "ctx",
        &[("Dockerfile", CONTEXT), ("a.txt", "hello from a\n")],
    )
}

/// Layer digests of `image`'s manifest in `rb`'s store.
fn image_layers(rb: &Rbuild, image: &str) -> BTreeSet<String> {
    let out = rb.ok(&["inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    // The manifest naming this config, among the store's blobs.
    let store = std::fs::read_dir(rb.root())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("store-v"))
        .expect("a store under the root")
        .path();
    let blobs = store.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap().flatten() {
        let Ok(m) = serde_json::from_slice::<Value>(&std::fs::read(entry.path()).unwrap()) else {
            continue;
        };
        if m["config"]["digest"] == id.as_str() {
            return m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect();
        }
    }
    panic!("no manifest for {image} ({id}) in the store");
}

#[test]
fn a_registry_cache_gives_a_fresh_store_every_step_and_the_cache_mounts() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/cache:1", registry.host());

    let a = Rbuild::new();
    a.busybox();
    let ctx_a = context(&a);
    let (report_a, _) = build_report(
        &a,
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max,mounts=true"),
        ],
        "a.json",
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "from-a\n");
    let pushed = registry.access_log();
    assert!(
        pushed.contains("PUT /v2/cache/manifests/1 "),
        "the manifest is tagged:\n{pushed}"
    );

    // Machine B: a fresh store with A's busybox (saved and loaded, so the
    // base's manifest digest is the same).
    let b = Rbuild::new();
    let tar = a.path("busybox.tar");
    a.ok(&["save", "busybox", "-o", s(&tar)]);
    b.ok(&["load", "-i", s(&tar)]);
    let ctx_b = context(&b);
    let from = format!("type=registry,ref={cache_ref},mounts=true");
    let before = registry.access_log().len();
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    assert_eq!(report_b["totals"]["misses"], 0, "{report_b}");
    for step in steps(&report_b) {
        assert_eq!(step["status"], "cached", "{step}");
    }
    assert_eq!(
        report_b["build"]["image_id"], report_a["build"]["image_id"],
        "the same image ID on both machines"
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");

    // B fetched the cache config, the cache mount and the final image's
    // layers busybox lacks, each once, and nothing else.
    let fetched: Vec<String> = blob_gets(&registry.access_log()[before..]);
    let unique: BTreeSet<String> = fetched.iter().cloned().collect();
    assert_eq!(unique.len(), fetched.len(), "each blob once: {fetched:?}");
    let final_layers = image_layers(&b, "app:1");
    let base_layers = image_layers(&b, "busybox");
    let needed: BTreeSet<String> = final_layers.difference(&base_layers).cloned().collect();
    let layers_fetched: BTreeSet<String> = unique.intersection(&final_layers).cloned().collect();
    assert_eq!(layers_fetched, needed, "fetched: {fetched:?}");
    // Besides the layers: the cache config and one cache mount tar.
    assert_eq!(
        unique.len(),
        needed.len() + 2,
        "only the image's layers, the cache config and the mount: {fetched:?}"
    );

    // A RUN that executes on B sees the cache mount A filled.
    let (report_b2, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:2",
            "--cache-from",
            &from,
            "--no-cache-filter",
            "final",
        ],
        "b2.json",
    );
    assert_eq!(executed(&report_b2).len(), 1, "{report_b2}");
    assert_eq!(b.ok(&["run", "--rm", "app:2"]), "from-a\n");
}

#[test]
fn a_missing_registry_cache_is_a_warning_and_a_second_export_uploads_nothing_new() {
    let registry = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let ctx = context(&a);

    // Nothing pushed yet: the build goes on without the cache, as BuildKit's.
    let missing = format!("type=registry,ref={}/cache:nope", registry.host());
    let (report, run) = build_report(&a, &ctx, &["--cache-from", &missing], "first.json");
    let runs = executed(&report)
        .iter()
        .filter(|i| i.starts_with("RUN"))
        .count();
    assert_eq!(runs, 2, "{report}");
    assert!(
        run.stderr.contains("building without it") && run.stderr.contains("not found"),
        "{}",
        run.stderr
    );

    let to = format!(
        "type=registry,ref={}/cache:ci,mode=max,mounts=true",
        registry.host()
    );
    build_report(&a, &ctx, &["--cache-to", &to], "export1.json");
    let before = registry.access_log().len();
    build_report(&a, &ctx, &["--cache-to", &to], "export2.json");
    let log = registry.access_log()[before..].to_string();
    // Same records, same mount contents: every blob is already there
    // (HEAD), only the manifest is PUT again.
    assert!(!log.contains("POST /v2/cache/blobs/uploads"), "{log}");
    assert!(log.contains("HEAD /v2/cache/blobs/sha256:"), "{log}");
    assert!(log.contains("PUT /v2/cache/manifests/ci "), "{log}");
}

impl Registry {
    /// The manifest tagged `tag` in `repo`, from the registry's storage.
    fn stored_manifest(&self, repo: &str, tag: &str) -> Value {
        let link = self.dir.path().join(format!(
            "storage/docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
        ));
        let digest = std::fs::read_to_string(link).unwrap();
        serde_json::from_slice(&std::fs::read(self.blob_data(digest.trim())).unwrap()).unwrap()
    }
}

#[test]
fn a_layer_corrupted_in_the_registry_fails_the_build_naming_the_cache() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/cache:1", registry.host());
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = context(&a);
    build_report(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
        "a.json",
    );
    // Same length, other bytes: the registry serves them without noticing.
    let manifest = registry.stored_manifest("cache", "1");
    let mut corrupted = 0;
    for l in manifest["layers"].as_array().unwrap() {
        let path = registry.blob_data(l["digest"].as_str().unwrap());
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![b'x'; len]).unwrap();
        corrupted += 1;
    }
    assert!(corrupted >= 3, "{manifest}");

    let b = Rbuild::new();
    let tar = a.path("busybox.tar");
    a.ok(&["save", "busybox", "-o", s(&tar)]);
    b.ok(&["load", "-i", s(&tar)]);
    let ctx_b = context(&b);
    // Every step hits; the image's layers are refused when fetched.
    let from = format!("type=registry,ref={cache_ref}");
    let r = b.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        "--cache-from",
        &from,
        s(&ctx_b),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    for needle in [
        "does not match its digest",
        cache_ref.as_str(),
        "cached step",
        "build again without that --cache-from",
    ] {
        assert!(r.stderr.contains(needle), "{needle:?} in:\n{}", r.stderr);
    }
    // Nothing corrupted entered B's store; without the cache it builds.
    b.ok(&["system", "check"]);
    let (report, _) = build_report(&b, &ctx_b, &["-t", "app:1"], "b.json");
    let runs = executed(&report)
        .iter()
        .filter(|i| i.starts_with("RUN"))
        .count();
    assert_eq!(runs, 2, "{report}");
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");
}

#[test]
fn a_stage_read_only_through_a_bind_mount_is_never_downloaded() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/lazy:1", registry.host());
    let src = support::repo_root().join("testdata/contexts/lazy-side");
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = a.path("ctx");
    support::tool("cp", &["-a", s(&src), s(&ctx_a)]);
    let (report_a, _) = build_report(
        &a,
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
        "a.json",
    );
    // Every layer blob the cache holds, as pushed.
    let pushed: BTreeSet<String> = registry.stored_manifest("lazy", "1")["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    let b = Rbuild::new();
    let tar = a.path("busybox.tar");
    a.ok(&["save", "busybox", "-o", s(&tar)]);
    b.ok(&["load", "-i", s(&tar)]);
    let ctx_b = b.path("ctx");
    support::tool("cp", &["-a", s(&src), s(&ctx_b)]);
    let before = registry.access_log().len();
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=registry,ref={cache_ref}"),
        ],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    assert_eq!(report_b["build"]["image_id"], report_a["build"]["image_id"]);
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "app\nside-tool\nplain\n");
    let fetched: BTreeSet<String> = blob_gets(&registry.access_log()[before..])
        .into_iter()
        .filter(|d| pushed.contains(d))
        .collect();
    let needed: BTreeSet<String> = image_layers(&b, "app:1")
        .difference(&image_layers(&b, "busybox"))
        .cloned()
        .collect();
    assert_eq!(
        fetched, needed,
        "only the final image's own layers are downloaded, not the side stage's"
    );
    assert!(
        pushed.len() > needed.len() + 1,
        "the cache holds more: {pushed:?}"
    );
    b.ok(&["system", "check"]);
}
