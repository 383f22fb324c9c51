//! Shell patterns for `${v#p}`, `${v%p}` and `${v/p/r}`.
//!
//! BuildKit turns the (already expanded) pattern into a Go regular
//! expression: `*` becomes `.*` (or `.*?` for the shortest-match forms `#`
//! and `%`), `?` becomes `.`, and everything else is literal — including
//! `[` and `]`: bracket expressions are *not* supported. `\*`, `\?` and
//! `\\` are literal `*`, `?` and `\`; `\}` and `\/` are `}` and `/`; any
//! other backslash escape is an error. As in Go's regexp, a wildcard never
//! matches a newline.
//!
//! Matching uses a Pike VM (a breadth-first NFA simulation that keeps the
//! threads in priority order), which gives exactly the leftmost-first
//! answer of Go's engine without backtracking: time is
//! O(len(text) × len(pattern)) per search, never exponential.

use super::unicode_class::{is_digit, is_letter};

/// One element of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: any one character except a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A pattern with an escape BuildKit rejects: `\` followed by something
/// other than `*`, `?`, `\`, `}` or `/` (`None` when it ends the pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidEscape(pub(crate) Option<char>);

/// A parsed pattern, ready to match forwards or (for `%`) backwards.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, InvalidEscape> {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => match chars.peek().copied() {
                    // `\}` and `\/` only protect the delimiters of `${…}`;
                    // the backslash is not part of the pattern.
                    Some('}' | '/') => continue,
                    Some(e @ ('*' | '?' | '\\')) => {
                        chars.next();
                        Token::Literal(e)
                    }
                    other => return Err(InvalidEscape(other)),
                },
                c => Token::Literal(c),
            };
            // `**` matches exactly what `*` matches, with the same
            // leftmost-first span; one star keeps the NFA small.
            if token == Token::Star && tokens.last() == Some(&Token::Star) {
                continue;
            }
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// `value` without its shortest (`greedy == false`) or longest prefix
    /// matching the pattern; unchanged when nothing matches.
    pub(crate) fn trim_prefix<'v>(&self, value: &'v str, greedy: bool) -> &'v str {
        let prog = Program::compile(self.tokens.iter().copied(), greedy);
        match prog.find(value, 0, true) {
            Some((_, end)) => &value[end..],
            None => value,
        }
    }

    /// Parses a `%`/`%%` pattern for [`Pattern::trim_suffix`].
    ///
    /// BuildKit reverses the pattern *text* (keeping each backslash with the
    /// character after it) before reading its escapes, so a pattern ending
    /// in a lone `\` is accepted here when it is not for `#`.
    pub(crate) fn parse_reversed(pattern: &str) -> Result<Self, InvalidEscape> {
        let mut units: Vec<&str> = Vec::with_capacity(pattern.len());
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            let mut len = c.len_utf8();
            if c == '\\' {
                len += rest[len..].chars().next().map_or(0, char::len_utf8);
            }
            units.push(&rest[..len]);
            rest = &rest[len..];
        }
        let reversed: String = units.into_iter().rev().collect();
        Pattern::parse(&reversed)
    }

    /// `value` without its shortest or longest suffix matching the pattern,
    /// which must come from [`Pattern::parse_reversed`].
    ///
    /// Like BuildKit, this reverses the text and trims a prefix, so
    /// "shortest" and "longest" mean the same as for `#`.
    pub(crate) fn trim_suffix<'v>(&self, value: &'v str, greedy: bool) -> &'v str {
        let prog = Program::compile(self.tokens.iter().copied(), greedy);
        let reversed: String = value.chars().rev().collect();
        match prog.find(&reversed, 0, true) {
            // Reversing characters keeps byte lengths, so the trimmed
            // reversed prefix of `end` bytes is the last `end` bytes.
            Some((_, end)) => &value[..value.len() - end],
            None => value,
        }
    }

    /// `value` with the first (leftmost, then longest) match replaced by
    /// `replacement`, taken literally.
    pub(crate) fn replace_first(&self, value: &str, replacement: &str) -> String {
        let prog = Program::compile(self.tokens.iter().copied(), true);
        match prog.find(value, 0, false) {
            Some((start, end)) => {
                let mut out = String::with_capacity(value.len() + replacement.len());
                out.push_str(&value[..start]);
                out.push_str(replacement);
                out.push_str(&value[end..]);
                out
            }
            None => value.to_string(),
        }
    }

    /// `value` with every match replaced, following Go's
    /// `Regexp.ReplaceAllString`: an empty match right after a previous
    /// match is skipped, and `$0`/`${0}` in the replacement stand for the
    /// matched text (other `$name` references expand to nothing, `$$` is `$`).
    pub(crate) fn replace_all(&self, value: &str, replacement: &str) -> String {
        let prog = Program::compile(self.tokens.iter().copied(), true);
        let mut out = String::with_capacity(value.len());
        let mut last_match_end = 0;
        let mut search_pos = 0;
        while search_pos <= value.len() {
            let Some((start, end)) = prog.find(value, search_pos, false) else {
                break;
            };
            out.push_str(&value[last_match_end..start]);
            if end > last_match_end || start == 0 {
                expand_template(&mut out, replacement, &value[start..end]);
            }
            last_match_end = end;
            let width = value[search_pos..].chars().next().map_or(0, char::len_utf8);
            if search_pos + width > end {
                search_pos += width;
            } else if search_pos + 1 > end {
                search_pos += 1;
            } else {
                search_pos = end;
            }
        }
        out.push_str(&value[last_match_end..]);
        out
    }
}

