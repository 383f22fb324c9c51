//! Parser directives (`# syntax=`, `# escape=`, `# check=`): only at the
//! very top of the file, keys case-insensitive, each at most once.

use nom::{
    IResult, Parser,
    bytes::complete::{take_while, take_while1},
    character::complete::satisfy,
    combinator::recognize,
    sequence::pair,
};

use crate::span::Span;

/// One parser directive as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directive {
    /// The value, surrounding whitespace removed.
    pub value: String,
    /// The whole directive line.
    pub span: Span,
}

/// The parser directives at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image; rbuild records it but has one syntax).
    pub syntax: Option<Directive>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: Option<Directive>,
    /// `# check=` (linter configuration, recorded only).
    pub check: Option<Directive>,
    /// The escape character in effect.
    pub escape_token: char,
}

/// Which directive a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectiveName {
    Syntax,
    Escape,
    Check,
}

impl DirectiveName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DirectiveName::Syntax => "syntax",
            DirectiveName::Escape => "escape",
            DirectiveName::Check => "check",
        }
    }
}

/// Go RE2's `\s`: ASCII space, tab, newline, form feed, carriage return.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

fn key(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)
}

/// `key \s* = \s* value` after the `#`, or `None` when the comment is not
/// shaped like a directive. The value has trailing whitespace removed.
pub(crate) fn parse_directive_comment(comment: &str) -> Option<(&str, &str)> {
    let body = comment.trim_start_matches(char::is_whitespace);
    let (rest, k) = key(body).ok()?;
    let (rest, _) = take_while::<_, _, nom::error::Error<&str>>(is_re_space)
        .parse(rest)
        .ok()?;
    let rest = rest.strip_prefix('=')?;
    let (rest, _) = take_while::<_, _, nom::error::Error<&str>>(is_re_space)
        .parse(rest)
        .ok()?;
    // `.+?` does not cross a newline; the line has none left.
    let (_, value) = take_while1::<_, _, nom::error::Error<&str>>(|c| c != '\n')
        .parse(rest)
        .ok()?;
    let value = value.trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((k, value))
}

/// Tracks whether directives may still appear, and which were seen.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
}

impl DirectiveParser {
    /// Look at a line (leading whitespace and newline already removed).
    /// Returns the directive it holds, if directives are still allowed.
    pub(crate) fn line<'l>(&mut self, line: &'l str) -> Option<(DirectiveName, &'l str)> {
        if self.done {
            return None;
        }
        let Some(comment) = line.strip_prefix('#') else {
            self.done = true;
            return None;
        };
        let Some((k, v)) = parse_directive_comment(comment) else {
            self.done = true;
            return None;
        };
        let name = match k.to_ascii_lowercase().as_str() {
            "syntax" => DirectiveName::Syntax,
            "escape" => DirectiveName::Escape,
            "check" => DirectiveName::Check,
            _ => {
                self.done = true;
                return None;
            }
        };
        Some((name, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_shapes() {
        assert_eq!(
            parse_directive_comment(" escape = `"),
            Some(("escape", "`"))
        );
        assert_eq!(
            parse_directive_comment("syntax=docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(parse_directive_comment(" not a directive"), None);
        assert_eq!(parse_directive_comment("escape="), None);
        let mut p = DirectiveParser::default();
        assert_eq!(p.line("# ESCAPE=`"), Some((DirectiveName::Escape, "`")));
        assert_eq!(p.line("# a comment"), None);
        assert_eq!(p.line("# syntax=x"), None);
    }
}
