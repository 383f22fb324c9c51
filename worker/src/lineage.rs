//! What each step's key was made of in the last build, by step lineage,
//! so that a later miss can be explained ([`rbuild_solver::explain`]).
//!
//! ```text
//! <store>/cache-v1/lineage/<sha256(identity, lineage) hex>.json
//! ```
//!
//! The identity names the build (the CLI passes e.g. the context and
//! Dockerfile paths); the lineage names a step across builds (from the
//! planner, e.g. `build/3`). Only the last build's fingerprint is kept.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rbuild_solver::Digest;
use rbuild_solver::explain::StepFingerprint;

use super::BuildError;
use super::cache_index::CACHE_INDEX_VERSION;
use rbuild_store::Store;

#[derive(Debug, Deserialize)]
struct LineageRecord {
    lineage: String,
    fingerprint: StepFingerprint,
}

/// A [`LineageRecord`] to write, borrowing its fingerprint (the same
/// JSON).
#[derive(Serialize)]
struct LineageRecordRef<'a> {
    lineage: &'a str,
    fingerprint: &'a StepFingerprint,
}

/// The saved fingerprints of a store.
pub struct LineageStore<'a> {
    store: &'a Store,
}

impl<'a> LineageStore<'a> {
    pub fn new(store: &'a Store) -> LineageStore<'a> {
        LineageStore { store }
    }

    fn path(&self, identity: &str, lineage: &str) -> PathBuf {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        let mut name = (identity.len() as u64).to_le_bytes().to_vec();
        name.extend_from_slice(identity.as_bytes());
        name.extend_from_slice(lineage.as_bytes());
        self.store
            .dir()
            .join(format!("cache-v{CACHE_INDEX_VERSION}/lineage"))
            .join(format!("{}.json", Digest::of(&name).hex()))
    }

    /// Whether the fingerprint saved for step `lineage` of build
    /// `identity` has key `key` (a cached step's usual case: nothing to
    /// save). Reads only the record's first bytes: a COPY of a large
    /// context saves every file's digest in it, and this runs for every
    /// step of every build.
    pub fn is_current(&self, identity: &str, lineage: &str, key: &str) -> bool {
        use std::io::Read;
        // serde_json writes the fields in declaration order, so a record
        // with this key starts with exactly these bytes.
        let prefix = format!(
            "{{\"lineage\":{},\"fingerprint\":{{\"key\":{},",
            serde_json::to_string(lineage).expect("strings serialize"),
            serde_json::to_string(key).expect("strings serialize"),
        );
        let mut head = vec![0u8; prefix.len()];
        fs::File::open(self.path(identity, lineage))
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head == prefix.as_bytes())
    }

    /// Saves the fingerprint of step `lineage` of build `identity`,
    /// replacing the previous one (callers skip it when [`Self::is_current`]
    /// says the saved one has the same key).
    pub fn save(
        &self,
        identity: &str,
        lineage: &str,
        fingerprint: &StepFingerprint,
    ) -> Result<(), BuildError> {
        let path = self.path(identity, lineage);
        let dir = path.parent().expect("lineage records live in a directory");
        fs::create_dir_all(dir).map_err(BuildError::io(dir))?;
        let record = LineageRecordRef {
            lineage,
            fingerprint,
        };
        // Streamed to a temporary file, then renamed over the old record
        // (no fsync: it is only an explanation): a COPY of a large context
        // records every file's digest, megabytes that need not sit in
        // memory at once.
        let tmp = rbuild_store::atomic::temp_path(self.store.tmp_dir(), "lineage");
        let result = (|| {
            let file = fs::File::create(&tmp).map_err(BuildError::io(&tmp))?;
            let mut out = std::io::BufWriter::new(file);
            serde_json::to_writer(&mut out, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| out.flush())
                .map_err(BuildError::io(&tmp))?;
            drop(out);
            fs::rename(&tmp, &path).map_err(BuildError::io(&path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The fingerprint saved for step `lineage` of build `identity`, if
    /// any (a damaged record counts as none).
    pub fn load(
        &self,
        identity: &str,
        lineage: &str,
    ) -> Result<Option<StepFingerprint>, BuildError> {
        let path = self.path(identity, lineage);
        // Parsed as it is read, and a large COPY's list of files (12 MB of
        // JSON for 100,000 files) into a temporary file as it is parsed:
        // neither sits in memory.
        match fs::File::open(&path) {
            Ok(file) => {
                Ok(
                    rbuild_solver::file_digests::deserializing_into(self.store.tmp_dir(), || {
                        serde_json::from_reader::<_, LineageRecord>(
                            std::io::BufReader::with_capacity(1 << 16, file),
                        )
                    })
                    .ok()
                    .filter(|r| r.lineage == lineage)
                    .map(|r| r.fingerprint),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BuildError::io(&path)(e)),
        }
    }
}
