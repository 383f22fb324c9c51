//! Differential tests against BuildKit: every case under
//! `testdata/differential/NN-name/` is built with rbuild, and the image
//! (merged filesystem, config blob, `inspect`, history) or the failure is
//! compared with BuildKit's, recorded in the case's `expected.txt`.
//!
//! The recorded results come from docker 20.10's BuildKit, run live by
//! `scripts/differential` (which sets `RBUILD_DIFFERENTIAL=docker`: every
//! case is then also built by docker and docker's listing compared with the
//! golden file; `RBUILD_DIFFERENTIAL_BLESS=1` rewrites the golden files).
//! Without that variable no docker is needed: the cheap half for CI.
//!
//! A case directory holds:
//! - `context/`: the build context (`context/Dockerfile`);
//! - `setup.sh` (optional): run with `sh` inside a copy of the context, for
//!   what git cannot store (modes, owners, hard links, empty directories,
//!   xattrs);
//! - `base-context/` (optional): a context built first, by the same
//!   builder, as `differential-NN-name-base:latest`, for a FROM that names
//!   an image from the store rather than a stage;
//! - `args` (optional): extra `build` arguments, one per line, run from the
//!   case directory (so `--secret id=s,src=secret.txt` finds the case's file);
//!   `{HTTP}` stands for a local HTTP server over `testdata/differential/`
//!   (ADD from a URL), shown as `{HTTP}` in listings too;
//! - `expected.txt`: BuildKit's normalized result (format below);
//! - `override.txt` (optional): where the current BuildKit differs from
//!   docker 20.10's, blocks of `- line` (in expected.txt) / `+ line` (what
//!   the current BuildKit gives), each with a `#` comment naming the reason;
//! - `newer` (optional): the feature is newer than docker 20.10's BuildKit;
//!   the file says which BuildKit source and tests `expected.txt` was written
//!   from; docker does not build the case and blessing leaves it alone.
//! - `divergence` (optional): a known divergence rbuild does not fix yet,
//!   described in the file; the case must still differ (when it stops
//!   differing, the test fails until the file is removed).
//!
//! The normalized listing, one fact a line:
//! - `fs PATH TYPE MODE UID:GID [size=N sha256=H] [-> TARGET] [dev=MAJ,MIN]
//!   [links=P,...] [xattr:NAME=HEX]...` for every entry of the final image's
//!   merged filesystem (layers applied in order, whiteouts honoured) that is
//!   not identical in the base image (so the host's busybox binary does not
//!   matter); `fs PATH removed` for a base entry that is gone;
//! - `config.KEY=JSON` for the config blob's fields, `config.config.KEY=JSON`
//!   for its `config` object, `history[i] …` for its history;
//! - `inspect.KEY=JSON` and `inspect.Config.KEY=JSON` from `inspect`;
//! - `build failed` (and nothing else) when the build must fail; then the
//!   tag must not exist afterwards.
//!
//! What is ignored, and why (everything else is compared):
//! - `created` (config and history) and `inspect.Created`: build times;
//! - `rootfs.diff_ids`, `inspect.Id`, `inspect.RootFS`, `inspect.RepoDigests`,
//!   `inspect.Descriptor`, `inspect.Size`/`VirtualSize`: digests and sizes of
//!   layer tars, which hold mtimes; the content is compared file by file;
//! - `moby.buildkit.buildinfo.v1`: BuildKit's provenance record (frontend,
//!   source pins), not part of what the image does;
//! - `inspect.GraphDriver`, `inspect.Metadata`, `inspect.RepoTags`,
//!   `inspect.Parent`, `inspect.Container`, `inspect.ContainerConfig`,
//!   `inspect.DockerVersion`: facts about the daemon's local storage and the
//!   classic builder, not about the image;
//! - a `null` value and an absent key (config blob), and in `inspect.Config`
//!   also `false` and `""`: docker prints every field of its Go struct, zero
//!   or not; the meaning is the same for every reader;
//! - the base image's own history entries: the same image on both sides
//!   (docker loads what `rbuild save` wrote), and its comment names the
//!   temporary directory it was imported from;
//! - mtimes of files: BuildKit keeps the context's, both builders' RUN
//!   outputs carry build times.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{Rbuild, repo_root, run_command, s};

