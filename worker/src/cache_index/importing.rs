//! The importing cache index (`--cache-from`): the store's cache index
//! with imported caches ([`ImportedCache`]) behind it.
//!
//! [`ImportingCacheIndex`] wraps the store's cache index: a key missing
//! locally is looked up in the imported records, and a hit returns its
//! result at once, without fetching anything. The record's blobs the
//! store lacks are fetched (each verified against its digest, each once
//! even when several steps ask, several in parallel) only when something
//! needs them: a step that executes reads its inputs' snapshots, a `COPY
//! --from` or `RUN --mount=from=` reads a stage's files, the image is
//! written, or `--cache-to` exports the record (the worker and the builder
//! call [`BlobFetcher::ensure`] / [`ImportingCacheIndex::fetch_records`]).
//! So a build downloads only the layers the final image and its executed
//! steps use: a stage read only through a bind mount by a cached step is
//! never downloaded. The hit's record is written to the local index once
//! its blobs are all in the store, and never otherwise, so the local
//! index never names a blob the store lacks.
//!
//! A blob that fails verification then fails the build
//! ([`LazyFetchError`], naming the cache, the blob and the step): the hit
//! was already taken, and the steps built on it cannot be undone. Nothing
//! of the blob enters the store; building again without that
//! `--cache-from` works.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};

use rbuild_solver::scheduler::{CacheIndex, KeyParts};
use rbuild_solver::{CacheKey, Digest};

use crate::cache_index::{Record, StoreCacheIndex};
use crate::cache_transfer::{CacheTransferError, ExportedRecord, ImportedCache};
use crate::{BlobFetcher, BuildError, StepOutput};
use rbuild_store::Store;

/// Fetching a blob of an imported cache hit failed when something first
/// needed it (a step reading the hit's files, the image being written, a
/// `--cache-to` export). By then the hit was taken, so the build fails;
/// nothing of the blob stays in the store.
#[derive(Debug, thiserror::Error)]
#[error("fetching blob {digest} of the cached step {step:?} from the cache at {location} failed")]
pub struct LazyFetchError {
    /// The cache the blob comes from (a directory or a reference).
    pub location: String,
    pub digest: Digest,
    /// The key of the imported record that named the blob.
    pub key: CacheKey,
    /// The record's description (e.g. `exec: sh -c make`).
    pub step: String,
    #[source]
    pub source: Arc<CacheTransferError>,
}

/// Most blobs of imported hits fetched at once.
const FETCH_JOBS: usize = 4;

/// A blob that an imported hit names and the store lacked at lookup.
#[derive(Debug, Clone, Copy)]
struct LazyBlob {
    /// Index into `ImportingCacheIndex::imports`.
    import: usize,
    /// The first hit that named it (for messages).
    key: CacheKey,
}

/// What the importing index keeps between a hit and the fetch of its
/// blobs (under one lock, with a condition variable for waiters).
#[derive(Default)]
struct LazyState {
    /// Blobs hits named that are not fetched yet.
    lazy: BTreeMap<Digest, LazyBlob>,
    /// Blobs being fetched right now (by some thread).
    fetching: BTreeSet<Digest>,
    /// Blobs whose fetch failed; asking again fails the same way.
    failed: BTreeMap<Digest, Arc<CacheTransferError>>,
    /// Imported hits not yet in the local cache index: a record is written
    /// only once every blob it names is in the store.
    pending: BTreeMap<CacheKey, (Record, Vec<Digest>)>,
}

/// The store's cache index, falling back to imported caches on a miss
/// (see the module docs). Implements the solver's [`CacheIndex`] and the
/// worker's [`BlobFetcher`]: an imported hit returns its result at once,
/// and its blobs are fetched when first needed ([`BlobFetcher::ensure`],
/// [`ImportingCacheIndex::fetch_records`]), each once, in parallel.
pub struct ImportingCacheIndex<'a> {
    store: &'a Store,
    local: StoreCacheIndex<'a>,
    imports: Vec<ImportedCache>,
    hits: Mutex<BTreeSet<CacheKey>>,
    state: Mutex<LazyState>,
    fetched: Condvar,
}

