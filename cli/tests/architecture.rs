//! The workspace's shape, checked: which rbuild crate may depend on which
//! (the direction the README's crate map draws; no cycles, no shortcut
//! through a higher layer), and `unsafe` code in the sandbox crate only.
//! A change that breaks either fails here instead of in review.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Each workspace crate and the rbuild crates it may depend on (normal
/// dependencies; dev-dependencies may reach further, for fixtures).
const ALLOWED: &[(&str, &[&str])] = &[
    ("rbuild-oci", &[]),
    ("rbuild-parser", &[]),
    ("rbuild-sandbox", &[]),
    ("rbuild-testkit", &[]),
    ("rbuild-template", &[]),
    // The SBOM scanner reads a root filesystem: no rbuild crate.
    ("rbuild-sbom", &[]),
    // Bake files → targets: plain data, no store; oci for the clock.
    ("rbuild-bake", &["rbuild-oci"]),
    ("rbuild-lint", &["rbuild-parser"]),
    ("rbuild-solver", &["rbuild-parser", "rbuild-oci"]),
    ("rbuild-store", &["rbuild-oci"]),
    ("rbuild-registry", &["rbuild-oci", "rbuild-store"]),
    // Container networking: namespaces, bridges, forwarders; joins through
    // the sandbox's Network::Join.
    ("rbuild-net", &["rbuild-sandbox"]),
    // Lasting containers: state in the store root, the sandbox, networks.
    (
        "rbuild-container",
        &["rbuild-oci", "rbuild-store", "rbuild-sandbox", "rbuild-net"],
    ),
    (
        "rbuild-context",
        &["rbuild-oci", "rbuild-solver", "rbuild-store"],
    ),
    (
        "rbuild-worker",
        &[
            "rbuild-oci",
            "rbuild-solver",
            "rbuild-store",
            "rbuild-registry",
            "rbuild-sandbox",
            "rbuild-context",
        ],
    ),
    (
        "rbuild-builder",
        &[
            "rbuild-oci",
            "rbuild-parser",
            "rbuild-solver",
            "rbuild-store",
            "rbuild-registry",
            "rbuild-sandbox",
            "rbuild-context",
            "rbuild-worker",
            "rbuild-sbom",
        ],
    ),
];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// (package name, its rbuild-* normal dependencies) for every member.
fn members() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| n.starts_with("rbuild"))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_in_the_documented_direction() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (name, deps) in members() {
        if name == "rbuild" {
            continue; // the binary is glue: it may use every crate
        }
        let Some(ok) = allowed.get(name.as_str()) else {
            wrong.push(format!(
                "{name} is not in the crate map (add it to ALLOWED and the README)"
            ));
            continue;
        };
        for d in deps {
            if !ok.contains(&d.as_str()) {
                wrong.push(format!("{name} -> {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the direction: {wrong:?}"
    );
}

/// True when a line of Rust has the `unsafe` keyword outside a comment
/// or string (good enough for this codebase's style: no `unsafe` in
/// strings outside the sandbox).
fn has_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|w| w == "unsafe")
        && !code.contains("forbid(unsafe_code)")
        && !code.contains("unsafe_op_in_unsafe_fn")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_code_lives_in_the_sandbox_crate_only() {
    let mut offenders = Vec::new();
    for (name, _) in members() {
        let dir = workspace_root().join(name.trim_start_matches("rbuild-"));
        let src = if name == "rbuild" {
            workspace_root().join("cli/src")
        } else {
            dir.join("src")
        };
        if name == "rbuild-sandbox" || !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                if has_unsafe(line) {
                    offenders.push(format!("{}:{}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside rbuild-sandbox (move it behind a safe function there): {offenders:?}"
    );
}