const DOCKER: &str = "/usr/bin/docker";

/// One case directory.
struct Case {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
    newer: bool,
    divergence: Option<String>,
}

fn cases() -> Vec<Case> {
    let root = repo_root().join("testdata/differential");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        if !dir.join("context").is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let args = std::fs::read_to_string(dir.join("args"))
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.push(Case {
            newer: dir.join("newer").is_file(),
            divergence: std::fs::read_to_string(dir.join("divergence")).ok(),
            name,
            dir,
            args,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

// ---- reading an image archive ----------------------------------------

/// An image as `save` writes it (docker-archive: `manifest.json`).
struct Archive {
    config: Value,
    layers: Vec<Vec<u8>>,
}

fn read_archive(path: &Path) -> Archive {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    // docker save writes a layer that another one repeats (empty layers)
    // as a symlink to the first.
    let mut links: Vec<(String, String)> = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        match entry.header().entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                files.insert(name, data);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().unwrap().unwrap();
                let dir = Path::new(&name).parent().unwrap().join(target);
                let mut resolved = PathBuf::new();
                for c in dir.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        std::path::Component::Normal(n) => resolved.push(n),
                        _ => {}
                    }
                }
                links.push((name, resolved.to_string_lossy().into_owned()));
            }
            _ => {}
        }
    }
    for (name, target) in links {
        let data = files[&target].clone();
        files.insert(name, data);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let m = &manifest[0];
    let config = serde_json::from_slice(&files[m["Config"].as_str().unwrap()]).unwrap();
    let layers = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let data = files[l.as_str().unwrap()].clone();
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                data
            }
        })
        .collect();
    Archive { config, layers }
}

/// One entry of a merged filesystem.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u64,
    gid: u64,
    content: Option<(u64, String)>,
    target: Option<String>,
    dev: Option<(u32, u32)>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Entries with the same inode are hard links of each other.
    inode: u64,
}

fn clean(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    format!("/{p}")
}

