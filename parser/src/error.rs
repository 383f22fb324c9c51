//! Parse diagnostics: one error type with a span, what was expected and a
//! hint, rendered as a source snippet with a caret.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::span::Span;

/// What went wrong, for callers that branch on the class of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The file is not valid UTF-8.
    InvalidUtf8,
    /// The file contains a NUL byte.
    NulByte,
    /// The file has no instructions (empty or only comments).
    NoInstructions,
    /// A parser directive has a bad value (`# escape=x`).
    InvalidDirective,
    /// A parser directive appears twice.
    DuplicateDirective,
    /// The keyword is not one of the 18 instructions.
    UnknownInstruction,
    /// An instruction other than ARG before the first FROM.
    NoBuildStage,
    /// A `--flag` the instruction does not accept.
    UnknownFlag,
    /// A flag given twice that may appear only once.
    DuplicateFlag,
    /// A flag without its value, or with a value of the wrong shape.
    InvalidFlagValue,
    /// A bad `RUN --mount` specification.
    InvalidMount,
    /// A bad HEALTHCHECK duration or retry count.
    InvalidDuration,
    /// A heredoc whose terminator never comes.
    UnterminatedHeredoc,
    /// A heredoc where one is not allowed (e.g. as a COPY destination).
    InvalidHeredoc,
    /// A JSON array with something other than strings in it.
    InvalidJson,
    /// The wrong number or shape of arguments for the instruction.
    InvalidArguments,
    /// ONBUILD with a trigger that is not allowed (ONBUILD, FROM, MAINTAINER).
    InvalidOnbuild,
    /// A FROM stage name that is not a valid name.
    InvalidStageName,
}

/// A Dockerfile that cannot be parsed: what, where, what was expected and
/// what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{message}")]
pub struct ParseError {
    /// The class of error.
    pub kind: ErrorKind,
    /// One-line description, lowercase, no trailing period.
    pub message: String,
    /// The culprit in the source.
    pub span: Span,
    /// What the parser expected at `span`, shown under the caret.
    pub expected: Option<String>,
    /// What the user can do, e.g. "did you mean `COPY`?".
    pub help: Option<String>,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>, span: Span) -> Self {
        ParseError {
            kind,
            message: message.into(),
            span,
            expected: None,
            help: None,
        }
    }

    pub(crate) fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Render as plain text (no colour): the message, `file:line:col`, the
    /// source line(s) with a caret under the culprit, what was expected, and
    /// the hint.
    pub fn render(&self, file_name: &str, source: &[u8]) -> String {
        render_snippet(
            Level::ERROR,
            &self.message,
            self.span,
            self.expected.as_deref(),
            self.help.as_deref(),
            file_name,
            source,
        )
    }
}

/// The shared plain-text snippet renderer for errors and warnings.
pub(crate) fn render_snippet(
    level: Level<'_>,
    message: &str,
    span: Span,
    label: Option<&str>,
    help: Option<&str>,
    file_name: &str,
    source: &[u8],
) -> String {
    let text = String::from_utf8_lossy(source);
    // Show only the lines the span touches, so huge files render fast.
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let (start, end) = (floor_boundary(&text, start), floor_boundary(&text, end));
    let mut line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if line_start == 0 && text.starts_with('\u{feff}') && start >= 3 {
        line_start = 3; // the byte-order mark is not part of the line
    }
    let mut line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    if end > start && text.as_bytes().get(end - 1) == Some(&b'\n') {
        line_end = end - 1;
    }
    let line_end = line_end.max(start);
    let mut excerpt = &text[line_start..line_end];
    let mut ann_end = end.min(line_end);
    // Keep excerpts of enormous lines readable.
    const MAX: usize = 400;
    if excerpt.len() > MAX + (start - line_start) {
        let cut = floor_boundary(excerpt, (start - line_start) + MAX);
        excerpt = &excerpt[..cut];
        ann_end = ann_end.min(line_start + cut);
    }
    let excerpt = excerpt.trim_end_matches('\r');
    let rel_start = (start - line_start).min(excerpt.len());
    let rel_end = (ann_end.saturating_sub(line_start)).clamp(rel_start, excerpt.len());
    let mut groups = vec![
        level.primary_title(message.to_string()).element(
            Snippet::source(excerpt)
                .line_start(span.start_line.max(1) as usize)
                .path(file_name)
                .annotation(
                    AnnotationKind::Primary
                        .span(rel_start..rel_end)
                        .label(label.unwrap_or_default().to_string()),
                ),
        ),
    ];
    if let Some(help) = help {
        groups.push(Group::with_title(
            Level::HELP.secondary_title(help.to_string()),
        ));
    }
    let mut out = Renderer::plain().render(&groups);
    out.push('\n');
    out
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
