//! The raw syntax layer, equivalent to BuildKit's `parser` package: parser
//! directives, line joining (escape character, comments and blank lines
//! inside continuations), heredoc bodies, and per-instruction argument
//! splitting. Nothing here knows what an instruction means; see
//! [`crate::instructions`] for that.

use crate::directive::{Directive, DirectiveName, DirectiveParser, Directives};
use crate::error::{ErrorKind, ParseError};
use crate::heredoc::heredocs_in_line;
use crate::json_array::{JsonArrayError, parse_json_array};
use crate::line_index::LineIndex;
use crate::span::Span;

/// A parsed Dockerfile at the syntax level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ast {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// One node per instruction, in source order.
    pub nodes: Vec<Node>,
    /// Things that parse but deserve a mention (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// A non-fatal finding, shown to the user but not stopping the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// One-line description.
    pub message: String,
    /// Where it applies.
    pub span: Span,
    /// Documentation for the rule, when there is one.
    pub url: Option<String>,
}

/// A piece of text from the source with where it came from. For words
/// taken out of a JSON array or quoted flag, `value` is the decoded text and
/// `span` covers the literal as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Word {
    /// The text, after whatever decoding the line parser applies.
    pub value: String,
    /// Where it was written.
    pub span: Span,
}

/// One `ENV`/`LABEL` assignment: `key=value` (separator `=`) or the legacy
/// `KEY value` form (empty separator).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyValue {
    /// The name (quotes kept, as BuildKit keeps them at this layer).
    pub key: Word,
    /// The value as written, quotes and escapes included.
    pub value: Word,
    /// `"="` for `key=value`, `""` for the legacy form.
    pub separator: String,
}

/// The arguments of an instruction, split the way BuildKit's line parser
/// for that keyword splits them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Args {
    /// A list of words. `json` is true when they came from a JSON array
    /// (exec form); otherwise a shell-form command is a single word.
    Words { words: Vec<Word>, json: bool },
    /// `ENV` and `LABEL` assignments.
    KeyValues { pairs: Vec<KeyValue> },
    /// The instruction nested in `ONBUILD`.
    Sub { node: Box<Node> },
}

impl Warning {
    /// Render as plain text like [`ParseError::render`], headed `warning:`.
    pub fn render(&self, file_name: &str, source: &[u8]) -> String {
        crate::error::render_snippet(
            annotate_snippets::Level::WARNING,
            &self.message,
            self.span,
            None,
            self.url.as_deref().map(|u| format!("see {u}")).as_deref(),
            file_name,
            source,
        )
    }
}

impl Args {
    fn none() -> Args {
        Args::Words {
            words: Vec::new(),
            json: false,
        }
    }

    /// True for an exec-form (JSON array) argument list.
    pub fn is_json(&self) -> bool {
        matches!(self, Args::Words { json: true, .. })
    }
}

/// A heredoc attached to an instruction (`RUN <<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The file descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// False when the terminator was quoted: no variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from each line.
    pub chomp: bool,
    /// The body exactly as written (line endings kept, tabs not stripped).
    pub content: String,
    /// The `<<WORD` introducer.
    pub span: Span,
}

/// One instruction at the syntax level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The keyword as written, lowercased (`run`); may be unknown here.
    pub keyword: String,
    /// Where the keyword is.
    pub keyword_span: Span,
    /// `--name=value` flags exactly as BuildKit extracts them (quotes and
    /// escapes removed).
    pub flags: Vec<Word>,
    /// The arguments after the flags.
    pub args: Args,
    /// Heredoc bodies, in the order they were introduced.
    pub heredocs: Vec<Heredoc>,
    /// The instruction text after line joining (BuildKit's `Original`).
    pub original: String,
    /// From the keyword to the end of the last line of the instruction,
    /// heredoc bodies included.
    pub span: Span,
}

/// The joined text of one logical line plus where each piece came from.
struct Joined {
    text: String,
    /// (offset in `text`, offset in source) where each contiguous piece starts.
    segments: Vec<(usize, usize)>,
}

