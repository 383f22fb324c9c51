//! The typed layer, equivalent to BuildKit's `instructions` package: each
//! syntax node becomes an [`Instruction`] with validated flags and
//! arguments, grouped into [`Stage`]s.
//!
//! Values are kept as written (quotes and `$VAR` intact) wherever BuildKit
//! expands them later; the solver expands them with [`crate::shell`].

use std::time::Duration;

use crate::ast::{self, Args, Ast, KeyValue as AstKeyValue, Node, Word};
use crate::directive::Directives;
use crate::duration::parse_go_duration;
use crate::error::{ErrorKind, ParseError};
use crate::flag::{Flags, parse_flags};
use crate::heredoc::parse_heredoc_word;
use crate::keyword::Keyword;
use crate::mount::Mount;
use crate::span::Span;
use crate::suggest::closest;

/// A whole Dockerfile, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub global_args: Vec<ArgInstruction>,
    /// Build stages, one per FROM, in order.
    pub stages: Vec<Stage>,
    /// Non-fatal findings from the syntax layer.
    pub warnings: Vec<ast::Warning>,
}

/// An ARG instruction before the first FROM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgInstruction {
    /// The names declared, in order.
    pub args: Vec<ArgDef>,
    /// The whole ARG instruction.
    pub span: Span,
}

/// One build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// `AS name`, lowercased as BuildKit does.
    pub name: Option<String>,
    /// Position among the stages, from 0.
    pub index: usize,
    /// The image reference as written (may contain `$VARS`).
    pub base: String,
    /// `--platform`, as written.
    pub platform: Option<String>,
    /// The FROM instruction itself.
    pub from: Instruction,
    /// Everything after FROM in this stage.
    pub instructions: Vec<Instruction>,
    /// From the FROM to the end of the stage's last instruction.
    pub span: Span,
}

/// One instruction: what it is, what it says, where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instruction {
    /// Which of the 18 instructions this is.
    pub keyword: Keyword,
    /// Its validated arguments.
    #[serde(flatten)]
    pub kind: InstructionKind,
    /// The instruction text after line joining (used in image history).
    pub original: String,
    /// From the keyword to the end of its last line (heredocs included).
    pub span: Span,
}

/// A command line in shell form (run by the shell) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellOrExec {
    /// Run by the stage's shell (`SHELL`, default `/bin/sh -c`).
    Shell(String),
    /// Run directly; empty for `CMD []` or no arguments.
    Exec(Vec<String>),
}

/// A heredoc body: inline file content for RUN, COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word; for COPY/ADD also the file name.
    pub name: String,
    /// File descriptor for RUN (`3<<EOF`); 0 when not given.
    pub fd: u32,
    /// Whether `$VARS` in the content are expanded (unquoted terminator).
    pub expand: bool,
    /// `<<-`: leading tabs already stripped from `content`.
    pub chomp: bool,
    /// The body, line endings kept.
    pub content: String,
    /// The `<<WORD` that introduced it.
    pub span: Span,
}

/// `key=value` from ENV or LABEL. The value is as written (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyValue {
    /// The name (quotes kept, removed on expansion).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// Legacy `ENV key value` form (no `=`).
    pub legacy: bool,
}

/// One ARG name with its optional default (as written).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgDef {
    /// The variable name.
    pub name: String,
    /// `=default`, as written; `None` when there is no `=`.
    pub default: Option<String>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

