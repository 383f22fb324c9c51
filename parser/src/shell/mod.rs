//! BuildKit-compatible shell-word expansion (`$v`, `${v:-w}`, quoting,
//! word splitting) and the table of which instructions expand which
//! arguments. Used by the solver when it plans a build.
//!
//! The behaviour follows BuildKit's `frontend/dockerfile/shell` package
//! (checked against its `envVarTest` and `wordsTest` tables):
//!
//! - `$name`, `${name}`; names are letters, digits and `_`, or a run of
//!   digits (`$1`, never set), or one special parameter (`$@ $* $# $? $- $$
//!   $! $0`, never set). `$` followed by anything else is kept (`$.` → `$.`).
//! - `${v:-w}` `${v-w}` `${v:+w}` `${v+w}` `${v:?msg}` `${v?msg}`; the colon
//!   forms treat an empty value like an unset one. The operand `w` is
//!   itself expanded (quotes and nested `${…}` included).
//! - `${v#p}` `${v##p}` `${v%p}` `${v%%p}` `${v/p/r}` `${v//p/r}` with `*`
//!   and `?` wildcards (no bracket expressions, as in BuildKit).
//! - `'…'` is literal; `"…"` expands `$` and lets the escape character
//!   escape `"`, `$` and itself; outside quotes the escape character makes
//!   the next character literal and is dropped at the end of the word.
//! - `${v:=w}`, `${v=w}`, `${#v}` and other operators are errors.
//!
//! One deliberate difference: BuildKit's word splitting loses the text
//! before a `${v:-…}` (any operator form) in the same word, because the
//! nested scan resets a shared buffer (`80${P:-0}` splits to `0`). rbuild
//! keeps it (`800`); the string result of `process_word` is unaffected.

mod env_lookup;
mod expand_error;
mod expansion_rule;
mod lex;
mod pattern;
mod unicode_class;

pub use env_lookup::{EmptyEnv, EnvLookup};
pub use expand_error::ExpandError;
pub use expansion_rule::{ArgRole, ExpansionRule, expansion_rule};
pub use lex::{Expanded, ExpandedWords, Lex, MAX_NESTING};

#[cfg(test)]
mod tests;
