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

/// What a `# syntax=` directive asks for, as rbuild answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    /// One of the official Dockerfile frontend images
    /// (`docker/dockerfile`, `docker.io/docker/dockerfile`, tags such as
    /// `1`, `1.7`, `1.7.1`, `1-labs`, `1.7-labs`, `latest`, `labs`, with or
    /// without a digest): the syntax rbuild's own parser implements.
    /// `name` is the image as written, digest left out.
    BuiltIn { name: String },
    /// Any other frontend image (a custom or third-party syntax), which
    /// rbuild cannot run.
    Other { image: String },
}

impl Directives {
    /// The frontend the `# syntax=` directive names; `None` without one.
    pub fn frontend(&self) -> Option<Frontend> {
        self.syntax.as_ref().map(|d| frontend(&d.value))
    }
}

/// Classifies a `# syntax=` value (see [`Frontend`]).
pub fn frontend(value: &str) -> Frontend {
    let other = || Frontend::Other {
        image: value.to_string(),
    };
    let (name, digest) = match value.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (value, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return other();
        }
    }
    let repo_and_tag = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    let (repo, tag) = match repo_and_tag.split_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (repo_and_tag, None),
    };
    if repo != "docker/dockerfile" {
        return other();
    }
    let official_tag = |t: &str| {
        if matches!(t, "latest" | "labs" | "experimental") {
            return true;
        }
        let version = t
            .strip_suffix("-labs")
            .or_else(|| t.strip_suffix("-experimental"))
            .unwrap_or(t);
        let parts: Vec<&str> = version.split('.').collect();
        parts[0] == "1"
            && parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match tag {
        Some(t) if !official_tag(t) => other(),
        _ => Frontend::BuiltIn {
            name: name.to_string(),
        },
    }
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

    #[test]
    fn official_frontend_names_are_the_built_in_one() {
        let digest = format!("@sha256:{}", "a".repeat(64));
        for ok in [
            "docker/dockerfile".to_string(),
            "docker/dockerfile:1".to_string(),
            "docker/dockerfile:1.7".to_string(),
            "docker/dockerfile:1.7.1".to_string(),
            "docker/dockerfile:1-labs".to_string(),
            "docker/dockerfile:1.7-labs".to_string(),
            "docker/dockerfile:labs".to_string(),
            "docker.io/docker/dockerfile:1".to_string(),
            format!("docker/dockerfile:1{digest}"),
            format!("docker.io/docker/dockerfile{digest}"),
        ] {
            let name = ok.split('@').next().unwrap().to_string();
            assert_eq!(frontend(&ok), Frontend::BuiltIn { name }, "{ok}");
        }
        for other in [
            "tonistiigi/dockerfile:1",
            "docker/dockerfile-upstream:master",
            "docker/dockerfile:2",
            "docker/dockerfile:1.x",
            "ghcr.io/docker/dockerfile:1",
            "docker/dockerfile:1@sha256:zz",
            "example.com/frontends/hcl:1",
        ] {
            assert!(matches!(frontend(other), Frontend::Other { .. }), "{other}");
        }
    }
}
