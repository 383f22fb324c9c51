//! The bake crate's one error type.

use std::path::PathBuf;

use crate::model::Pos;

/// Reading, evaluating or resolving a bake definition failed.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// The file is not valid: a syntax error, a bad value, an unknown
    /// attribute; `snippet` is the source line with a caret, when known.
    #[error("{pos}: {message}{snippet}")]
    Invalid {
        pos: Pos,
        message: String,
        snippet: String,
    },
    #[error("cannot read bake file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: the file is not UTF-8 text")]
    NotText { name: String },
    #[error(
        "no bake file found in {}: looked for {}\nhint: name one with -f FILE",
        dir.display(),
        crate::DEFAULT_FILES.join(", ")
    )]
    NoFiles { dir: PathBuf },
    #[error("failed to find target {name}")]
    UnknownTarget { name: String },
    #[error(
        "failed to find target default\nhint: name the targets to build ({available}), or define a group or target \"default\""
    )]
    NoDefault { available: String },
    #[error("could not find any target matching {pattern:?}")]
    NoMatch { pattern: String },
    #[error("invalid --set {value:?}: {message}")]
    Override { value: String, message: String },
    #[error("target {name:?} inherits from itself (through {chain})")]
    InheritCycle { name: String, chain: String },
}

impl BakeError {
    pub(crate) fn invalid(text: &str, pos: Pos, message: String) -> BakeError {
        let snippet = crate::eval::snippet(text, &pos);
        BakeError::Invalid {
            pos,
            message,
            snippet,
        }
    }
}
