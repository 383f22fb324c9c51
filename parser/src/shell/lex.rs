//! [`Lex`]: the expander itself, and its results [`Expanded`] and
//! [`ExpandedWords`].
//!
//! The scanner walks the word once, left to right. Each `${…}` with an
//! operator scans its argument by calling back into the same loop, so the
//! only recursion is the nesting depth of `${…}`, capped at
//! [`MAX_NESTING`]. Every character is copied a bounded number of times
//! (once per enclosing `${…}` level), which keeps expansion linear in the
//! length of the word; the pattern operators add the cost documented in
//! [`pattern`](super::pattern).

use std::collections::BTreeSet;

use super::env_lookup::EnvLookup;
use super::expand_error::ExpandError;
use super::pattern::{InvalidEscape, Pattern};
use super::unicode_class::{is_digit, is_letter};

/// How deeply `${…}` may nest inside the operand of another `${…}`.
///
/// BuildKit has no limit; real Dockerfiles nest two or three levels. The cap
/// bounds stack use for hostile input.
pub const MAX_NESTING: usize = 100;

/// Shell-word expander with BuildKit's options.
///
/// `Lex::new('\\')` (or `Lex::default()`) is what the Dockerfile frontend
/// uses for ENV, LABEL, COPY, WORKDIR and the other expanding instructions;
/// the escape becomes a backtick when the Dockerfile starts with the
/// ``# escape=` `` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lex {
    /// The escape character: `\` or `` ` ``.
    pub escape: char,
    /// Keep the quote characters in the output (BuildKit `RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub raw_escapes: bool,
    /// Leave references to unset variables as written, e.g. `$X` or
    /// `${X:-y}` (BuildKit `SkipUnsetEnv`; used for step names).
    pub skip_unset_env: bool,
    /// Treat `'` and `"` as ordinary characters (BuildKit
    /// `SkipProcessQuotes`; used for heredoc bodies).
    pub skip_process_quotes: bool,
}

impl Default for Lex {
    fn default() -> Self {
        Lex::new('\\')
    }
}

impl Lex {
    /// An expander with escape character `escape` and every option off.
    pub fn new(escape: char) -> Self {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// The expander BuildKit uses for the body of a COPY/ADD heredoc with an
    /// unquoted delimiter: escape `\` whatever the Dockerfile's escape
    /// directive, and quotes left as they are.
    pub fn for_heredoc() -> Self {
        Lex {
            skip_process_quotes: true,
            ..Lex::new('\\')
        }
    }

    /// Expands `word` into one string: quotes removed, escapes applied,
    /// variables substituted, whitespace kept.
    pub fn process_word<E: EnvLookup + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expanded, ExpandError> {
        let mut scanner = Scanner::new(self, word, env);
        let value = scanner.scan_until(None, self.raw_escapes, None)?;
        Ok(Expanded {
            value,
            matched: scanner.matched,
            unmatched: scanner.unmatched,
        })
    }

    /// Expands `word` and splits it into words at unquoted, unescaped
    /// whitespace, including whitespace that comes from a variable's value
    /// (`ENV space="a  b"` then `x${space}y` gives `xa`, `by`). Empty words
    /// are dropped. Used for EXPOSE.
    pub fn process_words<E: EnvLookup + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<ExpandedWords, ExpandError> {
        let mut scanner = Scanner::new(self, word, env);
        let mut splitter = WordSplitter::default();
        scanner.scan_until(None, self.raw_escapes, Some(&mut splitter))?;
        Ok(ExpandedWords {
            words: splitter.finish(),
            matched: scanner.matched,
            unmatched: scanner.unmatched,
        })
    }
}

/// The result of [`Lex::process_word`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    /// The expanded word.
    pub value: String,
    /// Variables the word referred to that were set (even if empty). The
    /// solver folds exactly these into cache keys.
    pub matched: BTreeSet<String>,
    /// Variables the word referred to that were not set; BuildKit warns
    /// about these (`UndefinedVar`) and uses the rest for "unused
    /// --build-arg" reporting.
    pub unmatched: BTreeSet<String>,
}

/// The result of [`Lex::process_words`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpandedWords {
    /// The expanded words, in order, none empty.
    pub words: Vec<String>,
    /// As [`Expanded::matched`].
    pub matched: BTreeSet<String>,
    /// As [`Expanded::unmatched`].
    pub unmatched: BTreeSet<String>,
}

