//! rbuild-lint: checks a Dockerfile and reports findings.
//!
//! Owns: the rule table ([`rule`]), BuildKit's 22 Build Checks with their
//! names, messages, lines and defaults (`buildkit.rs`),
//! rbuild's own cache-efficiency rules (`cache.rs`), the
//! `check=` configuration ([`CheckConfig`]), the three output formats
//! ([`render`]) and the stage/argument outline behind `--call=targets`
//! and `--call=outline` ([`outline`]).
//!
//! May depend on: rbuild-parser only. Pure like the parser: the build
//! context is reached through the [`ContextView`] trait the caller
//! implements (the CLI walks the directory); without one the rules that
//! need the context (CopyIgnoredFile, CopySourceNotFound,
//! MissingDockerignore) stay silent.
//!
//! What BuildKit knows and rbuild's check may not: the base image's
//! configuration. BuildKit's UndefinedVar sees the variables a base image
//! sets; rbuild sees them when the caller passes [`BaseImages`] (a build
//! reads its store), and otherwise assumes `PATH` plus the variables
//! official images set (`buildkit::IMAGE_ENV`). InvalidBaseImagePlatform
//! compares a base image's platform with the stage's, so it needs
//! [`BaseImages::platform`] too: builds (and `--check` with the base in
//! the store) fire it, a bare `rbuild check` cannot.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

mod buildkit;
mod cache;
mod config;
mod model;
pub mod outline;
pub mod render;
pub mod rule;
mod shellwords;
mod suggest;

pub use config::{CheckConfig, ConfigError};
pub use rbuild_parser::{ParseError, Span};
pub use rule::{Level, Origin, Rule};

/// One problem found: which rule, what it says, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// The message, BuildKit's wording for its rules.
    pub message: String,
    /// Where: the instruction (or the lines) it is about.
    pub span: Span,
    pub level: Level,
}

/// What the check can ask about the build context. Paths are relative to
/// the context root, `/`-separated, cleaned (no `.`/`..` components; the
/// root is `""`).
pub trait ContextView {
    /// The names of the entries in directory `dir`, or `None` when it is
    /// not a directory in the context.
    fn list_dir(&self, dir: &str) -> Option<Vec<String>>;
    /// Whether `path` exists (any type; symlinks not followed).
    fn exists(&self, path: &str) -> bool;
    /// The ignore file in effect (`.dockerignore` or
    /// `<Dockerfile>.dockerignore`), as its name, if there is one.
    fn ignore_file(&self) -> Option<String>;
    /// The ignore file's patterns, as written (comments removed).
    fn ignore_patterns(&self) -> Vec<String>;
    /// Whether `path` or one of its parents is excluded.
    fn is_ignored(&self, path: &str) -> bool;
    /// Bytes in the context, counted up to `limit` (a walk may stop there).
    fn size_up_to(&self, limit: u64) -> u64;
}

/// The configuration of base images, when the caller can read them (a
/// build's store): BuildKit's UndefinedVar sees the base image's `Env`.
pub trait BaseImages {
    /// The `Env` (`KEY=value` strings) of `image` (a reference as the
    /// expanded FROM line names it), or `None` when it is not at hand.
    fn env(&self, image: &str) -> Option<Vec<String>>;
    /// The platform (`os/arch[/variant]`) of the image a build for
    /// platform `wanted` would use for `image` (of an index, the
    /// matching manifest's; a single-platform image's own), or `None`
    /// when it is not at hand. InvalidBaseImagePlatform compares it with
    /// `wanted`.
    fn platform(&self, image: &str, wanted: &str) -> Option<String> {
        let _ = (image, wanted);
        None
    }
}