/// HEALTHCHECK settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`. Unset durations inherit defaults.
    Cmd {
        cmd: ShellOrExec,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// What an instruction does, with its validated arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InstructionKind {
    From {
        image: String,
        platform: Option<String>,
        name: Option<String>,
    },
    Run {
        command: ShellOrExec,
        mounts: Vec<Mount>,
        network: Option<NetworkMode>,
        security: Option<SecurityMode>,
        /// `--device` values as written.
        devices: Vec<String>,
        heredocs: Vec<Heredoc>,
    },
    Cmd {
        command: ShellOrExec,
    },
    Entrypoint {
        command: ShellOrExec,
    },
    Shell {
        shell: Vec<String>,
    },
    Label {
        pairs: Vec<KeyValue>,
    },
    Env {
        pairs: Vec<KeyValue>,
    },
    Arg {
        args: Vec<ArgDef>,
    },
    Copy {
        /// Source paths (heredoc sources are in `heredocs`).
        sources: Vec<String>,
        dest: String,
        from: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        link: bool,
        parents: bool,
        exclude: Vec<String>,
        heredocs: Vec<Heredoc>,
    },
    Add {
        sources: Vec<String>,
        dest: String,
        chown: Option<String>,
        chmod: Option<String>,
        link: bool,
        exclude: Vec<String>,
        checksum: Option<String>,
        keep_git_dir: Option<bool>,
        unpack: Option<bool>,
        heredocs: Vec<Heredoc>,
    },
    Expose {
        ports: Vec<String>,
    },
    Volume {
        paths: Vec<String>,
    },
    User {
        user: String,
    },
    Workdir {
        path: String,
    },
    Onbuild {
        inner: Box<Instruction>,
        /// The trigger text stored in the image (heredocs appended).
        expression: String,
    },
    Stopsignal {
        signal: String,
    },
    Healthcheck {
        check: Healthcheck,
    },
    Maintainer {
        name: String,
    },
}

/// Parse a Dockerfile all the way to stages.
pub fn parse(source: &[u8]) -> Result<Dockerfile, ParseError> {
    let ast = ast::parse(source)?;
    from_ast(ast)
}

/// Turn a syntax tree into stages.
pub fn from_ast(ast: Ast) -> Result<Dockerfile, ParseError> {
    from_ast_ref(&ast)
}

/// [`from_ast`] for a caller that keeps the syntax tree (the linter reads
/// both layers): only the directives and warnings are copied.
pub fn from_ast_ref(ast: &Ast) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.nodes {
        let inst = parse_instruction(node, &node.heredocs)?;
        if let InstructionKind::From {
            image,
            platform,
            name,
        } = &inst.kind
        {
            stages.push(Stage {
                name: name.clone(),
                index: stages.len(),
                base: image.clone(),
                platform: platform.clone(),
                span: inst.span,
                from: inst,
                instructions: Vec::new(),
            });
            continue;
        }
        match stages.last_mut() {
            Some(stage) => {
                stage.span = stage.span.to(inst.span);
                stage.instructions.push(inst);
            }
            None => match inst.kind {
                InstructionKind::Arg { args } => global_args.push(ArgInstruction {
                    args,
                    span: inst.span,
                }),
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::NoBuildStage,
                        format!(
                            "no build stage in current context: {} before the first FROM",
                            inst.keyword
                        ),
                        node.keyword_span,
                    )
                    .expected("FROM (only ARG may come before the first FROM)")
                    .help("start the Dockerfile with `FROM <image>`"));
                }
            },
        }
    }
    Ok(Dockerfile {
        directives: ast.directives.clone(),
        global_args,
        stages,
        warnings: ast.warnings.clone(),
    })
}

fn args_of(node: &Node) -> (Vec<&Word>, bool) {
    match &node.args {
        Args::Words { words, json } => (words.iter().collect(), *json),
        Args::KeyValues { .. } | Args::Sub { .. } => (Vec::new(), false),
    }
}

fn err_args(kind: &Keyword, node: &Node, what: &str) -> ParseError {
    ParseError::new(
        ErrorKind::InvalidArguments,
        format!("{kind} requires {what}"),
        node.span,
    )
    .expected(what.to_string())
}

fn exactly_one(kw: Keyword, node: &Node) -> Result<String, ParseError> {
    let (words, _) = args_of(node);
    if words.len() != 1 {
        return Err(err_args(&kw, node, "exactly one argument"));
    }
    Ok(words[0].value.clone())
}

fn command_line(words: &[&Word], json: bool) -> ShellOrExec {
    if json {
        ShellOrExec::Exec(words.iter().map(|w| w.value.clone()).collect())
    } else if words.is_empty() {
        ShellOrExec::Exec(Vec::new())
    } else {
        let parts: Vec<&str> = words.iter().map(|w| w.value.as_str()).collect();
        ShellOrExec::Shell(parts.join(" "))
    }
}

fn typed_heredoc(h: &ast::Heredoc) -> Heredoc {
    let content = if h.chomp {
        chomp(&h.content)
    } else {
        h.content.clone()
    };
    Heredoc {
        name: h.name.clone(),
        fd: h.fd,
        expand: h.expand,
        chomp: h.chomp,
        content,
        span: h.span,
    }
}

