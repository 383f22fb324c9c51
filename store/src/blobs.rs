//! Blobs: the content-addressed files under `blobs/sha256/` (manifests,
//! configs, layers), looked up, read, and written verified against their
//! digest.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use rbuild_oci::Digest;

use sha2::Digest as _;

use crate::{BlobWriter, Result, Store, StoreError};

/// A stored blob read through its digest check; see
/// [`Store::open_blob_verified`].
#[derive(Debug)]
pub struct VerifiedBlob {
    file: File,
    digest: Digest,
    hasher: sha2::Sha256,
    size: u64,
    read: u64,
    corrupt: Option<Digest>,
}

impl VerifiedBlob {
    /// The blob's size on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the content hashed to when it did not match its digest (set
    /// once the whole blob was read), so a caller whose reader swallowed
    /// the error (an HTTP upload) can still say what happened.
    pub fn corrupt(&self) -> Option<Digest> {
        self.corrupt
    }

    /// The error to report when [`corrupt`](Self::corrupt) is set.
    pub fn corrupt_error(&self) -> Option<StoreError> {
        self.corrupt.map(|actual| StoreError::CorruptBlob {
            digest: self.digest,
            actual,
        })
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.corrupt_error() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        // Checked on the read that ends the blob (its size or EOF), before
        // those last bytes are handed on: a reader that stops at the
        // size it was told (an upload) never passes a corrupt blob whole.
        if (n > 0 && self.read == self.size) || (n == 0 && !buf.is_empty()) {
            let actual = Digest::from_bytes(self.hasher.clone().finalize().into());
            if actual != self.digest {
                self.corrupt = Some(actual);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    self.corrupt_error().expect("just set"),
                ));
            }
        }
        Ok(n)
    }
}

impl Store {
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// True when the blob exists, or is being written in the background
    /// by this process (see [`Store::write_layer_blob_deferred`]).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file() || self.blob_is_deferred(digest)
    }

    /// Opens a blob for reading (once it is written, when it is being
    /// written in the background).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        self.wait_deferred_blob(digest)?;
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: *digest }
            } else {
                StoreError::Io { path, source: e }
            }
        })
    }

    /// Opens a blob for a reader that hashes what it reads: the read that
    /// would return the blob's last bytes fails instead when the content
    /// does not match `digest` (an `InvalidData` error wrapping
    /// [`StoreError::CorruptBlob`]), so a corrupt blob is never passed on
    /// whole. For layers streamed anyway (save, push, export, unpack).
    pub fn open_blob_verified(&self, digest: &Digest) -> Result<VerifiedBlob> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let size = file.metadata().map_err(StoreError::io(&path))?.len();
        Ok(VerifiedBlob {
            file,
            digest: *digest,
            hasher: sha2::Sha256::new(),
            size,
            read: 0,
            corrupt: None,
        })
    }

    /// [`StoreError::CorruptBlob`] when the stored blob does not hash to
    /// its digest (read whole); `None` when it does or cannot be read.
    pub fn verify_blob(&self, digest: &Digest) -> Option<StoreError> {
        let mut blob = self.open_blob_verified(digest).ok()?;
        let _ = io::copy(&mut blob, &mut io::sink());
        blob.corrupt_error()
    }

    /// Reads a whole (small) blob — a manifest, config or index —
    /// verified against its digest: a flipped bit in a config that is
    /// still valid JSON is [`StoreError::CorruptBlob`], never used.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let out = self.read_blob_unverified(digest)?;
        let actual = Digest::of(&out);
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(out)
    }

    /// Reads a whole blob as it is on disk, without checking its digest:
    /// for garbage collection, which must keep what a damaged image
    /// reaches rather than fail.
    pub(crate) fn read_blob_unverified(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut out)
            .map_err(StoreError::io(&path))?;
        Ok(out)
    }

    /// A writer for a new blob; call [`BlobWriter::commit`] to store it.
    /// Hold a [`WriteSession`](crate::WriteSession) until the blob is referenced by the index.
    pub fn blob_writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        BlobWriter::new(&self.tmp, &self.blobs_dir(), expected)
    }

    /// A writer for a new blob whose digest the caller computes itself; call
    /// [`BlobWriter::commit_as`] with it to store the blob.
    pub fn blob_writer_prehashed(&self) -> Result<BlobWriter> {
        BlobWriter::new_prehashed(&self.tmp, &self.blobs_dir())
    }

    /// Stores the bytes read from `input`, verifying them against `expected`
    /// when given. Returns the digest and size.
    pub fn put_blob(
        &self,
        input: &mut dyn Read,
        expected: Option<Digest>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && let Ok(meta) = fs::metadata(self.blob_path(&d))
        {
            // Already stored (and verified when it was written).
            io::copy(input, &mut io::sink()).map_err(StoreError::io(&self.tmp))?;
            return Ok((d, meta.len()));
        }
        let _session = self.write_session()?;
        let mut w = self.blob_writer(expected)?;
        crate::staging::copy_apart(input, &mut w, &self.tmp)?;
        w.commit()
    }

    /// Stores `data` as a blob and returns its digest.
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if !self.has_blob(&digest) {
            self.put_blob(&mut &data[..], Some(digest))?;
        }
        Ok(digest)
    }
}
