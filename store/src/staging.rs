//! Blobs staged before they enter the store: `load` and `pull` write what
//! they receive into a directory of this process's scratch space, check
//! it (digests, every new layer through [`crate::layer::validate`], diffIDs
//! against the config), and only then move it into `blobs/sha256/`. A
//! refused or broken input, a full disk or a kill leaves no blob behind:
//! the scratch space is removed with the session (or swept once its owner
//! died).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rbuild_oci::Digest;

use crate::{BlobWriter, LayerEncoding, LayerInfo, Result, Store, StoreError, atomic, layer};

/// Blobs received but not yet in the store; see the module docs. Shared
/// by reference across download threads.
#[derive(Debug)]
pub struct Staging<'a> {
    store: &'a Store,
    dir: PathBuf,
}

/// Why a staged layer was refused.
#[derive(Debug, thiserror::Error)]
pub enum StagedLayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {digest} cannot be unpacked")]
    Invalid {
        digest: Digest,
        #[source]
        source: layer::LayerError,
    },
    #[error(
        "layer {digest} does not match the image config: its content is {actual}, the config's rootfs.diff_ids says {expected}"
    )]
    DiffId {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
}

impl Store {
    /// A new staging area in this process's scratch space.
    pub fn staging(&self) -> Result<Staging<'_>> {
        let dir = atomic::temp_path(self.tmp.ensure()?, "staging");
        fs::create_dir(&dir).map_err(StoreError::io(&dir))?;
        Ok(Staging { store: self, dir })
    }
}

impl Staging<'_> {
    /// Where staged blobs are written (for errors naming the disk).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the blob is staged or already in the store.
    pub fn has(&self, digest: &Digest) -> bool {
        self.dir.join(digest.hex()).is_file() || self.store.has_blob(digest)
    }

    /// True when the blob is staged (new, so not yet checked by a load
    /// or pull before this one).
    pub fn is_staged(&self, digest: &Digest) -> bool {
        self.dir.join(digest.hex()).is_file()
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let staged = self.dir.join(digest.hex());
        if staged.is_file() {
            staged
        } else {
            self.store.blob_path(digest)
        }
    }

    /// A writer for a blob that lands here on [`BlobWriter::commit`].
    pub fn writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        BlobWriter::new(&self.store.tmp, &self.dir, expected)
    }

    /// Stores the bytes of `input` here (verified against `expected` when
    /// given) unless the store has the blob already. Returns digest and
    /// size.
    pub fn put(&self, input: &mut dyn Read, expected: Option<Digest>) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && self.has(&d)
        {
            io::copy(input, &mut io::sink()).map_err(StoreError::io(&self.dir))?;
            let path = self.path(&d);
            let size = fs::metadata(&path).map_err(StoreError::io(&path))?.len();
            return Ok((d, size));
        }
        let mut w = self.writer(expected)?;
        copy_apart(input, &mut w, &self.dir)?;
        w.commit()
    }

    /// Opens a staged or stored blob.
    pub fn open(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: *digest }
            } else {
                StoreError::Io { path, source: e }
            }
        })
    }

    /// Reads a whole (small) staged or stored blob, verified.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let path = self.path(digest);
        self.open(digest)?
            .read_to_end(&mut out)
            .map_err(StoreError::io(&path))?;
        let actual = Digest::of(&out);
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(out)
    }

    /// Checks the image's staged layers, bottom first: each must unpack
    /// (see [`layer::validate`]) and hash to its diffID. Layers the store
    /// had already were checked when they entered it.
    pub fn check_layers(&self, layers: &[LayerInfo]) -> Result<(), StagedLayerError> {
        for (i, l) in layers.iter().enumerate() {
            if !self.is_staged(&l.digest) {
                continue;
            }
            let diff_id = self.check_layer(&l.digest, &l.media_type, i == 0)?;
            if diff_id != l.diff_id {
                return Err(StagedLayerError::DiffId {
                    digest: l.digest,
                    expected: l.diff_id,
                    actual: diff_id,
                });
            }
        }
        Ok(())
    }

    /// Reads one staged (or stored) layer blob through
    /// [`layer::validate`]; `bottom`: no layer lies below it. Returns its
    /// diffID.
    pub fn check_layer(
        &self,
        digest: &Digest,
        media_type: &str,
        bottom: bool,
    ) -> Result<Digest, StagedLayerError> {
        if LayerEncoding::from_media_type(media_type).is_none() {
            return Err(StoreError::UnsupportedMediaType {
                digest: *digest,
                media_type: media_type.to_string(),
            }
            .into());
        }
        let path = self.path(digest);
        let file = self.open(digest)?;
        let mut decoded = layer::decompress(Box::new(io::BufReader::with_capacity(1 << 20, file)))
            .map_err(StoreError::io(&path))?;
        let stats =
            layer::validate(&mut decoded, bottom).map_err(|source| StagedLayerError::Invalid {
                digest: *digest,
                source,
            })?;
        Ok(stats.diff_id)
    }

    /// Moves one staged blob into the store (a pull keeps every blob that
    /// arrived whole and checked out, so a retry fetches only the rest).
    pub fn publish_one(&self, digest: &Digest) -> Result<()> {
        let from = self.dir.join(digest.hex());
        let blobs = self.store.blobs_dir();
        let dest = blobs.join(digest.hex());
        match fs::rename(&from, &dest) {
            Ok(()) => atomic::sync_dir(&blobs),
            // Published already (the same blob asked for twice).
            Err(e) if e.kind() == io::ErrorKind::NotFound && dest.is_file() => Ok(()),
            Err(e) => Err(StoreError::io(&dest)(e)),
        }
    }

    /// Moves every staged blob into the store. Call while holding a
    /// [`WriteSession`](crate::WriteSession) until the index references
    /// them.
    pub fn publish(self) -> Result<()> {
        let blobs = self.store.blobs_dir();
        let mut moved = false;
        for entry in fs::read_dir(&self.dir).map_err(StoreError::io(&self.dir))? {
            let entry = entry.map_err(StoreError::io(&self.dir))?;
            let dest = blobs.join(entry.file_name());
            fs::rename(entry.path(), &dest).map_err(StoreError::io(&dest))?;
            moved = true;
        }
        if moved {
            atomic::sync_dir(&blobs)?;
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        // Published blobs were moved out; what is left was refused.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Copies `input` to `out`, keeping a read error ([`StoreError::Input`]:
/// the archive or the network) apart from a write error (the disk at
/// `dir`; a full one is [`StoreError::DiskFull`]).
pub(crate) fn copy_apart(input: &mut dyn Read, out: &mut dyn Write, dir: &Path) -> Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(StoreError::Input { source }),
        };
        out.write_all(&buf[..n]).map_err(StoreError::io(dir))?;
        total += n as u64;
    }
}