impl<'a> ImportingCacheIndex<'a> {
    /// The cache index of `store`, with `imports` consulted in order.
    pub fn new(store: &'a Store, imports: Vec<ImportedCache>) -> ImportingCacheIndex<'a> {
        ImportingCacheIndex {
            store,
            local: StoreCacheIndex::new(store),
            imports,
            hits: Mutex::new(BTreeSet::new()),
            state: Mutex::new(LazyState::default()),
            fetched: Condvar::new(),
        }
    }

    /// Keys whose results came from an imported cache in this build.
    pub fn imported_hits(&self) -> BTreeSet<CacheKey> {
        self.hits.lock().expect("hits lock").clone()
    }

    /// Blobs that imported hits named and that were not fetched (nothing
    /// needed them), sorted.
    pub fn unfetched(&self) -> Vec<Digest> {
        let st = self.state.lock().expect("lazy state lock");
        st.lazy.keys().copied().collect()
    }

    /// Fetches the blobs of the imported hits among `keys` (for a
    /// `--cache-to` export, which copies blobs from the store), so their
    /// records are written to the local cache index.
    pub fn fetch_records(&self, keys: &[CacheKey]) -> Result<(), BuildError> {
        let digests: Vec<Digest> = {
            let st = self.state.lock().expect("lazy state lock");
            keys.iter()
                .filter_map(|k| st.pending.get(k))
                .flat_map(|(_, d)| d.iter().copied())
                .collect()
        };
        self.ensure_digests(&digests)
    }

    /// Takes an imported hit: its record is written locally now when the
    /// store holds every blob it names, else once they are fetched.
    fn adopt(
        &self,
        import: usize,
        key: &CacheKey,
        record: &ExportedRecord,
    ) -> Result<Option<StepOutput>, BuildError> {
        let record = &self.with_local_layers(record);
        let Some(output) = record.output() else {
            return Ok(None);
        };
        let local = record.to_local(&output);
        let mut st = self.state.lock().expect("lazy state lock");
        let digests: Vec<Digest> = output.layers.iter().map(|l| l.info.digest).collect();
        let mut missing = false;
        for d in &digests {
            if st.lazy.contains_key(d) || !self.store.has_blob(d) {
                missing = true;
                st.lazy.entry(*d).or_insert(LazyBlob { import, key: *key });
            }
        }
        if missing {
            st.pending.insert(*key, (local, digests));
        } else {
            drop(st);
            self.local.write_record(key, &local)?;
        }
        Ok(Some(output))
    }

    /// `record` with each layer the store holds uncompressed (a base
    /// image the cache names in its gzip form, say) named by that blob
    /// (its digest is the diffID), so it is not downloaded again.
    fn with_local_layers(&self, record: &ExportedRecord) -> ExportedRecord {
        let mut record = record.clone();
        for l in &mut record.layers {
            let (Ok(digest), Ok(diff_id)) =
                (l.digest.parse::<Digest>(), l.diff_id.parse::<Digest>())
            else {
                continue;
            };
            if digest == diff_id || self.store.has_blob(&digest) || !self.store.has_blob(&diff_id) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(self.store.blob_path(&diff_id)) {
                l.digest = diff_id.to_string();
                l.size = meta.len();
                l.media_type = rbuild_store::layout::MEDIA_TYPE_LAYER_TAR.to_string();
            }
        }
        record
    }

    /// Fetches `digests` that hits named and the store lacks (each once,
    /// even when several threads ask), then writes the records whose
    /// blobs are all in the store.
    fn ensure_digests(&self, digests: &[Digest]) -> Result<(), BuildError> {
        // Fetched blobs are named by no record until the pending ones are
        // written below: a concurrent gc must wait.
        let _session = self.store.write_session()?;
        let mut mine = Vec::new();
        {
            let mut st = self.state.lock().expect("lazy state lock");
            for d in digests {
                if st.fetching.contains(d) || st.failed.contains_key(d) || mine.contains(d) {
                    continue;
                }
                if st.lazy.contains_key(d) {
                    if self.store.has_blob(d) {
                        // Another process stored it meanwhile.
                        st.lazy.remove(d);
                    } else {
                        st.fetching.insert(*d);
                        mine.push(*d);
                    }
                }
            }
        }
        let results = self.fetch_all(&mine);
        let mut st = self.state.lock().expect("lazy state lock");
        for (d, result) in mine.iter().zip(results) {
            st.fetching.remove(d);
            match result {
                Ok(()) => {
                    st.lazy.remove(d);
                }
                Err(e) => {
                    st.failed.insert(*d, Arc::new(e));
                }
            }
        }
        self.fetched.notify_all();
        // Others' fetches of what this caller needs.
        while digests.iter().any(|d| st.fetching.contains(d)) {
            st = self.fetched.wait(st).expect("lazy state lock");
        }
        if let Some((d, e)) = digests
            .iter()
            .find_map(|d| st.failed.get(d).map(|e| (*d, e.clone())))
        {
            let blob = st.lazy.get(&d).copied();
            return Err(self.fetch_error(d, blob, e));
        }
        let ready: Vec<CacheKey> = st
            .pending
            .iter()
            .filter(|(_, (_, ds))| ds.iter().all(|d| !st.lazy.contains_key(d)))
            .map(|(k, _)| *k)
            .collect();
        let records: Vec<(CacheKey, Record)> = ready
            .into_iter()
            .filter_map(|k| st.pending.remove(&k).map(|(r, _)| (k, r)))
            .collect();
        drop(st);
        for (key, record) in records {
            self.local.write_record(&key, &record)?;
        }
        Ok(())
    }

    /// Fetches `digests` into the store, up to [`FETCH_JOBS`] at once;
    /// one result per digest, in order.
    fn fetch_all(&self, digests: &[Digest]) -> Vec<Result<(), CacheTransferError>> {
        if digests.len() <= 1 {
            return digests.iter().map(|d| self.fetch(d)).collect();
        }
        let mut out = Vec::with_capacity(digests.len());
        for chunk in digests.chunks(FETCH_JOBS) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|d| s.spawn(move || self.fetch(d)))
                    .collect();
                for h in handles {
                    out.push(h.join().expect("a blob fetch panicked"));
                }
            });
        }
        out
    }

    /// Copies one blob from the import that named it into the store,
    /// verified against its digest (a mismatch leaves nothing behind).
    fn fetch(&self, digest: &Digest) -> Result<(), CacheTransferError> {
        let blob = self
            .state
            .lock()
            .expect("lazy state lock")
            .lazy
            .get(digest)
            .copied()
            .expect("only blobs hits named are fetched");
        let import = &self.imports[blob.import];
        let mut reader = import.blobs.open_blob(digest)?;
        // The caller's error names the blob and the cache already. Staged
        // first: a layer enters the store only once it would unpack, as
        // with `load` and `pull`.
        let staging = self.store.staging()?;
        staging.put(&mut reader, Some(*digest))?;
        if staging.is_staged(digest) {
            staging
                .check_layer(digest, rbuild_store::layout::MEDIA_TYPE_LAYER_TAR, false)
                .map_err(|e| match e {
                    rbuild_store::StagedLayerError::Store(e) => e,
                    rbuild_store::StagedLayerError::Invalid { digest, source } => {
                        rbuild_store::StoreError::Unpack {
                            diff_id: digest,
                            source,
                        }
                    }
                    rbuild_store::StagedLayerError::DiffId { digest, actual, .. } => {
                        rbuild_store::StoreError::DigestMismatch {
                            expected: digest,
                            actual,
                        }
                    }
                })?;
            staging.publish_one(digest)?;
        }
        Ok(())
    }

    fn fetch_error(
        &self,
        digest: Digest,
        blob: Option<LazyBlob>,
        source: Arc<CacheTransferError>,
    ) -> BuildError {
        let (location, key, step) = match blob {
            Some(b) => {
                let import = &self.imports[b.import];
                let step = import
                    .records
                    .get(&b.key)
                    .map(|r| r.description.clone())
                    .unwrap_or_default();
                (import.location(), b.key, step)
            }
            None => (String::new(), CacheKey::from_digest(digest), String::new()),
        };
        BuildError::CacheFetch(Box::new(LazyFetchError {
            location,
            digest,
            key,
            step,
            source,
        }))
    }
}