/// Appends `template` to `out` the way Go's `Regexp.Expand` does for a
/// regular expression whose only group is the whole match.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match group_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(whole);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Parses `name` or `{name}` at the start of `s` (after a `$`); returns the
/// name and the text after the reference.
fn group_reference(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let after = if braced {
        body[len..].strip_prefix('}')?
    } else {
        &body[len..]
    };
    Some((name, after))
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    Char(char),
    Any,
    /// Try the first target before the second.
    Split(usize, usize),
    Jmp(usize),
    Match,
}

struct Program {
    insts: Vec<Inst>,
}

impl Program {
    /// Compiles tokens into NFA instructions. `greedy` stars prefer the
    /// longest run (`.*`), others the shortest (`.*?`).
    fn compile(tokens: impl Iterator<Item = Token>, greedy: bool) -> Self {
        let mut insts = Vec::new();
        for token in tokens {
            match token {
                Token::Literal(c) => insts.push(Inst::Char(c)),
                Token::Any => insts.push(Inst::Any),
                Token::Star => {
                    let split = insts.len();
                    let (body, exit) = (split + 1, split + 3);
                    insts.push(if greedy {
                        Inst::Split(body, exit)
                    } else {
                        Inst::Split(exit, body)
                    });
                    insts.push(Inst::Any);
                    insts.push(Inst::Jmp(split));
                }
            }
        }
        insts.push(Inst::Match);
        Program { insts }
    }

    /// The leftmost-first match at or after byte `from` (only at `from`
    /// when `anchored`), as byte offsets into `text`.
    fn find(&self, text: &str, from: usize, anchored: bool) -> Option<(usize, usize)> {
        let mut threads = Threads::new(self.insts.len());
        let mut current: Vec<(usize, usize)> = Vec::new();
        let mut next: Vec<(usize, usize)> = Vec::new();
        let mut matched = None;
        let mut pos = from;
        loop {
            if matched.is_none() && (!anchored || pos == from) {
                threads.add(&self.insts, &mut current, 0, pos);
            }
            if current.is_empty() {
                break;
            }
            let ch = text[pos..].chars().next();
            threads.next_generation();
            for &(pc, start) in &current {
                match self.insts[pc] {
                    Inst::Match => {
                        // Lower-priority threads can no longer win.
                        matched = Some((start, pos));
                        break;
                    }
                    Inst::Char(c) if ch == Some(c) => {
                        threads.add(&self.insts, &mut next, pc + 1, start);
                    }
                    Inst::Any if ch.is_some_and(|c| c != '\n') => {
                        threads.add(&self.insts, &mut next, pc + 1, start);
                    }
                    _ => {}
                }
            }
            current.clear();
            std::mem::swap(&mut current, &mut next);
            match ch {
                Some(c) => pos += c.len_utf8(),
                None => break,
            }
        }
        matched
    }
}

/// Per-step bookkeeping so each instruction is queued at most once per
/// text position (what keeps the simulation linear in the text).
struct Threads {
    seen: Vec<u32>,
    generation: u32,
    stack: Vec<usize>,
}

impl Threads {
    fn new(len: usize) -> Self {
        Threads {
            seen: vec![0; len],
            generation: 1,
            stack: Vec::new(),
        }
    }

