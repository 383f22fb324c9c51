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
