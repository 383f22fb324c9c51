//! COPY and ADD: selecting source files (Go `filepath.Match` globs,
//! `--exclude`, `--parents`), the content digest of a selection (the part
//! of a COPY step's cache key that names what it reads), and writing the
//! copied files as a layer on top of a destination filesystem with
//! Docker's directory-vs-file rules, `--chown`, `--chmod` and ADD's archive
//! extraction.
//!
//! Sources are read through [`SourceFs`], implemented by the build context
//! (which applies `.dockerignore` and keeps a stat cache of file digests)
//! and by a stage's or image's layered filesystem.

mod source;

pub use source::{EntryKind, SourceFs, SourceMeta};

mod layered;

use std::io::Write;
use std::path::PathBuf;

use rbuild_solver::Digest;
use rbuild_solver::op::{CopyOp, MkdirOp};

pub use layered::LayeredFs;

use crate::layer::PackStats;

/// A COPY/ADD or WORKDIR could not be carried out; names the source or
/// destination path involved.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Not implemented yet (transitional, while the copy engine lands).
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The digest of exactly what a COPY/ADD reads, and the per-file digests
/// it was made from (kept to explain cache misses: which files changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    pub digest: Digest,
    /// (path relative to the source root, digest of that entry's content
    /// and metadata), sorted by path.
    pub files: Vec<(String, Digest)>,
}

/// The content digest of the files `op` selects from `src`.
pub fn content_digest(src: &dyn SourceFs, op: &CopyOp) -> Result<ContentDigest, CopyError> {
    let _ = (src, op);
    Err(CopyError::Unsupported {
        what: "COPY".to_string(),
    })
}

/// Writes the layer COPY/ADD `op` makes on top of `dest` (reading `src`,
/// or the op's inline files) to `out` as an uncompressed tar. `None` when
/// the layer would be empty.
pub fn write_layer(
    dest: &LayeredFs,
    src: Option<&dyn SourceFs>,
    op: &CopyOp,
    out: &mut dyn Write,
) -> Result<Option<PackStats>, CopyError> {
    let _ = (dest, src, op, out);
    Err(CopyError::Unsupported {
        what: "COPY".to_string(),
    })
}

/// Writes the layer WORKDIR's `op` makes on top of `dest`: the missing
/// directories of its path. `None` when they all exist.
pub fn write_mkdir_layer(
    dest: &LayeredFs,
    op: &MkdirOp,
    out: &mut dyn Write,
) -> Result<Option<PackStats>, CopyError> {
    let _ = (dest, op, out);
    Err(CopyError::Unsupported {
        what: "WORKDIR".to_string(),
    })
}
