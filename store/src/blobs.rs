//! Blobs: the content-addressed files under `blobs/sha256/` (manifests,
//! configs, layers), looked up, read, and written verified against their
//! digest.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use rbuild_oci::Digest;

use crate::{BlobWriter, Result, Store, StoreError};

impl Store {
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// True when the blob exists.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: *digest }
            } else {
                StoreError::Io { path, source: e }
            }
        })
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
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
        io::copy(input, &mut w).map_err(StoreError::io(&self.tmp))?;
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
