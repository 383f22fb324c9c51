//! `rbuild check`: parse a Dockerfile and run the checks of
//! [`rbuild_lint`] (BuildKit's Build Checks and rbuild's cache rules) over
//! it, with the build context seen through [`FsContext`]; also the
//! pieces `rbuild build` uses: the checks before a build
//! ([`before_build`]), `--call=check|targets|outline` ([`call`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use rbuild_context::IgnoreRules;
use rbuild_lint::{CheckError, ContextView, Options, Report, Rule, outline, render};

use super::dockerfile_input::DockerfileInput;

/// The build arg that configures the checks, replacing `# check=`.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// `--format` of `rbuild check` and `--call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// BuildKit's text: rule, message, the source lines
    Text,
    /// a JSON array of findings (objects for targets/outline)
    Json,
    /// SARIF 2.1.0 (GitHub code scanning)
    Sarif,
}

/// Check a Dockerfile: parse errors (exit 1), BuildKit's Build Checks and
/// rbuild's cache rules (exit 1 on an error-level finding or with
/// `# check=error=true`, else 0)
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Output format
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub format: Format,

    /// Print why RULE exists and what it wants, then exit (`all` lists
    /// every rule)
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,

    /// Set a build-time variable (only BUILDKIT_DOCKERFILE_CHECK is read)
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,

    /// Check only the stages building STAGE needs (default: every stage)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// The build context directory
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

/// The build context on disk, with its ignore file, as the checks see it.
pub struct FsContext {
    root: PathBuf,
    ignore: IgnoreRules,
    patterns: Vec<String>,
}

impl FsContext {
    /// Opens `root` with the ignore file a build of `dockerfile` would use.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> anyhow::Result<FsContext> {
        let ignore = IgnoreRules::load(root, dockerfile)?;
        let patterns = match ignore.source() {
            // Lines may hold names that are not UTF-8: kept as the build
            // context keeps them (rbuild_oci::path_text).
            Some(p) => rbuild_oci::path_text::from_bytes(
                &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
            )
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
            None => Vec::new(),
        };
        Ok(FsContext {
            root: root.to_path_buf(),
            ignore,
            patterns,
        })
    }
}

impl ContextView for FsContext {
    fn list_dir(&self, dir: &str) -> Option<Vec<String>> {
        let rd = std::fs::read_dir(self.root.join(rbuild_oci::path_text::to_os(dir))).ok()?;
        Some(
            rd.filter_map(|e| e.ok())
                .map(|e| rbuild_oci::path_text::from_os(&e.file_name()).into_owned())
                .collect(),
        )
    }

    fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.root.join(rbuild_oci::path_text::to_os(path))).is_ok()
    }

    fn ignore_file(&self) -> Option<String> {
        self.ignore
            .source()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    fn ignore_patterns(&self) -> Vec<String> {
        self.patterns.clone()
    }

    fn is_ignored(&self, path: &str) -> bool {
        self.ignore.is_excluded(path)
    }

    fn size_up_to(&self, limit: u64) -> u64 {
        let mut total = 0u64;
        let mut dirs = vec![self.root.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                // The entry's own type: a symlink (to a parent, say) is
                // neither walked into nor counted, as the context sends it.
                let Ok(kind) = e.file_type() else { continue };
                if kind.is_dir() {
                    dirs.push(e.path());
                } else if kind.is_file() {
                    let Ok(meta) = e.metadata() else { continue };
                    total += meta.len();
                    if total >= limit {
                        return total;
                    }
                }
            }
        }
        total
    }
}

/// The value of `NAME` among `--build-arg NAME=VALUE` strings.
fn build_arg<'a>(
    args: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    name: &str,
) -> Option<String> {
    args.into_iter()
        .filter(|(k, _)| *k == name)
        .last()
        .map(|(_, v)| v.unwrap_or_default().to_string())
}

/// Prints `report` in `format` (text and the JSON forms on stdout).
pub fn print_report(
    report: &Report,
    format: Format,
    name: &str,
    source: &[u8],
    always_summary: bool,
) {
    match format {
        Format::Text => {
            if !report.findings.is_empty() || always_summary {
                print!("{}", render::text(report, name, source));
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::json(report, name)).unwrap_or_default()
        ),
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&render::sarif(report, name)).unwrap_or_default()
        ),
    }
}