impl Joined {
    fn push(&mut self, piece: &str, src_offset: usize) {
        if piece.is_empty() {
            return;
        }
        self.segments.push((self.text.len(), src_offset));
        self.text.push_str(piece);
    }

    fn to_source(&self, pos: usize) -> usize {
        let i = match self.segments.binary_search_by(|(b, _)| b.cmp(&pos)) {
            Ok(i) => i,
            Err(0) => return self.segments.first().map_or(0, |s| s.1),
            Err(i) => i - 1,
        };
        let (b, s) = self.segments[i];
        s + (pos - b)
    }
}

/// Shared context for turning positions in the joined line into spans.
struct Cx<'a> {
    idx: &'a LineIndex<'a>,
    joined: &'a Joined,
    escape: char,
}

impl Cx<'_> {
    /// Offset of `sub` (a slice of the joined text) within it.
    fn off(&self, sub: &str) -> usize {
        (sub.as_ptr() as usize).saturating_sub(self.joined.text.as_ptr() as usize)
    }

    fn span(&self, start: usize, end: usize) -> Span {
        if self.joined.text.is_empty() {
            return self.idx.span(0, 0);
        }
        let s = self
            .joined
            .to_source(start.min(self.joined.text.len().saturating_sub(1)));
        let e = if end > start {
            self.joined.to_source(end - 1) + 1
        } else {
            s
        };
        self.idx.span(s, e)
    }

    fn word(&self, value: String, start: usize, end: usize) -> Word {
        Word {
            value,
            span: self.span(start, end),
        }
    }

    /// A word whose value is exactly the slice `sub`.
    fn slice_word(&self, sub: &str) -> Word {
        let o = self.off(sub);
        self.word(sub.to_string(), o, o + sub.len())
    }
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_ws_re(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Split on runs of `[\t\v\f\r ]`, at most `limit` pieces (0 = no limit).
fn split_ws(s: &str, limit: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if limit != 0 && out.len() + 1 == limit {
            out.push(rest);
            return out;
        }
        match rest.find(is_ws_re) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(is_ws_re);
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

fn decode(s: &str, pos: usize) -> (char, usize) {
    s[pos..]
        .chars()
        .next()
        .map_or(('\0', 0), |c| (c, c.len_utf8()))
}

/// BuildKit's `extractBuilderFlags`: leading `--words`, with quotes and
/// escapes processed; `--` ends the flags. Returns the rest of the line.
fn extract_flags<'l>(line: &'l str, cx: &Cx<'_>) -> (&'l str, Vec<Word>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let base = cx.off(line);
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut buf = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut start = 0;
    let mut pos = 0;
    let len = line.len();
    loop {
        let (mut ch, mut w) = decode(line, pos);
        if phase == Phase::Spaces {
            if pos == len {
                break;
            }
            if ch.is_whitespace() {
                pos += w;
                continue;
            }
            if ch != '-' || !line[pos + w..].starts_with('-') {
                return (&line[pos..], words);
            }
            phase = Phase::Word;
            start = pos;
        }
        if pos == len {
            if buf != "--" && (blank_ok || !buf.is_empty()) {
                words.push(cx.word(buf, base + start, base + pos));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if buf == "--" {
                    return (&line[pos..], words);
                }
                if blank_ok || !buf.is_empty() {
                    words.push(cx.word(std::mem::take(&mut buf), base + start, base + pos));
                }
                buf.clear();
                blank_ok = false;
                pos += w;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += w;
                continue;
            }
            if ch == cx.escape {
                if pos + w == len {
                    pos += w;
                    continue;
                }
                pos += w;
                (ch, w) = decode(line, pos);
            }
            buf.push(ch);
            pos += w;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += w;
            continue;
        }
        if ch == cx.escape {
            if pos + w == len {
                phase = Phase::Word;
                pos += w;
                continue;
            }
            pos += w;
            (ch, w) = decode(line, pos);
        }
        buf.push(ch);
        pos += w;
    }
    (&line[len..], words)
}

/// BuildKit's `parseWords`: whitespace-separated words, quotes and escape
/// characters kept in the words (they are removed later, on expansion).
fn parse_words(rest: &str, cx: &Cx<'_>) -> Vec<Word> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let base = cx.off(rest);
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut buf = String::new();
    let mut start = 0;
    let mut pos = 0;
    let len = rest.len();
    loop {
        let (mut ch, mut w) = decode(rest, pos);
        if phase == Phase::Spaces {
            if pos == len {
                break;
            }
            if ch.is_whitespace() {
                pos += w;
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        if pos == len {
            if blank_ok || !buf.is_empty() {
                words.push(cx.word(buf, base + start, base + pos));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !buf.is_empty() {
                    words.push(cx.word(std::mem::take(&mut buf), base + start, base + pos));
                }
                blank_ok = false;
                pos += w;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == cx.escape {
                if pos + w == len {
                    pos += w;
                    continue;
                }
                buf.push(ch);
                pos += w;
                (ch, w) = decode(rest, pos);
            }
            buf.push(ch);
            pos += w;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == cx.escape && quote != '\'' {
            if pos + w == len {
                phase = Phase::Word;
                pos += w;
                continue;
            }
            pos += w;
            buf.push(ch);
            (ch, w) = decode(rest, pos);
        }
        buf.push(ch);
        pos += w;
    }
    words
}

/// `ENV`/`LABEL`: `k=v ...` pairs, or legacy `KEY value`.
fn parse_name_val(rest: &str, keyword: &str, cx: &Cx<'_>) -> Result<Args, ParseError> {
    let words = parse_words(rest, cx);
    if words.is_empty() {
        return Ok(Args::none());
    }
    if !words[0].value.contains('=') {
        let parts = split_ws(rest, 2);
        if parts.len() < 2 {
            return Err(ParseError::new(
                ErrorKind::InvalidArguments,
                format!("{keyword} must have two arguments"),
                words[0].span,
            )
            .expected(format!("a value after `{}`", words[0].value))
            .help(format!(
                "write `{keyword} {}=value` or `{keyword} {} value`",
                words[0].value, words[0].value
            )));
        }
        return Ok(Args::KeyValues {
            pairs: vec![KeyValue {
                key: cx.slice_word(parts[0]),
                value: cx.slice_word(parts[1]),
                separator: String::new(),
            }],
        });
    }
    let mut pairs = Vec::with_capacity(words.len());
    for w in words {
        let Some((k, v)) = w.value.split_once('=') else {
            return Err(ParseError::new(
                ErrorKind::InvalidArguments,
                format!(
                    "syntax error - can't find = in {:?}. must be of the form: name=value",
                    w.value
                ),
                w.span,
            )
            .expected("name=value"));
        };
        // Spans of key and value: the key is a prefix of the written word
        // unless quoting/escapes intervene, so split the source span at the
        // first `=` byte when it is there.
        let (ks, vs) = split_span_at_eq(cx, &w);
        pairs.push(KeyValue {
            key: Word {
                value: k.to_string(),
                span: ks,
            },
            value: Word {
                value: v.to_string(),
                span: vs,
            },
            separator: "=".to_string(),
        });
    }
    Ok(Args::KeyValues { pairs })
}

fn split_span_at_eq(cx: &Cx<'_>, w: &Word) -> (Span, Span) {
    let src = cx.idx;
    match w.value.find('=') {
        Some(i) if w.span.end - w.span.start == w.value.len() => (
            src.span(w.span.start, w.span.start + i),
            src.span(w.span.start + i + 1, w.span.end),
        ),
        _ => (w.span, w.span),
    }
}

/// Whitespace-delimited words (`EXPOSE`, `FROM`, shell-form `COPY`).
fn parse_strings_ws(rest: &str, cx: &Cx<'_>) -> Args {
    if rest.is_empty() {
        return Args::none();
    }
    Args::Words {
        words: split_ws(rest, 0)
            .into_iter()
            .map(|p| cx.slice_word(p))
            .collect(),
        json: false,
    }
}

/// Exec form, if `rest` is a JSON array. `Ok(None)`: not a JSON array.
fn parse_json(rest: &str, cx: &Cx<'_>) -> Result<Option<Args>, ParseError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let base = cx.off(rest);
    match parse_json_array(rest) {
        Ok(items) => Ok(Some(Args::Words {
            words: items
                .into_iter()
                .map(|j| cx.word(j.value, base + j.start, base + j.end))
                .collect(),
            json: true,
        })),
        Err(JsonArrayError::NotJsonArray) => Ok(None),
        Err(JsonArrayError::NotStringArray { start, end }) => Err(ParseError::new(
            ErrorKind::InvalidJson,
            "when using JSON array syntax, arrays must be comprised of strings only",
            cx.span(base + start, base + end),
        )
        .expected("a JSON string")),
    }
}

fn parse_maybe_json(rest: &str, cx: &Cx<'_>) -> Result<Args, ParseError> {
    if rest.is_empty() {
        return Ok(Args::none());
    }
    if let Some(a) = parse_json(rest, cx)? {
        return Ok(a);
    }
    Ok(Args::Words {
        words: vec![cx.slice_word(rest)],
        json: false,
    })
}

fn parse_maybe_json_to_list(rest: &str, cx: &Cx<'_>) -> Result<Args, ParseError> {
    if let Some(a) = parse_json(rest, cx)? {
        return Ok(a);
    }
    Ok(parse_strings_ws(rest, cx))
}

fn parse_health_config(rest: &str, cx: &Cx<'_>) -> Result<Args, ParseError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::none());
    }
    let typ = cx.slice_word(&rest[..sep]);
    let after = rest[sep..].trim_start();
    let cmd = parse_maybe_json(after, cx)?;
    let Args::Words { mut words, json } = cmd else {
        unreachable!("parse_maybe_json gives words")
    };
    words.insert(0, typ);
    Ok(Args::Words { words, json })
}

/// Build a node from one joined logical line (`line` is a slice of
/// `cx.joined.text`). ONBUILD nests at most once: `ONBUILD ONBUILD` is
/// rejected here so nesting never grows with the input.
fn new_node(line: &str, cx: &Cx<'_>, nested: bool) -> Result<Node, ParseError> {
    let trimmed = line.trim();
    let parts = split_ws(trimmed, 2);
    let cmd = parts[0];
    let (flags, rest) = if parts.len() == 2 {
        let (rest, flags) = extract_flags(parts[1], cx);
        (flags, rest.trim())
    } else {
        (Vec::new(), &trimmed[trimmed.len()..])
    };
    let keyword = cmd.to_lowercase();
    let keyword_word = cx.slice_word(cmd);
    let args = match keyword.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest, cx)?,
        "arg" => Args::Words {
            words: parse_words(rest, cx),
            json: false,
        },
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(rest, cx)?,
        "env" => parse_name_val(rest, "ENV", cx)?,
        "label" => parse_name_val(rest, "LABEL", cx)?,
        "expose" | "from" => parse_strings_ws(rest, cx),
        "healthcheck" => parse_health_config(rest, cx)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if rest.is_empty() {
                Args::none()
            } else {
                Args::Words {
                    words: vec![cx.slice_word(rest)],
                    json: false,
                }
            }
        }
        "onbuild" => {
            if rest.is_empty() {
                Args::none()
            } else {
                if nested {
                    return Err(ParseError::new(
                        ErrorKind::InvalidOnbuild,
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        keyword_word.span,
                    )
                    .expected("an instruction other than ONBUILD, FROM or MAINTAINER"));
                }
                Args::Sub {
                    node: Box::new(new_node(rest, cx, true)?),
                }
            }
        }
        _ => Args::none(),
    };
    let o = cx.off(trimmed);
    Ok(Node {
        keyword,
        keyword_span: keyword_word.span,
        flags,
        args,
        heredocs: Vec::new(),
        original: line.to_string(),
        span: cx.span(o, o + trimmed.len()),
    })
}

impl Node {
    /// BuildKit's `canContainHeredoc`: RUN/COPY/ADD (also inside ONBUILD)
    /// in shell form.
    fn can_contain_heredoc(&self) -> bool {
        let n = match &self.args {
            Args::Sub { node } if self.keyword == "onbuild" => node,
            _ => self,
        };
        matches!(n.keyword.as_str(), "run" | "copy" | "add") && !n.args.is_json()
    }
}

/// Physical lines with their source offsets; each line keeps its `\n`.
struct Lines<'s> {
    text: &'s str,
    pos: usize,
}

