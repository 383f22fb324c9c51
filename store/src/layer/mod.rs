//! The layer codec: directory trees ⇄ tar layers, and compression.
//!
//! - [`pack_dir`]: a directory tree → an uncompressed tar stream,
//!   deterministic, returning the diffID (sha256 of the tar bytes) and size
//!   computed in the same pass (sha256 runs on a helper thread).
//! - [`pack_diff`]: an overlayfs upper dir → a layer (whiteout char devices →
//!   `.wh.NAME`, opaque xattr → `DIR/.wh..wh..opq` right after `DIR/`).
//! - [`unpack`] / [`unpack_with`]: a tar stream → a directory, applying
//!   whiteouts (or keeping them in overlay form), refusing entries that would
//!   land outside the directory.
//! - [`validate`]: a tar stream read once through the unpacker's checks,
//!   writing nothing (for layers entering the store), with its diffID.
//! - sparse files (`sparse.rs`): GNU `S` entries and PAX sparse 0.0, 0.1
//!   and 1.0 unpack with holes as holes.
//! - [`compress`] / [`compress_with`] / [`decompress`]: parallel gzip or
//!   multithreaded zstd; blob digest, size and diffID in the same pass;
//!   decompress sniffs gzip, zstd, bzip2, xz or plain tar.
//!
//! Tar format written: POSIX pax. Entries in depth-first order, siblings
//! sorted by name bytes, each directory before its children; the root is not
//! written; directories end in `/`; uname/gname empty; no atime/ctime;
//! mtimes in whole seconds (optionally clamped); pax records (sorted) only
//! where ustar cannot hold a value: long or non-ASCII names and link
//! targets, size ≥ 8 GiB, ids > 2097151, xattrs as `SCHILY.xattr.NAME`
//! (all but `security.selinux` and overlay's own). A file seen again by
//! (dev, inode) becomes a hardlink entry to its first path. Sockets are
//! skipped, as Docker does.
//!
//! Unpack safety (details in `unpack.rs`): every path is resolved from a
//! directory fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` or a
//! per-component `O_NOFOLLOW` walk, so no symlink is followed. Refused,
//! with [`LayerError::UnsafeEntry`] naming the entry: `..` climbing above the
//! root (a leading `/` is stripped, as Docker does), a path through a
//! symlink or non-directory, a hardlink whose target is outside or missing. Device
//! nodes are created when root (Docker's behaviour) and counted in
//! [`UnpackStats::skipped_devices`] otherwise. `trusted.overlay.*` and
//! `user.overlay.*` xattrs in an archive are ignored.
//!
//! Unpack contract: when `dest` is empty on entry, [`unpack`] is
//! all-or-nothing — on error everything it wrote is removed and `dest` is
//! left empty (the directory itself stays). When `dest` already holds lower
//! content (whiteouts applied on top of it), an error leaves the entries
//! written so far in place; callers that need atomicity unpack into a fresh
//! directory and rename it.

mod compress;
mod hash_thread;
mod pack;
pub use hash_thread::ThreadHashingWriter;
pub use pack::is_skipped_xattr;
mod rewrite;
mod sparse;
pub mod tar_writer;
mod unpack;
mod validate;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rbuild_oci::Digest;
use sha2::Digest as _;

/// Options for packing a tree.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Clamp every mtime to at most this many seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u64>,
    /// Host ids → the ids written (a rootless sandbox's upper dir holds
    /// files owned by the user, which are root inside); `None` writes
    /// ids as they are.
    pub owners: Option<OwnerMap>,
}

/// One id range of a user namespace map: `count` ids from `container`
/// inside are `host`.. outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

/// The uid and gid maps of a user namespace, read backwards by the packer:
/// a host id in a range becomes its container id; one in no range
/// becomes 65534 (the kernel's overflow id, what the namespace shows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl OwnerMap {
    fn map(ranges: &[IdRange], host: u32) -> u32 {
        ranges
            .iter()
            .find(|r| host >= r.host && host - r.host < r.count)
            .map_or(65534, |r| r.container + (host - r.host))
    }

    /// The container uid of host uid `host`.
    pub fn uid(&self, host: u32) -> u32 {
        Self::map(&self.uids, host)
    }

    /// The container gid of host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        Self::map(&self.gids, host)
    }
}

/// What packing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
}

/// A writer that passes bytes on while keeping a fast, non-cryptographic
/// 128-bit checksum (XXH3) and a count of them: it tells that a second
/// pass over a tree wrote the same bytes as a first one whose sha256 was
/// taken, for a small part of a second sha256's cost (see
/// [`Store::write_layer_blob_deferred`](crate::Store::write_layer_blob_deferred)).
pub struct StreamCheck<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    size: u64,
}

/// What a [`StreamCheck`] saw: the checksum and the byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSum {
    pub xxh3: u128,
    pub size: u64,
}

