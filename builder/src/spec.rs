//! The typed specs of a build request: what `--build-arg`, `-o`,
//! `--cache-to`, `--cache-from` and `--secret` say once their strings are
//! parsed ([`parse`] reads docker's and buildx's syntaxes, for every front
//! end), and how a secret's content is read.

pub mod inputs;
pub mod parse;

use std::path::PathBuf;

use rbuild_oci::Platform;
use rbuild_oci::reference::ImageRef;
pub use rbuild_store::layer::Compression;
use rbuild_store::variants::LayerCompression;
use rbuild_worker::cache_transfer::ExportMode;

/// One `--build-arg`: `NAME=VALUE`, or `NAME` alone to take the value from
/// the environment ([`parse::resolve_build_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArg {
    pub name: String,
    /// `None` for a bare `NAME`.
    pub value: Option<String>,
}

/// Where a secret's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (absolute once validated).
    File(PathBuf),
    /// An environment variable of the builder's process.
    Env(String),
}

/// One secret: an id a `RUN --mount=type=secret` asks for, and where its
/// content is. The content never enters a cache key or a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

/// A secret whose content cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {id:?} from {}", path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id:?}: environment variable {var} is not set")]
    EnvUnset { id: String, var: String },
}

impl SecretSpec {
    /// The secret's content.
    pub fn read(&self) -> Result<Vec<u8>, SecretError> {
        match &self.source {
            SecretSource::File(p) => std::fs::read(p).map_err(|source| SecretError::Read {
                id: self.id.clone(),
                path: p.clone(),
                source,
            }),
            SecretSource::Env(v) => std::env::var_os(v)
                .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
                .ok_or_else(|| SecretError::EnvUnset {
                    id: self.id.clone(),
                    var: v.clone(),
                }),
        }
    }
}

/// Where an annotation goes (buildx's `TYPE:` of `--annotation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationKind {
    /// The image manifest's `annotations`.
    Manifest,
    /// The manifest's descriptor: in the image index, or (a bare
    /// manifest) in an OCI or docker archive's `index.json`.
    ManifestDescriptor,
    /// The image index's `annotations`.
    Index,
    /// The index's descriptor in an OCI or docker archive's `index.json`.
    IndexDescriptor,
}

/// One `--annotation [TYPE[PLATFORM]:]KEY=VALUE` or
/// `annotation[-TYPE][PLATFORM].KEY=VALUE` output attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub kind: AnnotationKind,
    /// Only for the image of this platform (`manifest[linux/amd64]:…`).
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

/// How an image output encodes what it writes: BuildKit's exporter
/// attributes `compression=`, `compression-level=`, `force-compression=`,
/// `oci-mediatypes=`, `rewrite-timestamp=` and `annotation…=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFormat {
    /// Layer compression (default gzip, as BuildKit).
    pub compression: Compression,
    /// gzip 0–9, zstd 0–22 (0: zstd's default); `None` for the default.
    pub compression_level: Option<i32>,
    /// Re-encode layers stored compressed otherwise (pulled base layers).
    pub force_compression: bool,
    /// OCI media types; `None` for the exporter's default (true for
    /// `type=oci`, false for `image`, `registry` and `docker`, as BuildKit).
    pub oci_media_types: Option<bool>,
    /// Clamp file times in the build's own layers to `SOURCE_DATE_EPOCH`.
    pub rewrite_timestamp: bool,
    /// Output attribute annotations (`--annotation` ones are in the
    /// request and apply to every output).
    pub annotations: Vec<Annotation>,
    /// BuildKit's `attestation-inline=`: attach `inline-only`
    /// attestations (buildx's default provenance) too; `None` for the
    /// exporter's default (true for `image`, false for `oci`/`docker`).
    pub attestation_inline: Option<bool>,
}

impl Default for ImageFormat {
    fn default() -> Self {
        ImageFormat {
            compression: Compression::Gzip,
            compression_level: None,
            force_compression: false,
            oci_media_types: None,
            rewrite_timestamp: false,
            annotations: Vec::new(),
            attestation_inline: None,
        }
    }
}

impl ImageFormat {
    /// The store's side of the layer attributes.
    pub fn layer_compression(&self) -> LayerCompression {
        LayerCompression {
            compression: self.compression,
            level: self.compression_level,
            force: self.force_compression,
        }
    }
}

/// What an output (`-o`) exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The image in the store, tagged with every `-t` and `name=`, and
    /// with `push=true` (or `type=registry`) pushed to each of those names
    /// (like `--push`), encoded as `format` says.
    Image {
        names: Vec<ImageRef>,
        push: bool,
        format: ImageFormat,
    },
    /// An OCI image layout tar.
    Oci { dest: PathBuf, format: ImageFormat },
    /// A docker-archive tar (`docker load`).
    Docker { dest: PathBuf, format: ImageFormat },
    /// The flattened root filesystem as a tar.
    Tar { dest: PathBuf },
    /// The flattened root filesystem into a directory.
    Local { dest: PathBuf },
}

impl OutputSpec {
    /// True when this output writes to stdout (`dest=-`).
    pub fn is_stdout(&self) -> bool {
        matches!(self,
            OutputSpec::Oci { dest, .. } | OutputSpec::Docker { dest, .. } | OutputSpec::Tar { dest }
                if dest.as_os_str() == "-")
    }

    /// The image format of an image output (`image`, `registry`, `oci`,
    /// `docker`).
    pub fn format(&self) -> Option<&ImageFormat> {
        match self {
            OutputSpec::Image { format, .. }
            | OutputSpec::Oci { format, .. }
            | OutputSpec::Docker { format, .. } => Some(format),
            OutputSpec::Tar { .. } | OutputSpec::Local { .. } => None,
        }
    }
}

/// Where `--cache-to` exports the build's cache (buildx's kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheToSpec {
    /// `type=local,dest=DIR`: an OCI layout directory.
    Local {
        dest: PathBuf,
        mode: ExportMode,
        mounts: bool,
        /// Layer encoding (`compression=`…), as the image's own.
        layers: LayerCompression,
        /// `oci-mediatypes=` for the layers (default true, as BuildKit).
        oci_media_types: bool,
    },
    /// `type=registry,ref=REF` (or a bare `REF`): the same layout pushed
    /// to a registry.
    Registry {
        reference: String,
        mode: ExportMode,
        mounts: bool,
        layers: LayerCompression,
        oci_media_types: bool,
    },
    /// `type=inline`: the records of the final image's steps, in its config.
    Inline,
}

/// Where `--cache-from` imports a cache from (buildx's kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFromSpec {
    /// `type=local,src=DIR`.
    Local { src: PathBuf, mounts: bool },
    /// `type=registry,ref=REF`.
    Registry { reference: String, mounts: bool },
    /// A bare `IMAGE`: the inline cache of that image in the store.
    Image { reference: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_from_files_and_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret").unwrap();
        let spec = SecretSpec {
            id: "tok".into(),
            source: SecretSource::File(file.clone()),
        };
        assert_eq!(spec.read().unwrap(), b"s3cret");
        let missing = SecretSpec {
            id: "tok".into(),
            source: SecretSource::File(dir.path().join("nope")),
        };
        let e = missing.read().unwrap_err().to_string();
        assert!(e.starts_with("cannot read secret \"tok\" from "), "{e}");
        let unset = SecretSpec {
            id: "tok".into(),
            source: SecretSource::Env("RBUILD_TEST_SURELY_UNSET_VARIABLE".into()),
        };
        assert_eq!(
            unset.read().unwrap_err().to_string(),
            "secret \"tok\": environment variable RBUILD_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