/// Applies `layers` in order, honouring whiteouts.
fn merge(layers: &[Vec<u8>]) -> BTreeMap<String, Entry> {
    let mut fs: BTreeMap<String, Entry> = BTreeMap::new();
    let mut next_inode = 1u64;
    let remove_under = |fs: &mut BTreeMap<String, Entry>, dir: &str, keep: &BTreeSet<String>| {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        fs.retain(|p, _| !p.starts_with(&prefix) || keep.contains(p));
    };
    for layer in layers {
        let mut added: BTreeSet<String> = BTreeSet::new();
        let mut tar = tar::Archive::new(&layer[..]);
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let (dir, base) = path.rsplit_once('/').unwrap();
            let dir = if dir.is_empty() { "/" } else { dir };
            if base == ".wh..wh..opq" {
                remove_under(&mut fs, dir, &added);
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = if dir == "/" {
                    format!("/{gone}")
                } else {
                    format!("{dir}/{gone}")
                };
                fs.remove(&gone);
                remove_under(&mut fs, &gone, &BTreeSet::new());
                continue;
            }
            let h = entry.header().clone();
            let mut xattrs = BTreeMap::new();
            if let Ok(Some(pax)) = entry.pax_extensions() {
                for ext in pax {
                    let ext = ext.unwrap();
                    if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                    }
                }
            }
            let t = h.entry_type();
            if t == tar::EntryType::Link {
                let target = clean(&String::from_utf8_lossy(&entry.link_name_bytes().unwrap()));
                let e = fs
                    .get(&target)
                    .unwrap_or_else(|| panic!("hard link {path} to missing {target}"))
                    .clone();
                fs.insert(path.clone(), e);
                added.insert(path);
                continue;
            }
            let mut content = None;
            let mut target = None;
            let mut dev = None;
            let kind = match t {
                tar::EntryType::Directory => "dir",
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).unwrap();
                    content = Some((data.len() as u64, hex(&Sha256::digest(&data))));
                    "file"
                }
                tar::EntryType::Symlink => {
                    target = Some(
                        String::from_utf8_lossy(&entry.link_name_bytes().unwrap()).into_owned(),
                    );
                    "symlink"
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    dev = Some((
                        h.device_major().unwrap().unwrap_or(0),
                        h.device_minor().unwrap().unwrap_or(0),
                    ));
                    if t == tar::EntryType::Char {
                        "char"
                    } else {
                        "block"
                    }
                }
                tar::EntryType::Fifo => "fifo",
                other => panic!("{path}: unexpected tar entry type {other:?}"),
            };
            if kind != "dir" {
                // A file replacing a directory replaces its contents too.
                remove_under(&mut fs, &path, &added);
            }
            // A directory entry over an existing directory keeps what is
            // in it; its own attributes are replaced.
            fs.insert(
                path.clone(),
                Entry {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    content,
                    target,
                    dev,
                    xattrs,
                    inode: next_inode,
                },
            );
            next_inode += 1;
            added.insert(path);
        }
    }
    fs
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fs_lines(fs: &BTreeMap<String, Entry>, base: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut groups: HashMap<u64, Vec<&str>> = HashMap::new();
    for (p, e) in fs {
        if e.kind == "file" {
            groups.entry(e.inode).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    for (p, e) in fs {
        let unchanged = base.get(p).is_some_and(|b| {
            let mut b = b.clone();
            b.inode = e.inode;
            b == *e && groups.get(&e.inode).is_none_or(|g| g.len() == 1)
        });
        if unchanged {
            continue;
        }
        let mut line = format!("fs {p} {} {:04o} {}:{}", e.kind, e.mode, e.uid, e.gid);
        if let Some((size, sha)) = &e.content {
            line += &format!(" size={size} sha256={sha}");
        }
        if let Some(t) = &e.target {
            line += &format!(" -> {t}");
        }
        if let Some((maj, min)) = e.dev {
            line += &format!(" dev={maj},{min}");
        }
        if e.kind == "file" && groups[&e.inode].len() > 1 {
            let others: Vec<&str> = groups[&e.inode]
                .iter()
                .copied()
                .filter(|o| *o != p)
                .collect();
            line += &format!(" links={}", others.join(","));
        }
        for (k, v) in &e.xattrs {
            line += &format!(" xattr:{k}={}", hex(v));
        }
        out.push(line);
    }
    for p in base.keys() {
        if !fs.contains_key(p) {
            out.push(format!("fs {p} removed"));
        }
    }
    out
}

// ---- config and inspect ----------------------------------------------

fn json(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// `skip_history`: how many history entries come from the base image
/// (identical on both sides by construction, and naming the temporary
/// directory it was imported from), left out.
fn config_lines(config: &Value, skip_history: usize) -> Vec<String> {
    const IGNORED: &[&str] = &["created", "rootfs", "moby.buildkit.buildinfo.v1"];
    let mut out = Vec::new();
    for (k, v) in config.as_object().unwrap() {
        if IGNORED.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        match k.as_str() {
            "config" => {
                for (ck, cv) in v.as_object().unwrap() {
                    if !cv.is_null() {
                        out.push(format!("config.config.{ck}={}", json(cv)));
                    }
                }
            }
            "history" => {
                for (i, h) in v.as_array().unwrap().iter().enumerate().skip(skip_history) {
                    let mut line = format!("history[{i}]");
                    for (hk, hv) in h.as_object().unwrap() {
                        if hk != "created" && !hv.is_null() {
                            line += &format!(" {hk}={}", json(hv));
                        }
                    }
                    out.push(line);
                }
            }
            _ => out.push(format!("config.{k}={}", json(v))),
        }
    }
    out
}

fn inspect_lines(inspect: &Value) -> Vec<String> {
    const KEPT: &[&str] = &["Architecture", "Os", "Variant", "Author", "Comment"];
    let img = &inspect[0];
    let mut out = Vec::new();
    for k in KEPT {
        if let Some(v) = img.get(*k) {
            if !is_zero(v) {
                out.push(format!("inspect.{k}={}", json(v)));
            }
        }
    }
    if let Some(c) = img.get("Config").and_then(Value::as_object) {
        for (k, v) in c {
            if !is_zero(v) {
                out.push(format!("inspect.Config.{k}={}", json(v)));
            }
        }
    }
    out
}

fn is_zero(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false)) || v.as_str() == Some("")
}

/// The base image's merged filesystem and first layer.
struct Base {
    fs: BTreeMap<String, Entry>,
    diff_id: Value,
    history: usize,
}

fn first_diff_id(config: &Value) -> Value {
    config["rootfs"]["diff_ids"][0].clone()
}

/// The normalized listing of a built image. Its filesystem is listed
/// relative to the base image when it starts with the base's layer, else
/// (`FROM scratch`) in full.
fn listing(archive: &Path, inspect: &Value, base: &Base) -> String {
    let a = read_archive(archive);
    let empty = BTreeMap::new();
    let (base_fs, skip_history) = if first_diff_id(&a.config) == base.diff_id {
        (&base.fs, base.history)
    } else {
        (&empty, 0)
    };
    let mut lines = fs_lines(&merge(&a.layers), base_fs);
    lines.extend(config_lines(&a.config, skip_history));
    lines.extend(inspect_lines(inspect));
    lines.join("\n") + "\n"
}

/// `expected.txt` with the case's `override.txt` applied.
fn expected(case: &Case) -> Option<String> {
    let text = std::fs::read_to_string(case.dir.join("expected.txt")).ok()?;
    let Ok(over) = std::fs::read_to_string(case.dir.join("override.txt")) else {
        return Some(text);
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut insert_at = None;
    for l in over.lines() {
        if let Some(old) = l.strip_prefix("- ") {
            let at = lines
                .iter()
                .position(|x| x == old)
                .unwrap_or_else(|| panic!("{}: override.txt: stale line {old:?}", case.name));
            lines.remove(at);
            insert_at = Some(at);
        } else if let Some(new) = l.strip_prefix("+ ") {
            let at = insert_at.unwrap_or(lines.len());
            lines.insert(at, new.to_string());
            insert_at = Some(at + 1);
        } else {
            insert_at = None;
        }
    }
    Some(lines.join("\n") + "\n")
}

/// A copy of the case's context with `setup.sh` applied.
fn prepare_context(case: &Case, scratch: &Path) -> PathBuf {
    let ctx = scratch.join(&case.name);
    let _ = std::fs::remove_dir_all(&ctx);
    let out = Command::new("cp")
        .arg("-a")
        .arg(case.dir.join("context"))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if case.dir.join("setup.sh").is_file() {
        // -e: a setup step that fails (a directory git did not keep, say)
        // fails the case instead of building a different context.
        let out = Command::new("sh")
            .arg("-e")
            .arg(case.dir.join("setup.sh"))
            .current_dir(&ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: setup.sh: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ctx
}

/// The base URL of a small HTTP server over `testdata/differential/` (for
/// `ADD http://…` cases), started once: `http://127.0.0.1:PORT`. Case
/// `args` say `{HTTP}` for it, and listings show it as `{HTTP}`, so the
/// port (and the address docker's daemon fetches from) is not recorded.
fn http_base() -> &'static str {
    static BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        use std::io::{BufRead, BufReader, Write};
        let root = repo_root().join("testdata/differential");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Headers up to the empty line.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
                let file = root.join(path.trim_start_matches('/'));
                let ok = !path.contains("..") && file.is_file();
                let body = if ok { std::fs::read(&file).unwrap() } else { Vec::new() };
                let head = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                    if ok { "200 OK" } else { "404 Not Found" },
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if method != "HEAD" {
                    let _ = stream.write_all(&body);
                }
            }
        });
        base
    })
}

