//! rbuild-parser: Dockerfile text → typed, validated instructions.
//!
//! Owns: parser directives, line joining (escape character, comments and
//! blank lines inside continuations), the raw syntax tree ([`ast`]), the
//! typed instructions and stages ([`instructions`]), heredocs, per-instruction
//! flag validation, parse diagnostics ([`error`]), and BuildKit-compatible
//! shell-word expansion ([`shell`]) which the solver uses later.
//!
//! May depend on: nothing else in the workspace. This crate is pure: no I/O,
//! no environment, no logging. Input is bytes, output is data or a
//! [`error::ParseError`] carrying a [`span::Span`].

pub mod keyword;
pub mod shell;
pub mod span;

pub use keyword::Keyword;
pub use span::Span;