/// Runs the checks; a parse error or bad `check=` value is printed and
/// becomes `Err(exit code)`.
fn lint(
    input_name: &str,
    bytes: &[u8],
    check_arg: Option<String>,
    ctx: Option<&dyn ContextView>,
    target: Option<&str>,
    format: Format,
    images: Option<(&dyn rbuild_lint::BaseImages, Vec<String>)>,
) -> Result<Report, ExitCode> {
    let (images, platforms) = match images {
        Some((i, p)) => (Some(i), p),
        None => (None, Vec::new()),
    };
    let opts = Options {
        check_arg,
        context: ctx,
        target: target.map(str::to_string),
        for_build: false,
        images,
        platforms,
    };
    match rbuild_lint::check(bytes, &opts) {
        Ok(r) => {
            let unknown = r.config.unknown_rules();
            if !unknown.is_empty() {
                eprintln!(
                    "warning: no check rule named {}\nhint: `rbuild check --explain all` lists the rules",
                    unknown.join(", ")
                );
            }
            Ok(r)
        }
        Err(CheckError::Parse(err)) => {
            eprint!("{}", err.render(input_name, bytes));
            // The machine-readable forms carry it too (an empty stdout
            // would break a code-scanning upload).
            let doc = match format {
                Format::Text => None,
                Format::Json => Some(render::json_parse_error(&err, input_name)),
                Format::Sarif => Some(render::sarif_parse_error(&err, input_name)),
            };
            if let Some(doc) = doc {
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            Err(ExitCode::from(1))
        }
        Err(err @ CheckError::Config { .. }) => {
            eprintln!("error: {input_name}: {err}");
            Err(ExitCode::from(1))
        }
    }
}

fn explain(rule: &str) -> anyhow::Result<ExitCode> {
    if rule == "all" {
        for r in rbuild_lint::rule::ALL {
            let tag = match (r.origin, r.experimental) {
                (rbuild_lint::Origin::Rbuild, _) => " (rbuild)",
                (_, true) => " (experimental)",
                _ => "",
            };
            println!("{}{tag}: {}", r.name, r.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(r) = Rule::find(rule) else {
        let hint = match Rule::closest(rule) {
            Some(c) => format!("did you mean {c}? "),
            None => String::new(),
        };
        bail!(
            "no check rule named {rule:?}\nhint: {hint}`rbuild check --explain all` lists the rules"
        );
    };
    match r.rationale {
        Some(text) => print!("{text}"),
        None => println!("# {}\n\n{}", r.name, r.description),
    }
    if let Some(u) = r.url() {
        println!("\n{u}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(rule) = &args.explain {
        return explain(rule);
    }
    let input = DockerfileInput::read(args.file.as_deref(), &args.context)?;
    let ctx = if args.context.is_dir() {
        Some(FsContext::open(&args.context, input.path.as_deref())?)
    } else {
        None
    };
    let check_arg = build_arg(
        args.build_args.iter().map(|a| match a.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (a.as_str(), None),
        }),
        CHECK_BUILD_ARG,
    );
    let report = match lint(
        &input.display_name,
        &input.bytes,
        check_arg,
        ctx.as_ref().map(|c| c as &dyn ContextView),
        args.target.as_deref(),
        args.format,
        None,
    ) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_report(
        &report,
        args.format,
        &input.display_name,
        &input.bytes,
        false,
    );
    Ok(if report.fails() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `rbuild build --call` evaluates instead of building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Build,
    Check,
    Outline,
    Targets,
}

/// Parses buildx's `--call` value: `METHOD[,format=text|json]`.
pub fn parse_call(s: &str) -> Result<(Call, Option<Format>), String> {
    let mut parts = s.split(',');
    let method = match parts.next().unwrap_or("").trim() {
        "build" => Call::Build,
        "check" => Call::Check,
        "outline" => Call::Outline,
        "targets" => Call::Targets,
        other => {
            return Err(format!(
                "unknown method {other:?}: expected build, check, outline or targets"
            ));
        }
    };
    let mut format = None;
    for p in parts {
        match p.split_once('=') {
            Some(("format", v)) => {
                format = Some(
                    Format::from_str(v, true)
                        .map_err(|_| format!("unknown format {v:?}: expected text or json"))?,
                );
            }
            _ => return Err(format!("unknown option {p:?}: expected format=text|json")),
        }
    }
    Ok((method, format))
}

/// `rbuild build --call=check|outline|targets`: evaluates the Dockerfile
/// instead of building it.
fn call(
    method: Call,
    format: Format,
    dockerfile: &rbuild_builder::DockerfileSource,
    context: &Path,
    target: Option<&str>,
    check_arg: Option<String>,
    images: Option<(&dyn rbuild_lint::BaseImages, Vec<String>)>,
) -> anyhow::Result<ExitCode> {
    let name = &dockerfile.name;
    let bytes = &dockerfile.bytes;
    let parse_failed = |err: &rbuild_lint::ParseError| {
        eprint!("{}", err.render(name, bytes));
        Ok(ExitCode::from(1))
    };
    match method {
        Call::Build => unreachable!("the caller builds"),
        Call::Check => {
            let ctx = FsContext::open(context, dockerfile.path.as_deref())?;
            let report = match lint(name, bytes, check_arg, Some(&ctx), target, format, images) {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            print_report(&report, format, name, bytes, true);
            Ok(if report.fails() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Call::Targets => match outline::targets(bytes) {
            Ok(ts) => {
                match format {
                    Format::Text => print!("{}", outline::targets_text(&ts)),
                    _ => println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "targets": ts }))?
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => parse_failed(&err),
        },
        Call::Outline => match outline::outline(bytes, target) {
            Ok(o) => {
                match format {
                    Format::Text => print!("{}", outline::outline_text(&o)),
                    _ => println!("{}", serde_json::to_string_pretty(&o)?),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(outline::OutlineError::Parse(err)) => parse_failed(&err),
            Err(err) => bail!("{err}"),
        },
    }
}

/// `rbuild build --check` / `--call=METHOD` (and `--format`): evaluates
/// the Dockerfile instead of building it and returns the exit code, or
/// `None` when the build goes on.
pub fn call_instead_of_build(
    args: &super::build::BuildArgs,
    request: &rbuild_builder::BuildRequest,
    store: Option<&rbuild_store::Store>,
) -> anyhow::Result<Option<ExitCode>> {
    let method = match (args.check, args.call) {
        (true, _) => Call::Check,
        (false, Some((c, _))) => c,
        (false, None) => Call::Build,
    };
    if method == Call::Build {
        if args.format.is_some() {
            bail!(
                "--format applies to --call=check|outline|targets and --check\nhint: add --call=outline (or targets, check)"
            );
        }
        return Ok(None);
    }
    let format = args
        .format
        .or(args.call.and_then(|(_, f)| f))
        .unwrap_or(Format::Text);
    let check_arg = request.plan.build_args.get(CHECK_BUILD_ARG).cloned();
    let store_images = store.map(StoreImages);
    call(
        method,
        format,
        &request.dockerfile,
        &request.context,
        request.plan.target.as_deref(),
        check_arg,
        // Base images already in the store: InvalidBaseImagePlatform
        // can compare their platforms (nothing is pulled for a check).
        store_images.as_ref().map(|s| {
            let platforms = if request.platforms.is_empty() {
                request
                    .plan
                    .platform
                    .iter()
                    .map(|p| p.to_string())
                    .collect()
            } else {
                request.platforms.iter().map(|p| p.to_string()).collect()
            };
            (s as &dyn rbuild_lint::BaseImages, platforms)
        }),
    )
    .map(Some)
}

/// After a build: the check warnings as the progress mode shows them.
pub fn show_build_warnings(mode: super::build::progress::ProgressMode, report: &Report) {
    use super::build::progress::ProgressMode;
    match mode {
        ProgressMode::Quiet => {}
        ProgressMode::Json => eprint!("{}", warnings_json_lines(report)),
        ProgressMode::Tty | ProgressMode::Plain => eprint!("{}", warnings_summary(report)),
    }
}

/// The checks every build runs first, as BuildKit's frontend does: the
/// warnings, or `Err(exit code)` when the build must not start (a parse
/// error is left to the build, which reports it as before).
pub fn before_build(
    dockerfile: &rbuild_builder::DockerfileSource,
    context: &Path,
    check_arg: Option<String>,
    target: Option<&str>,
    images: Option<&dyn rbuild_lint::BaseImages>,
    platforms: &[rbuild_oci::Platform],
) -> anyhow::Result<Result<Report, ExitCode>> {
    let ctx = FsContext::open(context, dockerfile.path.as_deref())?;
    let opts = Options {
        check_arg,
        context: Some(&ctx),
        target: target.map(str::to_string),
        for_build: true,
        images,
        platforms: platforms.iter().map(|p| p.to_string()).collect(),
    };
    match rbuild_lint::check(&dockerfile.bytes, &opts) {
        // Only `error=true` stops a build here: an error-level finding
        // (a missing COPY source) may be in a stage this target never
        // builds, and a needed one fails at its step anyway.
        Ok(report) if report.config.error && report.fails() => {
            print!(
                "{}",
                render::text(&report, &dockerfile.name, &dockerfile.bytes)
            );
            eprintln!("error: {}", report.failure_message().unwrap_or_default());
            Ok(Err(ExitCode::from(1)))
        }
        Ok(report) => Ok(Ok(report)),
        Err(CheckError::Parse(_)) => Ok(Ok(Report {
            findings: Vec::new(),
            config: Default::default(),
        })),
        Err(err) => {
            eprintln!("error: {}: {err}", dockerfile.name);
            Ok(Err(ExitCode::from(1)))
        }
    }
}

/// Base images from the store, for UndefinedVar: what a build would use
/// when the image is already there (a pull happens later, if at all).
pub struct StoreImages<'a>(pub &'a rbuild_store::Store);

impl rbuild_lint::BaseImages for StoreImages<'_> {
    fn env(&self, image: &str) -> Option<Vec<String>> {
        let r = rbuild_oci::reference::ImageRef::parse(image).ok()?;
        let img = self.0.resolve_ref(&r).ok()?;
        Some(img.config.config.env.clone().unwrap_or_default())
    }

    fn platform(&self, image: &str, wanted: &str) -> Option<String> {
        let r = rbuild_oci::reference::ImageRef::parse(image).ok()?;
        let wanted = rbuild_oci::Platform::parse(wanted)?;
        let img = match self.0.resolve_ref_for(&r, Some(&wanted)) {
            Ok(img) => img,
            // A single-platform image of another platform: BuildKit uses
            // it, and this check says so.
            Err(rbuild_store::StoreError::PlatformMismatch { .. }) => {
                self.0.resolve_ref(&r).ok()?
            }
            Err(_) => return None,
        };
        let c = &img.config;
        if c.os.is_empty() || c.architecture.is_empty() {
            return None;
        }
        Some(match &c.variant {
            Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
            None => format!("{}/{}", c.os, c.architecture),
        })
    }
}

/// BuildKit's end-of-build warning list: `N warnings found:` then one
/// `- Rule: message (line N)` per finding.
/// NoEmptyContinuation is left out: the build already shows it with its
/// source lines when it parses the Dockerfile.
pub fn warnings_summary(report: &Report) -> String {
    let shown: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.rule.name != rbuild_lint::rule::NO_EMPTY_CONTINUATION.name)
        .collect();
    let n = shown.len();
    if n == 0 {
        return String::new();
    }
    let mut s = format!(" {n} warning{} found:\n", if n == 1 { "" } else { "s" });
    for f in shown {
        s.push_str(&format!(" - {}\n", render::short(f)));
    }
    s
}

/// `--progress=json`: one `{"event":"warning",…}` object per line.
pub fn warnings_json_lines(report: &Report) -> String {
    let mut s = String::new();
    for f in &report.findings {
        let v = serde_json::json!({
            "event": "warning",
            "rule": f.rule.name,
            "level": f.level.as_str(),
            "message": f.message,
            "line": f.span.start_line,
            "url": f.rule.url(),
        });
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

/// The findings as `--report` records them.
pub fn warnings_json(report: &Report, name: &str) -> serde_json::Value {
    render::json(report, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_takes_buildx_s_method_and_format() {
        assert_eq!(parse_call("outline"), Ok((Call::Outline, None)));
        assert_eq!(
            parse_call("targets,format=json"),
            Ok((Call::Targets, Some(Format::Json)))
        );
        assert_eq!(parse_call("build"), Ok((Call::Build, None)));
        assert!(
            parse_call("check,format=yaml")
                .unwrap_err()
                .contains("yaml")
        );
        assert!(parse_call("check,bogus").unwrap_err().contains("bogus"));
        assert!(parse_call("lint").unwrap_err().contains("unknown method"));
    }

    #[test]
    fn context_size_does_not_follow_a_symlink_loop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"12345").unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
        let ctx = FsContext::open(dir.path(), None).unwrap();
        assert_eq!(ctx.size_up_to(u64::MAX), 5);
    }

    #[test]
    fn the_last_check_build_arg_wins() {
        let args = [
            ("A", Some("1")),
            (CHECK_BUILD_ARG, Some("skip=all")),
            (CHECK_BUILD_ARG, Some("error=true")),
        ];
        assert_eq!(
            build_arg(args, CHECK_BUILD_ARG).as_deref(),
            Some("error=true")
        );
        assert_eq!(build_arg([("A", None)], CHECK_BUILD_ARG), None);
    }
}