/// The case's `args` with `{HTTP}` replaced by [`http_base`].
fn case_args(case: &Case) -> Vec<String> {
    case.args
        .iter()
        .map(|a| a.replace("{HTTP}", http_base()))
        .collect()
}

/// The case's `base-context/`, built first (by the same builder) as
/// [`base_tag`], for a Dockerfile whose FROM names an image built here:
/// inheritance through the store (config fields re-read from the blob).
fn base_context(case: &Case) -> Option<PathBuf> {
    let dir = case.dir.join("base-context");
    dir.is_dir().then_some(dir)
}

/// `differential-NN-name-base:latest`.
fn base_tag(case: &Case) -> String {
    format!("differential-{}-base:latest", case.name)
}

/// Builds with rbuild; returns the listing (or `build failed`) and the
/// build's output for messages.
fn rbuild_listing(r: &Rbuild, case: &Case, ctx: &Path, base: &Base) -> (String, String) {
    if let Some(base_ctx) = base_context(case) {
        r.ok(&["build", "-q", "-t", &base_tag(case), s(&base_ctx)]);
    }
    let tag = format!("differential-{}:latest", case.name);
    let mut c = r.command(&["build", "--progress", "plain", "-t", &tag]);
    c.args(case_args(case)).arg(ctx).current_dir(&case.dir);
    let b = run_command(c, None);
    let log = format!("{}{}", b.stdout, b.stderr);
    if b.code != 0 {
        let still = r.run(&["inspect", &tag]);
        assert_ne!(still.code, 0, "{}: a failed build tagged {tag}", case.name);
        return ("build failed\n".to_string(), log);
    }
    let tar = r.path(&format!("{}.tar", case.name));
    r.ok(&["save", &tag, "-o", s(&tar)]);
    let inspect: Value = serde_json::from_str(&r.ok(&["inspect", &tag])).unwrap();
    let l = listing(&tar, &inspect, base).replace(http_base(), "{HTTP}");
    let _ = std::fs::remove_file(&tar);
    (l, log)
}