impl BlobFetcher for ImportingCacheIndex<'_> {
    fn ensure(&self, digests: &[Digest]) -> Result<(), BuildError> {
        self.ensure_digests(digests)
    }
}

impl CacheIndex<StepOutput, BuildError> for ImportingCacheIndex<'_> {
    fn lookup(&self, key: &CacheKey) -> Result<Option<StepOutput>, BuildError> {
        if let Some(output) = self.local.lookup(key)? {
            return Ok(Some(output));
        }
        for (n, import) in self.imports.iter().enumerate() {
            let Some(record) = import.records.get(key) else {
                continue;
            };
            if let Some(output) = self.adopt(n, key, record)? {
                self.hits.lock().expect("hits lock").insert(*key);
                return Ok(Some(output));
            }
        }
        Ok(None)
    }

    fn record(
        &self,
        key: &CacheKey,
        parts: &KeyParts,
        result: &StepOutput,
    ) -> Result<(), BuildError> {
        self.local.record(key, parts, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Read};

    use crate::cache_index::RecordLayer;
    use crate::cache_transfer::BlobSource;
    use rbuild_store::StoreError;

    /// Blobs by digest, counting reads; `slow` makes each read wait so
    /// concurrent callers overlap.
    struct CountingSource {
        blobs: BTreeMap<Digest, Vec<u8>>,
        reads: Mutex<Vec<Digest>>,
        slow: bool,
    }

    impl BlobSource for Arc<CountingSource> {
        fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
            self.reads.lock().unwrap().push(*digest);
            if self.slow {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(Box::new(io::Cursor::new(self.blobs[digest].clone())))
        }

        fn location(&self) -> String {
            "/the/cache".to_string()
        }
    }

    fn record(key: CacheKey, layers: &[(Digest, u64)]) -> ExportedRecord {
        ExportedRecord {
            key: key.to_string(),
            description: "exec: make".to_string(),
            created: 0,
            layers: layers
                .iter()
                .map(|(d, size)| RecordLayer {
                    digest: d.to_string(),
                    diff_id: d.to_string(),
                    size: *size,
                    media_type: rbuild_store::layout::MEDIA_TYPE_LAYER_TAR.to_string(),
                    created: None,
                })
                .collect(),
            added: 1,
            parts: rbuild_solver::explain::StepFingerprint {
                key: key.to_string(),
                fields: Vec::new(),
                inputs: Vec::new(),
                content: None,
                files: Default::default(),
            },
        }
    }

    /// An uncompressed tar layer holding one file `f` with `data`.
    fn layer_tar(data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", data).unwrap();
        b.into_inner().unwrap()
    }

    /// A store, and an import whose one record (`key`) names two blobs;
    /// with `corrupt`, the second one's bytes do not match its digest.
    fn lazy_fixture(
        corrupt: bool,
    ) -> (
        tempfile::TempDir,
        Store,
        Arc<CountingSource>,
        CacheKey,
        [Digest; 2],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("root")).unwrap();
        // Real (tiny) layers: imported layers are checked as tars.
        let (one, two) = (layer_tar(b"layer one"), layer_tar(b"layer two"));
        let digests = [Digest::of(&one), Digest::of(&two)];
        let two = if corrupt {
            layer_tar(b"layer 2!!")
        } else {
            two
        };
        let source = Arc::new(CountingSource {
            blobs: BTreeMap::from([(digests[0], one), (digests[1], two)]),
            reads: Mutex::new(Vec::new()),
            slow: true,
        });
        let key = CacheKey::from_digest(Digest::of(b"key"));
        (tmp, store, source, key, digests)
    }

    fn importing<'a>(
        store: &'a Store,
        source: &Arc<CountingSource>,
        key: CacheKey,
        digests: &[Digest; 2],
    ) -> ImportingCacheIndex<'a> {
        let imported = ImportedCache {
            records: BTreeMap::from([(key, record(key, &[(digests[0], 9), (digests[1], 9)]))]),
            mounts: Vec::new(),
            blobs: Box::new(source.clone()),
        };
        ImportingCacheIndex::new(store, vec![imported])
    }

    #[test]
    fn an_imported_hit_fetches_nothing_until_asked_then_each_blob_once() {
        let (_tmp, store, source, key, digests) = lazy_fixture(false);
        let index = importing(&store, &source, key, &digests);
        let output = index.lookup(&key).unwrap().expect("an imported hit");
        assert_eq!(output.layers.len(), 2);
        assert!(source.reads.lock().unwrap().is_empty(), "nothing fetched");
        assert!(!digests.iter().any(|d| store.has_blob(d)));
        assert!(
            StoreCacheIndex::new(&store).lookup(&key).unwrap().is_none(),
            "no local record names blobs the store lacks"
        );
        let mut sorted = digests.to_vec();
        sorted.sort();
        assert_eq!(index.unfetched(), sorted);

        // Two callers at once: each blob is read once.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| index.ensure(&digests).unwrap());
            }
        });
        let mut reads = source.reads.lock().unwrap().clone();
        reads.sort();
        assert_eq!(reads, sorted, "each blob read once");
        assert!(digests.iter().all(|d| store.has_blob(d)));
        assert!(index.unfetched().is_empty());
        assert_eq!(
            StoreCacheIndex::new(&store).lookup(&key).unwrap(),
            Some(output),
            "the record is local once its blobs are"
        );
    }

    #[test]
    fn a_blob_that_fails_verification_fails_every_caller_and_stores_nothing() {
        let (_tmp, store, source, key, digests) = lazy_fixture(true);
        let index = importing(&store, &source, key, &digests);
        index.lookup(&key).unwrap().expect("an imported hit");
        for _ in 0..2 {
            let err = index.fetch_records(&[key]).unwrap_err();
            let BuildError::CacheFetch(e) = &err else {
                panic!("{err}");
            };
            assert_eq!(e.digest, digests[1]);
            assert_eq!(e.location, "/the/cache");
            assert_eq!(e.step, "exec: make");
            assert!(
                matches!(&*e.source, CacheTransferError::Store(s)
                    if matches!(**s, StoreError::DigestMismatch { .. })),
                "{err}"
            );
        }
        assert_eq!(
            source.reads.lock().unwrap().len(),
            2,
            "one read per blob, the failure is remembered"
        );
        assert!(store.has_blob(&digests[0]) && !store.has_blob(&digests[1]));
        assert!(StoreCacheIndex::new(&store).lookup(&key).unwrap().is_none());
    }
}