impl<W: Write> StreamCheck<W> {
    pub fn new(inner: W) -> StreamCheck<W> {
        StreamCheck {
            inner,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            size: 0,
        }
    }

    /// The writer the bytes went to.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// The checksum and count of the bytes written.
    pub fn sum(&self) -> StreamSum {
        StreamSum {
            xxh3: self.hasher.digest128(),
            size: self.size,
        }
    }
}

impl<W: Write> Write for StreamCheck<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What unpacking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream that was read (always `Some`
    /// after a successful [`unpack`]).
    pub diff_id: Option<Digest>,
    /// Archive entries processed, whiteouts included.
    pub entries: u64,
    /// File data bytes written.
    pub bytes: u64,
    /// Device nodes not created because the process may not (not root, or
    /// inside a user namespace) — Docker skips them the same way.
    pub skipped_devices: u64,
}

/// What to do with whiteout entries (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete NAME / empty the directory of what is already in `dest`
    /// (flattening layers into one tree).
    #[default]
    Apply,
    /// Record them the way overlayfs does — a 0/0 char device named NAME,
    /// `trusted.overlay.opaque=y` on the directory — so the unpacked
    /// snapshot can serve as an overlay lower dir above its parents.
    /// Needs root.
    Overlay,
}

/// Options for [`unpack_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutMode,
}

/// Compression of a stored or transferred layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer blob compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Options for [`compress_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    pub compression: Compression,
    /// gzip 0–9 (default 6), zstd 1–22 (default 3).
    pub level: Option<i32>,
    /// Compression threads; default: all cores.
    pub threads: Option<usize>,
}

impl CompressOptions {
    /// Default level and all cores.
    pub fn new(compression: Compression) -> Self {
        CompressOptions {
            compression,
            level: None,
            threads: None,
        }
    }
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
    #[error("cannot extract archive entry {entry:?} into {dest}")]
    Entry {
        entry: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the layer stream failed")]
    Output {
        #[source]
        source: io::Error,
    },
    #[error("reading the input stream failed")]
    Input {
        #[source]
        source: io::Error,
    },
    #[error("refusing archive entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// The tar stream itself is broken (not an entry's content): `problem`
    /// says how, `after` names the last good entry.
    #[error("malformed archive: {problem} (after entry {after:?})")]
    Malformed {
        after: String,
        problem: &'static str,
        #[source]
        source: io::Error,
    },
    /// An entry's header promises more bytes than the archive holds.
    #[error(
        "archive entry {entry:?} is cut short: its header promises {declared} bytes but the archive ends after {actual}"
    )]
    Truncated {
        entry: String,
        declared: u64,
        actual: u64,
    },
}

impl LayerError {
    /// A broken tar stream after entry `after`, saying what is wrong in
    /// words rather than only the tar reader's.
    pub(crate) fn malformed(after: &str, source: io::Error) -> LayerError {
        let text = source.to_string();
        let damaged = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::StoreError>())
            .is_some_and(|e| matches!(e, crate::StoreError::CorruptBlob { .. }));
        let problem = if damaged {
            "the layer blob is damaged on disk"
        } else if source.kind() == io::ErrorKind::UnexpectedEof
            || text.contains("unexpected EOF")
            || text.contains("entire block")
            || text.contains("failed to read extension")
        {
            "the archive is cut short"
        } else if text.contains("checksum") {
            "a header's checksum does not match (not a tar, or damaged)"
        } else if text.contains("sparse") {
            "a sparse file's map is inconsistent"
        } else if text.contains("pax") || text.contains("PAX") {
            "a PAX extended header is malformed"
        } else if source.kind() == io::ErrorKind::InvalidData || text.contains("numeric field") {
            "a header field is malformed"
        } else {
            "the stream cannot be read"
        };
        LayerError::Malformed {
            after: after.to_string(),
            problem,
            source,
        }
    }
}

/// What [`validate`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
    /// Entries read.
    pub entries: u64,
    /// File content bytes (what unpacking writes at most).
    pub file_bytes: u64,
}

/// Reads an uncompressed tar layer once through the checks [`unpack`]
/// applies, writing nothing: for a layer entering the store (`import`,
/// `load`, `pull`), so one that can never be unpacked is refused there,
/// naming its bad entry. `bottom`: no layer lies below, so a hardlink's
/// target must be in this one. Returns the diffID and size of the stream.
pub fn validate(input: &mut dyn Read, bottom: bool) -> Result<ValidateStats, LayerError> {
    validate::validate(input, bottom)
}

/// Packs the tree at `root` into `out` as an uncompressed tar layer.
///
/// Deterministic: the same tree gives the same bytes (sorted walk, empty
/// user/group names, no atime/ctime, pax records sorted). The stream is
/// written as it is produced; the diffID and size come from the same pass.
pub fn pack_dir(
    root: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
) -> Result<PackStats, LayerError> {
    pack_tree(root, out, opts, false)
}