fn docker(args: &[&str]) -> support::Run {
    let mut c = Command::new(DOCKER);
    c.args(args);
    run_command(c, None)
}

/// Builds with docker's BuildKit; the same listing.
fn docker_listing(case: &Case, ctx: &Path, scratch: &Path, base: &Base) -> (String, String) {
    if let Some(base_ctx) = base_context(case) {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "-t", &base_tag(case)])
            .arg(&base_ctx);
        let b = run_command(c, None);
        assert_eq!(
            b.code, 0,
            "{}: docker build of base-context: {}",
            case.name, b.stderr
        );
    }
    let tag = format!("differential-{}:latest", case.name);
    let _ = docker(&["rmi", "-f", &tag]);
    let mut c = Command::new(DOCKER);
    c.env("DOCKER_BUILDKIT", "1")
        .args(["build", "--progress", "plain", "-t", &tag])
        .args(case_args(case))
        .arg(ctx)
        .current_dir(&case.dir);
    let b = run_command(c, None);
    let log = format!("{}{}", b.stdout, b.stderr);
    if b.code != 0 {
        let still = docker(&["image", "inspect", &tag]);
        assert_ne!(still.code, 0, "{}: docker tagged a failed build", case.name);
        return ("build failed\n".to_string(), log);
    }
    let tar = scratch.join(format!("{}.docker.tar", case.name));
    let o = docker(&["save", "-o", s(&tar), &tag]);
    assert_eq!(o.code, 0, "docker save: {}", o.stderr);
    let o = docker(&["image", "inspect", &tag]);
    assert_eq!(o.code, 0, "docker inspect: {}", o.stderr);
    let inspect: Value = serde_json::from_str(&o.stdout).unwrap();
    let l = listing(&tar, &inspect, base).replace(http_base(), "{HTTP}");
    let _ = std::fs::remove_file(&tar);
    (l, log)
}

/// A line diff for messages: `-` expected, `+` got.
fn diff(expected: &str, got: &str) -> String {
    let e: BTreeSet<&str> = expected.lines().collect();
    let g: BTreeSet<&str> = got.lines().collect();
    let mut out = String::new();
    for l in expected.lines().filter(|l| !g.contains(l)) {
        out += &format!("  - {l}\n");
    }
    for l in got.lines().filter(|l| !e.contains(l)) {
        out += &format!("  + {l}\n");
    }
    if out.is_empty() && expected != got {
        out = "  (same lines, different order)\n".to_string();
    }
    out
}