/// Strip leading tabs from every line (`<<-`).
fn chomp(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

fn key_values(kw: Keyword, node: &Node) -> Result<Vec<KeyValue>, ParseError> {
    let pairs: &[AstKeyValue] = match &node.args {
        Args::KeyValues { pairs } => pairs,
        _ => &[],
    };
    if pairs.is_empty() {
        return Err(err_args(&kw, node, "at least one argument"));
    }
    pairs
        .iter()
        .map(|p| {
            if p.key.value.is_empty() {
                return Err(ParseError::new(
                    ErrorKind::InvalidArguments,
                    format!("{kw} names can not be blank"),
                    p.key.span,
                )
                .expected("a name before `=`"));
            }
            Ok(KeyValue {
                key: p.key.value.clone(),
                value: p.value.value.clone(),
                legacy: p.separator.is_empty(),
            })
        })
        .collect()
}

fn duration_flag(flags: &Flags, name: &str) -> Result<Option<Duration>, ParseError> {
    let Some(f) = flags.get(name) else {
        return Ok(None);
    };
    if f.value.is_empty() {
        return Ok(None);
    }
    let written = format!("--{name}={}", f.value);
    let value_span = f.span.subspan(&written, name.len() + 3..written.len());
    let d = parse_go_duration(&f.value).map_err(|why| {
        ParseError::new(
            ErrorKind::InvalidDuration,
            format!("{why} {:?} for --{name}", f.value),
            value_span,
        )
        .expected("a duration such as 30s, 1m30s or 500ms")
    })?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < Duration::from_millis(1) {
        return Err(ParseError::new(
            ErrorKind::InvalidDuration,
            format!("interval {name:?} cannot be less than 1ms"),
            value_span,
        )
        .expected("a duration of at least 1ms, or 0 for the default"));
    }
    Ok(Some(d))
}

/// COPY/ADD sources and destination, heredoc sources split out.
fn sources_and_dest(
    kw: Keyword,
    node: &Node,
    heredocs: &[ast::Heredoc],
) -> Result<(Vec<String>, String, Vec<Heredoc>), ParseError> {
    let (words, _) = args_of(node);
    if words.len() < 2 {
        return Err(ParseError::new(
            ErrorKind::InvalidArguments,
            format!("{kw} requires at least two arguments, but only one was provided. destination could not be determined"),
            node.span,
        )
        .expected("one or more sources and a destination"));
    }
    let (dest, srcs) = words.split_last().expect("at least two words");
    if let Ok(Some(_)) = parse_heredoc_word(&dest.value) {
        return Err(ParseError::new(
            ErrorKind::InvalidHeredoc,
            format!("{kw} cannot accept a heredoc as a destination"),
            dest.span,
        )
        .expected("a destination path"));
    }
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for src in srcs {
        match parse_heredoc_word(&src.value) {
            Ok(Some(h)) => {
                // Like BuildKit's name → heredoc map: the last body of a name wins.
                let body = heredocs
                    .iter()
                    .rev()
                    .find(|b| b.name == h.name)
                    .map(|b| b.content.clone())
                    .unwrap_or_default();
                contents.push(Heredoc {
                    content: if h.chomp { chomp(&body) } else { body },
                    name: h.name,
                    fd: h.fd,
                    expand: h.expand,
                    chomp: h.chomp,
                    span: src.span,
                });
            }
            _ => paths.push(src.value.clone()),
        }
    }
    Ok((paths, dest.value.clone(), contents))
}

fn unknown_instruction(node: &Node) -> ParseError {
    let names: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
    let written = node
        .original
        .trim_start()
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_string();
    if written.is_empty() {
        return ParseError::new(
            ErrorKind::UnknownInstruction,
            "expected an instruction, found only a line continuation",
            node.keyword_span,
        )
        .expected("an instruction keyword")
        .help("remove the stray escape character or put an instruction before it");
    }
    let shown = written;
    ParseError::new(
        ErrorKind::UnknownInstruction,
        format!("unknown instruction: {shown}"),
        node.keyword_span,
    )
    .expected("an instruction keyword")
    .maybe_help(closest(&shown, &names).map(|k| {
        // Suggest in the user's case, as BuildKit does: `coppy` → `copy`.
        let k = if shown == shown.to_lowercase() {
            k.to_lowercase()
        } else {
            k.to_string()
        };
        format!("did you mean `{k}`?")
    }))
}

/// Validate one syntax node. `heredocs` are the bodies read for it (for
/// ONBUILD they hang on the outer node).
fn parse_instruction(node: &Node, heredocs: &[ast::Heredoc]) -> Result<Instruction, ParseError> {
    let kw: Keyword = node
        .keyword
        .parse()
        .map_err(|_| unknown_instruction(node))?;
    // HEALTHCHECK NONE ignores flags entirely, as in BuildKit.
    let health_none = kw == Keyword::Healthcheck
        && matches!(&node.args, Args::Words { words, .. } if words.first().is_some_and(|w| w.value.eq_ignore_ascii_case("none")));
    let flags = if health_none {
        Flags::default()
    } else {
        parse_flags(kw, &node.flags)?
    };
    let (words, json) = args_of(node);
    let kind = match kw {
        Keyword::From => {
            let platform = flags.string("platform");
            let name = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.value.eq_ignore_ascii_case("as") => {
                    let lower = name.value.to_lowercase();
                    let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                        && lower.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(ParseError::new(
                            ErrorKind::InvalidStageName,
                            format!(
                                "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                                name.value
                            ),
                            name.span,
                        )
                        .expected("a name matching [a-z][a-z0-9-_.]*"));
                    }
                    Some(lower)
                }
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::InvalidArguments,
                        "FROM requires either one or three arguments",
                        node.span,
                    )
                    .expected("FROM <image> [AS <name>]"));
                }
            };
            InstructionKind::From {
                image: words[0].value.clone(),
                platform,
                name,
            }
        }
        Keyword::Run => {
            if words.is_empty() {
                return Err(err_args(&kw, node, "at least one argument"));
            }
            let mut mounts = Vec::new();
            for f in flags.all("mount") {
                mounts.push(Mount::parse(&f.value, f.span)?);
            }
            let network = match flags.get("network") {
                None => None,
                Some(f) => Some(match f.value.as_str() {
                    "default" => NetworkMode::Default,
                    "none" => NetworkMode::None,
                    "host" => NetworkMode::Host,
                    v => {
                        return Err(ParseError::new(
                            ErrorKind::InvalidFlagValue,
                            format!("invalid network mode {v:?}"),
                            f.span,
                        )
                        .expected("default, none or host")
                        .maybe_help(
                            closest(v, &["default", "none", "host"])
                                .map(|k| format!("did you mean `{k}`?")),
                        ));
                    }
                }),
            };
            let security = match flags.get("security") {
                None => None,
                Some(f) => Some(match f.value.as_str() {
                    "sandbox" => SecurityMode::Sandbox,
                    "insecure" => SecurityMode::Insecure,
                    v => {
                        return Err(ParseError::new(
                            ErrorKind::InvalidFlagValue,
                            format!("security {v:?} is not valid"),
                            f.span,
                        )
                        .expected("sandbox or insecure")
                        .maybe_help(
                            closest(v, &["sandbox", "insecure"])
                                .map(|k| format!("did you mean `{k}`?")),
                        ));
                    }
                }),
            };
            InstructionKind::Run {
                command: command_line(&words, json),
                mounts,
                network,
                security,
                devices: flags.all("device").into_iter().map(|f| f.value).collect(),
                heredocs: heredocs.iter().map(typed_heredoc).collect(),
            }
        }
        Keyword::Cmd => InstructionKind::Cmd {
            command: command_line(&words, json),
        },
        Keyword::Entrypoint => InstructionKind::Entrypoint {
            command: command_line(&words, json),
        },
        Keyword::Shell => {
            if words.is_empty() {
                return Err(err_args(&kw, node, "at least one argument"));
            }
            if !json {
                return Err(ParseError::new(
                    ErrorKind::InvalidArguments,
                    "SHELL requires the arguments to be in JSON form",
                    node.span,
                )
                .expected("a JSON array such as [\"/bin/bash\", \"-c\"]"));
            }
            InstructionKind::Shell {
                shell: words.iter().map(|w| w.value.clone()).collect(),
            }
        }
        Keyword::Label => InstructionKind::Label {
            pairs: key_values(kw, node)?,
        },
        Keyword::Env => InstructionKind::Env {
            pairs: key_values(kw, node)?,
        },
        Keyword::Arg => {
            if words.is_empty() {
                return Err(err_args(&kw, node, "at least one argument"));
            }
            let mut args = Vec::new();
            for w in &words {
                let (name, default) = match w.value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w.value.clone(), None),
                };
                if name.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::InvalidArguments,
                        "ARG names can not be blank",
                        w.span,
                    )
                    .expected("a name before `=`"));
                }
                args.push(ArgDef { name, default });
            }
            InstructionKind::Arg { args }
        }
        Keyword::Copy => {
            let (sources, dest, heredocs) = sources_and_dest(kw, node, heredocs)?;
            InstructionKind::Copy {
                sources,
                dest,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                exclude: flags.all("exclude").into_iter().map(|f| f.value).collect(),
                heredocs,
            }
        }
        Keyword::Add => {
            let (sources, dest, heredocs) = sources_and_dest(kw, node, heredocs)?;
            InstructionKind::Add {
                sources,
                dest,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                exclude: flags.all("exclude").into_iter().map(|f| f.value).collect(),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bool("unpack"),
                heredocs,
            }
        }
        Keyword::Expose => {
            if words.is_empty() {
                return Err(err_args(&kw, node, "at least one argument"));
            }
            InstructionKind::Expose {
                ports: words.iter().map(|w| w.value.clone()).collect(),
            }
        }
        Keyword::Volume => {
            if words.is_empty() {
                return Err(err_args(&kw, node, "at least one argument"));
            }
            let mut paths = Vec::new();
            for w in &words {
                let v = w.value.trim();
                if v.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::InvalidArguments,
                        "VOLUME specified can not be an empty string",
                        w.span,
                    )
                    .expected("a path"));
                }
                paths.push(v.to_string());
            }
            InstructionKind::Volume { paths }
        }
        Keyword::User => InstructionKind::User {
            user: exactly_one(kw, node)?,
        },
        Keyword::Workdir => InstructionKind::Workdir {
            path: exactly_one(kw, node)?,
        },
        Keyword::Stopsignal => InstructionKind::Stopsignal {
            signal: exactly_one(kw, node)?,
        },
        Keyword::Maintainer => InstructionKind::Maintainer {
            name: exactly_one(kw, node)?,
        },
        Keyword::Onbuild => {
            let Args::Sub { node: inner } = &node.args else {
                return Err(err_args(&kw, node, "at least one argument"));
            };
            let trigger = inner.keyword.to_uppercase();
            if trigger == "ONBUILD" || trigger == "FROM" || trigger == "MAINTAINER" {
                let msg = if trigger == "ONBUILD" {
                    "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()
                } else {
                    format!("{trigger} isn't allowed as an ONBUILD trigger")
                };
                return Err(
                    ParseError::new(ErrorKind::InvalidOnbuild, msg, inner.keyword_span)
                        .expected("an instruction other than ONBUILD, FROM or MAINTAINER"),
                );
            }
            let inner_inst = parse_instruction(inner, heredocs)?;
            let mut expression = strip_onbuild(&node.original).to_string();
            for h in heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            InstructionKind::Onbuild {
                inner: Box::new(inner_inst),
                expression,
            }
        }
        Keyword::Healthcheck => {
            let Some(typ) = words.first() else {
                return Err(err_args(&kw, node, "at least one argument"));
            };
            let rest = &words[1..];
            let check = match typ.value.to_uppercase().as_str() {
                "NONE" => {
                    if !rest.is_empty() {
                        return Err(ParseError::new(
                            ErrorKind::InvalidArguments,
                            "HEALTHCHECK NONE takes no arguments",
                            rest[0].span,
                        )
                        .expected("nothing after NONE"));
                    }
                    Healthcheck::None
                }
                "CMD" => {
                    if rest.is_empty() {
                        return Err(ParseError::new(
                            ErrorKind::InvalidArguments,
                            "missing command after HEALTHCHECK CMD",
                            node.span,
                        )
                        .expected("a command after CMD"));
                    }
                    let retries = match flags.get("retries") {
                        None => None,
                        Some(f) if f.value.is_empty() => None,
                        Some(f) => {
                            let n: i64 = f
                                .value
                                .parse()
                                .ok()
                                .filter(|n: &i64| {
                                    *n <= i64::from(i32::MAX) && *n >= i64::from(i32::MIN)
                                })
                                .ok_or_else(|| {
                                    ParseError::new(
                                        ErrorKind::InvalidFlagValue,
                                        format!("invalid --retries value {:?}", f.value),
                                        f.span,
                                    )
                                    .expected("a whole number")
                                })?;
                            if n < 0 {
                                return Err(ParseError::new(
                                    ErrorKind::InvalidFlagValue,
                                    format!("--retries cannot be negative ({n})"),
                                    f.span,
                                )
                                .expected("0 or more"));
                            }
                            Some(n as u32)
                        }
                    };
                    Healthcheck::Cmd {
                        cmd: command_line(rest, json),
                        interval: duration_flag(&flags, "interval")?,
                        timeout: duration_flag(&flags, "timeout")?,
                        start_period: duration_flag(&flags, "start-period")?,
                        start_interval: duration_flag(&flags, "start-interval")?,
                        retries,
                    }
                }
                other => {
                    return Err(ParseError::new(
                        ErrorKind::InvalidArguments,
                        format!("unknown type {other:?} in HEALTHCHECK (try CMD)"),
                        typ.span,
                    )
                    .expected("CMD or NONE"));
                }
            };
            InstructionKind::Healthcheck { check }
        }
    };
    Ok(Instruction {
        keyword: kw,
        kind,
        original: node.original.clone(),
        span: node.span,
    })
}

