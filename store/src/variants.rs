//! Layer variants: each layer's compressed forms, made once and
//! remembered by its diffID, and images converted to them for a push or
//! an image archive.
//!
//! A layer built here is stored uncompressed (its blob digest is its
//! diffID), so `run` and later steps read it without decoding. A push or
//! an export asks for another encoding ([`Store::layer_variant`]); the
//! compressed blob goes into `blobs/` like any other and a record
//! `variants-v1/<diffID hex>.json` names it:
//!
//! ```json
//! {"gzip":{"digest":"sha256:…","size":1234},"zstd":{"digest":"sha256:…","size":1100}}
//! ```
//!
//! The next push, export or cache export of the same layer finds the
//! record and reuses the blob as it is: the same digest every time, so a
//! registry that has it answers `HEAD`, another repository can mount it,
//! and a cache export names the very blobs the image does. gc keeps a
//! variant's blob as long as its diffID is alive (see `gc.rs`) and drops
//! records whose diffID is not.
//!
//! [`Store::convert_image`] writes the manifest of an image whose layers
//! are such variants (OCI or Docker media types, annotations), leased so
//! gc leaves it alone while the caller pushes or archives it. The config
//! is untouched: compression does not change diffIDs, so the image ID
//! stays the same while the manifest digest changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use rbuild_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::layer::{self, CompressOptions, Compression};
use rbuild_oci::reference::ImageRef;

use crate::layout::{
    ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_LAYER_TAR, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD, MEDIA_TYPE_MANIFEST, canonical_json,
};
use crate::{
    Descriptor, FileLock, Image, ImageLease, LayerEncoding, LayerInfo, LockMode, Manifest, Result,
    Store, StoreError, atomic,
};

/// Version of the variant records' directory (`variants-v1/`).
pub const VARIANTS_VERSION: u32 = 1;

/// The Docker schema 2 config media type.
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The Docker media type containerd and BuildKit give a zstd layer.
pub const MEDIA_TYPE_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// How a layer is to be encoded for a push or an export (BuildKit's
/// `compression=`, `compression-level=`, `force-compression=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerCompression {
    pub compression: Compression,
    /// gzip 0–9, zstd 1–22; `None` for the codec's default. Only used when
    /// a variant is made: an existing one is reused whatever its level.
    pub level: Option<i32>,
    /// Re-encode layers that are stored compressed some other way (a
    /// pulled gzip layer for a zstd push). Without it they go as they are.
    pub force: bool,
}

impl Default for LayerCompression {
    /// gzip at its default level, as docker and BuildKit push.
    fn default() -> Self {
        LayerCompression {
            compression: Compression::Gzip,
            level: None,
            force: false,
        }
    }
}

/// How [`Store::convert_image`] writes the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestFormat {
    pub layers: LayerCompression,
    /// OCI media types (`…oci.image.manifest.v1+json`) rather than Docker
    /// schema 2 (`…docker.distribution.manifest.v2+json`).
    pub oci_media_types: bool,
    /// The manifest's `annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// One compressed variant of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Variant {
    #[serde(with = "digest_text")]
    digest: Digest,
    size: u64,
}