/// Collects words while the top-level scan runs. Text from `$…` is split
/// at whitespace; quoted text and escaped characters never are.
#[derive(Default)]
struct WordSplitter {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl WordSplitter {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

struct Scanner<'a, E: ?Sized> {
    lex: &'a Lex,
    src: &'a str,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a, E: EnvLookup + ?Sized> Scanner<'a, E> {
    fn new(lex: &'a Lex, src: &'a str, env: &'a E) -> Self {
        Scanner {
            lex,
            src,
            // Go's text/scanner, which BuildKit reads words with, discards a
            // byte order mark at the start of its input.
            pos: if src.starts_with('\u{feff}') { 3 } else { 0 },
            env,
            raw_escapes: lex.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Looks a name up and records whether it was set.
    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let env: &'a E = self.env;
        let value = env.lookup(name);
        let set = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !set.contains(name) {
            set.insert(name.to_string());
        }
        value
    }

    /// Scans until `stop` (consumed) or the end of the word. Reaching the
    /// end while looking for `stop` is an error the caller reports with the
    /// right construct; here it is a `MissingBrace` placeholder.
    fn scan_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut WordSplitter>,
    ) -> Result<String, ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let mut out = String::new();
        let result = (|| {
            while let Some(ch) = self.peek() {
                if Some(ch) == stop {
                    self.bump();
                    return Ok(());
                }
                match ch {
                    '$' => {
                        let text = self.dollar()?;
                        out.push_str(&text);
                        if let Some(w) = words.as_deref_mut() {
                            w.add_str(&text);
                        }
                    }
                    '<' => {
                        let text = self.possible_heredoc();
                        out.push_str(text);
                        if let Some(w) = words.as_deref_mut() {
                            w.add_raw_str(text);
                        }
                    }
                    '\'' | '"' if !self.lex.skip_process_quotes => {
                        let text = if ch == '\'' {
                            self.single_quoted()?
                        } else {
                            self.double_quoted()?
                        };
                        out.push_str(&text);
                        if let Some(w) = words.as_deref_mut() {
                            w.add_raw_str(&text);
                        }
                    }
                    _ => {
                        self.bump();
                        if ch == self.lex.escape {
                            if self.raw_escapes {
                                out.push(ch);
                                if let Some(w) = words.as_deref_mut() {
                                    w.add_raw_char(ch);
                                }
                            }
                            // An escape at the very end of the word is dropped.
                            let Some(escaped) = self.bump() else { break };
                            out.push(escaped);
                            if let Some(w) = words.as_deref_mut() {
                                w.add_raw_char(escaped);
                            }
                        } else {
                            out.push(ch);
                            if let Some(w) = words.as_deref_mut() {
                                w.add_char(ch);
                            }
                        }
                    }
                }
            }
            match stop {
                Some(_) => Err(ExpandError::MissingBrace { offset: self.pos }),
                None => Ok(()),
            }
        })();
        self.raw_escapes = saved;
        result.map(|()| out)
    }

    /// `'…'`: everything literal up to the next `'`; nothing escapes it.
    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let rest = &self.src[self.pos..];
        let Some(len) = rest.find('\'') else {
            return Err(ExpandError::UnterminatedQuote {
                offset: start,
                quote: '\'',
            });
        };
        let mut out = String::with_capacity(len + 2);
        if self.lex.raw_quotes {
            out.push('\'');
        }
        out.push_str(&rest[..len]);
        if self.lex.raw_quotes {
            out.push('\'');
        }
        self.pos += len + 1;
        Ok(out)
    }

