//! BuildKit's Build Checks: same names, same messages (the `Format`
//! strings of `frontend/dockerfile/linter/ruleset.go`), same locations
//! (the instruction; the previous one for MultipleInstructionsDisallowed;
//! the last line for NoEmptyContinuation), same conditions as
//! `dockerfile2llb` and `instructions/parse.go` evaluate them.

use std::collections::BTreeSet;

use rbuild_parser::shell::Lex;
use rbuild_parser::{InstructionKind, ShellOrExec};

use crate::ContextView;
use crate::Sink;
use crate::model::{File, Item, parent_stage, words};
use crate::rule::*;
use crate::suggest::search;

/// Variables rbuild assumes a base image from a registry sets, since the
/// check reads no image: `PATH` (every image) and what the official
/// language images put in their config. BuildKit knows the real list.
pub(crate) const IMAGE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "HOSTNAME",
    "TERM",
    "DEBIAN_FRONTEND",
    "JAVA_HOME",
    "JAVA_VERSION",
    "JDK_VERSION",
    "MAVEN_HOME",
    "MAVEN_CONFIG",
    "GRADLE_HOME",
    "GRADLE_VERSION",
    "GOPATH",
    "GOLANG_VERSION",
    "GOTOOLCHAIN",
    "NODE_VERSION",
    "YARN_VERSION",
    "NPM_CONFIG_PREFIX",
    "PYTHON_VERSION",
    "PYTHON_PIP_VERSION",
    "PYTHON_SHA256",
    "GPG_KEY",
    "PIP_NO_CACHE_DIR",
    "RUBY_VERSION",
    "RUBY_MAJOR",
    "GEM_HOME",
    "BUNDLE_APP_CONFIG",
    "BUNDLE_SILENCE_ROOT_WARNING",
    "PHP_VERSION",
    "PHP_INI_DIR",
    "PHPIZE_DEPS",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUST_VERSION",
    "DOTNET_VERSION",
    "ASPNETCORE_URLS",
    "ASPNET_VERSION",
    "DOTNET_RUNNING_IN_CONTAINER",
    "NGINX_VERSION",
    "NJS_VERSION",
    "PKG_RELEASE",
    "HTTPD_PREFIX",
    "HTTPD_VERSION",
    "CATALINA_HOME",
    "TOMCAT_VERSION",
    "PG_MAJOR",
    "PG_VERSION",
    "PGDATA",
    "MYSQL_MAJOR",
    "MYSQL_VERSION",
    "REDIS_VERSION",
    "ELIXIR_VERSION",
    "OTP_VERSION",
    "ERLANG_VERSION",
    "DENO_VERSION",
    "BUN_INSTALL",
    "CONDA_DIR",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "TZ",
    "USER",
    "UID",
    "GID",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_VERSION",
    "CUDA_HOME",
    "LIBRARY_PATH",
    "PKG_CONFIG_PATH",
    "SHELL",
    "ANDROID_HOME",
    "ANDROID_SDK_ROOT",
    "FLUTTER_HOME",
    "SWIFT_VERSION",
    "HADOOP_HOME",
    "SPARK_HOME",
    "JRE_HOME",
    "SDKMAN_DIR",
    "NVM_DIR",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "CLASSPATH",
    "NODE_PATH",
    "NODE_ENV",
    "MANPATH",
    "PERL5LIB",
    "CPATH",
];

/// Args BuildKit defines for FROM lines without an ARG.
const PLATFORM_ARGS: &[(&str, &str)] = &[
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
];

/// BuildKit's `nonEnvArgs`: never reported as undefined.
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// The state BuildKit keeps per stage while dispatching.
#[derive(Clone, Default)]
struct StageState {
    env: Vec<(String, String)>,
    /// ARGs declared in the stage (BuildKit's `d.buildArgs`).
    args: BTreeSet<String>,
    /// The base is an image from a registry: its env is unknown here.
    image_base: bool,
    workdir_set: bool,
    shell_set: bool,
    cmd: Option<rbuild_parser::Span>,
    entrypoint: Option<rbuild_parser::Span>,
    healthcheck: Option<rbuild_parser::Span>,
}

