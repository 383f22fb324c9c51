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
pub mod shell;
pub mod span;
mod suggest;

pub use error::{ErrorKind, ParseError};
pub use instructions::{
    ArgDef, ArgInstruction, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind,
    KeyValue, NetworkMode, SecurityMode, ShellOrExec, Stage,
};
pub use mount::{Mount, MountType, Sharing};

/// Parse a Dockerfile into validated, typed stages.
///
/// Runs [`ast::parse`] (the syntax layer) and then checks every
/// instruction: keywords, flags, argument counts, mounts, durations.
pub fn parse(source: &[u8]) -> Result<Dockerfile, ParseError> {
    instructions::parse(source)
}
pub use keyword::Keyword;
pub use span::Span;