    /// `"…"`: `$` expands; the escape character escapes only `"`, `$` and
    /// itself and is kept literally before anything else.
    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        offset: start,
                        quote: '"',
                    });
                }
                Some('"') => {
                    self.bump();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let text = self.dollar()?;
                    out.push_str(&text);
                }
                Some(_) => {
                    let mut ch = self.bump().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.bump();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<`, or `<<` plus the blanks after it, which stay glued to the
    /// heredoc delimiter when splitting words.
    fn possible_heredoc(&mut self) -> &'a str {
        let start = self.pos;
        self.bump();
        if self.peek() == Some('<') {
            self.bump();
            while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
                self.bump();
            }
        }
        &self.src[start..self.pos]
    }

    /// A variable name after `$` or `${`: a run of digits, one special
    /// parameter character, or letters, digits and `_`.
    fn name(&mut self) -> &'a str {
        let src: &'a str = self.src;
        let start = self.pos;
        if let Some(first) = self.peek() {
            if is_digit(first) {
                while self.peek().is_some_and(is_digit) {
                    self.bump();
                }
                return &src[start..self.pos];
            }
            if is_special_parameter(first) {
                self.bump();
                return &src[start..self.pos];
            }
        }
        while self
            .peek()
            .is_some_and(|c| is_letter(c) || is_digit(c) || c == '_')
        {
            self.bump();
        }
        &src[start..self.pos]
    }

    /// `$name` or `${…}`, with the scanner on the `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(name) {
                Some(value) => value.to_string(),
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.bump();
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::NestingTooDeep {
                offset: start,
                limit: MAX_NESTING,
            });
        }
        self.depth += 1;
        let result = self.braced(start);
        self.depth -= 1;
        result
    }

    /// The inside of `${…}`, with the scanner after the `{`.
    fn braced(&mut self, start: usize) -> Result<String, ExpandError> {
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { offset: start }),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution { offset: start }),
            Some(_) => {}
        }
        let name = self.name();
        let op_offset = self.pos;
        match self.bump() {
            None => Err(ExpandError::MissingBrace { offset: start }),
            Some('}') => Ok(match self.lookup(name) {
                Some(value) => value.to_string(),
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => match self.bump() {
                None => Err(ExpandError::MissingBrace { offset: start }),
                Some(op) => self.operator(start, op_offset, name, op, true),
            },
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.operator(start, op_offset, name, op, false)
            }
            Some('/') => self.replace(start, name),
            Some(other) => Err(ExpandError::UnsupportedModifier {
                offset: op_offset,
                modifier: other.to_string(),
            }),
        }
    }

    /// Scans an operand that ends at `stop`, turning "ran off the end" into
    /// the error for the enclosing `${…}` at `start`.
    fn operand(&mut self, start: usize, stop: char, raw: bool) -> Result<String, ExpandError> {
        match self.scan_until(Some(stop), raw, None) {
            Err(_) if self.at_end() => Err(if stop == '/' {
                ExpandError::MissingSlash { offset: start }
            } else {
                ExpandError::MissingBrace { offset: start }
            }),
            other => other,
        }
    }

    /// `${name OP word}` and `${name:OP word}`.
    fn operator(
        &mut self,
        start: usize,
        op_offset: usize,
        name: &str,
        op: char,
        colon: bool,
    ) -> Result<String, ExpandError> {
        let modifier = || {
            if colon {
                format!(":{op}")
            } else {
                op.to_string()
            }
        };
        let is_pattern = op == '#' || op == '%';
        if colon && is_pattern {
            return Err(ExpandError::UnsupportedModifier {
                offset: op_offset,
                modifier: modifier(),
            });
        }
        // Patterns keep their escapes so `\*` can still mean a literal star.
        let word = self.operand(start, '}', is_pattern)?;
        let value = self.lookup(name);
        if value.is_none() && self.lex.skip_unset_env {
            return Ok(format!("${{{name}{}{word}}}", modifier()));
        }
        let unset_or_null = match value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        match op {
            '-' if unset_or_null => Ok(word),
            '-' => Ok(value.unwrap_or_default().to_string()),
            '+' if unset_or_null => Ok(String::new()),
            '+' => Ok(word),
            '?' if unset_or_null => {
                let message = if !word.is_empty() {
                    word
                } else if value.is_none() {
                    "is not allowed to be unset".to_string()
                } else {
                    "is not allowed to be empty".to_string()
                };
                Err(ExpandError::Required {
                    offset: start,
                    name: name.to_string(),
                    message,
                })
            }
            '?' => Ok(value.unwrap_or_default().to_string()),
            '#' | '%' => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if op == '#' {
                    parse_pattern(start, pattern, Pattern::parse)?.trim_prefix(value, greedy)
                } else {
                    parse_pattern(start, pattern, Pattern::parse_reversed)?
                        .trim_suffix(value, greedy)
                };
                Ok(trimmed.to_string())
            }
            _ => Err(ExpandError::UnsupportedModifier {
                offset: op_offset,
                modifier: modifier(),
            }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, start: usize, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.bump();
        }
        let pattern = self.operand(start, '/', true)?;
        let replacement = self.operand(start, '}', true)?;
        let value = self.lookup(name);
        if value.is_none() && self.lex.skip_unset_env {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
        }
        let compiled = parse_pattern(start, &pattern, Pattern::parse)?;
        let value = value.unwrap_or_default();
        Ok(if all {
            compiled.replace_all(value, &replacement)
        } else {
            compiled.replace_first(value, &replacement)
        })
    }
}

fn parse_pattern(
    offset: usize,
    pattern: &str,
    parse: fn(&str) -> Result<Pattern, InvalidEscape>,
) -> Result<Pattern, ExpandError> {
    parse(pattern).map_err(|e| ExpandError::InvalidPattern {
        offset,
        pattern: pattern.to_string(),
        escaped: e.0,
    })
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`,
/// `$0`): recognised as names so `$@x` is `x`, never set in a Dockerfile.
fn is_special_parameter(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
