//! `.dockerignore` rules, matched as `docker build` (BuildKit) matches them.
//!
//! The facts this follows, from moby/patternmatcher and tonistiigi/fsutil:
//!
//! - the file is read line by line (a trailing `\r` dropped, a UTF-8 BOM
//!   dropped from the first line); a line whose *first byte* is `#` is a
//!   comment, then the line is trimmed and blank lines are skipped (so
//!   `  #x` is a pattern, not a comment);
//! - a leading `!` (then trimmed again) makes an exception, which
//!   re-includes what it matches; a lone `!` is an error;
//! - each pattern is cleaned like Go's `filepath.Clean` (so `dir/` is
//!   `dir`, `a/./b/../c` is `a/c`) and one leading `/` is stripped;
//! - `*` matches within one path segment, `?` one character other than
//!   `/`, `[...]` a character class (`^` negates), `\` escapes the next
//!   character, `**` any number of segments; a pattern that starts with
//!   `**` and has no other wildcard is a plain suffix test (`**/foo`
//!   matches `foo` and `a/b/foo`, and `**foo` matches `barfoo`), one that
//!   ends in `**` after only literal text is a plain prefix test;
//! - patterns apply in order and the last one that matches wins; a path
//!   also matches a pattern that matched one of its parent directories
//!   (excluding `dir` excludes everything under it, and `!dir` re-includes
//!   everything under it);
//! - while walking, a directory remembers which patterns it matched and
//!   its children inherit those matches ([`MatchState`]), exactly as
//!   BuildKit's context walker does (`MatchesUsingParentResults`): a
//!   pattern that was not consulted for a directory (an exception while
//!   nothing was excluded yet) is not inherited by its children.
//!
//! Known differences from Docker, all in patterns nobody writes: Docker
//! turns patterns into Go regular expressions character by character, so
//! `\d`, `\w` etc. are regexp classes there and literal letters here, a
//! `*` or `?` inside `[...]` is a regexp quirk there and a literal here,
//! and Go's `.` does not match a newline in a file name.

use std::path::{Path, PathBuf};

use super::ContextError;

/// Why a `.dockerignore` line is not a valid pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternErrorKind {
    /// `!` with nothing after it (Docker: `illegal exclusion pattern: "!"`).
    #[error("illegal exclusion pattern \"!\"")]
    LoneExclamation,
    /// An unterminated or empty `[...]` class, a bad range, or a trailing
    /// `\` (Go: `syntax error in pattern`).
    #[error("syntax error in pattern")]
    Syntax,
}

/// A pattern given on its own (COPY's `--exclude`, the include pattern
/// of `COPY --parents`) that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {}", rbuild_oci::path_text::quoted(pattern))]
pub struct InvalidPattern {
    /// The pattern as given.
    pub pattern: String,
    #[source]
    pub reason: PatternErrorKind,
}

/// The parsed rules of one `.dockerignore` file: which context paths a
/// build may not read. Empty rules exclude nothing.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
    /// The file the rules came from, for messages; `None` when there was
    /// none.
    source: Option<PathBuf>,
}

/// Which patterns matched a directory, passed down to its children so
/// they inherit those matches (BuildKit's `MatchInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchState {
    /// One flag per pattern; empty means "no information" (top level).
    matched: Vec<bool>,
}

impl IgnoreRules {
    /// Rules that exclude nothing.
    pub fn none() -> IgnoreRules {
        IgnoreRules::default()
    }

    /// Parses the text of an ignore file; `origin` names it in errors.
    pub fn parse(text: &[u8], origin: &Path) -> Result<IgnoreRules, ContextError> {
        let mut patterns = Vec::new();
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        for (index, raw) in split_lines(text).enumerate() {
            let line = index + 1;
            if raw.first() == Some(&b'#') {
                continue;
            }
            let bad = |reason, pattern: &str| ContextError::Pattern {
                file: origin.to_path_buf(),
                line,
                pattern: pattern.to_string(),
                reason,
            };
            // Bytes that are not UTF-8 match names holding those bytes,
            // as in Docker (Go strings are bytes).
            let text = rbuild_oci::path_text::from_bytes(raw);
            let text: &str = &text;
            let Some(normalized) = normalize_line(text) else {
                continue;
            };
            let pattern = Pattern::new(&normalized).map_err(|reason| bad(reason, text.trim()))?;
            patterns.push(pattern);
        }
        Ok(IgnoreRules {
            patterns,
            source: Some(origin.to_path_buf()),
        })
    }