pub(crate) fn run(
    file: &File<'_>,
    sink: &mut Sink<'_>,
    ctx: Option<&dyn ContextView>,
    images: Option<&dyn crate::BaseImages>,
    targets: &[String],
) {
    let lex = Lex::new(file.ast.directives.escape_token);
    for w in &file.ast.warnings {
        if w.url
            .as_deref()
            .is_some_and(|u| u.contains("no-empty-continuation"))
        {
            let mut span = w.span;
            span.start_line = span.end_line;
            sink.report(
                &NO_EMPTY_CONTINUATION,
                None,
                span,
                "Empty continuation line".to_string(),
            );
        }
    }
    casing(file, sink);

    // Global ARGs: their values as FROM sees them, and every declared name.
    let mut global_env: Vec<(String, String)> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut global_keys: BTreeSet<String> =
        PLATFORM_ARGS.iter().map(|(k, _)| k.to_string()).collect();
    let mut stage_names: BTreeSet<String> = BTreeSet::new();
    let mut states: Vec<StageState> = Vec::new();
    let mut cur: Option<StageState> = None;

    for (i, item) in file.items.iter().enumerate() {
        let span = item.node.span;
        if let Some(g) = item.global_arg {
            let names: Vec<&str> = g.args.iter().map(|a| a.name.as_str()).collect();
            definition_description(sink, i, item, "ARG", &names);
            for a in &g.args {
                global_keys.insert(a.name.clone());
                if let Some(d) = &a.default {
                    if let Ok(e) = lex.process_word(d, &global_env) {
                        global_env.push((a.name.clone(), e.value));
                    }
                }
            }
            continue;
        }
        let Some(inst) = item.inst else { continue };
        let Some(stage_idx) = item.stage else {
            continue;
        };
        if let InstructionKind::From {
            image,
            platform,
            name,
        } = &inst.kind
        {
            if let Some(st) = cur.take() {
                states.push(st);
            }
            from_checks(
                sink,
                i,
                item,
                image,
                platform.as_deref(),
                name.as_deref(),
                &lex,
                &global_env,
                &global_keys,
                &mut stage_names,
            );
            let stages = &file.df.stages;
            let st = match parent_stage(stages, stage_idx) {
                Some(p) => {
                    let mut s = states.get(p).cloned().unwrap_or_default();
                    s.args.clear();
                    s.cmd = None;
                    s.entrypoint = None;
                    s.healthcheck = None;
                    s
                }
                None => {
                    if let Some(imgs) = images
                        && !image.eq_ignore_ascii_case("scratch")
                    {
                        base_image_platform(
                            sink,
                            i,
                            item.node.span,
                            (image, platform.as_deref()),
                            &lex,
                            &global_env,
                            imgs,
                            targets,
                        );
                    }
                    let mut st = StageState {
                        image_base: !image.eq_ignore_ascii_case("scratch"),
                        ..StageState::default()
                    };
                    // The base image's own Env, when the caller has it:
                    // then nothing is assumed.
                    let known = images
                        .zip(lex.process_word(image, &global_env).ok())
                        .and_then(|(imgs, e)| imgs.env(&e.value));
                    match known {
                        Some(env) => {
                            st.image_base = false;
                            for kv in env {
                                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                                st.env.push((k.to_string(), v.to_string()));
                            }
                        }
                        None if st.image_base => st.env.push((
                            "PATH".into(),
                            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                        )),
                        None => {}
                    }
                    st
                }
            };
            cur = Some(st);
            continue;
        }
        let Some(st) = cur.as_mut() else { continue };
        let kw = item.keyword;
        let mut undefined: BTreeSet<String> = BTreeSet::new();
        // Undefined in an ARG's default: judged against the args declared
        // before that ARG, as BuildKit does (`ARG A=$A` uses an undefined A).
        let mut undefined_in_arg: BTreeSet<String> = BTreeSet::new();
        let mut expand = |word: &str, st: &StageState| -> Option<String> {
            let e = lex.process_word(word, &st.env).ok()?;
            undefined.extend(e.unmatched);
            Some(e.value)
        };
        match &inst.kind {
            InstructionKind::Maintainer { .. } => {
                sink.report(
                    &MAINTAINER_DEPRECATED,
                    Some(i),
                    span,
                    "Maintainer instruction is deprecated in favor of using label".into(),
                );
            }
            InstructionKind::Env { pairs } | InstructionKind::Label { pairs } => {
                let is_env = matches!(inst.kind, InstructionKind::Env { .. });
                let mut added = Vec::new();
                for p in pairs {
                    if p.legacy {
                        sink.report(&LEGACY_KEY_VALUE_FORMAT, Some(i), span, format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"));
                    }
                    let key = expand(&p.key, st).unwrap_or_else(|| p.key.clone());
                    let value = expand(&p.value, st).unwrap_or_default();
                    if is_env {
                        secret_key(sink, i, span, "ENV", &key);
                        added.push((key, value));
                    }
                }
                st.env.extend(added);
            }
            InstructionKind::Arg { args } => {
                let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
                definition_description(sink, i, item, "ARG", &names);
                for a in args {
                    secret_key(sink, i, span, "ARG", &a.name);
                    let value = match &a.default {
                        Some(d) => lex.process_word(d, &st.env).ok().map(|e| {
                            undefined_in_arg
                                .extend(e.unmatched.into_iter().filter(|v| !st.args.contains(v)));
                            e.value
                        }),
                        None => global_env
                            .iter()
                            .rev()
                            .find(|(k, _)| *k == a.name)
                            .map(|(_, v)| v.clone()),
                    };
                    st.args.insert(a.name.clone());
                    if let Some(v) = value {
                        st.env.push((a.name.clone(), v));
                    }
                }
            }
            InstructionKind::Cmd { command } | InstructionKind::Entrypoint { command } => {
                let is_cmd = matches!(inst.kind, InstructionKind::Cmd { .. });
                let slot = if is_cmd {
                    &mut st.cmd
                } else {
                    &mut st.entrypoint
                };
                if let Some(prev) = slot.replace(span) {
                    sink.report(&MULTIPLE_INSTRUCTIONS_DISALLOWED, Some(i), prev, format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"));
                }
                if matches!(command, ShellOrExec::Shell(_)) && !st.shell_set {
                    sink.report(&JSON_ARGS_RECOMMENDED, Some(i), span, format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals"));
                }
            }
            InstructionKind::Healthcheck { .. } => {
                if let Some(prev) = st.healthcheck.replace(span) {
                    sink.report(&MULTIPLE_INSTRUCTIONS_DISALLOWED, Some(i), prev, format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"));
                }
            }
            InstructionKind::Shell { .. } => st.shell_set = true,
            InstructionKind::Workdir { path } => {
                let p = expand(path, st).unwrap_or_else(|| path.clone());
                if !st.workdir_set && !p.starts_with('/') {
                    sink.report(&WORKDIR_RELATIVE_PATH, Some(i), span, format!("Relative workdir {:?} can have unexpected results if the base image changes", p));
                }
                st.workdir_set = true;
            }
            InstructionKind::Copy {
                sources,
                dest,
                from,
                chown,
                chmod,
                ..
            } => {
                let mut expanded = Vec::new();
                for s in sources {
                    expanded.push(expand(s, st).unwrap_or_else(|| s.clone()));
                }
                for w in [Some(dest), chown.as_ref(), chmod.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    expand(w, st);
                }
                if from.is_none() {
                    ignored_sources(sink, i, span, "Copy", &expanded, ctx);
                }
            }
            InstructionKind::Add {
                sources,
                dest,
                chown,
                chmod,
                checksum,
                ..
            } => {
                let mut expanded = Vec::new();
                for s in sources {
                    expanded.push(expand(s, st).unwrap_or_else(|| s.clone()));
                }
                for w in [
                    Some(dest),
                    chown.as_ref(),
                    chmod.as_ref(),
                    checksum.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    expand(w, st);
                }
                let local: Vec<String> = expanded
                    .into_iter()
                    .filter(|s| !crate::cache::is_remote(s))
                    .collect();
                ignored_sources(sink, i, span, "Add", &local, ctx);
            }
            InstructionKind::Expose { ports } => {
                for p in ports {
                    let Ok(ws) = lex.process_words(p, &st.env) else {
                        continue;
                    };
                    // BuildKit expands EXPOSE without reporting
                    // undefined variables (dispatchExpose).
                    for raw in ws.words {
                        expose_checks(sink, i, span, &raw);
                    }
                }
            }
            InstructionKind::Volume { paths } => {
                for p in paths {
                    expand(p, st);
                }
            }
            InstructionKind::User { user: w } | InstructionKind::Stopsignal { signal: w } => {
                expand(w, st);
            }
            _ => {}
        }
        let undefined = undefined
            .into_iter()
            .filter(|v| !st.args.contains(v))
            .chain(undefined_in_arg)
            .collect::<BTreeSet<String>>();
        for var in undefined {
            if NON_ENV_ARGS.contains(&var.as_str()) {
                continue;
            }
            if st.image_base && IMAGE_ENV.contains(&var.as_str()) {
                continue;
            }
            let suggestion = search(&var, st.env.iter().map(|(k, _)| k.as_str()), true);
            let mut msg = format!("Usage of undefined variable '${var}'");
            if let Some(s) = suggestion {
                msg.push_str(&format!(" (did you mean ${s}?)"));
            }
            sink.report(&UNDEFINED_VAR, Some(i), span, msg);
        }
    }
}

/// StageNameCasing, FromAsCasing, description, stage name and base checks
/// for one FROM.
#[allow(clippy::too_many_arguments)]
fn from_checks(
    sink: &mut Sink<'_>,
    i: usize,
    item: &Item<'_>,
    image: &str,
    platform: Option<&str>,
    name: Option<&str>,
    lex: &Lex,
    global_env: &[(String, String)],
    global_keys: &BTreeSet<String>,
    stage_names: &mut BTreeSet<String>,
) {
    let span = item.node.span;
    let ws = words(item.node);
    if ws.len() == 3 {
        let written = ws[2].value.as_str();
        if written != written.to_lowercase() {
            sink.report(
                &STAGE_NAME_CASING,
                Some(i),
                span,
                format!("Stage name '{written}' should be lowercase"),
            );
        }
        let from = item.keyword;
        let as_kw = ws[1].value.as_str();
        let from_lower = from == from.to_lowercase();
        let from_upper = from == from.to_uppercase();
        let mismatch = if from_lower {
            as_kw != as_kw.to_lowercase()
        } else if from_upper {
            as_kw != as_kw.to_uppercase()
        } else {
            false
        };
        if mismatch {
            sink.report(
                &FROM_AS_CASING,
                Some(i),
                span,
                format!("'{as_kw}' and '{from}' keywords' casing do not match"),
            );
        }
    }
    if let Some(n) = name {
        definition_description(sink, i, item, "FROM", &[n]);
        if n == "context" || n == "scratch" {
            sink.report(
                &RESERVED_STAGE_NAME,
                Some(i),
                span,
                format!("Stage name should not use the same name as reserved stage {n:?}"),
            );
        }
        if !stage_names.insert(n.to_string()) {
            sink.report(
                &DUPLICATE_STAGE_NAME,
                Some(i),
                span,
                format!("Duplicate stage name {n:?}, stage names should be unique"),
            );
        }
    }
    let report_unused = |sink: &mut Sink<'_>, unmatched: &BTreeSet<String>| {
        for arg in unmatched {
            if global_keys.contains(arg) {
                continue;
            }
            let suggestion = search(arg, global_keys.iter().map(String::as_str), true);
            let mut msg = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = suggestion {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            sink.report(&UNDEFINED_ARG_IN_FROM, Some(i), span, msg);
        }
    };
    if let Ok(e) = lex.process_word(image, global_env) {
        report_unused(sink, &e.unmatched);
    }
    if let Some(p) = platform {
        if let Ok(e) = lex.process_word(p, global_env) {
            report_unused(sink, &e.unmatched);
            if e.matched.len() == 1
                && e.unmatched.is_empty()
                && e.matched.contains("TARGETPLATFORM")
                && e.value == "linux/amd64"
            {
                sink.report(&REDUNDANT_TARGET_PLATFORM, Some(i), span, format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"));
            }
            if e.matched.is_empty() && e.unmatched.is_empty() {
                if let Some((os, arch)) = parse_platform(&e.value) {
                    let stage = name.unwrap_or("");
                    if !stage.contains(os) && !stage.contains(arch.as_str()) {
                        sink.report(
                            &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                            Some(i),
                            span,
                            format!(
                                "FROM --platform flag should not use constant value {:?}",
                                e.value
                            ),
                        );
                    }
                }
            }
        }
    }
    // InvalidDefaultArgInFrom: the base with the global ARGs' defaults only.
    let defaults: Vec<(String, String)> = global_env
        .iter()
        .filter(|(k, _)| !PLATFORM_ARGS.iter().any(|(p, _)| p == k))
        .cloned()
        .chain(
            PLATFORM_ARGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect();
    if let Ok(e) = lex.process_word(image, &defaults) {
        if !valid_reference(&e.value) {
            sink.report(
                &INVALID_DEFAULT_ARG_IN_FROM,
                Some(i),
                span,
                format!(
                    "Default value for ARG {image} results in empty or invalid base image name"
                ),
            );
        }
    }
}

/// InvalidDefinitionDescription (experimental): the last comment line
/// directly above must start with one of the names.
fn definition_description(
    sink: &mut Sink<'_>,
    i: usize,
    item: &Item<'_>,
    instruction: &str,
    names: &[&str],
) {
    let (Some(last), Some(first)) = (item.comments.last(), names.first()) else {
        return;
    };
    let word = last.split(' ').next().unwrap_or("");
    if names.contains(&word) {
        return;
    }
    let example = if names.len() > 1 { "<arg_key>" } else { first };
    sink.report(
        &INVALID_DEFINITION_DESCRIPTION,
        Some(i),
        item.node.span,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}

/// SecretsUsedInArgOrEnv: a `_`-separated word of the name is a secret
/// word and none is an allowed one (BuildKit's two regexps).
pub(crate) fn looks_secret(key: &str) -> bool {
    const DENY: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: &[&str] = &["public", "file", "version"];
    let parts: Vec<String> = key.split('_').map(str::to_ascii_lowercase).collect();
    parts.iter().any(|p| DENY.contains(&p.as_str()))
        && !parts.iter().any(|p| ALLOW.contains(&p.as_str()))
}

fn secret_key(
    sink: &mut Sink<'_>,
    i: usize,
    span: rbuild_parser::Span,
    instruction: &str,
    key: &str,
) {
    if looks_secret(key) {
        sink.report(
            &SECRETS_USED_IN_ARG_OR_ENV,
            Some(i),
            span,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})"
            ),
        );
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat for one port spec.
fn expose_checks(sink: &mut Sink<'_>, i: usize, span: rbuild_parser::Span, raw: &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.len() {
        1 => ("", "", parts[0]),
        2 => ("", parts[0], parts[1]),
        n => (
            &raw[..raw.len() - parts[n - 1].len() - parts[n - 2].len() - 2],
            parts[n - 2],
            parts[n - 1],
        ),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty()
        || !matches!(
            proto.to_ascii_lowercase().as_str(),
            "" | "tcp" | "udp" | "sctp"
        )
    {
        return; // BuildKit fails the build on this before the checks run
    }
    if proto != proto.to_lowercase() {
        sink.report(
            &EXPOSE_PROTO_CASING,
            Some(i),
            span,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
        );
    }
    if !ip.is_empty() || !host.is_empty() {
        sink.report(&EXPOSE_INVALID_FORMAT, Some(i), span, format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"));
    }
}

/// CopyIgnoredFile: each source excluded by the ignore file, when the file
/// has no `!` exceptions (BuildKit does not guess then).
fn ignored_sources(
    sink: &mut Sink<'_>,
    i: usize,
    span: rbuild_parser::Span,
    cmd: &str,
    sources: &[String],
    ctx: Option<&dyn ContextView>,
) {
    let Some(ctx) = ctx else { return };
    if ctx.ignore_file().is_none() {
        return;
    }
    let patterns = ctx.ignore_patterns();
    if patterns.iter().any(|p| p.trim_start().starts_with('!')) {
        return;
    }
    for src in sources {
        let cleaned = crate::cache::clean_path(src);
        let root = cleaned == "." || cleaned == "/";
        let root_ignored = patterns
            .iter()
            .any(|p| matches!(p.trim(), "*" | "**" | "**/*"));
        if (root && !root_ignored) || (!root && !ctx.is_ignored(cleaned.trim_start_matches('/'))) {
            continue;
        }
        sink.report(
            &COPY_IGNORED_FILE,
            Some(i),
            span,
            format!("Attempting to {cmd} file {cleaned:?} that is excluded by .dockerignore"),
        );
    }
}

/// The host's platform in OCI names (`BUILDPLATFORM`).
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm/v7",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("linux/{arch}")
}

/// The automatic platform args for target platform `target`.
fn platform_env(target: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (prefix, p) in [("BUILD", host_platform()), ("TARGET", target.to_string())] {
        let parts: Vec<&str> = p.split('/').collect();
        env.push((format!("{prefix}PLATFORM"), p.clone()));
        env.push((
            format!("{prefix}OS"),
            parts.first().unwrap_or(&"").to_string(),
        ));
        env.push((
            format!("{prefix}ARCH"),
            parts.get(1).unwrap_or(&"").to_string(),
        ));
        env.push((
            format!("{prefix}VARIANT"),
            parts.get(2).unwrap_or(&"").to_string(),
        ));
    }
    env
}

/// InvalidBaseImagePlatform: the base image a FROM resolves to, for each
/// platform built, has another OS or architecture than the stage's
/// (`--platform`, else the target platform). Reported once per FROM.
#[allow(clippy::too_many_arguments)]
fn base_image_platform(
    sink: &mut Sink<'_>,
    i: usize,
    span: rbuild_parser::Span,
    (image, flag): (&str, Option<&str>),
    lex: &Lex,
    global_env: &[(String, String)],
    images: &dyn crate::BaseImages,
    targets: &[String],
) {
    let host = [host_platform()];
    let targets = if targets.is_empty() {
        &host[..]
    } else {
        targets
    };
    for target in targets {
        let mut env = platform_env(target);
        env.extend(
            global_env
                .iter()
                .filter(|(k, _)| !PLATFORM_ARGS.iter().any(|(p, _)| p == k))
                .cloned(),
        );
        let Ok(name) = lex.process_word(image, &env) else {
            return;
        };
        let expected = match flag {
            None => target.clone(),
            Some(f) => match lex.process_word(f, &env) {
                Ok(e) => e.value.to_ascii_lowercase(),
                Err(_) => return,
            },
        };
        let Some(actual) = images.platform(&name.value, &expected) else {
            continue;
        };
        let (Some(want), Some(have)) = (parse_platform(&expected), parse_platform(&actual)) else {
            continue;
        };
        if !want.0.eq_ignore_ascii_case(have.0) || want.1 != have.1 {
            sink.report(
                &INVALID_BASE_IMAGE_PLATFORM,
                Some(i),
                span,
                format!(
                    "Base image {} was pulled with platform {actual:?}, expected {expected:?} for current build",
                    name.value
                ),
            );
            return;
        }
    }
}

/// containerd's `platforms.Parse`, reduced to what the check needs: the
/// OS and the normalized architecture, or `None` when it would not parse.
fn parse_platform(s: &str) -> Option<(&str, String)> {
    const OSES: &[&str] = &[
        "linux",
        "windows",
        "darwin",
        "freebsd",
        "netbsd",
        "openbsd",
        "solaris",
        "illumos",
        "aix",
        "android",
        "ios",
        "plan9",
        "js",
        "wasip1",
        "dragonfly",
    ];
    let norm_arch = |a: &str| -> Option<String> {
        Some(match a.to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" | "x86-64" => "amd64".into(),
            "arm64" | "aarch64" => "arm64".into(),
            "arm" | "armhf" | "armel" => "arm".into(),
            "386" | "i386" | "i686" | "x86" => "386".into(),
            a @ ("ppc64le" | "ppc64" | "s390x" | "riscv64" | "mips64le" | "mips64" | "mipsle"
            | "mips" | "loong64" | "wasm") => a.to_string(),
            _ => return None,
        })
    };
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [one] if OSES.contains(&one.to_ascii_lowercase().as_str()) => Some((one, "amd64".into())),
        [one] => norm_arch(one).map(|a| ("linux", a)),
        [os, arch] | [os, arch, _] if OSES.contains(&os.to_ascii_lowercase().as_str()) => {
            norm_arch(arch).map(|a| (*os, a))
        }
        _ => None,
    }
}

/// Whether `s` parses as an image reference (distribution's grammar:
/// optional registry host, lowercase path components, `:tag`, `@digest`).
pub(crate) fn valid_reference(s: &str) -> bool {
    if s.is_empty() || s.len() > 4096 {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return false;
        };
        if alg.is_empty()
            || hex.len() < 32
            || !alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            || !hex
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
        {
            return false;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |p| p + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(p) => (&rest[..last_slash + p], Some(&rest[last_slash + p + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let mut cs = t.chars();
        let ok_first = cs
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_first
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return false;
        }
    }
    if name.is_empty() {
        return false;
    }
    let comps: Vec<&str> = name.split('/').collect();
    let mut start = 0;
    if comps.len() > 1
        && (comps[0].contains('.')
            || comps[0].contains(':')
            || comps[0] == "localhost"
            || comps[0].chars().any(|c| c.is_ascii_uppercase()))
    {
        let (host, port) = comps[0].split_once(':').unwrap_or((comps[0], ""));
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
            || !port.chars().all(|c| c.is_ascii_digit())
        {
            return false;
        }
        start = 1;
    }
    comps[start..].iter().all(|c| path_component(c))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|x| x == '-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// ConsistentInstructionCasing over every instruction inside a stage.
fn casing(file: &File<'_>, sink: &mut Sink<'_>) {
    let in_stage = || {
        file.items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.stage.is_some())
    };
    let (mut lower, mut upper) = (0, 0);
    for (_, it) in in_stage() {
        let k = it.keyword;
        if k == k.to_lowercase() {
            lower += 1;
        } else if k == k.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for (i, it) in in_stage() {
        let k = it.keyword;
        let want = if majority_lower && k != k.to_lowercase() {
            "lowercase"
        } else if !majority_lower && k != k.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        sink.report(
            &CONSISTENT_INSTRUCTION_CASING,
            Some(i),
            it.node.span,
            format!("Command '{k}' should match the case of the command majority ({want})"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "docker.io/library/alpine:3",
            "localhost:5000/a/b:c",
            "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "scratch",
            "my-image__x.y",
        ] {
            assert!(valid_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "alpine:",
            "Alpine",
            "ghcr.io/Org/x",
            ":tag",
            "a//b",
            "a:b:c",
            "-a",
        ] {
            assert!(!valid_reference(bad), "{bad}");
        }
    }

    #[test]
    fn secret_names() {
        for s in [
            "GITHUB_TOKEN",
            "api_key",
            "DB_PASSWORD",
            "AUTH",
            "secret_MESSAGE",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in [
            "TOKEN_FILE",
            "PUBLIC_KEY",
            "KEY_VERSION",
            "TOKENIZER",
            "MONKEY",
        ] {
            assert!(!looks_secret(s), "{s}");
        }
    }

    #[test]
    fn platforms() {
        assert_eq!(
            parse_platform("linux/amd64"),
            Some(("linux", "amd64".into()))
        );
        assert_eq!(
            parse_platform("linux/x86_64"),
            Some(("linux", "amd64".into()))
        );
        assert_eq!(parse_platform("arm64"), Some(("linux", "arm64".into())));
        assert_eq!(parse_platform("bogus/x"), None);
    }
}
