//! rbuild's own rules: what costs cache hits and minutes. Each has a
//! rationale page in `lint/docs/NAME.md` (`rbuild check --explain NAME`).

use rbuild_parser::{Instruction, InstructionKind, MountType};

use crate::model::{File, run_text};
use crate::rule::*;
use crate::shellwords::{commands, program, subcommand};
use crate::{ContextView, Level, Sink};

/// A package manager whose downloads a RUN repeats on every cache miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Apt,
    Pip,
    Npm,
    Cargo,
    Go,
}

impl Tool {
    fn mount(self) -> &'static str {
        match self {
            Tool::Apt => {
                "--mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked"
            }
            Tool::Pip => "--mount=type=cache,target=/root/.cache/pip",
            Tool::Npm => "--mount=type=cache,target=/root/.npm",
            Tool::Cargo => "--mount=type=cache,target=/usr/local/cargo/registry",
            Tool::Go => {
                "--mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build"
            }
        }
    }
}

fn is_pip(p: &str) -> bool {
    p == "pip"
        || p.strip_prefix("pip")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The download-heavy commands in a RUN, as (tool, the command shown).
fn downloads(cmds: &[Vec<String>]) -> Vec<(Tool, String)> {
    let mut out = Vec::new();
    for c in cmds {
        let p = program(c);
        let sub = subcommand(c);
        let mut args = c.clone();
        // `python -m pip install`
        if p.starts_with("python")
            && c.get(1).map(String::as_str) == Some("-m")
            && c.get(2).is_some_and(|m| is_pip(m))
        {
            args = c[2..].to_vec();
        }
        let p2 = program(&args);
        let sub2 = subcommand(&args);
        let tool = match (p, sub) {
            (
                "apt-get" | "apt",
                "install" | "upgrade" | "dist-upgrade" | "full-upgrade" | "build-dep",
            ) => Some(Tool::Apt),
            ("npm", "ci" | "install" | "i")
            | ("yarn", "" | "install")
            | ("pnpm", "install" | "i") => Some(Tool::Npm),
            ("cargo", "build" | "install" | "fetch" | "test") => Some(Tool::Cargo),
            ("go", "build" | "install" | "get" | "test") => Some(Tool::Go),
            ("go", "mod") if c.iter().any(|w| w == "download") => Some(Tool::Go),
            _ if is_pip(p2) && sub2 == "install" => Some(Tool::Pip),
            _ => None,
        };
        if let Some(t) = tool {
            let shown: Vec<&str> = c.iter().take(3).map(String::as_str).collect();
            out.push((t, shown.join(" ")));
        }
    }
    out
}

/// A `go build`/`go test`/`cargo build`/`cargo test` as [`downloads`]
/// shows it: it downloads only dependencies not fetched before.
fn compiles_only(shown: &str) -> bool {
    let mut w = shown.split(' ');
    matches!(
        (w.next(), w.next()),
        (Some("go" | "cargo"), Some("build" | "test"))
    )
}

/// Installs of a project's dependencies from its manifest, with the files
/// to copy first.
fn dependency_install(cmds: &[Vec<String>]) -> Option<(String, String)> {
    for c in cmds {
        let p = program(c);
        let sub = subcommand(c);
        let shown = || c.iter().take(3).cloned().collect::<Vec<_>>().join(" ");
        let global = c.iter().any(|w| w == "-g" || w == "--global");
        let manifest = match (p, sub) {
            ("npm", "ci") => Some("package.json and package-lock.json".to_string()),
            ("npm", "install" | "i") if !global && c.iter().skip(2).all(|w| w.starts_with('-')) => {
                Some("package.json and package-lock.json".into())
            }
            ("yarn", "" | "install") => Some("package.json and yarn.lock".into()),
            ("pnpm", "install" | "i") if !global => Some("package.json and pnpm-lock.yaml".into()),
            ("poetry", "install") => Some("pyproject.toml and poetry.lock".into()),
            ("pipenv", "install" | "sync") => Some("Pipfile and Pipfile.lock".into()),
            ("uv", "sync") => Some("pyproject.toml and uv.lock".into()),
            ("bundle", "install") | ("bundle", "") => Some("Gemfile and Gemfile.lock".into()),
            ("composer", "install") => Some("composer.json and composer.lock".into()),
            ("go", "mod") if c.iter().any(|w| w == "download") => Some("go.mod and go.sum".into()),
            ("cargo", "fetch") => Some("Cargo.toml and Cargo.lock".into()),
            _ => {
                let args: &[String] =
                    if p.starts_with("python") && c.get(1).map(String::as_str) == Some("-m") {
                        &c[2..]
                    } else {
                        c
                    };
                if is_pip(program(args)) && subcommand(args) == "install" {
                    let req = args
                        .windows(2)
                        .find(|w| w[0] == "-r" || w[0] == "--requirement")
                        .map(|w| w[1].clone());
                    let req = req.or_else(|| {
                        args.iter().find_map(|w| {
                            w.strip_prefix("--requirement=")
                                .or_else(|| w.strip_prefix("-r"))
                                .filter(|r| !r.is_empty())
                                .map(str::to_string)
                        })
                    });
                    // `pip install .` / `-e .` installs the project itself,
                    // which needs its sources: only `-r FILE` is a
                    // dependency install that can come first.
                    req
                } else {
                    None
                }
            }
        };
        if let Some(m) = manifest {
            return Some((shown(), m));
        }
    }
    None
}

/// Path cleaning as Go's `filepath.Clean` (used for COPY sources).
pub(crate) fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A source ADD fetches itself: a URL or a git repository.
pub(crate) fn is_remote(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("git@")
        || l.starts_with("git://")
        || l.starts_with("ssh://")
}

fn is_archive_name(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    [
        ".tar",
        ".tar.gz",
        ".tgz",
        ".tar.bz2",
        ".tbz",
        ".tbz2",
        ".tar.xz",
        ".txz",
        ".tar.zst",
        ".tzst",
        ".tar.lz",
        ".tar.lzma",
        ".tlz",
    ]
    .iter()
    .any(|e| l.ends_with(e))
}

fn is_context_root(src: &str) -> bool {
    matches!(clean_path(src).as_str(), "." | "/" | "*")
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component.
fn glob_match(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|k| glob_match(&p[1..], &n[k..])),
        Some('?') => !n.is_empty() && glob_match(&p[1..], &n[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(1).position(|c| *c == ']').map(|x| x + 1) else {
                return false;
            };
            let Some(&c) = n.first() else { return false };
            let class = &p[1..close];
            let (neg, class) = match class.first() {
                Some('^' | '!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if k + 2 < class.len() && class[k + 1] == '-' {
                    hit |= class[k] <= c && c <= class[k + 2];
                    k += 3;
                } else {
                    hit |= class[k] == c;
                    k += 1;
                }
            }
            hit != neg && glob_match(&p[close + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_match(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_match(&p[1..], &n[1..]),
    }
}

/// Whether the wildcard `pattern` (cleaned, relative) matches an entry.
fn glob_exists(ctx: &dyn ContextView, pattern: &str) -> bool {
    let mut dirs = vec![String::new()];
    for comp in pattern.split('/') {
        let mut next = Vec::new();
        for d in &dirs {
            let join = |n: &str| {
                if d.is_empty() {
                    n.to_string()
                } else {
                    format!("{d}/{n}")
                }
            };
            if has_wildcards(comp) {
                let pc: Vec<char> = comp.chars().collect();
                for name in ctx.list_dir(d).unwrap_or_default() {
                    let nc: Vec<char> = name.chars().collect();
                    if glob_match(&pc, &nc) {
                        next.push(join(&name));
                    }
                }
            } else if ctx.exists(&join(comp)) {
                next.push(join(comp));
            }
        }
        if next.is_empty() {
            return false;
        }
        dirs = next;
    }
    true
}

const VOLATILE: &[&str] = &[
    "BUILD_DATE",
    "BUILDDATE",
    "BUILD_TIME",
    "BUILDTIME",
    "BUILD_TIMESTAMP",
    "TIMESTAMP",
    "DATE",
    "BUILD_NUMBER",
    "BUILD_ID",
    "BUILD_REVISION",
    "GIT_COMMIT",
    "GIT_SHA",
    "GIT_HASH",
    "GIT_REF",
    "GIT_REVISION",
    "COMMIT",
    "COMMIT_SHA",
    "COMMIT_HASH",
    "VCS_REF",
    "REVISION",
    "SOURCE_COMMIT",
    "CI_COMMIT_SHA",
    "GITHUB_SHA",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "CI_PIPELINE_ID",
];

fn has_cache_mount(inst: &Instruction) -> bool {
    matches!(&inst.kind, InstructionKind::Run { mounts, .. } if mounts.iter().any(|m| m.kind == MountType::Cache))
}

fn references(text: &str, var: &str) -> bool {
    let mut rest = text;
    while let Some(p) = rest.find('$') {
        rest = &rest[p + 1..];
        let name = rest.strip_prefix('{').unwrap_or(rest);
        if let Some(after) = name.strip_prefix(var) {
            if !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return true;
            }
        }
    }
    false
}

const LARGE_CONTEXT: u64 = 100 << 20;

pub(crate) fn run(file: &File<'_>, sink: &mut Sink<'_>, ctx: Option<&dyn ContextView>) {
    let mut dockerignore_reported = false;
    for (si, _) in file.df.stages.iter().enumerate() {
        let items: Vec<(usize, &Instruction)> = file
            .items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.stage == Some(si))
            .filter_map(|(i, it)| it.inst.map(|inst| (i, inst)))
            .collect();
        let mut whole_copy: Option<(usize, &Instruction)> = None;
        let mut installed_before_copy = false;
        let mut copy_reported = false;
        let mut secret_args: Vec<String> = Vec::new();
        let mut workdirs: Vec<String> = Vec::new();
        // Tools whose dependencies an earlier RUN of the stage fetched into
        // a layer (`go mod download`, `cargo fetch`): a later build of
        // them compiles but downloads nothing.
        let mut prefetched: Vec<Tool> = Vec::new();
        for (pos, &(i, inst)) in items.iter().enumerate() {
            let span = inst.span;
            let kw = file.items[i].keyword;
            // CopyManyToOnePath
            if let InstructionKind::Copy {
                sources,
                dest,
                heredocs,
                ..
            }
            | InstructionKind::Add {
                sources,
                dest,
                heredocs,
                ..
            } = &inst.kind
            {
                let count = sources.len() + heredocs.len();
                let into_dir = dest.ends_with('/')
                    || matches!(dest.as_str(), "." | "")
                    || dest.contains('$')
                    || workdirs.contains(&clean_path(dest));
                if count > 1 && !into_dir {
                    sink.report(&COPY_MANY_TO_ONE_PATH, Some(i), span, format!("{kw} of {count} sources to {dest:?}, which does not end with /: unless {dest} already is a directory, each source is written to that one path and only the last remains; write {dest}/ to copy them into a directory"));
                }
            }
            if let InstructionKind::Workdir { path } = &inst.kind {
                workdirs.push(clean_path(path));
            }
            match &inst.kind {
                InstructionKind::Run { mounts, .. } => {
                    let text = run_text(inst).unwrap_or_default();
                    let cmds = commands(&text);
                    // AptUpdateWithoutInstall
                    let apt = |subs: &[&str]| {
                        cmds.iter().any(|c| {
                            matches!(program(c), "apt-get" | "apt") && subs.contains(&subcommand(c))
                        })
                    };
                    if apt(&["update"])
                        && !apt(&[
                            "install",
                            "upgrade",
                            "dist-upgrade",
                            "full-upgrade",
                            "build-dep",
                        ])
                    {
                        sink.report(&APT_UPDATE_WITHOUT_INSTALL, Some(i), span, "apt-get update without apt-get install in the same RUN: the package lists are cached as their own step and go stale while later installs hit the cache; update and install in one RUN".into());
                    }
                    // MissingCacheMount
                    if !has_cache_mount(inst) {
                        let found: Vec<(Tool, String)> = downloads(&cmds)
                            .into_iter()
                            .filter(|(tool, shown)| {
                                !(prefetched.contains(tool) && compiles_only(shown))
                            })
                            .collect();
                        if let Some((tool, shown)) = found.first() {
                            sink.report(&MISSING_CACHE_MOUNT, Some(i), span, format!("\"{shown}\" downloads again on every cache miss of this step; keep its downloads in a cache mount: RUN {} ...", tool.mount()));
                        }
                    }
                    // Fetched into a cache mount, the dependencies are not
                    // in the layer: a later build without it fetches again.
                    for c in cmds.iter().filter(|_| !has_cache_mount(inst)) {
                        match (program(c), subcommand(c)) {
                            ("go", "mod") if c.iter().any(|w| w == "download") => {
                                prefetched.push(Tool::Go)
                            }
                            ("cargo", "fetch") => prefetched.push(Tool::Cargo),
                            _ => {}
                        }
                    }
                    // CopyAllBeforeInstall
                    if let Some((install, manifest)) = dependency_install(&cmds) {
                        match whole_copy {
                            None => installed_before_copy = true,
                            Some((ci, copy)) if !installed_before_copy && !copy_reported => {
                                copy_reported = true;
                                let ckw = file.items[ci].keyword;
                                sink.report(&COPY_ALL_BEFORE_INSTALL, Some(ci), copy.span, format!("{ckw} of the whole context comes before \"{install}\" (line {}): any source change re-runs the install; copy {manifest} first, install, then copy the rest", span.start_line));
                            }
                            _ => {}
                        }
                    }
                    // SecretAsBuildArg
                    let secret_mounted = |a: &str| {
                        mounts
                            .iter()
                            .any(|m| m.kind == MountType::Secret && m.env.as_deref() == Some(a))
                    };
                    for a in &secret_args {
                        if references(&text, a) && !secret_mounted(a) {
                            sink.report(&SECRET_AS_BUILD_ARG, Some(i), span, format!("RUN uses build arg {a}: its value is kept in the image history and cache keys; pass it with --secret id={a} and RUN --mount=type=secret,id={a},env={a}"));
                        }
                    }
                }
                InstructionKind::Arg { args } => {
                    for a in args {
                        if crate::buildkit::looks_secret(&a.name) {
                            secret_args.push(a.name.clone());
                        }
                        let upper = a.name.to_ascii_uppercase();
                        if VOLATILE.contains(&upper.as_str()) {
                            // The RUNs before its first use (a RUN or an ENV
                            // that reads it) re-run for nothing; from the
                            // first use on they need the value anyway.
                            let after = &items[pos + 1..];
                            let first_use = after.iter().position(|(_, x)| match &x.kind {
                                InstructionKind::Run { .. } => {
                                    references(&run_text(x).unwrap_or_default(), &a.name)
                                }
                                InstructionKind::Env { pairs } => {
                                    pairs.iter().any(|p| references(&p.value, &a.name))
                                }
                                _ => false,
                            });
                            let runs = after[..first_use.unwrap_or(after.len())]
                                .iter()
                                .filter(|(_, x)| matches!(x.kind, InstructionKind::Run { .. }))
                                .count();
                            if runs > 0 {
                                let (steps, fix) = match first_use {
                                    Some(u) => {
                                        let line = after[u].1.span.start_line;
                                        (
                                            if runs == 1 {
                                                format!(
                                                    "the RUN before its first use (line {line}), so it re-runs"
                                                )
                                            } else {
                                                format!(
                                                    "the {runs} RUN instructions before its first use (line {line}), so they re-run"
                                                )
                                            },
                                            format!("declare it right before line {line}"),
                                        )
                                    }
                                    None => (
                                        if runs == 1 {
                                            "the RUN after it, so it re-runs".to_string()
                                        } else {
                                            format!(
                                                "the {runs} RUN instructions after it, so they re-run"
                                            )
                                        },
                                        "declare it after the last RUN".to_string(),
                                    ),
                                };
                                sink.report(&VOLATILE_ARG_INVALIDATES_CACHE, Some(i), span, format!("ARG {} changes on every build and is in the environment of {steps} every time; {fix}", a.name));
                            }
                        }
                    }
                }
                InstructionKind::Copy {
                    sources,
                    from: None,
                    ..
                }
                | InstructionKind::Add { sources, .. } => {
                    let is_add = matches!(inst.kind, InstructionKind::Add { .. });
                    if whole_copy.is_none() && sources.iter().any(|s| is_context_root(s)) {
                        whole_copy = Some((i, inst));
                        if let Some(ctx) = ctx {
                            if !dockerignore_reported && ctx.ignore_file().is_none() {
                                let mut heavy: Vec<&str> =
                                    [".git", "node_modules", "target", ".venv", "venv"]
                                        .into_iter()
                                        .filter(|d| ctx.exists(d))
                                        .collect();
                                // Sizing walks the context (up to 100 MB of
                                // it): only when no heavy directory already
                                // makes the case, so a build of a large
                                // context does not stat it twice.
                                if heavy.is_empty()
                                    && ctx.size_up_to(LARGE_CONTEXT) >= LARGE_CONTEXT
                                {
                                    heavy.push("over 100 MB in all");
                                }
                                if !heavy.is_empty() {
                                    dockerignore_reported = true;
                                    sink.report(&MISSING_DOCKERIGNORE, Some(i), span, format!("{kw} copies the whole context and there is no .dockerignore: the context holds {}, sent on every build and part of this step's cache key; add a .dockerignore", heavy.join(", ")));
                                }
                            }
                        }
                    }
                    if is_add {
                        if let Some(src) = sources
                            .iter()
                            .find(|s| !is_remote(s) && !s.contains('$') && !is_archive_name(s))
                        {
                            sink.report(&ADD_LOCAL_FILE, Some(i), span, format!("ADD of local {src:?}, which is not a tar archive: use COPY (ADD unpacks archives and fetches URLs, COPY only copies)"));
                        }
                    }
                    if let Some(ctx) = ctx {
                        for src in sources.iter().filter(|s| !is_remote(s) && !s.contains('$')) {
                            let cleaned = clean_path(src);
                            let rel = cleaned.trim_start_matches('/').trim_start_matches("./");
                            if rel.is_empty() || rel == "." {
                                continue;
                            }
                            if has_wildcards(rel) {
                                // `COPY package.json yarn.lock* ./`: a
                                // trailing `*` is the idiom for "if present".
                                // `**` (COPY --parents) spans directories:
                                // not guessed at here.
                                let optional = (rel.ends_with('*')
                                    && !has_wildcards(&rel[..rel.len() - 1]))
                                    || rel.contains("**");
                                if !optional && !glob_exists(ctx, rel) {
                                    sink.report_level(&COPY_SOURCE_NOT_FOUND, Some(i), span, format!("{kw} source {src:?} matches no file in the build context"), Level::Warning);
                                }
                            } else if !ctx.exists(rel) {
                                sink.report(&COPY_SOURCE_NOT_FOUND, Some(i), span, format!("{kw} source {src:?} is not in the build context: the build fails here"));
                            } else if ctx.is_ignored(rel) {
                                sink.report(&COPY_SOURCE_NOT_FOUND, Some(i), span, format!("{kw} source {src:?} is excluded by {}: the build fails here", ctx.ignore_file().unwrap_or_default()));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean_path("./a/../b/"), "b");
        assert_eq!(clean_path("."), ".");
        assert_eq!(clean_path("./"), ".");
        assert_eq!(clean_path("/x/./y"), "/x/y");
    }

    #[test]
    fn globs() {
        let m = |p: &str, n: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "a.txd"));
        assert!(m("[a-c]?", "bz"));
        assert!(!m("[^a-c]?", "bz"));
    }

    #[test]
    fn finds_variable_references() {
        assert!(references("echo $TOKEN", "TOKEN"));
        assert!(references("echo ${TOKEN}x", "TOKEN"));
        assert!(!references("echo $TOKENS", "TOKEN"));
    }
}
