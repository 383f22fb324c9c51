//! `rbuild system check`: every blob hashed against its name and every index
//! entry's manifest, config and layers checked; with repair, broken blobs
//! and the entries that need them are dropped, then garbage is collected.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;

use rbuild_oci::{Digest, error_chain_line};

use crate::layer::HashingReader;
use crate::layout::{ANNOTATION_REF_NAME, canonical_json};
use crate::{
    Descriptor, FileLock, GcRoots, Index, LayerEncoding, LockMode, Result, Store, StoreError,
    atomic,
};

/// One problem found by [`Store::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is damaged (a path, digest, or reference).
    pub subject: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of [`Store::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Blobs whose content was hashed.
    pub blobs_checked: u64,
    /// Index entries checked.
    pub images_checked: u64,
    /// Everything found broken.
    pub problems: Vec<Problem>,
    /// With repair: what was dropped.
    pub repaired: Vec<String>,
    /// Blobs nothing references and dead processes' scratch (not damage:
    /// what a kill or a full disk leaves; a repair or prune removes it).
    pub unreferenced: crate::Unreferenced,
}

impl Store {
    /// Verifies every blob against its digest and every reference from the
    /// index to manifests, configs and layers. With `repair`, drops broken
    /// blobs and the index entries that need them, then collects garbage.
    /// Also sweeps the scratch space of processes that died (which opening
    /// alone no longer does).
    ///
    /// A repair ends with [`Store::gc`] over `roots`.
    pub fn check(&self, repair: bool, roots: &dyn GcRoots) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        // Counted before this session's creation sweeps them.
        let dead_scratch = self.dead_scratch_bytes()?;
        self.tmp.ensure()?;
        let _gc = self.acquire_lock(
            &self.dir.join("locks/gc.lock"),
            LockMode::Exclusive,
            "the store (running builds, loads and pulls hold it)",
        )?;
        let blobs = self.blobs_dir();
        let mut good = BTreeSet::new();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let entry = entry.map_err(StoreError::io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            report.blobs_checked += 1;
            let Ok(expected) = format!("sha256:{name}").parse::<Digest>() else {
                report.problems.push(Problem {
                    subject: entry.path().display().to_string(),
                    reason: "file name is not a sha256 digest".into(),
                });
                if repair {
                    fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
                    report
                        .repaired
                        .push(format!("removed {}", entry.path().display()));
                }
                continue;
            };
            let mut f = File::open(entry.path()).map_err(StoreError::io(&entry.path()))?;
            let mut h = HashingReader::new(&mut f);
            io::copy(&mut h, &mut io::sink()).map_err(StoreError::io(&entry.path()))?;
            let actual = h.digest();
            if actual == expected {
                good.insert(expected);
            } else {
                report.problems.push(Problem {
                    subject: format!("blob {expected}"),
                    reason: format!("content hashes to {actual}"),
                });
                if repair {
                    fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
                    report
                        .repaired
                        .push(format!("removed corrupt blob {expected}"));
                }
            }
        }

        let _il = FileLock::acquire(&self.dir.join("locks/index.lock"), LockMode::Exclusive)?;
        let index = match self.read_index() {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(Problem {
                    subject: "index.json".into(),
                    reason: error_chain_line(&e),
                });
                if repair {
                    report
                        .repaired
                        .push("reset index.json to an empty index".into());
                    atomic::write_file(
                        &self.tmp,
                        &self.dir.join("index.json"),
                        &canonical_json(&Index::default()),
                    )?;
                }
                return Ok(report);
            }
        };
        let mut kept = Vec::new();
        let mut dropped = false;
        for desc in index.manifests {
            report.images_checked += 1;
            let name = desc
                .annotations
                .get(ANNOTATION_REF_NAME)
                .cloned()
                .unwrap_or_else(|| format!("<none> ({})", desc.digest));
            match self.check_manifest(&desc, &good) {
                Ok(()) => kept.push(desc),
                Err(reason) => {
                    report.problems.push(Problem {
                        subject: format!("image {name}"),
                        reason,
                    });
                    dropped = true;
                    if repair {
                        report.repaired.push(format!("dropped index entry {name}"));
                    }
                }
            }
        }
        if repair && dropped {
            let index = Index {
                manifests: kept,
                ..index_header(&self.read_index()?)
            };
            atomic::write_file(
                &self.tmp,
                &self.dir.join("index.json"),
                &canonical_json(&index),
            )?;
        }
        drop(_il);
        // Snapshots are made all-or-nothing and renamed into place: what
        // is not a directory named by a diffID was put there by something
        // else, and would stop the layer's snapshot from being made.
        let snaps = self.dir.join("snapshots");
        for entry in fs::read_dir(&snaps).map_err(StoreError::io(&snaps))? {
            let entry = entry.map_err(StoreError::io(&snaps))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let named = format!("sha256:{name}").parse::<Digest>().is_ok();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if named && is_dir {
                continue;
            }
            report.problems.push(Problem {
                subject: format!("snapshot {}", entry.path().display()),
                reason: if named {
                    "is not a directory".into()
                } else {
                    "is not named by a layer diffID".into()
                },
            });
            if repair {
                let path = entry.path();
                if is_dir {
                    fs::remove_dir_all(&path).map_err(StoreError::io(&path))?;
                } else {
                    fs::remove_file(&path).map_err(StoreError::io(&path))?;
                }
                report
                    .repaired
                    .push(format!("removed {}", entry.path().display()));
            }
        }
        drop(_gc);
        report.unreferenced = self.unreferenced(roots)?;
        report.unreferenced.scratch_bytes = dead_scratch;
        if repair && (!report.problems.is_empty() || report.unreferenced.blobs > 0) {
            let stats = self.gc(roots)?;
            if report.unreferenced.blobs > 0 {
                report.repaired.push(format!(
                    "removed unreferenced blobs ({} bytes freed in all)",
                    stats.bytes_freed
                ));
            }
        }
        Ok(report)
    }

    /// Why an index entry is broken, if it is.
    fn check_manifest(
        &self,
        desc: &Descriptor,
        good: &BTreeSet<Digest>,
    ) -> std::result::Result<(), String> {
        let present = |d: &Digest, what: &str| {
            if good.contains(d) {
                Ok(())
            } else if self.has_blob(d) {
                Err(format!("{what} {d} is corrupt"))
            } else {
                Err(format!("{what} {d} is missing"))
            }
        };
        let md: Digest = desc
            .digest
            .parse()
            .map_err(|_| format!("invalid manifest digest {:?}", desc.digest))?;
        present(&md, "manifest")?;
        let image = self.load_image(desc, Vec::new()).map_err(|e| match e {
            // The entry is named already; say only what is wrong.
            StoreError::CorruptImage { reason, .. } => reason,
            e => error_chain_line(&e),
        })?;
        present(&image.id, "config")?;
        for l in &image.layers {
            present(&l.digest, "layer")?;
            if LayerEncoding::from_media_type(&l.media_type).is_none() {
                return Err(format!(
                    "layer {} has unsupported media type {:?}",
                    l.digest, l.media_type
                ));
            }
        }
        Ok(())
    }
}

/// The index's header fields with no manifests.
fn index_header(index: &Index) -> Index {
    Index {
        manifests: Vec::new(),
        ..index.clone()
    }
}