/// `ONBUILD RUN x` → `RUN x` (BuildKit's `(?i)^\s*ONBUILD\s*`).
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(src: &str) -> InstructionKind {
        let df = parse(src.as_bytes())
            .unwrap_or_else(|e| panic!("{}", e.render("Dockerfile", src.as_bytes())));
        df.stages[0].instructions[0].kind.clone()
    }

    fn err(src: &str) -> ParseError {
        parse(src.as_bytes()).unwrap_err()
    }

    #[test]
    fn stages_and_global_args() {
        let df =
            parse(b"ARG V=1 W\nFROM --platform=linux/arm64 img:$V AS Build\nRUN x\nFROM build\n")
                .unwrap();
        assert_eq!(
            df.global_args[0].args[0],
            ArgDef {
                name: "V".into(),
                default: Some("1".into())
            }
        );
        assert_eq!(df.global_args[0].args[1].default, None);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].platform.as_deref(), Some("linux/arm64"));
        assert_eq!(df.stages[0].base, "img:$V");
        assert_eq!(df.stages[0].instructions.len(), 1);
        assert_eq!(df.stages[1].index, 1);
        assert!(df.stages[1].instructions.is_empty());
    }

    #[test]
    fn instruction_before_from_is_an_error() {
        assert_eq!(err("RUN x\nFROM a\n").kind, ErrorKind::NoBuildStage);
        let e = err("COPPY a b\n");
        assert_eq!(e.kind, ErrorKind::UnknownInstruction);
        assert_eq!(e.help.as_deref(), Some("did you mean `COPY`?"));
        assert_eq!(err("FROM a\nfrobnicate\n").help, None);
        let e = err("FROM a\nrum x\n");
        assert_eq!(e.message, "unknown instruction: rum");
        assert_eq!(e.help.as_deref(), Some("did you mean `run`?"));
    }

    #[test]
    fn run_forms_and_flags() {
        let InstructionKind::Run {
            command,
            mounts,
            network,
            ..
        } = first("FROM a\nRUN --mount=type=cache,target=/c --network=none [\"ls\", \"-l\"]\n")
        else {
            panic!()
        };
        assert_eq!(command, ShellOrExec::Exec(vec!["ls".into(), "-l".into()]));
        assert_eq!(mounts[0].target.as_deref(), Some("/c"));
        assert_eq!(network, Some(NetworkMode::None));
        assert_eq!(
            err("FROM a\nRUN --security=yes x\n").kind,
            ErrorKind::InvalidFlagValue
        );
        assert_eq!(
            err("FROM a\nRUN --mount=type=nope x\n").kind,
            ErrorKind::InvalidMount
        );
        assert_eq!(err("FROM a\nRUN\n").kind, ErrorKind::InvalidArguments);
    }

    #[test]
    fn copy_heredoc_sources_are_split_from_paths() {
        let InstructionKind::Copy {
            sources,
            dest,
            heredocs,
            ..
        } = first("FROM a\nCOPY a.txt <<-EOF /d/\n\tx\n\tEOF\n")
        else {
            panic!()
        };
        assert_eq!(sources, ["a.txt"]);
        assert_eq!(dest, "/d/");
        assert_eq!(heredocs[0].name, "EOF");
        assert_eq!(heredocs[0].content, "x\n");
    }

    #[test]
    fn add_only_flags() {
        let InstructionKind::Add {
            checksum,
            keep_git_dir,
            unpack,
            link,
            ..
        } = first("FROM a\nADD --checksum=sha256:ab --keep-git-dir --unpack=false --link u /d\n")
        else {
            panic!()
        };
        assert_eq!(checksum.as_deref(), Some("sha256:ab"));
        assert_eq!(keep_git_dir, Some(true));
        assert_eq!(unpack, Some(false));
        assert!(link);
        let e = err("FROM a\nCOPY --keep-git-dir u /d\n");
        assert_eq!(e.kind, ErrorKind::UnknownFlag);
        assert!(e.help.unwrap().contains("ADD"));
    }

    #[test]
    fn healthcheck_durations() {
        let InstructionKind::Healthcheck {
            check:
                Healthcheck::Cmd {
                    cmd,
                    interval,
                    timeout,
                    retries,
                    start_period,
                    ..
                },
        } = first(
            "FROM a\nHEALTHCHECK --interval=1m30s --timeout=0 --retries=2 --start-period=1.5s CMD curl x\n",
        )
        else {
            panic!()
        };
        assert_eq!(cmd, ShellOrExec::Shell("curl x".into()));
        assert_eq!(interval, Some(Duration::from_secs(90)));
        assert_eq!(timeout, None);
        assert_eq!(start_period, Some(Duration::from_millis(1500)));
        assert_eq!(retries, Some(2));
        // BuildKit ignores flags on HEALTHCHECK NONE.
        assert!(matches!(
            first("FROM a\nHEALTHCHECK --interval=bad NONE\n"),
            InstructionKind::Healthcheck {
                check: Healthcheck::None
            }
        ));
        assert_eq!(
            err("FROM a\nHEALTHCHECK --interval=1 CMD x\n").kind,
            ErrorKind::InvalidDuration
        );
        assert_eq!(
            err("FROM a\nHEALTHCHECK CMD\n").kind,
            ErrorKind::InvalidArguments
        );
    }

    #[test]
    fn onbuild_keeps_its_trigger() {
        let InstructionKind::Onbuild { inner, expression } =
            first("FROM a\nonbuild RUN <<EOF\nx\nEOF\n")
        else {
            panic!()
        };
        assert_eq!(inner.keyword, Keyword::Run);
        assert_eq!(expression, "RUN <<EOF\nx\nEOF");
        assert_eq!(
            err("FROM a\nONBUILD MAINTAINER me\n").kind,
            ErrorKind::InvalidOnbuild
        );
    }

    #[test]
    fn env_label_arg_values_stay_as_written() {
        let InstructionKind::Env { pairs } = first("FROM a\nENV A=\"x y\" B=$A\n") else {
            panic!()
        };
        assert_eq!(pairs[0].value, "\"x y\"");
        assert!(!pairs[0].legacy);
        let InstructionKind::Env { pairs } = first("FROM a\nENV A x y\n") else {
            panic!()
        };
        assert!(pairs[0].legacy);
        assert_eq!(err("FROM a\nENV =x\n").kind, ErrorKind::InvalidArguments);
        assert_eq!(err("FROM a\nARG =x\n").kind, ErrorKind::InvalidArguments);
    }

    #[test]
    fn argument_counts() {
        assert_eq!(err("FROM a\nUSER\n").kind, ErrorKind::InvalidArguments);
        assert_eq!(err("FROM a\nEXPOSE\n").kind, ErrorKind::InvalidArguments);
        assert_eq!(
            err("FROM a\nVOLUME [\"\"]\n").kind,
            ErrorKind::InvalidArguments
        );
        assert_eq!(
            err("FROM a\nSHELL sh -c\n").kind,
            ErrorKind::InvalidArguments
        );
        assert_eq!(err("FROM a b\n").kind, ErrorKind::InvalidArguments);
        assert_eq!(err("FROM a AS b-$x\n").kind, ErrorKind::InvalidStageName);
        assert_eq!(err("FROM a\nUSER --x=1 me\n").kind, ErrorKind::UnknownFlag);
    }
}
