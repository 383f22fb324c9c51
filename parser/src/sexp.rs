//! The raw syntax tree as BuildKit's parser prints it (`Node.Dump`): one
//! instruction per line as an S-expression, e.g. `(copy ["--from=a"] "x" "/y")`.
//! `rbuild debug parse` prints this; the conformance test compares it with
//! BuildKit's golden `result` files.

use std::fmt::Write as _;

use crate::ast::{Args, Ast, Node};

impl Ast {
    /// Every instruction as an S-expression line, in source order.
    pub fn to_sexp(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            write_node(&mut out, node);
            out.push_str(")\n");
        }
        out
    }
}

/// Keyword (lowercased), flags in brackets, then each argument quoted;
/// ENV/LABEL pairs as key, value, separator; ONBUILD's instruction nested.
fn write_node(out: &mut String, node: &Node) {
    let start = out.len();
    out.push_str(&node.keyword.to_lowercase());
    if !node.flags.is_empty() {
        out.push_str(" [");
        for (i, flag) in node.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_go_quoted(out, &flag.value);
        }
        out.push(']');
    }
    match &node.args {
        Args::Words { words, .. } => {
            for word in words {
                out.push(' ');
                push_go_quoted(out, &word.value);
            }
        }
        Args::KeyValues { pairs } => {
            for pair in pairs {
                for part in [&pair.key.value, &pair.value.value, &pair.separator] {
                    out.push(' ');
                    push_go_quoted(out, part);
                }
            }
        }
        Args::Sub { node } => {
            out.push_str(" (");
            write_node(out, node);
            out.push(')');
        }
    }
    // BuildKit trims the dump; only trailing blanks can occur here.
    let trimmed = out[start..].trim_end().len();
    out.truncate(start + trimmed);
}

/// Go's `strconv.Quote`: a `"`-delimited Go string literal, with Go's
/// escapes for control and non-printing characters (spaces other than
/// U+0020 included, as `unicode.IsPrint` has it). BuildKit's `%q` output
/// (parse dumps, image history) is made of these.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(&mut out, s);
    out
}

/// Go's `strconv.QuoteRune` of `n` (`%q` of an integer), e.g. `'\x00'`.
pub fn go_quote_rune(n: u32) -> String {
    let mut out = String::from("'");
    match char::from_u32(n) {
        Some(c) => push_go_escaped(&mut out, c, '\''),
        None => out.push('\u{fffd}'),
    }
    out.push('\'');
    out
}

fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        push_go_escaped(out, c, '"');
    }
    out.push('"');
}

fn push_go_escaped(out: &mut String, c: char, quote: char) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}' => {
            if (c as u32) > 0xffff {
                let _ = write!(out, "\\U{:08x}", c as u32);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_like_buildkit() {
        let ast = crate::ast::parse(
            b"FROM busybox\nENV a=b\nENV c d\nONBUILD RUN echo \"x\ty\"\nCMD [\"a\"]\n",
        )
        .unwrap();
        assert_eq!(
            ast.to_sexp(),
            "(from \"busybox\")\n(env \"a\" \"b\" \"=\")\n(env \"c\" \"d\" \"\")\n(onbuild (run \"echo \\\"x\\ty\\\"\"))\n(cmd \"a\")\n"
        );
    }
}
