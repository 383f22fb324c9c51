//! `type=local`: an exported cache as an OCI layout directory. Publishing
//! replaces the directory at once ([`LocalDirTransport`]); reading opens
//! it as a [`CacheSource`] ([`LayoutSource`], also what the registry
//! transport stages a pulled manifest in).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_solver::Digest;

use super::format::parse_digest;
use super::import::read_verified;
use super::{BlobSource, CacheSource, CacheTransferError, CacheTransport, LAYOUT_TAG, io_err};
use crate::scratch;
use rbuild_store::layout::ANNOTATION_REF_NAME;
use rbuild_store::{Index, Store};

/// `type=local`: the reference is a directory path.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalDirTransport;

impl CacheTransport for LocalDirTransport {
    /// Replaces the directory `reference` with `dir` at once (an exchange
    /// rename when it exists, so a reader sees the old or the new cache).
    fn push_layout(&self, dir: &Path, reference: &str) -> Result<(), CacheTransferError> {
        let dest = Path::new(reference);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if fs::symlink_metadata(dest).is_ok() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                dir,
                rustix::fs::CWD,
                dest,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| io_err(dest)(e.into()))?;
            // `dir` now holds the old cache.
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        } else {
            fs::rename(dir, dest).map_err(io_err(dest))?;
        }
        Ok(())
    }

    fn pull_layout(&self, reference: &str) -> Result<Box<dyn CacheSource>, CacheTransferError> {
        Ok(Box::new(LayoutSource {
            dir: PathBuf::from(reference),
        }))
    }

    /// Next to the destination, so publishing is a rename.
    fn staging_dir(&self, _store: &Store, reference: &str) -> PathBuf {
        self.staging_dir_for(reference)
    }
}

impl LocalDirTransport {
    /// A fresh directory name beside `reference` (same filesystem).
    fn staging_dir_for(&self, reference: &str) -> PathBuf {
        let dest = Path::new(reference);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cache".to_string());
        dest.with_file_name(format!(
            ".{name}.rbuild-tmp-{}-{}",
            std::process::id(),
            scratch::unique()
        ))
    }
}

/// An OCI layout directory as a [`CacheSource`].
#[derive(Debug, Clone)]
pub struct LayoutSource {
    pub dir: PathBuf,
}

impl BlobSource for LayoutSource {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        let f = fs::File::open(&path).map_err(io_err(&path))?;
        Ok(Box::new(io::BufReader::new(f)))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

impl CacheSource for LayoutSource {
    fn manifest(&self) -> Result<Vec<u8>, CacheTransferError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| CacheTransferError::Json {
                what: "index.json",
                location: self.location(),
                source,
            })?;
        // The one tagged `cache`, else the only manifest.
        let desc = index
            .manifests
            .iter()
            .find(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(LAYOUT_TAG)
            })
            .or_else(|| (index.manifests.len() == 1).then(|| &index.manifests[0]))
            .ok_or_else(|| CacheTransferError::NotACache {
                location: self.location(),
                reason: format!("index.json has no manifest tagged {LAYOUT_TAG:?}"),
            })?;
        let digest = parse_digest(&desc.digest, &self.location())?;
        read_verified(self, &digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_a_local_cache_replaces_the_old_one_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("cache");
        let dest_s = dest.to_str().unwrap();
        for content in ["old", "new"] {
            let staging = LocalDirTransport.staging_dir_for(dest_s);
            fs::create_dir_all(&staging).unwrap();
            fs::write(staging.join("index.json"), content).unwrap();
            LocalDirTransport.push_layout(&staging, dest_s).unwrap();
            assert!(!staging.exists(), "the staging dir is gone");
        }
        assert_eq!(fs::read_to_string(dest.join("index.json")).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "nothing left beside the cache");
    }
}