    /// Compiles patterns given one by one, as BuildKit compiles COPY's
    /// `--exclude` and `--parents` patterns (moby/patternmatcher's `New`):
    /// each is trimmed (blank ones skipped) and cleaned, a leading `!`
    /// re-includes. Unlike a `.dockerignore` line there are no comments
    /// and a leading `/` is kept, so `/a` never matches a relative path,
    /// as in BuildKit.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<IgnoreRules, InvalidPattern> {
        let mut compiled = Vec::new();
        for raw in patterns {
            let text = raw.as_ref().trim();
            if text.is_empty() {
                continue;
            }
            let pattern = Pattern::new(text).map_err(|reason| InvalidPattern {
                pattern: raw.as_ref().to_string(),
                reason,
            })?;
            compiled.push(pattern);
        }
        Ok(IgnoreRules {
            patterns: compiled,
            source: None,
        })
    }

    /// Reads the ignore file for a build: `<Dockerfile name>.dockerignore`
    /// next to the Dockerfile when it exists (BuildKit's rule, so one
    /// context can serve several Dockerfiles), else `.dockerignore` at the
    /// root of `context_dir`, else no rules.
    pub fn load(
        context_dir: &Path,
        dockerfile: Option<&Path>,
    ) -> Result<IgnoreRules, ContextError> {
        let mut candidates = Vec::new();
        if let Some(dockerfile) = dockerfile {
            if let Some(name) = dockerfile.file_name() {
                let mut name = name.to_os_string();
                name.push(".dockerignore");
                candidates.push(dockerfile.with_file_name(name));
            }
        }
        candidates.push(context_dir.join(".dockerignore"));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(text) => return IgnoreRules::parse(&text, &path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ContextError::Io { path, source }),
            }
        }
        Ok(IgnoreRules::none())
    }

    /// The file the rules were read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// True when there are no patterns (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an exception (`!`), i.e. an excluded
    /// directory may still hold included entries.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative, `/`-separated, cleaned) is excluded,
    /// evaluating each parent directory in turn as the walker does. The
    /// context root (`""`) is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.evaluate_path(path).0
    }

    /// Whether `path` is excluded, and the state to pass to its children
    /// (see [`IgnoreRules::evaluate`]).
    pub fn evaluate_path(&self, path: &str) -> (bool, MatchState) {
        let mut state = MatchState::default();
        if self.patterns.is_empty() || path.is_empty() {
            return (false, state);
        }
        let mut start = 0;
        loop {
            let end = path[start..].find('/').map(|i| start + i);
            let excluded;
            (excluded, state) = self.evaluate(&path[..end.unwrap_or(path.len())], &state);
            match end {
                Some(slash) => start = slash + 1,
                None => return (excluded, state),
            }
        }
    }

    /// Whether `path` is excluded given the state of its parent directory
    /// (`MatchState::default()` for entries at the top of the context),
    /// and the state to pass to `path`'s own children.
    pub fn evaluate(&self, path: &str, parent: &MatchState) -> (bool, MatchState) {
        let inherited = &parent.matched;
        let have_parent = inherited.len() == self.patterns.len();
        let mut state = MatchState {
            matched: vec![false; self.patterns.len()],
        };
        let mut excluded = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = have_parent && inherited[i];
            if !hit {
                // An exception only matters once something is excluded,
                // an exclusion only while nothing is: skip the others (and
                // do not record them, which children notice).
                if pattern.exception != excluded {
                    continue;
                }
                hit = pattern.matches(path);
                if !hit && !have_parent {
                    // No parent information: try each parent directory.
                    hit = parents(path).any(|dir| pattern.matches(dir));
                }
            }
            state.matched[i] = hit;
            if hit {
                excluded = !pattern.exception;
            }
        }
        (excluded, state)
    }

    /// Whether some exception could match an entry strictly below `dir`
    /// (conservative: true when unsure). When false, nothing below an
    /// excluded `dir` can be re-included, so it need not be walked.
    pub(crate) fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| match &p.kind {
                Kind::Exact => p.text.starts_with(&dir_slash),
                Kind::Prefix(prefix) => {
                    prefix.starts_with(&dir_slash) || dir_slash.starts_with(prefix.as_str())
                }
                Kind::Suffix(_) | Kind::Tokens(_) => true,
            })
    }
}

