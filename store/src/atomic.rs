//! Crash-safe writes: everything is written to a temporary file in the
//! store's own `tmp/` (same filesystem), fsynced, renamed into place, and the
//! directory fsynced. A reader never sees a half-written file; a crash leaves
//! at most a temporary file that the next `Store::open` sweeps away.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_oci::Digest;

use sha2::Digest as _;

use super::StoreError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh path inside `tmp_dir`, unique across threads and processes.
pub fn temp_path(tmp_dir: &Path, prefix: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_dir.join(format!("{prefix}-{}-{n}", std::process::id()))
}

/// Whether the blob at `path` is stored with `size` bytes: a blob gets
/// into `blobs/` only once it is durable and verified, so one of the size
/// expected needs no second copy; one of another size is damaged.
pub(crate) fn stored_whole(path: &Path, size: u64) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// fsyncs a directory so a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Writes `data` to `dest` atomically (temp file, fsync, rename, fsync dir).
pub fn write_file(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
    write(tmp_dir, dest, data, true)
}

/// Replaces `dest` with `data` atomically (temp file, rename) without the
/// fsyncs: a reader sees the old or the new file, and a power loss may
/// leave the old one, or an empty or missing one. For what can be rebuilt
/// and is checked when read (explanations, stat caches, cache-index
/// records).
pub fn replace_file(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
    write(tmp_dir, dest, data, false)
}

fn write(tmp_dir: &Path, dest: &Path, data: &[u8], durable: bool) -> Result<(), StoreError> {
    let tmp = temp_path(tmp_dir, "file");
    let result = (|| {
        let mut f = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        f.write_all(data).map_err(StoreError::io(&tmp))?;
        if durable {
            f.sync_all().map_err(StoreError::io(&tmp))?;
        }
        fs::rename(&tmp, dest).map_err(StoreError::io(dest))?;
        if durable {
            sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A blob being written: bytes go to a temporary file and through a sha256
/// hasher; [`BlobWriter::commit`] checks the digest (when one was expected)
/// and only then renames the file into `blobs/sha256/`.
pub struct BlobWriter {
    tmp: PathBuf,
    blobs_dir: PathBuf,
    expected: Option<Digest>,
    out: Option<io::BufWriter<File>>,
    /// `None` when the writer's caller hashes the bytes itself
    /// ([`BlobWriter::new_prehashed`]).
    hasher: Option<sha2::Sha256>,
    size: u64,
}

impl BlobWriter {
    /// Starts a blob in `tmp_dir` to land in `blobs_dir`.
    pub fn new(
        tmp_dir: &Path,
        blobs_dir: &Path,
        expected: Option<Digest>,
    ) -> Result<BlobWriter, StoreError> {
        let tmp = temp_path(tmp_dir, "blob");
        let file = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        Ok(BlobWriter {
            out: Some(io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Some(sha2::Sha256::new()),
            size: 0,
            tmp,
            blobs_dir: blobs_dir.to_path_buf(),
            expected,
        })
    }

    /// Like [`BlobWriter::new`] for bytes whose digest the caller computes
    /// as it produces them (a layer packed through a hashing writer): the
    /// bytes are not hashed a second time here, and the blob is committed
    /// with [`BlobWriter::commit_as`].
    pub fn new_prehashed(tmp_dir: &Path, blobs_dir: &Path) -> Result<BlobWriter, StoreError> {
        let mut w = BlobWriter::new(tmp_dir, blobs_dir, None)?;
        w.hasher = None;
        Ok(w)
    }

    /// Finishes the blob: fsync, verify, rename, fsync dir. Returns its
    /// digest and size. On a digest mismatch nothing becomes visible.
    pub fn commit(mut self) -> Result<(Digest, u64), StoreError> {
        let hasher = self
            .hasher
            .take()
            .expect("a prehashed blob is committed with commit_as");
        let digest = Digest::from_bytes(hasher.finalize().into());
        self.commit_digest(digest)
    }

    /// Finishes a blob started with [`BlobWriter::new_prehashed`] under
    /// `digest`, which the caller computed over exactly the bytes written.
    pub fn commit_as(mut self, digest: Digest) -> Result<(Digest, u64), StoreError> {
        self.commit_digest(digest)
    }

    fn commit_digest(&mut self, digest: Digest) -> Result<(Digest, u64), StoreError> {
        let out = self.out.take().expect("commit called once");
        let file = out
            .into_inner()
            .map_err(|e| StoreError::io(&self.tmp)(e.into_error()))?;
        let size = self.size;
        if let Some(expected) = self.expected
            && expected != digest
        {
            return Err(StoreError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let dest = self.blobs_dir.join(digest.hex());
        // Stored already (a `--no-cache` rebuild packs the same layers
        // again): a blob is in `blobs/` only once it was made durable, so
        // the copy just written is dropped unsynced (`Drop` removes it)
        // instead of being fsynced to replace identical bytes. A stored
        // blob of another size is damaged: the new copy replaces it.
        if stored_whole(&dest, size) {
            return Ok((digest, size));
        }
        file.sync_all().map_err(StoreError::io(&self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, &dest).map_err(StoreError::io(&dest))?;
        sync_dir(&self.blobs_dir)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.as_mut().expect("not committed").write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Uncommitted or rejected: the temporary file must not linger.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("index.json");
        write_file(&tmp, &dest, b"first").unwrap();
        write_file(&tmp, &dest, b"second").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"second");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn blob_writer_rejects_wrong_digest_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let blobs = dir.path().join("blobs");
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&blobs).unwrap();
        let mut w = BlobWriter::new(&tmp, &blobs, Some(Digest::of(b"other"))).unwrap();
        w.write_all(b"hello").unwrap();
        let err = w.commit().unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&blobs).unwrap().count(), 0);

        let mut w = BlobWriter::new(&tmp, &blobs, Some(Digest::of(b"hello"))).unwrap();
        w.write_all(b"hello").unwrap();
        let (d, n) = w.commit().unwrap();
        assert_eq!((d, n), (Digest::of(b"hello"), 5));
        assert_eq!(fs::read(blobs.join(d.hex())).unwrap(), b"hello");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn blob_stored_already_is_kept_and_a_damaged_one_replaced() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let blobs = dir.path().join("blobs");
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&blobs).unwrap();
        let commit = |bytes: &[u8]| {
            let mut w = BlobWriter::new(&tmp, &blobs, None).unwrap();
            w.write_all(bytes).unwrap();
            w.commit().unwrap()
        };
        let (d, _) = commit(b"layer bytes");
        let path = blobs.join(d.hex());
        let first = fs::metadata(&path).unwrap().ino();
        // The same bytes again (a --no-cache rebuild): the stored file
        // stays (same inode: no rename, hence no fsync of a new copy) and
        // the copy just written is gone.
        assert_eq!(commit(b"layer bytes"), (d, 11));
        assert_eq!(fs::metadata(&path).unwrap().ino(), first);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        // A stored blob cut short is replaced by the whole new copy.
        fs::write(&path, b"layer").unwrap();
        assert_eq!(commit(b"layer bytes"), (d, 11));
        assert_eq!(fs::read(&path).unwrap(), b"layer bytes");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn dropped_blob_writer_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlobWriter::new(dir.path(), dir.path(), None).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
