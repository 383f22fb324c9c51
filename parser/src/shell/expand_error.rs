//! [`ExpandError`]: why a word could not be expanded.

/// A word could not be expanded. `offset` is the byte offset, in the word
/// passed to [`Lex::process_word`](super::Lex::process_word), of the
/// construct at fault (the `$` of `${…}`, or the opening quote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A `'…'` or `"…"` string has no closing quote.
    #[error("missing closing {quote} for the quote at byte {offset}")]
    UnterminatedQuote { offset: usize, quote: char },

    /// `${…` without its closing brace.
    #[error("missing '}}' in ${{…}} starting at byte {offset}")]
    MissingBrace { offset: usize },

    /// `${v/pattern` without the `/` that ends the pattern.
    #[error("missing '/' in ${{…/…}} starting at byte {offset}")]
    MissingSlash { offset: usize },

    /// `${}`, `${{…}`, `${:…}`: no variable name where one must be.
    #[error("bad substitution at byte {offset}")]
    BadSubstitution { offset: usize },

    /// An operator BuildKit does not support, such as `${v:=w}`, `${v=w}`,
    /// `${v:#p}` or `${v.}`.
    #[error("unsupported modifier '{modifier}' in substitution at byte {offset}")]
    UnsupportedModifier { offset: usize, modifier: String },

    /// `${v?msg}` with `v` unset, or `${v:?msg}` with `v` unset or empty.
    /// The message is the user's (or BuildKit's default), shown as
    /// `NAME: message` exactly like BuildKit so existing scripts match it.
    #[error("{name}: {message}")]
    Required {
        offset: usize,
        name: String,
        message: String,
    },

    /// A `#`, `%` or `/` pattern contains a backslash escape other than
    /// `\*`, `\?`, `\\`, `\}` or `\/` (`escaped` is `None` at its end).
    #[error("{}", invalid_escape_message(*offset, pattern, *escaped))]
    InvalidPattern {
        offset: usize,
        pattern: String,
        escaped: Option<char>,
    },

    /// `${…}` nested deeper than [`MAX_NESTING`](super::MAX_NESTING).
    #[error(
        "${{…}} nested more than {limit} levels deep at byte {offset}\nhint: split the expression over several ARG or ENV steps"
    )]
    NestingTooDeep { offset: usize, limit: usize },
}

impl ExpandError {
    /// Byte offset in the word of the construct at fault.
    pub fn offset(&self) -> usize {
        match self {
            ExpandError::UnterminatedQuote { offset, .. }
            | ExpandError::MissingBrace { offset }
            | ExpandError::MissingSlash { offset }
            | ExpandError::BadSubstitution { offset }
            | ExpandError::UnsupportedModifier { offset, .. }
            | ExpandError::Required { offset, .. }
            | ExpandError::InvalidPattern { offset, .. }
            | ExpandError::NestingTooDeep { offset, .. } => *offset,
        }
    }
}

fn invalid_escape_message(offset: usize, pattern: &str, escaped: Option<char>) -> String {
    let what = match escaped {
        Some(c) => format!("invalid escape '\\{c}'"),
        None => "trailing '\\'".to_string(),
    };
    format!(
        "{what} in pattern '{pattern}' of the substitution at byte {offset}\nhint: only \\*, \\?, \\\\, \\}} and \\/ may be escaped in a pattern"
    )
}
