//! Image archives in and out of the store: the codecs behind `rbuild
//! save`, `rbuild load`, `rbuild import` and `rbuild build -o
//! type=oci|docker`.
//!
//! - [`write_archive`]: images → one tar that is both a docker-archive
//!   (`manifest.json`, `repositories`) and an OCI image layout
//!   (`oci-layout`, `index.json`, `blobs/sha256/…`) sharing the same blobs,
//!   as Docker ≥ 25 writes it ([`ArchiveFormat::Docker`]), or a pure OCI
//!   layout ([`ArchiveFormat::Oci`]).
//! - [`load`]: a docker-archive or OCI layout tar, plain or gzip'd, read
//!   once front to back → images in the store, config bytes kept as they
//!   are so the image ID survives a save and load.
//! - [`import`]: a root filesystem (a tar, plain or gzip'd, or a
//!   directory) → a one-layer image, as `docker import` makes it, with
//!   `--change` instructions applied by [`config_from_changes`].
//!
//! Nothing here prints or opens stdin/stdout: callers hand in readers and
//! writers, and get back what happened ([`LoadedImage`], the new image ID)
//! to show as they like. Errors are [`ArchiveError`].

mod import;
mod read;
mod write;

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use oci_spec::image::Arch;
use rbuild_oci::Digest;
use rbuild_oci::digest::InvalidDigest;
use rbuild_oci::reference::ReferenceError;

use crate::StoreError;

pub use import::{BadChange, ImportOptions, RootFs, config_from_changes, import};
pub use read::{LoadedImage, load};
pub use write::{ManifestDescription, write_archive, write_archive_described};

/// The two archive layouts [`write_archive`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A docker-archive (what `docker load` reads) with the OCI layout
    /// alongside, sharing its blobs.
    Docker,
    /// A pure OCI image layout tar.
    Oci,
}

/// Why an archive could not be written, loaded or imported. Texts do not
/// repeat their source (chained with `#[source]`); where a name is given,
/// it is the caller's name for the input (a path, `stdin`, `-`).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),

    // Writing.
    /// A blob could not be copied from the store into the archive.
    #[error("cannot archive {}", .path.display())]
    ArchiveBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A blob of an image being saved does not match its digest.
    #[error("cannot save image {image}: it is damaged in the store")]
    CorruptImage {
        image: String,
        #[source]
        source: Box<StoreError>,
    },
    /// An entry other than a blob (a directory, `index.json`, …) or the
    /// archive's end could not be written.
    #[error("cannot write {entry} to the archive")]
    WriteEntry {
        entry: String,
        #[source]
        source: io::Error,
    },

    /// The tar could not be ended.
    #[error("cannot end the archive")]
    Finish {
        #[source]
        source: io::Error,
    },

    // Reading.
    /// An input could not be read: the first bytes of an archive or a
    /// root filesystem tar, or a blob being archived.
    #[error("cannot read {name}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The tar stream broke off or is malformed after its first entry.
    #[error("cannot load {name}: the archive is cut short or damaged")]
    Load {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot load {name}: not a tar archive (plain or gzip)\nhint: `rbuild load` reads what `rbuild save`, `docker save` or `skopeo copy … oci-archive:…` write"
    )]
    NotTar { name: String },
    #[error("cannot load {name}: link {path:?} has no target")]
    LinkWithoutTarget { name: String, path: String },
    #[error("cannot load {name}: bad blob {path:?} in the archive")]
    BadBlob {
        name: String,
        path: String,
        #[source]
        source: Box<StoreError>,
    },
    /// A layer of an image in the archive could never be unpacked (or
    /// does not match its config); nothing was loaded.
    #[error("cannot load {name}: image {image} has a bad layer; nothing was loaded")]
    BadLayer {
        name: String,
        image: String,
        #[source]
        source: Box<crate::StagedLayerError>,
    },
    #[error("{name} is neither a docker-archive nor an OCI layout: no manifest.json or index.json")]
    UnknownLayout { name: String },
    /// A path `manifest.json` or a symlink names is not in the archive.
    #[error("the archive has no file {path:?}")]
    MissingFile { path: String },
    #[error("the archive lacks layer {digest}")]
    MissingLayer { digest: Digest },
    /// JSON in the archive (`what`: `manifest.json`, `image config …`)
    /// does not parse.
    #[error("bad {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("bad {what}")]
    Digest {
        what: String,
        #[source]
        source: InvalidDigest,
    },
    #[error("bad {what}")]
    Reference {
        what: String,
        #[source]
        source: ReferenceError,
    },
    #[error("manifest.json lists {layers} layers for {config} but its config has {diff_ids}")]
    DockerLayerCount {
        config: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("manifest {manifest} has {layers} layers but its config has {diff_ids} diff_ids")]
    OciLayerCount {
        manifest: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("index nesting is too deep at {digest}")]
    IndexTooDeep { digest: String },
    #[error("index {digest} has no manifest for linux/{arch}")]
    NoPlatform { digest: Digest, arch: String },

    // Importing.
    #[error("cannot pack directory {name}")]
    PackDir {
        name: String,
        #[source]
        source: crate::layer::LayerError,
    },
    #[error("cannot import {name}: not a valid tar archive")]
    ImportNotTar {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The tar is one, but could never be unpacked; nothing was stored.
    #[error("cannot import {name}: the archive could never be unpacked; nothing was imported")]
    ImportRefused {
        name: String,
        #[source]
        source: Box<crate::layer::LayerError>,
    },
    #[error("cannot write layer")]
    WriteLayer {
        #[source]
        source: io::Error,
    },
    #[error(
        "invalid --change {change:?}: {problem}\nhint: use a Dockerfile instruction such as 'CMD [\"sh\"]' or 'ENV KEY=value'"
    )]
    InvalidChange { change: String, problem: BadChange },
    #[error(
        "invalid --change {change:?}: {keyword} is not supported by import\nhint: supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR"
    )]
    UnsupportedChange { change: String, keyword: String },
}

/// Wraps `input` in a gzip decoder when it starts with the gzip magic
/// (what `docker load` and `docker import` accept besides a plain tar).
fn decompressed<'a>(input: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 20, input);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// The OCI architecture name of this machine, as oci-spec spells it: what
/// an imported image's config says and the platform [`load`] picks from a
/// multi-platform index.
pub fn host_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "arm" => Arch::ARM,
        "x86" => Arch::i386,
        "riscv64" => Arch::RISCV64,
        "powerpc64" => Arch::PowerPC64le,
        "s390x" => Arch::s390x,
        other => Arch::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
