//! The layer codec: directory trees ⇄ tar layers, and compression.
//!
//! CONTRACT (other modules code against these signatures):
//! - [`pack_dir`]: a directory tree → an uncompressed tar stream, deterministic,
//!   returning the diffID (sha256 of the tar bytes) and size.
//! - [`pack_diff`]: an overlayfs upper dir → a layer (whiteout char devices →
//!   `.wh.NAME`, opaque xattr → `.wh..wh..opq`).
//! - [`unpack`]: a tar stream → a directory, applying whiteouts, refusing
//!   entries that would land outside the directory.
//! - [`compress`] / [`decompress`]: gzip or zstd, digest + size of the
//!   compressed stream computed in the same pass.
//!
//! The bodies below are placeholders so the store and sandbox can be written
//! in parallel; the layer work replaces them.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rbuild_solver::Digest;

/// Options for packing a tree.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Clamp every mtime to at most this many seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u64>,
}

/// What packing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
}

/// What unpacking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream that was read.
    pub diff_id: Option<Digest>,
    pub entries: u64,
    pub bytes: u64,
}

/// Compression of a stored or transferred layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What compressing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressStats {
    /// sha256 of the compressed bytes (the blob digest).
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// sha256 of the uncompressed bytes (the diffID).
    pub diff_id: Digest,
}

/// A layer operation failed; names the entry or path involved.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing archive entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("malformed archive entry {entry:?}")]
    Malformed {
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// Packs the tree at `root` into `out` as an uncompressed tar layer.
pub fn pack_dir(
    root: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
) -> Result<PackStats, LayerError> {
    let _ = opts;
    let io_err = |source| LayerError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut hashing = HashingWriter::new(out);
    {
        let mut builder = tar::Builder::new(&mut hashing);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", root).map_err(io_err)?;
        builder.finish().map_err(io_err)?;
    }
    let (diff_id, size) = hashing.finish();
    Ok(PackStats { diff_id, size })
}

/// Packs an overlayfs upper directory into a layer, translating whiteouts.
pub fn pack_diff(
    upper: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
) -> Result<PackStats, LayerError> {
    pack_dir(upper, out, opts)
}

/// Unpacks an uncompressed tar layer into `dest` (which must exist).
pub fn unpack(input: &mut dyn Read, dest: &Path) -> Result<UnpackStats, LayerError> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.unpack(dest).map_err(|source| LayerError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok(UnpackStats::default())
}

/// Compresses `input` into `out`.
pub fn compress(
    input: &mut dyn Read,
    out: &mut dyn Write,
    compression: Compression,
) -> Result<CompressStats, LayerError> {
    let _ = (input, out, compression);
    unimplemented!("layer::compress is written by the layer work")
}

/// Wraps `input` in a decoder chosen by sniffing its first bytes (gzip,
/// zstd, bzip2, xz, or none).
pub fn decompress<'a>(input: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    Ok(input)
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest as _;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything written.
    pub fn finish(self) -> (Digest, u64) {
        use sha2::Digest as _;
        (
            Digest::from_bytes(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