/// Packs an overlayfs upper directory into a layer, translating whiteouts:
/// a 0/0 char device becomes `.wh.NAME`, a directory marked opaque
/// (`trusted.overlay.opaque=y` or `user.overlay.opaque=y`) is followed
/// right away by `DIR/.wh..wh..opq`. overlay's own xattrs are not written.
///
/// The upper dir must come from a mount without `metacopy` or
/// `redirect_dir` (files there would lack data or carry renames).
pub fn pack_diff(
    upper: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
) -> Result<PackStats, LayerError> {
    pack_tree(upper, out, opts, true)
}

/// [`pack_diff`] without the sha256: for a second pass over a tree whose
/// diffID the first one took, checked with a [`StreamCheck`] instead.
pub fn pack_diff_unhashed(
    upper: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
) -> Result<(), LayerError> {
    pack::Packer::new(out, opts, true).pack(upper)
}

fn pack_tree(
    root: &Path,
    out: &mut dyn Write,
    opts: &PackOptions,
    diff: bool,
) -> Result<PackStats, LayerError> {
    let output = |source| LayerError::Output { source };
    // sha256 runs on a helper thread, overlapping with file reads.
    let mut hashing = hash_thread::ThreadHashingWriter::new(out);
    pack::Packer::new(&mut hashing, opts, diff).pack(root)?;
    let (diff_id, size) = hashing.finish().map_err(output)?;
    Ok(PackStats { diff_id, size })
}

/// Unpacks an uncompressed tar layer into `dest` (which must exist),
/// applying whiteouts to what `dest` already holds. See the module docs
/// for the all-or-nothing contract and `unpack`'s safety rules.
pub fn unpack(input: &mut dyn Read, dest: &Path) -> Result<UnpackStats, LayerError> {
    unpack_with(input, dest, &UnpackOptions::default())
}

/// [`unpack`] with options (e.g. keep whiteouts as overlay whiteouts).
pub fn unpack_with(
    input: &mut dyn Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    unpack::unpack(input, dest, opts)
}

/// Compresses `input` into `out` with the default level on all cores.
/// The blob digest, its size and the diffID come from the same pass.
pub fn compress(
    input: &mut dyn Read,
    out: &mut dyn Write,
    compression: Compression,
) -> Result<CompressStats, LayerError> {
    compress_with(input, out, &CompressOptions::new(compression))
}

/// [`compress`] with a chosen level and thread count.
pub fn compress_with(
    input: &mut dyn Read,
    out: &mut dyn Write,
    opts: &CompressOptions,
) -> Result<CompressStats, LayerError> {
    compress::compress(input, out, opts)
}

/// Wraps `input` in a decoder chosen by sniffing its first bytes (gzip,
/// zstd, bzip2, xz, or none). Concatenated gzip members, zstd frames,
/// bzip2 streams and xz streams are all read through.
pub fn decompress<'a>(input: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    compress::decompress(input)
}

/// Copies the uncompressed layer tar `input` to `out` with every
/// modification time newer than `epoch` (seconds) set to `epoch`
/// (BuildKit's `rewrite-timestamp=true`), streaming; returns the new
/// diffID and size. Entries, data and other metadata are unchanged.
pub fn clamp_mtimes(
    input: &mut dyn Read,
    out: &mut dyn Write,
    epoch: u64,
) -> Result<PackStats, LayerError> {
    rewrite::clamp_mtimes(input, out, epoch)
}

/// [`decompress`] for layer blobs only (gzip, zstd or plain tar), keeping
/// the stream `Send` so another thread can read it.
pub fn decompress_layer<'a>(
    input: Box<dyn Read + Send + 'a>,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut input = io::BufReader::new(input);
    let head = io::BufRead::fill_buf(&mut input)?;
    Ok(match compress::sniff(head) {
        compress::Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        compress::Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        _ => Box::new(input),
    })
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything written.
    pub fn finish(self) -> (Digest, u64) {
        self.into_parts().1
    }

    /// The inner writer back, with the digest and byte count of
    /// everything written (to write a checksum after what it covers).
    pub fn into_parts(self) -> (W, (Digest, u64)) {
        (
            self.inner,
            (
                Digest::from_bytes(self.hasher.finalize().into()),
                self.count,
            ),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    /// The digest of everything read so far.
    pub fn digest(&self) -> Digest {
        Digest::from_bytes(self.hasher.clone().finalize().into())
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest::from_bytes(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_oci_spec() {
        assert_eq!(
            Compression::Gzip.oci_media_type(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert!(Compression::None.oci_media_type().ends_with(".tar"));
        assert!(Compression::Zstd.oci_media_type().ends_with("+zstd"));
    }
}
