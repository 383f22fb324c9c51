//! Heredoc detection (`<<EOF`, `<<-EOF`, `<<"EOF"`), following BuildKit:
//! the instruction line is split into shell words with quotes and escapes
//! kept, and each word matching `^(\d*)<<(-?)\s*([^<]*)$` names a heredoc.
//!
//! This is a small, self-contained word splitter: variables are never
//! expanded here (BuildKit runs it with an empty environment and keeps
//! unset variables as written), so only quoting and word boundaries matter.

/// Nesting limit for `${a:-${b:-...}}` so hostile input cannot recurse deeply.
const MAX_NESTING: usize = 64;

/// A heredoc introducer found in a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    /// The terminator, quotes removed.
    pub name: String,
    /// File descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// False when any part of the terminator was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from content and terminator.
    pub chomp: bool,
}

#[derive(Clone, Copy)]
struct Mode {
    raw_quotes: bool,
    raw_escapes: bool,
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
    mode: Mode,
    depth: usize,
}

/// A word and its byte range in the input.
type Spanned = (String, usize, usize);

/// Words with their byte ranges in the input.
#[derive(Default)]
struct Words {
    words: Vec<Spanned>,
    buf: String,
    in_word: bool,
    start: usize,
}

impl Words {
    fn begin(&mut self, at: usize) {
        if !self.in_word {
            self.start = at;
        }
    }
    fn add_char(&mut self, ch: char, at: usize, end: usize) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words
                    .push((std::mem::take(&mut self.buf), self.start, at));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch, at, end);
        }
    }
    fn add_raw_char(&mut self, ch: char, at: usize, _end: usize) {
        self.begin(at);
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_raw_str(&mut self, s: &str, at: usize) {
        self.begin(at);
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self, end: usize) -> Vec<Spanned> {
        if !self.buf.is_empty() {
            self.words.push((self.buf, self.start, end));
        }
        self.words
    }
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Split into words; `stop` ends a nested `${...}` word.
    fn words(&mut self, stop: Option<char>) -> Result<(String, Vec<Spanned>), ()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(());
        }
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            let at = self.pos;
            if Some(ch) == stop {
                self.next();
                self.depth -= 1;
                return Ok((result, words.finish(at)));
            }
            match ch {
                '$' => {
                    let t = self.dollar()?;
                    result.push_str(&t);
                    let mut off = at;
                    for c in t.chars() {
                        words.add_char(c, off, off + c.len_utf8());
                        off += c.len_utf8();
                    }
                }
                '<' => {
                    self.next();
                    let mut t = String::from("<");
                    if self.peek() == Some('<') {
                        self.next();
                        t.push('<');
                        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
                            t.push(c);
                            self.next();
                        }
                    }
                    result.push_str(&t);
                    words.add_raw_str(&t, at);
                }
                '\'' => {
                    let t = self.single_quote()?;
                    result.push_str(&t);
                    words.add_raw_str(&t, at);
                }
                '"' => {
                    let t = self.double_quote()?;
                    result.push_str(&t);
                    words.add_raw_str(&t, at);
                }
                '\\' => {
                    self.next();
                    if self.mode.raw_escapes {
                        words.add_raw_char('\\', at, self.pos);
                        result.push('\\');
                    }
                    let Some(c) = self.next() else { break };
                    words.add_raw_char(c, at, self.pos);
                    result.push(c);
                }
                _ => {
                    self.next();
                    words.add_char(ch, at, self.pos);
                    result.push(ch);
                }
            }
        }
        if stop.is_some() {
            return Err(());
        }
        self.depth -= 1;
        Ok((result, words.finish(self.pos)))
    }

    fn single_quote(&mut self) -> Result<String, ()> {
        self.next();
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next().ok_or(())? {
                '\'' => {
                    if self.mode.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ()> {
        self.next();
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek().ok_or(())? {
                '"' => {
                    self.next();
                    if self.mode.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    let mut c = self.next().ok_or(())?;
                    if c == '\\' {
                        if self.mode.raw_escapes {
                            out.push('\\');
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => c = self.next().ok_or(())?,
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(|d| d.is_ascii_digit()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    /// `$x` / `${x...}` with nothing set: kept as written.
    fn dollar(&mut self) -> Result<String, ()> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None | Some('{' | '}' | ':') => return Err(()),
            _ => {}
        }
        let name = self.name();
        let mut chs = String::new();
        let mut ch = self.next().ok_or(())?;
        chs.push(ch);
        match ch {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' | '/' => {
                if ch == ':' {
                    ch = self.next().ok_or(())?;
                    chs.push(ch);
                    if !matches!(ch, '+' | '-' | '?') {
                        return Err(());
                    }
                }
                let saved = self.mode;
                self.mode.raw_escapes = matches!(ch, '#' | '%' | '/');
                let word = self.words(Some('}'));
                self.mode = saved;
                let (word, _) = word?;
                Ok(format!("${{{name}{chs}{word}}}"))
            }
            _ => Err(()),
        }
    }
}

fn split(s: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<Spanned>, ()> {
    let mut lx = Lexer {
        s,
        pos: 0,
        mode: Mode {
            raw_quotes,
            raw_escapes,
        },
        depth: 0,
    };
    lx.words(None).map(|(_, w)| w)
}

/// Match one word against `^(\d*)<<(-?)\s*([^<]*)$` and work out the
/// terminator. `Ok(None)`: not a heredoc.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<HeredocWord>, ()> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse().unwrap_or(0)
    };
    let words = split(rest, false, false)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = split(rest, true, false)?;
    if raw.len() != 1 {
        return Err(());
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words[0].0.clone();
    Ok(Some(HeredocWord {
        expand: quotes(&name) == quotes(&raw[0].0),
        name,
        fd,
        chomp,
    }))
}

/// Every heredoc introduced on an instruction line, in order, with the byte
/// range of its `<<WORD` in `line`.
pub(crate) fn heredocs_in_line(line: &str) -> Result<Vec<(HeredocWord, usize, usize)>, String> {
    let words = split(line, true, true).unwrap_or_default();
    let mut out = Vec::new();
    for (w, start, end) in words {
        match parse_heredoc_word(&w) {
            Ok(Some(h)) => out.push((h, start, end)),
            Ok(None) => {}
            Err(()) => return Err(w),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        heredocs_in_line(line)
            .unwrap()
            .into_iter()
            .map(|(h, _, _)| (h.name, h.expand, h.chomp))
            .collect()
    }

    #[test]
    fn finds_heredocs_like_buildkit() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(names("RUN <<-EOF"), [("EOF".into(), true, true)]);
        assert_eq!(names(r#"RUN <<"EOF""#), [("EOF".into(), false, false)]);
        assert_eq!(names("RUN <<'EOF'"), [("EOF".into(), false, false)]);
        assert_eq!(names("RUN << EOF"), [("EOF".into(), true, false)]);
        assert_eq!(
            names("RUN cat <<A <<B > x"),
            [("A".into(), true, false), ("B".into(), true, false)]
        );
        assert_eq!(names("RUN echo '<<EOF'"), []);
        assert_eq!(names("RUN a<<EOF"), []);
        assert_eq!(names("COPY <<EOF /dest"), [("EOF".into(), true, false)]);
        let fd = heredocs_in_line("RUN 3<<EOF").unwrap();
        assert_eq!(fd[0].0.fd, 3);
        assert_eq!((fd[0].1, fd[0].2), (4, 10));
    }
}