#[test]
#[allow(clippy::print_stderr)]
fn differential_against_buildkit() {
    const TEST: &str = "differential::differential_against_buildkit";
    if !nix::unistd::geteuid().is_root() {
        support::skipped(TEST, "needs root (RUN steps run in the sandbox)");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        support::skipped(TEST, "needs /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let live = std::env::var("RBUILD_DIFFERENTIAL").as_deref() == Ok("docker");
    let bless = std::env::var_os("RBUILD_DIFFERENTIAL_BLESS").is_some();
    let filter = std::env::var("RBUILD_DIFFERENTIAL_CASES").unwrap_or_default();

    let r = Rbuild::new();
    r.busybox();
    let scratch = r.path("contexts");
    std::fs::create_dir_all(&scratch).unwrap();
    let base_tar = r.path("base.tar");
    r.ok(&["save", "busybox:latest", "-o", s(&base_tar)]);
    let base_archive = read_archive(&base_tar);
    let base = Base {
        fs: merge(&base_archive.layers),
        diff_id: first_diff_id(&base_archive.config),
        history: base_archive.config["history"]
            .as_array()
            .map_or(0, Vec::len),
    };
    if live {
        // The same base image, byte for byte, in docker.
        let o = docker(&["load", "-i", s(&base_tar)]);
        assert_eq!(o.code, 0, "docker load: {}{}", o.stdout, o.stderr);
    }

    let mut total = 0;
    let mut equal = 0;
    let mut known = Vec::new();
    let mut failures = Vec::new();
    let mut docker_drift = Vec::new();
    for case in cases() {
        if !filter.is_empty() && !filter.split(',').any(|f| case.name.contains(f)) {
            continue;
        }
        total += 1;
        let ctx = prepare_context(&case, &scratch);
        let mut want = expected(&case);
        if live && !case.newer {
            let (got, log) = docker_listing(&case, &ctx, &scratch, &base);
            let recorded = std::fs::read_to_string(case.dir.join("expected.txt")).ok();
            if recorded.as_deref() != Some(got.as_str()) {
                if bless {
                    std::fs::write(case.dir.join("expected.txt"), &got).unwrap();
                    eprintln!("blessed {}", case.name);
                    want = expected(&case);
                } else {
                    docker_drift.push(format!(
                        "{}: docker's result differs from expected.txt:\n{}{}",
                        case.name,
                        diff(recorded.as_deref().unwrap_or(""), &got),
                        if got == "build failed\n" {
                            log
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
        let Some(want) = want else {
            failures.push(format!(
                "{}: no expected.txt (run scripts/differential --bless)",
                case.name
            ));
            continue;
        };
        let (got, log) = rbuild_listing(&r, &case, &ctx, &base);
        match (&case.divergence, got == want) {
            (None, true) => equal += 1,
            (None, false) => failures.push(format!(
                "{}: rbuild differs from BuildKit (- BuildKit, + rbuild):\n{}{}",
                case.name,
                diff(&want, &got),
                if got == "build failed\n" || want == "build failed\n" {
                    log
                } else {
                    String::new()
                }
            )),
            (Some(why), false) => known.push(format!(
                "{}: known divergence: {}\n{}",
                case.name,
                why.trim(),
                diff(&want, &got)
            )),
            (Some(_), true) => failures.push(format!(
                "{}: equal to BuildKit now: remove its `divergence` file",
                case.name
            )),
        }
    }
    for k in &known {
        eprintln!("{k}");
    }
    eprintln!(
        "differential: {equal} of {total} cases equal to BuildKit, {} known divergences, {} failing{}",
        known.len(),
        failures.len(),
        if live {
            format!(
                ", docker drifted from the golden files in {}",
                docker_drift.len()
            )
        } else {
            String::new()
        }
    );
    let mut problems = failures;
    problems.extend(docker_drift);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
