//! Instruction flags (`--name=value`), validated per instruction the way
//! BuildKit's `BFlags` does: known names only, no duplicates (except
//! repeatable ones), booleans `true`/`false`/bare, strings need `=value`.

use crate::ast::Word;
use crate::error::{ErrorKind, ParseError};
use crate::keyword::Keyword;
use crate::span::Span;
use crate::suggest::closest;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--exclude=x`, any number of times.
    Strings,
}

/// The flags each instruction accepts.
pub(crate) fn flags_for(keyword: Keyword) -> &'static [(&'static str, FlagType)] {
    use FlagType::*;
    match keyword {
        Keyword::From => &[("platform", String)],
        Keyword::Run => &[
            ("mount", Strings),
            ("network", String),
            ("security", String),
            ("device", Strings),
        ],
        Keyword::Copy => &[
            ("chown", String),
            ("from", String),
            ("chmod", String),
            ("link", Bool),
            ("exclude", Strings),
            ("parents", Bool),
        ],
        Keyword::Add => &[
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", String),
            ("unpack", Bool),
            ("exclude", Strings),
        ],
        Keyword::Healthcheck => &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
        _ => &[],
    }
}

/// One flag as given: its value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct FlagValue {
    pub value: String,
    pub span: Span,
}

/// The validated flags of one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: Vec<(&'static str, FlagValue)>,
}

impl Flags {
    /// The value of a single-valued flag, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&FlagValue> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A string flag's value; an empty value counts as absent.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| v.value.clone())
            .filter(|v| !v.is_empty())
    }

    /// A boolean flag: `None` when not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v.value == "true")
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<FlagValue> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Validate `flags` for `keyword`.
pub(crate) fn parse_flags(keyword: Keyword, flags: &[Word]) -> Result<Flags, ParseError> {
    let specs = flags_for(keyword);
    let mut out = Flags::default();
    for f in flags {
        let a = f.value.as_str();
        if a == "--" {
            break;
        }
        let Some(body) = a.strip_prefix("--") else {
            return Err(ParseError::new(
                ErrorKind::UnknownFlag,
                format!("arg should start with -- : {a}"),
                f.span,
            ));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(spec_name, ty)) = specs.iter().find(|(n, _)| *n == name) else {
            return Err(unknown_flag(keyword, name, f.span));
        };
        if ty != FlagType::Strings && out.get(spec_name).is_some() {
            return Err(ParseError::new(
                ErrorKind::DuplicateFlag,
                format!("duplicate flag specified: --{name}"),
                f.span,
            )
            .expected(format!("--{name} at most once")));
        }
        let value = match (ty, value) {
            (FlagType::Bool, Some("")) => {
                return Err(missing_value(name, f.span, "true or false"));
            }
            (FlagType::Bool, None) => "true".to_string(),
            (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::InvalidFlagValue,
                        format!("expecting boolean value for flag --{name}, not: {v}"),
                        f.span,
                    )
                    .expected("true or false"));
                }
            },
            (_, None) => return Err(missing_value(name, f.span, "--{name}=<value>")),
            (_, Some(v)) => v.to_string(),
        };
        out.values.push((
            spec_name,
            FlagValue {
                value,
                span: f.span,
            },
        ));
    }
    Ok(out)
}

fn missing_value(name: &str, span: Span, expected: &str) -> ParseError {
    ParseError::new(
        ErrorKind::InvalidFlagValue,
        format!("missing a value on flag: --{name}"),
        span,
    )
    .expected(expected.replace("{name}", name))
}

fn unknown_flag(keyword: Keyword, name: &str, span: Span) -> ParseError {
    let specs = flags_for(keyword);
    let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
    let expected = if names.is_empty() {
        format!("{keyword} takes no flags")
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
        format!("one of {}", list.join(", "))
    };
    let err = ParseError::new(
        ErrorKind::UnknownFlag,
        format!("unknown flag: --{name} for {keyword}"),
        span,
    )
    .expected(expected);
    if let Some(m) = closest(name, &names) {
        return err.help(format!("did you mean `--{m}`?"));
    }
    // A flag that belongs to another instruction: say where it goes.
    let owners: Vec<&str> = Keyword::ALL
        .iter()
        .filter(|k| flags_for(**k).iter().any(|(n, _)| *n == name))
        .map(|k| k.as_str())
        .collect();
    if !owners.is_empty() {
        return err.help(format!(
            "`--{name}` is a flag of {}, not {keyword}",
            owners.join(" and ")
        ));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Word {
        Word {
            value: s.to_string(),
            span: Span::default(),
        }
    }

    #[test]
    fn validates_like_bflags() {
        let f = parse_flags(
            Keyword::Copy,
            &[
                w("--from=a"),
                w("--link"),
                w("--exclude=x"),
                w("--exclude=y"),
            ],
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.all("exclude").len(), 2);
        let e = parse_flags(Keyword::Copy, &[w("--form=a")]).unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `--from`?"));
        let e = parse_flags(Keyword::Copy, &[w("--checksum=sha256:x")]).unwrap_err();
        assert_eq!(
            e.help.as_deref(),
            Some("`--checksum` is a flag of ADD, not COPY")
        );
        assert!(parse_flags(Keyword::Copy, &[w("--from=a"), w("--from=b")]).is_err());
        assert!(parse_flags(Keyword::Copy, &[w("--from")]).is_err());
        assert!(parse_flags(Keyword::Copy, &[w("--link=maybe")]).is_err());
        assert!(parse_flags(Keyword::Copy, &[w("--link=")]).is_err());
    }
}