/// Splits like Go's `bufio.ScanLines`: on `\n`, dropping one trailing
/// `\r`, with no empty last line after a final newline.
fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut lines = body.split(|&b| b == b'\n');
    if text.is_empty() {
        // `split` yields one empty item for empty input; Go yields none.
        lines.next();
    }
    lines.map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// A line (not a comment) as moby's `ignorefile.ReadAll` normalizes it:
/// trimmed, `!` split off and the rest trimmed, cleaned, one leading `/`
/// stripped. `None` for a blank line.
fn normalize_line(line: &str) -> Option<String> {
    let mut pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let exception = pattern.starts_with('!');
    if exception {
        pattern = pattern[1..].trim();
    }
    let mut cleaned = String::new();
    if !pattern.is_empty() {
        cleaned = rbuild_solver::plan::clean_path(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    Some(if exception {
        format!("!{cleaned}")
    } else {
        cleaned
    })
}

/// The proper parent directories of `path`, shortest first (`a`, `a/b`
/// for `a/b/c`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    kind: Kind,
}

/// How a pattern is tested, as patternmatcher classifies it.
#[derive(Debug, Clone)]
enum Kind {
    /// No wildcard, no escape: the path equals the text.
    Exact,
    /// Literal text then a final `**`: the path starts with the text.
    Prefix(String),
    /// A leading `**` then literal text: the path ends with the text (or,
    /// for `**/x`, equals `x`).
    Suffix(String),
    /// Anything else: matched token by token.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` (with its following `/` eaten) before more pattern: nothing, or
    /// anything that ends with `/`.
    AnyDirs,
    /// A final `**` after other wildcards: anything at all.
    AnyRest,
    Class(Class),
    /// `^` outside a class: a regexp anchor in Docker, so it only matches
    /// at the very start of the path (and consumes nothing).
    Caret,
}

#[derive(Debug, Clone, PartialEq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

impl Pattern {
    /// Compiles one normalized line (with its `!`, if any).
    fn new(line: &str) -> Result<Pattern, PatternErrorKind> {
        // patternmatcher.New trims and cleans once more, `!` included.
        let cleaned = rbuild_solver::plan::clean_path(line.trim());
        let (exception, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternErrorKind::LoneExclamation),
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned),
        };
        let kind = compile(&text)?;
        Ok(Pattern {
            text,
            exception,
            kind,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                let mut failed = vec![false; (tokens.len() + 1) * (chars.len() + 1)];
                match_tokens(tokens, 0, &chars, 0, &mut failed)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

/// Classifies and tokenizes a cleaned pattern the way patternmatcher's
/// `compile` does, with Go `filepath.Match`'s syntax checks.
fn compile(text: &str) -> Result<Kind, PatternErrorKind> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut detected = Detected::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::AnyRest);
                        detected = Detected::Tokens;
                    }
                } else {
                    tokens.push(Token::AnyDirs);
                    detected = Detected::Tokens;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Tokens;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                detected = Detected::Tokens;
            }
            '\\' => {
                let Some(&next) = chars.get(i) else {
                    return Err(PatternErrorKind::Syntax);
                };
                i += 1;
                tokens.push(Token::Literal(next));
                detected = Detected::Tokens;
            }
            '[' => {
                let (class, used) = parse_class(&chars[i..])?;
                i += used;
                tokens.push(Token::Class(class));
                detected = Detected::Tokens;
            }
            ']' => {
                tokens.push(Token::Literal(']'));
                detected = Detected::Tokens;
            }
            '^' => tokens.push(Token::Caret),
            c => tokens.push(Token::Literal(c)),
        }
        first = false;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(text[..text.len() - 2].to_string()),
        Detected::Suffix => Kind::Suffix(text[2..].to_string()),
        Detected::Tokens => Kind::Tokens(tokens),
    })
}

/// Parses a class body after its `[` with Go `filepath.Match`'s rules:
/// optional `^`, then at least one item (`c`, `\c`, `lo-hi`), then `]`.
/// Returns the class and how many characters it used (through the `]`).
fn parse_class(chars: &[char]) -> Result<(Class, usize), PatternErrorKind> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let lo = class_char(chars, &mut i)?;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            i += 1;
            hi = class_char(chars, &mut i)?;
        }
        ranges.push((lo, hi));
    }
}