/// A digest as its `sha256:…` text.
mod digest_text {
    use rbuild_oci::Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `variants-v1/<diffID hex>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct VariantRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gzip: Option<Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zstd: Option<Variant>,
}

impl VariantRecord {
    fn get(&self, c: Compression) -> Option<Variant> {
        match c {
            Compression::Gzip => self.gzip,
            Compression::Zstd => self.zstd,
            Compression::None => None,
        }
    }

    fn set(&mut self, c: Compression, v: Variant) {
        match c {
            Compression::Gzip => self.gzip = Some(v),
            Compression::Zstd => self.zstd = Some(v),
            Compression::None => {}
        }
    }

    fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.gzip.iter().chain(self.zstd.iter()).map(|v| v.digest)
    }
}

fn encoding_of(c: Compression) -> LayerEncoding {
    match c {
        Compression::None => LayerEncoding::Tar,
        Compression::Gzip => LayerEncoding::Gzip,
        Compression::Zstd => LayerEncoding::Zstd,
    }
}

/// The layer media type for `encoding` in OCI or Docker terms.
pub fn layer_media_type(encoding: LayerEncoding, oci: bool) -> &'static str {
    match (encoding, oci) {
        (LayerEncoding::Tar, true) => MEDIA_TYPE_LAYER_TAR,
        (LayerEncoding::Gzip, true) => MEDIA_TYPE_LAYER_GZIP,
        (LayerEncoding::Zstd, true) => MEDIA_TYPE_LAYER_ZSTD,
        (LayerEncoding::Tar, false) => MEDIA_TYPE_DOCKER_LAYER_TAR,
        (LayerEncoding::Gzip, false) => MEDIA_TYPE_DOCKER_LAYER_GZIP,
        (LayerEncoding::Zstd, false) => MEDIA_TYPE_DOCKER_LAYER_ZSTD,
    }
}

impl Store {
    fn variants_dir(&self) -> PathBuf {
        self.dir.join(format!("variants-v{VARIANTS_VERSION}"))
    }

    fn variant_record_path(&self, diff_id: &Digest) -> PathBuf {
        self.variants_dir().join(format!("{}.json", diff_id.hex()))
    }

    fn read_variant_record(&self, diff_id: &Digest) -> VariantRecord {
        // A record is a hint: unreadable means "none yet", and the variant
        // is made again.
        fs::read(self.variant_record_path(diff_id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// How the blob of `digest` is encoded, from its first bytes (labels
    /// lie: skopeo calls some plain tars gzip).
    pub fn blob_encoding(&self, digest: &Digest) -> Result<LayerEncoding> {
        let path = self.blob_path(digest);
        let mut head = [0u8; 4];
        let mut f = self.open_blob(digest)?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io(&path)(e)),
            }
        }
        Ok(crate::snapshot::sniff_layer_encoding(&head[..n]))
    }

    /// `layer` encoded as `want` asks: the stored blob when it already is
    /// (or when it is compressed otherwise and `force` is off), else the
    /// remembered variant, else a new one, compressed on all cores while
    /// streaming and remembered. The result's media type is the OCI one
    /// of its encoding. Hold a [`WriteSession`](crate::WriteSession) or a
    /// lease on an image naming the result until it is referenced.
    pub fn layer_variant(&self, layer: &LayerInfo, want: &LayerCompression) -> Result<LayerInfo> {
        self.layer_variant_teed(layer, want, &mut io::sink())
    }

    /// True when [`layer_variant`](Self::layer_variant) would compress
    /// `layer` anew (no blob or remembered variant is encoded as `want`
    /// asks): a push then streams the new variant to the registry while
    /// it is made ([`layer_variant_teed`](Self::layer_variant_teed)).
    pub fn variant_missing(&self, layer: &LayerInfo, want: &LayerCompression) -> Result<bool> {
        let have = self.blob_encoding(&layer.digest)?;
        let target = encoding_of(want.compression);
        if have == target || (have != LayerEncoding::Tar && !want.force) {
            return Ok(false);
        }
        if target == LayerEncoding::Tar {
            return Ok(false);
        }
        Ok(!self
            .read_variant_record(&layer.diff_id)
            .get(want.compression)
            .is_some_and(|v| self.has_blob(&v.digest)))
    }

    /// [`layer_variant`](Self::layer_variant) that also writes a new
    /// variant's bytes to `tee` as they are made (nothing when none is
    /// made); a `tee` error stops the compression, and nothing is stored.
    pub fn layer_variant_teed(
        &self,
        layer: &LayerInfo,
        want: &LayerCompression,
        tee: &mut dyn Write,
    ) -> Result<LayerInfo> {
        let have = self.blob_encoding(&layer.digest)?;
        let target = encoding_of(want.compression);
        let keep = have == target || (have != LayerEncoding::Tar && !want.force);
        if keep {
            return Ok(LayerInfo {
                media_type: layer_media_type(have, true).to_string(),
                ..layer.clone()
            });
        }
        let _session = self.write_session()?;
        if target == LayerEncoding::Tar {
            // The uncompressed blob is named by the diffID itself.
            if !self.has_blob(&layer.diff_id) {
                let mut input = self.open_layer(layer)?;
                self.put_blob(&mut input, Some(layer.diff_id))?;
            }
            let size = fs::metadata(self.blob_path(&layer.diff_id))
                .map_err(StoreError::io(&self.blob_path(&layer.diff_id)))?
                .len();
            return Ok(LayerInfo {
                digest: layer.diff_id,
                diff_id: layer.diff_id,
                size,
                media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
            });
        }
        let media_type = layer_media_type(target, true).to_string();
        if let Some(v) = self
            .read_variant_record(&layer.diff_id)
            .get(want.compression)
            && self.has_blob(&v.digest)
        {
            return Ok(LayerInfo {
                digest: v.digest,
                diff_id: layer.diff_id,
                size: v.size,
                media_type,
            });
        }
        let mut input = self.open_layer(layer)?;
        let mut w = self.blob_writer(None)?;
        let opts = CompressOptions {
            compression: want.compression,
            level: want.level,
            threads: None,
        };
        let mut both = Tee { blob: &mut w, tee };
        let stats = layer::compress_with(&mut input, &mut both, &opts).map_err(|source| {
            StoreError::Compress {
                diff_id: layer.diff_id,
                source: Box::new(source),
            }
        })?;
        if stats.diff_id != layer.diff_id {
            return Err(StoreError::DigestMismatch {
                expected: layer.diff_id,
                actual: stats.diff_id,
            });
        }
        let (digest, size) = w.commit()?;
        self.remember_variant(&layer.diff_id, want.compression, Variant { digest, size })?;
        Ok(LayerInfo {
            digest,
            diff_id: layer.diff_id,
            size,
            media_type,
        })
    }

    /// `layer` with every file time newer than `epoch` set to it
    /// ([`layer::clamp_mtimes`]), stored uncompressed: a layer of its own
    /// (another diffID) when anything changed, else `layer` itself. Hold a
    /// [`WriteSession`](crate::WriteSession) until it is referenced.
    pub fn clamp_layer_mtimes(&self, layer: &LayerInfo, epoch: u64) -> Result<LayerInfo> {
        let _session = self.write_session()?;
        let mut input = self.open_layer(layer)?;
        let mut w = self.blob_writer(None)?;
        let stats = layer::clamp_mtimes(&mut input, &mut w, epoch).map_err(|source| {
            StoreError::Unpack {
                diff_id: layer.diff_id,
                source,
            }
        })?;
        if stats.diff_id == layer.diff_id {
            // Nothing was newer; the temporary blob is dropped unused.
            return Ok(layer.clone());
        }
        let (digest, size) = w.commit()?;
        Ok(LayerInfo {
            digest,
            diff_id: digest,
            size,
            media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
        })
    }

    /// Points `tag` at `converted` (a manifest [`Store::convert_image`]
    /// wrote for `original`, say the one a push sent), and drops the
    /// untagged index entry this leaves of `original` when no tag names
    /// it any more: the image (same ID) is listed once, by its new
    /// manifest.
    pub fn tag_converted(
        &self,
        original: &Image,
        converted: &Image,
        media_type: &str,
        tag: &ImageRef,
    ) -> Result<()> {
        if !self.has_blob(&converted.manifest_digest) {
            return Err(StoreError::MissingBlob {
                digest: converted.manifest_digest,
            });
        }
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest: converted.manifest_digest.to_string(),
            size: converted.manifest_size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let old = original.manifest_digest.to_string();
        self.update_index(|index| {
            crate::index::set_tag(index, &desc, tag);
            if old != desc.digest
                && !index
                    .manifests
                    .iter()
                    .any(|d| d.digest == old && d.annotations.contains_key(ANNOTATION_REF_NAME))
            {
                index.manifests.retain(|d| d.digest != old);
            }
        })
    }

    fn remember_variant(&self, diff_id: &Digest, c: Compression, v: Variant) -> Result<()> {
        let dir = self.variants_dir();
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let _lock = FileLock::acquire(&self.dir.join("locks/variants.lock"), LockMode::Exclusive)?;
        let mut record = self.read_variant_record(diff_id);
        record.set(c, v);
        atomic::write_file(
            self.tmp_dir(),
            &self.variant_record_path(diff_id),
            &canonical_json(&record),
        )
    }

    /// The variant blobs of the layers `diff_ids` (hex) names, for gc to
    /// keep; with `remove_dead`, records of any other diffID are removed.
    pub(crate) fn live_variant_blobs(
        &self,
        diff_ids: &std::collections::BTreeSet<String>,
        remove_dead: bool,
    ) -> Result<Vec<Digest>> {
        let dir = self.variants_dir();
        let mut keep = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keep),
            Err(e) => return Err(StoreError::io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(StoreError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if diff_ids.contains(hex) {
                if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
                    keep.extend(self.read_variant_record(&d).blobs());
                }
            } else if remove_dead {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(keep)
    }

    /// Writes the manifest of `image` with its layers encoded as `format`
    /// asks ([`Store::layer_variant`]) and its media types and annotations,
    /// and returns that image (no tags) with a lease on it: the caller
    /// pushes or archives it, then drops the lease. When nothing changes
    /// (same layers, media types and annotations) it is the stored
    /// manifest itself.
    pub fn convert_image(
        &self,
        image: &Image,
        format: &ManifestFormat,
    ) -> Result<(Image, ImageLease, &'static str)> {
        let _lease = self.lease(image)?;
        let session = self.write_session()?;
        let mut layers = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            let v = self.layer_variant(l, &format.layers)?;
            layers.push(v);
        }
        let oci = format.oci_media_types;
        let (manifest_type, config_type) = if oci {
            (MEDIA_TYPE_MANIFEST, MEDIA_TYPE_CONFIG)
        } else {
            (MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_CONFIG)
        };
        let descriptor = |media_type: String, digest: &Digest, size: u64| Descriptor {
            media_type,
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let mut out_layers = Vec::with_capacity(layers.len());
        for l in &mut layers {
            let encoding = LayerEncoding::from_media_type(&l.media_type)
                .expect("layer_variant gives OCI layer media types");
            l.media_type = layer_media_type(encoding, oci).to_string();
            out_layers.push(descriptor(l.media_type.clone(), &l.digest, l.size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest_type.to_string()),
            config: descriptor(config_type.to_string(), &image.id, image.config_size),
            layers: out_layers,
            annotations: format.annotations.clone(),
        };
        let bytes = canonical_json(&manifest);
        let digest = self.put_blob_bytes(&bytes)?;
        let converted = Image {
            manifest_digest: digest,
            manifest_size: bytes.len() as u64,
            layers,
            tags: Vec::new(),
            ..image.clone()
        };
        let lease = self.lease(&converted)?;
        drop(session);
        Ok((converted, lease, manifest_type))
    }
}

/// Writes to a blob and a second writer (a push's upload stream).
struct Tee<'a> {
    blob: &'a mut dyn Write,
    tee: &'a mut dyn Write,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.blob.write(buf)?;
        self.tee.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()?;
        self.tee.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_oci::ImageConfig;
    use rbuild_oci::image_config::RootFs;
    use rbuild_oci::reference::ImageRef;

    /// A stored image of one uncompressed layer holding `data`.
    fn image(store: &Store, data: &[u8]) -> Image {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, "f", data).unwrap();
        let bytes = builder.into_inner().unwrap();
        let digest = store.put_blob_bytes(&bytes).unwrap();
        let l = LayerInfo {
            digest,
            diff_id: digest,
            size: bytes.len() as u64,
            media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
        };
        let config = ImageConfig {
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![digest.to_string()],
            },
            ..ImageConfig::default()
        };
        store
            .write_image(
                &config,
                std::slice::from_ref(&l),
                &[ImageRef::parse("app").unwrap()],
            )
            .unwrap();
        store.resolve("app").unwrap()
    }

    fn gzip() -> LayerCompression {
        LayerCompression::default()
    }

    #[test]
    fn a_variant_is_made_once_and_reused_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let img = image(&store, &vec![7u8; 300_000]);
        let l = &img.layers[0];
        let first = store.layer_variant(l, &gzip()).unwrap();
        assert_eq!(first.media_type, MEDIA_TYPE_LAYER_GZIP);
        assert_eq!(first.diff_id, l.diff_id);
        assert!(first.size < l.size / 10);
        // The record names it; a second call finds the record and does
        // not compress again, even at another level (as BuildKit).
        let record = store.read_variant_record(&l.diff_id);
        assert_eq!(record.gzip.unwrap().digest, first.digest);
        let again = store
            .layer_variant(
                l,
                &LayerCompression {
                    level: Some(9),
                    ..gzip()
                },
            )
            .unwrap();
        assert_eq!(again, first);
        // The gzip blob decodes to the layer.
        let mut back = Vec::new();
        layer::decompress(Box::new(store.open_blob(&first.digest).unwrap()))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(Digest::of(&back), l.diff_id);
        // zstd is a variant of its own; uncompressed is the layer itself.
        let z = LayerCompression {
            compression: Compression::Zstd,
            ..gzip()
        };
        let zstd = store.layer_variant(l, &z).unwrap();
        assert_eq!(zstd.media_type, MEDIA_TYPE_LAYER_ZSTD);
        assert_ne!(zstd.digest, first.digest);
        let plain = LayerCompression {
            compression: Compression::None,
            ..gzip()
        };
        assert_eq!(store.layer_variant(l, &plain).unwrap().digest, l.digest);
        // A gzip layer asked for as zstd stays gzip unless forced; forced,
        // it becomes the zstd variant.
        assert_eq!(
            store.layer_variant(&first, &z).unwrap().digest,
            first.digest
        );
        let forced = LayerCompression { force: true, ..z };
        assert_eq!(
            store.layer_variant(&first, &forced).unwrap().digest,
            zstd.digest
        );
    }

    #[test]
    fn gc_keeps_the_variants_of_live_layers_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let img = image(&store, b"some layer content");
        let v = store.layer_variant(&img.layers[0], &gzip()).unwrap();
        store.gc(&crate::NoGcRoots).unwrap();
        assert!(store.has_blob(&v.digest), "a live layer's variant stays");
        store.untag(&ImageRef::parse("app").unwrap()).unwrap();
        store.gc(&crate::NoGcRoots).unwrap();
        assert!(!store.has_blob(&v.digest));
        assert!(!store.variant_record_path(&img.layers[0].diff_id).exists());
    }

    #[test]
    fn a_converted_image_keeps_its_id_and_names_its_variants() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let img = image(&store, b"converted");
        let mut format = ManifestFormat {
            annotations: BTreeMap::from([("a".to_string(), "b".to_string())]),
            ..ManifestFormat::default()
        };
        let (docker, _lease, media_type) = store.convert_image(&img, &format).unwrap();
        assert_eq!(media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(docker.id, img.id);
        assert_ne!(docker.manifest_digest, img.manifest_digest);
        let m: Manifest =
            serde_json::from_slice(&store.read_blob(&docker.manifest_digest).unwrap()).unwrap();
        assert_eq!(m.config.media_type, MEDIA_TYPE_DOCKER_CONFIG);
        assert_eq!(m.layers[0].media_type, MEDIA_TYPE_DOCKER_LAYER_GZIP);
        assert_eq!(m.annotations["a"], "b");
        format.oci_media_types = true;
        let (oci, _lease, media_type) = store.convert_image(&img, &format).unwrap();
        assert_eq!(media_type, MEDIA_TYPE_MANIFEST);
        assert_eq!(oci.layers[0].digest, docker.layers[0].digest);
        assert_eq!(oci.layers[0].media_type, MEDIA_TYPE_LAYER_GZIP);
    }
}