impl<'s> Iterator for Lines<'s> {
    type Item = (usize, &'s str);
    fn next(&mut self) -> Option<(usize, &'s str)> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i + 1);
        self.pos = end;
        Some((start, &self.text[start..end]))
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` for escape E:
/// the line ends with the escape character (then spaces/tabs), which is not
/// itself escaped. Returns the line without it, and whether the logical
/// line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before, false)
    } else {
        (line, true)
    }
}

/// Check the bytes are usable text: valid UTF-8 and no NUL byte.
pub(crate) fn check_text(source: &[u8]) -> Result<&str, ParseError> {
    match std::str::from_utf8(source) {
        Ok(text) => {
            if let Some(i) = text.find('\0') {
                let idx = LineIndex::new(text);
                return Err(ParseError::new(
                    ErrorKind::NulByte,
                    "NUL byte in Dockerfile",
                    idx.span(i, i + 1),
                )
                .expected("text")
                .help("a Dockerfile is text; remove the NUL byte (was a binary file passed by mistake?)"));
            }
            Ok(text)
        }
        Err(e) => {
            let good = e.valid_up_to();
            let bad_len = e.error_len().unwrap_or(source.len() - good);
            let prefix = std::str::from_utf8(&source[..good]).unwrap_or_default();
            let idx = LineIndex::new(prefix);
            let mut span = idx.span(good, good);
            span.end = good + bad_len;
            Err(ParseError::new(
                ErrorKind::InvalidUtf8,
                format!("invalid UTF-8 at byte {good}"),
                span,
            )
            .expected("UTF-8 text")
            .help("save the Dockerfile as UTF-8"))
        }
    }
}

/// Parse a Dockerfile into its syntax tree.
///
/// Errors: invalid UTF-8, NUL bytes, bad or duplicate parser directives,
/// JSON arrays with non-strings, `ENV`/`LABEL` without a value, unterminated
/// heredocs, and a file with no instructions.
pub fn parse(source: &[u8]) -> Result<Ast, ParseError> {
    let text = check_text(source)?;
    let idx = LineIndex::new(text);
    let body_start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lines = Lines {
        text,
        pos: body_start,
    };
    let mut directive_parser = DirectiveParser::default();
    let mut directives = Directives {
        escape_token: '\\',
        ..Directives::default()
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();

    while let Some((line_off, raw)) = lines.next() {
        let no_nl = trim_newline(raw);
        let content = no_nl.trim_start();
        let content_off = line_off + (no_nl.len() - content.len());
        if let Some((name, value)) = directive_parser.line(content) {
            let span = idx.span(content_off, content_off + content.len());
            record_directive(&mut directives, name, value, span)?;
        }
        let content = if is_comment(content) { "" } else { content };
        let (content, mut eol) = trim_continuation(content, directives.escape_token);
        if eol && content.is_empty() {
            continue;
        }
        let mut joined = Joined {
            text: String::with_capacity(content.len()),
            segments: Vec::new(),
        };
        joined.push(content, content_off);
        let mut end_off = line_off + no_nl.len();
        let mut empty_continuation = false;
        while !eol {
            let Some((off, raw)) = lines.next() else {
                break;
            };
            let no_nl = trim_newline(raw);
            if is_comment(raw) {
                continue;
            }
            if no_nl.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = trim_continuation(no_nl, directives.escape_token);
            eol = e;
            joined.push(piece, off);
            end_off = off + no_nl.len();
        }
        let cx = Cx {
            idx: &idx,
            joined: &joined,
            escape: directives.escape_token,
        };
        let mut node = new_node(&joined.text, &cx, false)?;
        if joined.text.trim().is_empty() {
            // Only escape characters: no text to point into, so point at the lines.
            node.span = idx.span(content_off, end_off.max(content_off));
            node.keyword_span = node.span;
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("empty continuation line found in: {}", joined.text.trim()),
                span: node.span,
                url: Some(
                    "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/".to_string(),
                ),
            });
        }
        if node.can_contain_heredoc() && joined.text.contains("<<") {
            let found = heredocs_in_line(&joined.text).map_err(|w| {
                ParseError::new(
                    ErrorKind::InvalidHeredoc,
                    format!("cannot read the heredoc word {w:?}"),
                    node.span,
                )
            })?;
            for (h, ws, we) in found {
                let intro = cx.span(ws, we);
                let mut content = String::new();
                let mut terminated = false;
                for (off, raw) in lines.by_ref() {
                    let mut candidate = trim_newline(raw);
                    if h.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    end_off = off + trim_newline(raw).len();
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(
                        ErrorKind::UnterminatedHeredoc,
                        "unterminated heredoc",
                        intro,
                    )
                    .expected(format!("a line `{}` after the heredoc body", h.name))
                    .help(format!(
                        "end the heredoc with a line containing only `{}`",
                        h.name
                    )));
                }
                node.heredocs.push(Heredoc {
                    name: h.name,
                    fd: h.fd,
                    expand: h.expand,
                    chomp: h.chomp,
                    content,
                    span: intro,
                });
            }
        }
        node.span = idx.span(node.span.start, end_off.max(node.span.end));
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(ParseError::new(
            ErrorKind::NoInstructions,
            "file with no instructions",
            idx.span(text.len(), text.len()),
        )
        .expected("an instruction such as `FROM`")
        .help("a Dockerfile needs at least `FROM <image>`"));
    }
    Ok(Ast {
        directives,
        nodes,
        warnings,
    })
}

fn record_directive(
    directives: &mut Directives,
    name: DirectiveName,
    value: &str,
    span: Span,
) -> Result<(), ParseError> {
    let slot = match name {
        DirectiveName::Syntax => &mut directives.syntax,
        DirectiveName::Escape => &mut directives.escape,
        DirectiveName::Check => &mut directives.check,
    };
    if slot.is_some() {
        return Err(ParseError::new(
            ErrorKind::DuplicateDirective,
            format!("only one {} parser directive can be used", name.as_str()),
            span,
        )
        .expected("at most one of each directive")
        .help("remove the duplicate directive"));
    }
    if name == DirectiveName::Escape {
        directives.escape_token = match value {
            "\\" => '\\',
            "`" => '`',
            _ => {
                return Err(ParseError::new(
                    ErrorKind::InvalidDirective,
                    format!("invalid escape token '{value}' does not match ` or \\"),
                    span,
                )
                .expected("`\\` or a backtick")
                .help("use `# escape=\\` (the default) or ``# escape=` `` (backtick)"));
            }
        };
    }
    *slot = Some(Directive {
        value: value.to_string(),
        span,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(node: &Node) -> Vec<&str> {
        match &node.args {
            Args::Words { words, .. } => words.iter().map(|w| w.value.as_str()).collect(),
            _ => panic!("expected words"),
        }
    }

    #[test]
    fn directives_only_at_the_top_and_case_insensitive() {
        let ast = parse(b"# Syntax=x/y\n# ESCAPE=`\nFROM a `\n  b\n").unwrap();
        assert_eq!(ast.directives.syntax.unwrap().value, "x/y");
        assert_eq!(ast.directives.escape_token, '`');
        assert_eq!(words(&ast.nodes[0]), ["a", "b"]);

        let ast = parse(b"# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(ast.directives.escape_token, '\\');
        assert!(ast.directives.escape.is_none());

        let ast = parse(b"FROM a\n# escape=`\n").unwrap();
        assert!(ast.directives.escape.is_none());

        let err = parse(b"# syntax=a\n# syntax=b\nFROM a\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::DuplicateDirective);
        assert_eq!(err.span.start_line, 2);

        let err = parse(b"# escape=$\nFROM a\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidDirective);
    }

    #[test]
    fn continuation_skips_comments_and_warns_on_empty_lines() {
        let ast = parse(b"FROM a\nRUN one \\\n# comment\n\n  two\n").unwrap();
        assert_eq!(words(&ast.nodes[1]), ["one   two"]);
        assert_eq!(ast.warnings.len(), 1);
        assert_eq!(ast.nodes[1].span.start_line, 2);
        assert_eq!(ast.nodes[1].span.end_line, 5);
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        let ast = parse(b"FROM a\nENV C x\\\\\nENV D y\n").unwrap();
        assert_eq!(ast.nodes.len(), 3);
    }

    #[test]
    fn trailing_escape_at_eof_ends_the_instruction() {
        let ast = parse(b"FROM a\nRUN x \\").unwrap();
        assert_eq!(words(&ast.nodes[1]), ["x"]);
    }

    #[test]
    fn bom_and_crlf_are_handled() {
        let ast = parse(b"\xef\xbb\xbfFROM a\r\nRUN b \\\r\n c\r\n").unwrap();
        assert_eq!(ast.nodes[0].keyword, "from");
        assert_eq!(ast.nodes[0].span.start, 3);
        assert_eq!(words(&ast.nodes[1]), ["b  c"]);
    }

    #[test]
    fn flags_are_unquoted_and_located() {
        let ast = parse(b"FROM a\nCOPY --chown=\"a b\" \\\n  --from=x src dst\n").unwrap();
        let node = &ast.nodes[1];
        let flags: Vec<&str> = node.flags.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(flags, ["--chown=a b", "--from=x"]);
        assert_eq!(node.flags[1].span.start_line, 3);
        assert_eq!(node.flags[1].span.start_column, 3);
        assert_eq!(words(node), ["src", "dst"]);
    }

    #[test]
    fn json_words_are_decoded_and_located() {
        let ast = parse(b"FROM a\nCMD [\"a\\tb\", \"c\"]\n").unwrap();
        let node = &ast.nodes[1];
        assert!(node.args.is_json());
        assert_eq!(words(node), ["a\tb", "c"]);
        let Args::Words { words, .. } = &node.args else {
            unreachable!()
        };
        assert_eq!(words[1].span.start_column, 14);
    }

    #[test]
    fn env_pairs_and_legacy_form() {
        let ast = parse(b"FROM a\nENV a=1 b=\"x y\"\nENV K v w\n").unwrap();
        let Args::KeyValues { pairs } = &ast.nodes[1].args else {
            panic!()
        };
        assert_eq!(pairs[1].value.value, "\"x y\"");
        assert_eq!(pairs[1].separator, "=");
        let Args::KeyValues { pairs } = &ast.nodes[2].args else {
            panic!()
        };
        assert_eq!(
            (pairs[0].key.value.as_str(), pairs[0].value.value.as_str()),
            ("K", "v w")
        );
        assert_eq!(pairs[0].separator, "");
    }

    #[test]
    fn heredoc_bodies_follow_the_instruction() {
        let ast = parse(b"FROM a\nRUN <<A <<-B\nx\nA\n\ty\n\tB\nRUN z\n").unwrap();
        let hs = &ast.nodes[1].heredocs;
        assert_eq!(hs[0].content, "x\n");
        assert_eq!(hs[1].content, "\ty\n");
        assert!(hs[1].chomp);
        assert_eq!(ast.nodes[1].span.end_line, 6);
        assert_eq!(words(&ast.nodes[2]), ["z"]);

        let err = parse(b"FROM a\nRUN <<EOF\nbody\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnterminatedHeredoc);
        assert_eq!((err.span.start_line, err.span.start_column), (2, 5));
    }

    /// BuildKit's heredoc extraction cases (parser_heredoc_test.go), as
    /// (name, content, expand, chomp, fd) per instruction.
    #[test]
    fn heredoc_extraction_matches_buildkit() {
        let src = "FROM alpine:3.6\nUSER <<INVALID\nINVALID\nRUN <<EMPTY\nEMPTY\nRUN 3<<EMPTY2\nEMPTY2\n\
RUN \"<<NOHEREDOC\"\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\nRUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\
RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n\
RUN <<eo'f'\necho foo\neof\nRUN <<eo\\'f\necho foo\neo'f\nRUN <<'e'o\\'f\necho foo\neo'f\n\
RUN <<'one two'\necho bar\none two\nRUN <<$EOF\n$EOF\nRUN <<  EOF  > foo\nEOF\nRUN << -EOF\n-EOF\n\
RUN [\"<<EOF\"]\n";
        let ast = parse(src.as_bytes()).unwrap();
        type Found = (String, String, bool, bool, u32);
        let got: Vec<Vec<Found>> = ast.nodes[1..]
            .iter()
            .map(|n| {
                n.heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.content.clone(), h.expand, h.chomp, h.fd))
                    .collect()
            })
            .collect();
        let h = |n: &str, c: &str, e: bool, ch: bool, fd: u32| {
            (n.to_string(), c.to_string(), e, ch, fd)
        };
        let want = vec![
            vec![],
            vec![],
            vec![h("EMPTY", "", true, false, 0)],
            vec![h("EMPTY2", "", true, false, 3)],
            vec![],
            vec![h("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
            vec![h("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)],
            vec![h("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)],
            vec![h("X", "Y\n", true, false, 0), h("Y", "X\n", true, false, 0)],
            vec![h("eof", "echo foo\n", false, false, 0)],
            vec![h("eo'f", "echo foo\n", true, false, 0)],
            vec![h("eo'f", "echo foo\n", false, false, 0)],
            vec![h("one two", "echo bar\n", false, false, 0)],
            vec![h("$EOF", "", true, false, 0)],
            vec![h("EOF", "", true, false, 0)],
            vec![h("-EOF", "", true, false, 0)],
            vec![],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn empty_continuation_warnings_match_buildkit() {
        let src = "FROM alpine\nRUN valid \\\n    continuation\nRUN something \\\n\n    following \\\n\n    more\n\
RUN another \\\n\n    thing\nRUN non-indented \\\n# c\n   after\nRUN indented \\\n    # c\n    comment\n";
        let ast = parse(src.as_bytes()).unwrap();
        let msgs: Vec<&str> = ast.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(msgs.len(), 2);
        let shown = ast.warnings[0].render("Dockerfile", src.as_bytes());
        assert!(
            shown.starts_with("warning: empty continuation line"),
            "{shown}"
        );
        assert!(shown.contains("Dockerfile:4:1"), "{shown}");
        assert!(msgs[0].contains("RUN something     following     more"));
        assert!(msgs[1].contains("RUN another     thing"));
    }

    #[test]
    fn bad_input_gives_located_errors() {
        let err = parse(b"FROM a\nRUN \xc3\x28\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidUtf8);
        assert_eq!((err.span.start_line, err.span.start_column), (2, 5));
        let err = parse(b"FROM a\0").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NulByte);
        assert_eq!(parse(b"").unwrap_err().kind, ErrorKind::NoInstructions);
        assert_eq!(
            parse(b"# a\n\n# b\n").unwrap_err().kind,
            ErrorKind::NoInstructions
        );
    }
}