/// One possibly escaped character of a class (Go's `getEsc`).
fn class_char(chars: &[char], i: &mut usize) -> Result<char, PatternErrorKind> {
    let mut c = match chars.get(*i) {
        None | Some('-') | Some(']') => return Err(PatternErrorKind::Syntax),
        Some(&c) => c,
    };
    *i += 1;
    if c == '\\' {
        c = *chars.get(*i).ok_or(PatternErrorKind::Syntax)?;
        *i += 1;
    }
    if *i >= chars.len() {
        // The class never closes.
        return Err(PatternErrorKind::Syntax);
    }
    Ok(c)
}

/// Backtracking match of `tokens[t..]` against `s[pos..]`, remembering
/// failed (token, position) pairs so it stays polynomial.
fn match_tokens(tokens: &[Token], t: usize, s: &[char], pos: usize, failed: &mut [bool]) -> bool {
    let slot = t * (s.len() + 1) + pos;
    if failed[slot] {
        return false;
    }
    let ok = match tokens.get(t) {
        None => pos == s.len(),
        Some(token) => match token {
            Token::Literal(c) => {
                s.get(pos) == Some(c) && match_tokens(tokens, t + 1, s, pos + 1, failed)
            }
            Token::AnyChar => {
                s.get(pos).is_some_and(|&c| c != '/')
                    && match_tokens(tokens, t + 1, s, pos + 1, failed)
            }
            Token::Class(class) => {
                s.get(pos).is_some_and(|&c| class.matches(c))
                    && match_tokens(tokens, t + 1, s, pos + 1, failed)
            }
            Token::Caret => pos == 0 && match_tokens(tokens, t + 1, s, pos, failed),
            Token::Star => {
                let mut end = pos;
                loop {
                    if match_tokens(tokens, t + 1, s, end, failed) {
                        break true;
                    }
                    if end == s.len() || s[end] == '/' {
                        break false;
                    }
                    end += 1;
                }
            }
            Token::AnyRest => {
                (pos..=s.len()).any(|end| match_tokens(tokens, t + 1, s, end, failed))
            }
            Token::AnyDirs => {
                match_tokens(tokens, t + 1, s, pos, failed)
                    || (pos..s.len())
                        .filter(|&i| s[i] == '/')
                        .any(|i| match_tokens(tokens, t + 1, s, i + 1, failed))
            }
        },
    };
    if !ok {
        failed[slot] = true;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text.as_bytes(), Path::new(".dockerignore")).unwrap()
    }

    /// Each case: ignore file text, path, whether Docker excludes it.
    #[track_caller]
    fn check(cases: &[(&str, &str, bool)]) {
        let mut wrong = Vec::new();
        for &(text, path, want) in cases {
            if rules(text).is_excluded(path) != want {
                wrong.push(format!("{text:?} on {path:?}: want excluded={want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn docker_documented_examples() {
        // https://docs.docker.com/build/concepts/context/#dockerignore-files
        let doc = "# comment\n*/temp*\n*/*/temp*\ntemp?\n";
        check(&[
            (doc, "somedir/temporary.txt", true),
            (doc, "somedir/temp", true),
            (doc, "temporary.txt", false),
            (doc, "somedir/subdir/temporary.txt", true),
            (doc, "a/b/c/temp", false),
            (doc, "tempa", true),
            (doc, "tempab", false),
            (doc, "temp", false),
            (doc, "# comment", false),
        ]);
        let md = "*.md\n!README.md\n";
        check(&[
            (md, "CHANGES.md", true),
            (md, "README.md", false),
            // `*` does not cross `/`: only top-level .md files match.
            (md, "docs/a.md", false),
        ]);
        let order = "*.md\n!README*.md\nREADME-secret.md\n";
        check(&[
            (order, "README-secret.md", true),
            (order, "README-public.md", false),
            (order, "other.md", true),
        ]);
        let order2 = "*.md\nREADME-secret.md\n!README*.md\n";
        check(&[(order2, "README-secret.md", false)]);
        check(&[
            ("**/*.go", "main.go", true),
            ("**/*.go", "a/b/c.go", true),
            ("**/*.go", "a/b/c.gox", false),
        ]);
    }

    #[test]
    fn line_handling() {
        check(&[
            ("  foo  \n", "foo", true),
            ("foo\r\n", "foo", true),
            ("\u{feff}foo\n", "foo", true),
            ("#foo\n", "foo", false),
            // Only a `#` in the first column starts a comment.
            ("  #foo\n", "#foo", true),
            ("\n\n   \n", "x", false),
            ("/foo\n", "foo", true),
            ("//foo/\n", "foo", true),
            ("! foo\n*\n! foo \n", "foo", false),
            ("foo/../bar\n", "bar", true),
            ("foo/../bar\n", "foo", false),
            ("./foo\n", "foo", true),
            ("../foo\n", "foo", false),
            ("last", "last", true),
        ]);
    }

    #[test]
    fn directories_and_parents() {
        check(&[
            // A trailing `/` is cleaned away: `dir/` also matches a file.
            ("dir/\n", "dir", true),
            ("dir/\n", "dir/file", true),
            ("dir\n", "dir/sub/file", true),
            ("dir\n", "other/dir", false),
            ("dir/*\n", "dir", false),
            ("dir/*\n", "dir/a/b", true),
            ("*/dir\n", "x/dir/y", true),
            ("*\n", "anything/below", true),
            // `!` after a directory exclusion re-includes one file…
            ("dir\n!dir/keep\n", "dir/keep", false),
            ("dir\n!dir/keep\n", "dir/drop", true),
            ("dir\n!dir/keep\n", "dir/keep/inner", false),
            // …but not when the exclusion comes last.
            ("!dir/keep\ndir\n", "dir/keep", true),
            ("*\n!src\nsrc/gen\n", "src/main.rs", false),
            ("*\n!src\nsrc/gen\n", "src/gen/x.rs", true),
            ("*\n!src\nsrc/gen\n", "Makefile", true),
        ]);
    }

    #[test]
    fn double_star() {
        check(&[
            ("**\n", "a", true),
            ("**\n", "a/b/c", true),
            ("**/foo\n", "foo", true),
            ("**/foo\n", "a/b/foo", true),
            ("**/foo\n", "a/xfoo", false),
            ("**/foo\n", "foo/bar", true),
            // A bare suffix test, as in Docker.
            ("**foo\n", "barfoo", true),
            ("foo/**\n", "foo", false),
            ("foo/**\n", "foo/x/y", true),
            // A plain prefix test: `foo**` matches `foobar`.
            ("foo**\n", "foobar", true),
            ("a/**/b\n", "a/b", true),
            ("a/**/b\n", "a/x/y/b", true),
            ("a/**/b\n", "a/xb", false),
            ("a/**/b\n", "a/x/b/c", true),
            ("*/**\n", "a/b", true),
            ("*/**\n", "a", false),
            ("**/*.go\n!**/keep.go\n", "x/keep.go", false),
            ("**/*.go\n!**/keep.go\n", "x/drop.go", true),
            ("**/a/**/*.txt\n", "x/a/y/z.txt", true),
            ("**/a/**/*.txt\n", "a/z.txt", true),
            // `**` in the middle of a segment: `(.*/)?` as in Docker.
            ("a**b\n", "ab", true),
            ("a**b\n", "ax/b", true),
            ("a**b\n", "axb", false),
        ]);
    }

    #[test]
    fn wildcards_classes_and_escapes() {
        check(&[
            ("?\n", "a", true),
            ("?\n", "ab", false),
            ("a?c\n", "a/c", false),
            ("*.txt\n", ".hidden.txt", true),
            ("[abc].txt\n", "b.txt", true),
            ("[abc].txt\n", "d.txt", false),
            ("[^abc].txt\n", "d.txt", true),
            ("[^abc].txt\n", "a.txt", false),
            ("[a-c]x\n", "bx", true),
            ("[a-c]x\n", "dx", false),
            ("[\\]]\n", "]", true),
            ("\\*\n", "*", true),
            ("\\*\n", "a", false),
            ("\\?x\n", "?x", true),
            ("a\\[b\n", "a[b", true),
            // Regexp metacharacters mean themselves.
            ("a.b\n", "a.b", true),
            ("a.b\n", "axb", false),
            ("*.(x)+\n", "y.(x)+", true),
            ("a$|b\n", "a$|b", true),
            ("*{a,b}\n", "x{a,b}", true),
            // `^` is a literal in a plain pattern, an anchor in a glob.
            ("a^b\n", "a^b", true),
            ("a^*\n", "a^b", false),
            ("^*\n", "x", true),
            ("é?\n", "éa", true),
        ]);
    }

    /// moby/patternmatcher's own single-pattern table (paths with a
    /// trailing `/` left out: the walker never produces them).
    #[test]
    fn patternmatcher_table() {
        let table: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
            ("**\n!util/docker/web", "util/docker/web/foo", false),
            (
                "**\n!util/docker/web\nutil/docker/web/foo",
                "util/docker/web/foo",
                true,
            ),
            (
                "**\n!dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        check(table);
    }

    #[test]
    fn root_is_never_excluded() {
        check(&[("*\n", "", false), ("**\n", "", false), (".\n", "", false)]);
    }

    #[test]
    fn walker_parent_results() {
        // BuildKit's walker: `!a` is skipped at `a` (nothing excluded yet),
        // so `a/b` keeps its exclusion.
        check(&[("a/b\n!a\n", "a/b", true), ("a/b\n!a\n", "a", false)]);
    }

    #[test]
    fn a_line_that_is_not_utf8_matches_names_with_those_bytes() {
        let rules = IgnoreRules::parse(b"a\xff*\n?\xfe\n", Path::new(".dockerignore")).unwrap();
        let name = |b: &[u8]| rbuild_oci::path_text::from_bytes(b).into_owned();
        assert!(rules.evaluate_path(&name(b"a\xffzz")).0);
        assert!(rules.evaluate_path(&name(b"\xff\xfe")).0, "? is one byte");
        assert!(!rules.evaluate_path(&name(b"a\xfd")).0);
        assert!(
            !rules.evaluate_path(&name(b"ab\xfe")).0,
            "? is not two bytes"
        );
        assert!(!rules.evaluate_path(&name(b"ab")).0);
    }

    #[test]
    fn invalid_patterns_name_file_and_line() {
        for (text, reason) in [
            ("ok\n!\n", PatternErrorKind::LoneExclamation),
            ("ok\n!  \n", PatternErrorKind::LoneExclamation),
            ("ok\n[\n", PatternErrorKind::Syntax),
            ("ok\n[]\n", PatternErrorKind::Syntax),
            ("ok\n[^]\n", PatternErrorKind::Syntax),
            ("ok\n[a-]\n", PatternErrorKind::Syntax),
            ("ok\n[-a]\n", PatternErrorKind::Syntax),
            ("ok\n[ab\n", PatternErrorKind::Syntax),
            ("ok\nab\\\n", PatternErrorKind::Syntax),
        ] {
            let err =
                IgnoreRules::parse(text.as_bytes(), Path::new("ctx/.dockerignore")).unwrap_err();
            match &err {
                ContextError::Pattern {
                    file,
                    line,
                    reason: got,
                    ..
                } => {
                    assert_eq!(
                        (file.as_path(), *line, *got),
                        (Path::new("ctx/.dockerignore"), 2, reason)
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                err.to_string().starts_with("ctx/.dockerignore:2: "),
                "{err}"
            );
        }
    }

    #[test]
    fn clean_follows_go() {
        for (input, want) in [
            ("", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(rbuild_solver::plan::clean_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn patterns_given_one_by_one_compile_like_patternmatcher_new() {
        let r = IgnoreRules::from_patterns(&["  **.txt ", "", "!keep/b.txt/", "./x/../y"]).unwrap();
        assert!(r.source().is_none());
        assert!(r.is_excluded("a/b.txt"));
        assert!(!r.is_excluded("keep/b.txt"));
        assert!(r.is_excluded("y/z"));
        // No comments, and a leading `/` is kept (only the `.dockerignore`
        // reader strips it).
        let r = IgnoreRules::from_patterns(&["#x", "/y"]).unwrap();
        assert!(r.is_excluded("#x"));
        assert!(!r.is_excluded("y"));
        let err = IgnoreRules::from_patterns(&["ok", " ! "]).unwrap_err();
        assert_eq!(
            err,
            InvalidPattern {
                pattern: " ! ".to_string(),
                reason: PatternErrorKind::LoneExclamation
            }
        );
        assert!(IgnoreRules::from_patterns::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn reinclusion_pruning_is_conservative() {
        let r = rules("node_modules\n!node_modules/keep\n");
        assert!(r.may_reinclude_below("node_modules"));
        assert!(!r.may_reinclude_below("node_modules/other"));
        assert!(!rules("x\n").may_reinclude_below("x"));
        assert!(rules("x\n!**/*.md\n").may_reinclude_below("x"));
    }
}