/// What to check with.
#[derive(Default)]
pub struct Options<'a> {
    /// The `BUILDKIT_DOCKERFILE_CHECK` build arg: replaces the `# check=`
    /// directive when set, as in BuildKit.
    pub check_arg: Option<String>,
    /// The build context, when there is one to look at.
    pub context: Option<&'a dyn ContextView>,
    /// Check only the stages building this target needs (`--target`), as
    /// BuildKit checks only the stages it dispatches; `None`: every stage
    /// (BuildKit's lint request), or the last one with `for_build`.
    pub target: Option<String>,
    /// Checking before a build: with no `target`, the stages the last
    /// stage needs (what the build runs), not every stage.
    pub for_build: bool,
    /// Base images' configurations, when at hand; without them
    /// UndefinedVar assumes the variables official images set, and
    /// InvalidBaseImagePlatform stays silent.
    pub images: Option<&'a dyn BaseImages>,
    /// The platforms built for (`--platform`, normalized `os/arch[/variant]`);
    /// empty: the host's.
    pub platforms: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct Report {
    /// Findings in source order.
    pub findings: Vec<Finding>,
    /// The configuration in effect (directive or build arg).
    pub config: CheckConfig,
}

impl Report {
    /// True when the build must fail: an error-level finding, or
    /// `error=true` with any finding (BuildKit: "lint violation found").
    pub fn fails(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Error)
    }

    /// BuildKit's message for a failing check: the rules that fired.
    pub fn failure_message(&self) -> Option<String> {
        if !self.fails() {
            return None;
        }
        let mut names: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(|f| f.rule.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The Dockerfile does not parse; no rule ran.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The `check=` directive or build arg is malformed.
    #[error("{source} (in {origin})")]
    Config {
        origin: &'static str,
        #[source]
        source: ConfigError,
    },
}

/// Checks `source`: every enabled rule, findings in source order.
pub fn check(source: &[u8], opts: &Options<'_>) -> Result<Report, CheckError> {
    let (text, ast, df) = model::parse(source)?;
    let file = model::File {
        ast: &ast,
        df: &df,
        items: model::items(text, &ast, &df),
    };
    let config = match &opts.check_arg {
        Some(arg) => CheckConfig::parse(arg).map_err(|source| CheckError::Config {
            origin: "the BUILDKIT_DOCKERFILE_CHECK build arg",
            source,
        })?,
        None => match &file.ast.directives.check {
            Some(d) => CheckConfig::parse(&d.value).map_err(|source| CheckError::Config {
                origin: "the # check= directive",
                source,
            })?,
            None => CheckConfig::default(),
        },
    };
    let mut sink = Sink {
        config: &config,
        file: &file,
        findings: Vec::new(),
    };
    buildkit::run(&file, &mut sink, opts.context, opts.images, &opts.platforms);
    cache::run(&file, &mut sink, opts.context);
    let mut findings = sink.findings;
    let target = match &opts.target {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
        }
        None if opts.for_build => df.stages.len().checked_sub(1),
        None => None,
    };
    if let Some(idx) = target {
        let need = model::needed_stages(&df.stages, idx);
        let skipped: Vec<&rbuild_parser::Stage> = df
            .stages
            .iter()
            .enumerate()
            .filter(|(i, _)| !need.contains(i))
            .map(|(_, s)| s)
            .collect();
        findings.retain(|f| {
            !skipped
                .iter()
                .any(|s| s.span.start <= f.span.start && f.span.start < s.span.end)
        });
    }
    if config.error {
        for f in &mut findings {
            f.level = Level::Error;
        }
    }
    findings.sort_by_key(|f| (f.span.start_line, f.span.start));
    Ok(Report { findings, config })
}

/// Collects findings, dropping those of rules the configuration (global,
/// or a `# check=` comment above the instruction) turns off.
pub(crate) struct Sink<'a> {
    config: &'a CheckConfig,
    file: &'a model::File<'a>,
    findings: Vec<Finding>,
}

impl Sink<'_> {
    /// Reports `rule` at `span` (`item`: the instruction, for its own
    /// `# check=` comment).
    pub(crate) fn report(
        &mut self,
        rule: &'static Rule,
        item: Option<usize>,
        span: Span,
        message: String,
    ) {
        self.report_level(rule, item, span, message, rule.level);
    }

    pub(crate) fn report_level(
        &mut self,
        rule: &'static Rule,
        item: Option<usize>,
        span: Span,
        message: String,
        level: Level,
    ) {
        let local = item.and_then(|i| self.file.items[i].check_comment.as_ref());
        let enabled = match local {
            Some(c) => self.config.merged(c).enabled(rule),
            None => self.config.enabled(rule),
        };
        if enabled {
            self.findings.push(Finding {
                rule,
                message,
                span,
                level,
            });
        }
    }
}