    fn next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill(0);
            self.generation = 1;
        }
    }

    /// Follows jumps and splits from `pc` in priority order and appends the
    /// reached consuming (or matching) instructions to `list`.
    fn add(&mut self, insts: &[Inst], list: &mut Vec<(usize, usize)>, pc: usize, start: usize) {
        self.stack.push(pc);
        while let Some(pc) = self.stack.pop() {
            if self.seen[pc] == self.generation {
                continue;
            }
            self.seen[pc] = self.generation;
            match insts[pc] {
                Inst::Jmp(to) => self.stack.push(to),
                Inst::Split(first, second) => {
                    self.stack.push(second);
                    self.stack.push(first);
                }
                Inst::Char(_) | Inst::Any | Inst::Match => list.push((pc, start)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).expect("valid pattern")
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(p("*x").trim_prefix("axbxc", false), "bxc");
        assert_eq!(p("*x").trim_prefix("axbxc", true), "c");
        assert_eq!(p("*x*y").trim_prefix("xxyy", false), "y");
        assert_eq!(p("*").trim_prefix("xxyy", false), "xxyy");
        assert_eq!(p("q").trim_prefix("xxyy", true), "xxyy");
        assert_eq!(p("?\\?").trim_prefix("???y", false), "?y");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        let p = |s: &str| Pattern::parse_reversed(s).expect("valid pattern");
        assert_eq!(p("x*").trim_suffix("axbxc", false), "axb");
        assert_eq!(p("x*").trim_suffix("axbxc", true), "a");
        assert_eq!(p("\\**").trim_suffix("xx**", true), "xx");
        assert_eq!(p("\\**\\*").trim_suffix("a***yy*", true), "a");
        assert_eq!(p(".txt").trim_suffix("a.txt", false), "a");
        assert_eq!(p("한*").trim_suffix("안녕한국어", false), "안녕");
        // The reversed text decides which escapes are valid.
        assert_eq!(p(r"*\").trim_suffix("a*", false), "a");
        assert_eq!(p(r"b*/\b\").trim_suffix("a", true), "a");
        assert!(Pattern::parse_reversed(r"\x").is_err());
    }

    #[test]
    fn brackets_and_regex_characters_are_literal() {
        assert_eq!(
            p("()[]{\\}^$.\\*\\?|\\\\").trim_prefix("()[]{}^$.*?|\\x", false),
            "x"
        );
        assert_eq!(p("[ab]").trim_prefix("a[ab]", false), "a[ab]");
    }

    #[test]
    fn wildcards_do_not_cross_newlines() {
        assert_eq!(p("*b").trim_prefix("a\nb", true), "a\nb");
        assert_eq!(p("a?b").trim_prefix("a\nb", true), "a\nb");
    }

    #[test]
    fn invalid_escapes_are_rejected() {
        assert_eq!(Pattern::parse("\\").unwrap_err(), InvalidEscape(None));
        assert_eq!(Pattern::parse("\\x").unwrap_err(), InvalidEscape(Some('x')));
        assert!(Pattern::parse("\\\\\\").is_err());
    }

    #[test]
    fn replace_first_and_all() {
        assert_eq!(
            p("\\*/").replace_first("/foo*/*/*.txt", "."),
            "/foo.*/*.txt"
        );
        assert_eq!(p("\\*/").replace_all("/foo*/*/*.txt", "."), "/foo..*.txt");
        assert_eq!(p("/?/").replace_all("/a/foo/b/c.txt", "/"), "/foo/c.txt");
        assert_eq!(p("").replace_first("xxyy", "ww"), "wwxxyy");
        assert_eq!(p("").replace_all("xy", "-"), "-x-y-");
        assert_eq!(p("").replace_all("xxyy", ""), "xxyy");
        assert_eq!(p("a*").replace_all("baaac", "X"), "bX");
    }

    #[test]
    fn replace_all_expands_group_zero_like_go() {
        assert_eq!(p("b").replace_all("abc", "[$0]"), "a[b]c");
        assert_eq!(p("b").replace_all("abc", "[${0}|$1|$$|$]"), "a[b||$|$]c");
        // Literal replacement for the first-match form.
        assert_eq!(p("b").replace_first("abc", "$0"), "a$0c");
    }

    #[test]
    fn repeated_stars_behave_like_one() {
        assert_eq!(p("a**c").trim_prefix("abcbc", false), "bc");
        assert_eq!(p("a***c").trim_prefix("abcbc", true), "");
        assert_eq!(p("**").tokens, p("*").tokens);
        assert_eq!(p(r"\**").tokens.len(), 2);
        let many_stars = p(&"*".repeat(10_000));
        assert_eq!(
            many_stars.replace_all(&"\n".repeat(1000), "."),
            ".\n".repeat(1000) + "."
        );
    }

    #[test]
    fn long_inputs_do_not_backtrack() {
        let text = "a".repeat(20_000);
        let pat = p(&"*a".repeat(50));
        assert_eq!(pat.trim_prefix(&text, false), "a".repeat(20_000 - 50));
        assert_eq!(pat.trim_prefix(&text, true), "");
        assert_eq!(p("*b").replace_all(&text, "x"), text);
    }
}
