//! A client for OCI distribution registries (Docker Hub, ghcr.io, the CNCF
//! `registry`): pull images into the [`Store`](rbuild_store::Store), push
//! them out, verify logins.
//!
//! Built on `ureq` (blocking, small, rustls) plus the store's own layout
//! types: every request here is a plain HTTP exchange, and a blocking
//! client keeps the parallel blob downloads simple (a few scoped threads)
//! without bringing an async runtime into a synchronous codebase.
//!
//! Layers: [`Client`] (HTTP, the auth handshake, blob and manifest
//! requests — the functions other features such as a registry cache build
//! on), [`pull()`] and [`push()`] (whole images between a registry and the
//! store), [`credentials`] (Docker's config file and credential helpers).
//! The client is split by job: `client.rs` (options, requests, responses),
//! `auth.rs` (challenges, tokens, credentials), `tls.rs` (TLS roots,
//! insecure registries, CIDR ranges) and `endpoint.rs` (URLs).
//!
//! Auth follows the distribution spec and Docker: a request goes out
//! anonymously; on `401` the `WWW-Authenticate` challenge says `Basic` (send
//! the stored credentials) or `Bearer realm=…,service=…` (get a token from
//! the realm for `scope=repository:NAME:pull[,push]`, with the credentials
//! as Basic auth when there are any). Challenges are remembered per
//! registry and tokens per scope until they expire, so later requests are
//! authorized up front; parallel requests needing the same scope wait for
//! one token fetch instead of each asking the token server.
//!
//! Transport: TLS with the system's root certificates (see
//! [`ClientOptions`]); plain HTTP only for loopback registries
//! (`localhost`, `127.0.0.0/8`, `[::1]`, any port, as docker) and for
//! registries named with `--insecure-registry`, in
//! `RBUILD_INSECURE_REGISTRIES` or under `insecure-registries` in rbuild's
//! config file ([`config`]); an entry may be a CIDR range matching
//! registries named by IP address, as in docker's `daemon.json`.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod auth;
mod client;
pub mod config;
pub mod credentials;
mod endpoint;
mod pull;
mod push;
mod tls;

use std::path::PathBuf;
use std::sync::Mutex;

pub use auth::Access;
pub use client::{Client, ClientOptions, RETRIES, RequestBody, RetryNotice};
pub use config::{CONFIG_FILE_NAME, ConfigFile};
pub use credentials::{Credentials, DockerConfig};
pub use pull::{PullEvent, PullOutcome, PullProgress, pull};
pub use push::{
    BlobPush, FormattedPush, PushEvent, PushOutcome, PushProgress, Streamed, layers_compressed,
    push, push_as, push_index, push_index_streamed, stream_variants,
};
use rbuild_oci::Digest;
use rbuild_oci::reference::ImageRef;
use rbuild_store::StoreError;
pub use rbuild_store::select_manifest;

/// The environment variable listing registries (`HOST[:PORT]`, comma or
/// space separated) that are reached over plain HTTP.
pub const INSECURE_REGISTRIES_ENV: &str = "RBUILD_INSECURE_REGISTRIES";

/// Media types a manifest GET accepts, in Docker's order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Docker's manifest list media type.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests larger than this are refused (the spec suggests 4 MiB).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A registry request failed; names the registry, repository, URL or blob.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach {url}")]
    Transport {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered, then the body broke off (reset, cut,
    /// stalled) after `received` bytes.
    #[error("the transfer of {url} was cut{}", .received.map(|n| format!(" after {n} bytes")).unwrap_or_default())]
    Cut {
        url: String,
        received: Option<u64>,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "cannot speak TLS with {registry} ({url}); if it serves plain HTTP, list it under \"insecure-registries\" in {config} or in RBUILD_INSECURE_REGISTRIES (pull, push and login also take --insecure-registry {registry})"
    )]
    NotTls {
        registry: String,
        url: String,
        config: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("malformed config file {}:{line}:{column}", .path.display())]
    ConfigFile {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read config file {}", .path.display())]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} {url}: the registry answered {status}{}", detail_suffix(.detail))]
    Status {
        method: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{registry} refused {action} access to {repository}: authentication required{}\nhint: run `rbuild login {registry}`",
        detail_suffix(.detail)
    )]
    Unauthorized {
        registry: String,
        repository: String,
        action: String,
        detail: String,
    },
    #[error("{registry}: login failed: incorrect username or password{}", detail_suffix(.detail))]
    LoginFailed { registry: String, detail: String },
    #[error("the token server {realm} answered {status}{}", detail_suffix(.detail))]
    Token {
        realm: String,
        status: u16,
        detail: String,
    },
    #[error("{registry} sent an authentication challenge rbuild cannot answer: {challenge:?}")]
    Challenge { registry: String, challenge: String },
    #[error("manifest {reference} not found in {registry}")]
    ManifestNotFound { registry: String, reference: String },
    #[error("manifest of {reference} has unsupported media type {media_type:?}")]
    UnsupportedManifest {
        reference: String,
        media_type: String,
    },
    #[error("malformed {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest of {reference} does not match its digest: expected {expected}, got {actual}")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {digest} from {repository} does not match its digest; nothing was stored")]
    BlobDigest {
        repository: String,
        digest: Digest,
        #[source]
        source: Box<StoreError>,
    },
    #[error("blob {digest} from {repository} has {actual} bytes, its descriptor says {expected}")]
    BlobSize {
        repository: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{what} names an invalid digest {text:?}")]
    BadDigest { what: String, text: String },
    #[error(
        "{reference} has no image for {wanted} (it has: {available})\nhint: rbuild does not cross-build; use an image for {wanted}"
    )]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    /// A layer of the image being pulled could never be unpacked (or does
    /// not match its config); nothing was stored or tagged.
    #[error("cannot pull {reference}: the registry sent a bad layer; nothing was stored")]
    BadLayer {
        reference: String,
        #[source]
        source: Box<rbuild_store::StagedLayerError>,
    },
    /// A blob of the image being pushed does not match its digest.
    #[error("cannot push image {image}: it is damaged in the store")]
    CorruptImage {
        image: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("reading blob {digest} from the store failed")]
    ReadBlob {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed Docker config {path}")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the auths entry for {registry} in {path} is not base64 of user:password")]
    BadAuthEntry { path: PathBuf, registry: String },
    #[error("cannot run the credential helper {program}")]
    Helper {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {program} {action} failed: {message}")]
    HelperFailed {
        program: String,
        action: String,
        message: String,
    },
    #[error(transparent)]
    Io {
        #[from]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> RegistryError {
        RegistryError::Store(Box::new(e))
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A repository on a registry: `127.0.0.1:5000` + `team/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// The registry as references name it (`docker.io`, `host:port`).
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub name: String,
}

impl Repository {
    /// The repository a reference points into.
    pub fn of(r: &ImageRef) -> Repository {
        Repository {
            registry: r.domain().to_string(),
            name: r.path().to_string(),
        }
    }

    /// `registry/name`, as error messages show it.
    pub fn display(&self) -> String {
        format!("{}/{}", self.registry, self.name)
    }
}

/// How many blobs move at once: enough to fill a link (registries and
/// CDNs throttle per connection), few enough not to thrash a small disk.
pub const PARALLEL_BLOBS: usize = 4;

/// Runs `f` on every item with up to `workers` threads; returns the first
/// error (workers stop taking new items once one failed).
fn for_each_parallel<T: Sync, E: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        first_error.lock().expect("error slot").get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
