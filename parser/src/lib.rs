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
//!
//! # Two layers
//!
//! 1. [`ast::parse`] (BuildKit's `parser` package): directives, line
//!    joining, heredoc bodies, and each keyword's argument splitting. Its
//!    output, rendered as S-expressions, matches BuildKit's parser test
//!    files exactly (see `tests/conformance.rs`).
//! 2. [`parse`] (BuildKit's `instructions` package): keywords, flags,
//!    argument counts, mounts and durations are validated and each node
//!    becomes a typed [`Instruction`]; instructions are grouped into
//!    [`Stage`]s.
//!
//! Values that BuildKit expands later (`$VAR`, quotes in ENV/ARG/LABEL
//! values) are kept as written; the solver expands them with [`shell`].
//!
//! # Where rbuild is stricter than BuildKit, on purpose
//!
//! - Invalid UTF-8 and NUL bytes are errors with a position.
//! - Flags are validated on every instruction (BuildKit skips ARG and
//!   STOPSIGNAL); `ONBUILD ONBUILD` is rejected already in the syntax layer
//!   so nesting never grows with the input; `RUN` without a command is an
//!   error.
//! - `RUN --mount` options are checked at parse time; values holding `$`
//!   are listed in [`Mount::deferred`] for a second check after expansion.
//! - Lines longer than 64 KiB parse (BuildKit's scanner refuses them).

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

pub mod ast;
pub mod directive;
mod duration;
pub mod error;
mod flag;
mod heredoc;
pub mod instructions;
mod json_array;
pub mod keyword;
mod line_index;
pub mod mount;
mod sexp;
pub mod shell;
pub mod span;
mod suggest;

pub use duration::{DurationError, parse_go_duration};
pub use error::{ErrorKind, ParseError};
pub use instructions::{
    ArgDef, ArgInstruction, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind,
    KeyValue, NetworkMode, SecurityMode, ShellOrExec, Stage,
};
pub use mount::{Mount, MountType, Sharing, parse_bool, quote_csv_field, ram_in_bytes, split_csv};
pub use sexp::{go_quote, go_quote_rune};

/// Parse a Dockerfile into validated, typed stages.
///
/// Runs [`ast::parse`] (the syntax layer) and then checks every
/// instruction: keywords, flags, argument counts, mounts, durations.
pub fn parse(source: &[u8]) -> Result<Dockerfile, ParseError> {
    instructions::parse(source)
}
pub use keyword::Keyword;
pub use span::Span;
