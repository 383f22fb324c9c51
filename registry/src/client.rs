//! The [`Client`] and its options: one HTTP exchange (`send_raw`), and the
//! manifest and blob requests other features build on (fetch, check,
//! push), each sent through [`Client::request`], which settles auth (see
//! `auth.rs`). Reading response bodies and turning failed responses into
//! [`RegistryError`]s is here too.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use rbuild_oci::Digest;
use ureq::http::{self, Response};

use crate::auth::AuthState;
use crate::endpoint::{absolute_url, strip_query};
use crate::{
    Access, BlobPush, ConfigFile, INSECURE_REGISTRIES_ENV, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE,
    RegistryError, Repository, config,
};

/// How a [`Client`] connects and authenticates.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`HOST[:PORT]`, `HOST`, or a CIDR range) reached over
    /// plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Docker's config file; [`DockerConfig::default_path`](crate::DockerConfig::default_path) when `None`.
    pub docker_config: Option<PathBuf>,
    /// rbuild's config files that were looked for (read or not), named
    /// in the hint when a registry does not speak TLS.
    pub config_files: Vec<PathBuf>,
    /// How long one read may wait for bytes before the transfer counts as
    /// stalled (and is retried); 60 seconds when `None`.
    /// From `RBUILD_REGISTRY_READ_TIMEOUT` (seconds) in the environment.
    pub read_timeout: Option<std::time::Duration>,
}

/// The default [`ClientOptions::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl ClientOptions {
    /// Options from the environment and rbuild's config files for the
    /// store at `root` ([`ConfigFile::locations`]): the insecure
    /// registries of both are merged. A malformed config file is an error.
    pub fn load(root: &std::path::Path) -> Result<ClientOptions, RegistryError> {
        let mut options = ClientOptions::from_env();
        for file in ConfigFile::load_all(root)? {
            options.insecure_registries.extend(file.insecure_registries);
        }
        options.config_files = ConfigFile::locations(root);
        Ok(options)
    }

    /// [`ClientOptions::load`] for the root `store` lives in (the store
    /// directory is `<root>/store-vN`), for callers that hold a store.
    pub fn for_store(store: &rbuild_store::Store) -> Result<ClientOptions, RegistryError> {
        let root = store.dir().parent().unwrap_or(store.dir());
        ClientOptions::load(root)
    }

    /// Options from the environment only: [`INSECURE_REGISTRIES_ENV`] and
    /// Docker's config location (no config file; see [`ClientOptions::load`]).
    pub fn from_env() -> ClientOptions {
        let insecure = std::env::var(INSECURE_REGISTRIES_ENV).unwrap_or_default();
        ClientOptions {
            insecure_registries: insecure
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            docker_config: None,
            config_files: Vec::new(),
            read_timeout: std::env::var("RBUILD_REGISTRY_READ_TIMEOUT")
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| *s > 0.0)
                .map(std::time::Duration::from_secs_f64),
        }
    }
}

/// A request body: nothing, bytes (can be resent after an auth
/// challenge) or a stream of known length (sent once).
pub enum RequestBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
    /// A stream of unknown length (chunked transfer encoding), sent once.
    Chunked(&'a mut dyn Read),
}

/// How many times an idempotent request is retried (after the first try).
pub const RETRIES: u32 = 4;

/// A request about to be sent again, for progress output.
#[derive(Debug, Clone, Copy)]
pub struct RetryNotice<'a> {
    pub method: &'a str,
    /// The URL without its query.
    pub url: &'a str,
    /// 1 for the first retry.
    pub attempt: u32,
    /// Retries allowed in all.
    pub of: u32,
    /// The wait before it.
    pub delay: std::time::Duration,
    /// Why: the status or transport error of the last try.
    pub reason: &'a str,
}

/// 0.25 s, 0.5 s, 1 s, 2 s: bounded, about 4 s in all.
fn retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250 << (attempt.saturating_sub(1)).min(4))
}

/// Statuses worth another try: too many requests, and server trouble.
fn retry_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Transport failures worth another try: the registry was reached but
/// the exchange broke (reset, cut, timed out, stalled). A refused
/// connection or an unknown host fails at once.
pub(crate) fn retry_transport(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Io(e) => matches!(
            e.kind(),
            K::ConnectionReset
                | K::ConnectionAborted
                | K::UnexpectedEof
                | K::BrokenPipe
                | K::TimedOut
                | K::WouldBlock
        ),
        ureq::Error::Timeout(_) | ureq::Error::Protocol(_) | ureq::Error::BodyStalled => true,
        _ => false,
    }
}

/// An HTTP client for registries, shared by reference across threads.
pub struct Client {
    /// Made on the first request: loading the system's TLS roots costs
    /// milliseconds a build that never contacts a registry should not pay.
    pub(crate) agent: std::sync::OnceLock<ureq::Agent>,
    pub(crate) options: ClientOptions,
    pub(crate) auth: Mutex<AuthState>,
    /// Told about every retry ([`Client::on_retry`]).
    pub(crate) retry_observer: std::sync::OnceLock<RetryObserver>,
}

type RetryObserver = Box<dyn Fn(&RetryNotice<'_>) + Send + Sync>;

impl Client {
    /// A client with TLS on the system root certificates (the
    /// ca-certificates bundle, or `SSL_CERT_FILE`), falling back to the
    /// bundled Mozilla roots when the system has none: corporate and
    /// private CAs installed on the machine then work, as with Docker.
    pub fn new(mut options: ClientOptions) -> Client {
        // Entries from the flag and the environment get the config file's
        // treatment too (`http://reg:5000/` names `reg:5000`).
        options.insecure_registries = options
            .insecure_registries
            .iter()
            .map(|h| config::normalize_host(h))
            .filter(|h| !h.is_empty())
            .collect();
        Client {
            agent: std::sync::OnceLock::new(),
            options,
            auth: Mutex::new(AuthState::default()),
            retry_observer: std::sync::OnceLock::new(),
        }
    }

    /// Sends one request, without auth handling. An idempotent one (a
    /// `GET` or `HEAD` without a body: manifests, blobs, tokens) is sent
    /// again with exponential backoff, at most [`RETRIES`] more times, when
    /// the registry answers 429 or 5xx or the connection is reset, cut or
    /// stalls; each retry is announced to [`Client::on_retry`]'s observer.
    pub(crate) fn send_raw(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let idempotent = matches!(method, "GET" | "HEAD") && matches!(body, RequestBody::Empty);
        if !idempotent {
            return self.send_once(method, url, authorization, headers, body);
        }
        let mut attempt = 0;
        loop {
            let result = self.send_once(method, url, authorization, headers, RequestBody::Empty);
            let reason = match &result {
                Ok(resp) if retry_status(resp.status().as_u16()) => {
                    format!("the registry answered {}", resp.status().as_u16())
                }
                Err(RegistryError::Transport { source, .. }) if retry_transport(source) => {
                    format!("{source}")
                }
                _ => return result,
            };
            if attempt >= RETRIES {
                return result;
            }
            attempt += 1;
            self.announce_retry(method, url, attempt, &reason);
        }
    }

    /// Waits before retry `attempt` (1-based) and tells the observer.
    pub(crate) fn announce_retry(&self, method: &str, url: &str, attempt: u32, reason: &str) {
        let delay = retry_delay(attempt);
        if let Some(observer) = self.retry_observer.get() {
            observer(&RetryNotice {
                method,
                url: &strip_query(url),
                attempt,
                of: RETRIES,
                delay,
                reason,
            });
        }
        std::thread::sleep(delay);
    }

    /// Calls `observer` before every retry (for progress output).
    pub fn on_retry(&self, observer: impl Fn(&RetryNotice<'_>) + Send + Sync + 'static) {
        let _ = self.retry_observer.set(Box::new(observer));
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let transport = |source: ureq::Error| self.transport_error(url, source);
        let bad_request = |e: http::Error| RegistryError::Transport {
            url: url.to_string(),
            source: Box::new(ureq::Error::Http(e)),
        };
        match body {
            RequestBody::Empty if matches!(method, "GET" | "HEAD") => {
                let req = builder.body(()).map_err(bad_request)?;
                self.agent().run(req).map_err(transport)
            }
            RequestBody::Empty => {
                let req = builder.body(&[][..]).map_err(bad_request)?;
                self.agent().run(req).map_err(transport)
            }
            RequestBody::Bytes(b) => {
                let req = builder.body(b).map_err(bad_request)?;
                self.agent().run(req).map_err(transport)
            }
            RequestBody::Stream(reader, len) => {
                let req = builder
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(reader))
                    .map_err(bad_request)?;
                self.agent().run(req).map_err(transport)
            }
            RequestBody::Chunked(reader) => {
                let req = builder
                    .body(ureq::SendBody::from_reader(reader))
                    .map_err(bad_request)?;
                self.agent().run(req).map_err(transport)
            }
        }
    }

    /// Fetches the manifest `reference` (a tag or digest) of `repo`.
    /// Returns its bytes, media type and digest; when `reference` is a
    /// digest the bytes are verified against it.
    pub fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let mut attempt = 0;
        loop {
            match self.get_manifest_once(repo, reference) {
                Err(RegistryError::Cut {
                    url,
                    received,
                    source,
                }) if attempt < RETRIES => {
                    attempt += 1;
                    let reason = format!("the body was cut: {source}");
                    let _ = received;
                    self.announce_retry("GET", &url, attempt, &reason);
                }
                other => return other,
            }
        }
    }

    fn get_manifest_once(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let url = self.manifest_url(repo, reference);
        let mut resp = self.request(
            "GET",
            &url,
            repo,
            Access::Pull,
            &[],
            &[("Accept", MANIFEST_ACCEPT)],
            RequestBody::Empty,
        )?;
        if resp.status() == 404 {
            return Err(RegistryError::ManifestNotFound {
                registry: repo.registry.clone(),
                reference: format!("{}:{reference}", repo.name).replace(":sha256:", "@sha256:"),
            });
        }
        if !resp.status().is_success() {
            return Err(status_error("GET", &url, resp));
        }
        let header_type = header(&resp, "content-type");
        let bytes = read_limited(&mut resp, &url, MAX_MANIFEST_SIZE)?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::ManifestDigest {
                reference: format!("{}@{reference}", repo.display()),
                expected,
                actual: digest,
            });
        }
        // The document's own mediaType wins over the header, which some
        // registries get wrong.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .or(header_type)
            .unwrap_or_default();
        Ok((bytes, media_type, digest))
    }

    /// Stores `bytes` as the manifest `reference` (a tag or digest) of
    /// `repo` with `media_type`. Returns the manifest's digest.
    pub fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = self.manifest_url(repo, reference);
        let resp = self.request(
            "PUT",
            &url,
            repo,
            Access::Push,
            &[],
            &[("Content-Type", media_type)],
            RequestBody::Bytes(bytes),
        )?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &url, resp));
        }
        Ok(Digest::of(bytes))
    }

    /// True when `repo` has the blob `digest` (`HEAD`).
    pub fn has_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        access: Access,
    ) -> Result<bool, RegistryError> {
        let url = self.blob_url(repo, digest);
        let resp = self.request("HEAD", &url, repo, access, &[], &[], RequestBody::Empty)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error("HEAD", &url, resp)),
        }
    }

    /// Streams the blob `digest` of `repo` into `out`; returns the byte
    /// count. The caller verifies the digest (the store's `BlobWriter`
    /// does, while the bytes stream in).
    pub fn fetch_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, RegistryError> {
        let url = self.blob_url(repo, digest);
        let mut resp = self.request(
            "GET",
            &url,
            repo,
            Access::Pull,
            &[],
            &[],
            RequestBody::Empty,
        )?;
        if !resp.status().is_success() {
            return Err(status_error("GET", &url, resp));
        }
        let mut reader = resp.body_mut().as_reader();
        // By hand rather than io::copy, so a network error and a local
        // write error (disk full, naming its path) stay apart.
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The registry was reached and answered: the body
                    // broke off.
                    return Err(RegistryError::Cut {
                        url: strip_query(&url),
                        received: Some(total),
                        source: Box::new(ureq::Error::Io(e)),
                    });
                }
            };
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    }

    /// Uploads one blob of `size` bytes read from `data` to `repo`, unless
    /// the registry has it (`HEAD`) or can mount it from `mount_from` (a
    /// repository on the same registry known to hold it).
    pub fn push_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        mount_from: Option<&Repository>,
    ) -> Result<BlobPush, RegistryError> {
        if self.has_blob(repo, digest, Access::Push)? {
            return Ok(BlobPush::Exists);
        }
        let base = self.base_url(&repo.registry);
        let mount_from = mount_from.filter(|m| m.registry == repo.registry && m.name != repo.name);
        let (post_url, extra): (String, Vec<&Repository>) = match mount_from {
            Some(m) => (
                format!(
                    "{base}/{}/blobs/uploads/?mount={digest}&from={}",
                    repo.name, m.name
                ),
                vec![m],
            ),
            None => (format!("{base}/{}/blobs/uploads/", repo.name), Vec::new()),
        };
        let resp = self.request(
            "POST",
            &post_url,
            repo,
            Access::Push,
            &extra,
            &[],
            RequestBody::Empty,
        )?;
        if resp.status() == 201
            && let Some(from) = mount_from
        {
            return Ok(BlobPush::Mounted { from: from.clone() });
        }
        if resp.status() != 202 {
            return Err(status_error("POST", &post_url, resp));
        }
        let upload = upload_location(&base, &resp, "POST", &post_url)?;
        self.close_upload(
            repo,
            &upload,
            digest,
            &[("Content-Type", "application/octet-stream")],
            RequestBody::Stream(data, size),
        )?;
        Ok(BlobPush::Uploaded)
    }

    /// Ends the upload session at `upload` with the `PUT` naming the
    /// blob's `digest`, sending `body` (the whole blob, or nothing after
    /// a `PATCH` sent it).
    fn close_upload(
        &self,
        repo: &Repository,
        upload: &str,
        digest: &Digest,
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<(), RegistryError> {
        let sep = if upload.contains('?') { '&' } else { '?' };
        let put_url = format!("{upload}{sep}digest={digest}");
        let resp = self.request("PUT", &put_url, repo, Access::Push, &[], headers, body)?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &strip_query(&put_url), resp));
        }
        Ok(())
    }
}

/// Where an upload session continues: the `Location` of `resp` (the
/// answer to `method` on `url`), made absolute against `base`.
fn upload_location(
    base: &str,
    resp: &Response<ureq::Body>,
    method: &str,
    url: &str,
) -> Result<String, RegistryError> {
    header(resp, "location")
        .map(|l| absolute_url(base, &l))
        .ok_or_else(|| RegistryError::Status {
            method: method.to_string(),
            url: strip_query(url),
            status: resp.status().as_u16(),
            detail: "no Location header for the upload".to_string(),
        })
}

impl Client {
    /// Uploads a blob whose digest is known only once its bytes are all
    /// made (a layer compressed while it goes out, as `docker push` and
    /// `skopeo copy` stream theirs): `POST`, one `PATCH` streaming `data`
    /// to its end (chunked), then the `PUT` closing the upload with the
    /// digest `finish` gives (called once `data` ended); an error from
    /// `finish` abandons the upload.
    pub fn push_blob_streamed(
        &self,
        repo: &Repository,
        data: &mut dyn Read,
        finish: &mut dyn FnMut() -> Result<Digest, RegistryError>,
    ) -> Result<(), RegistryError> {
        let base = self.base_url(&repo.registry);
        let post_url = format!("{base}/{}/blobs/uploads/", repo.name);
        let resp = self.request(
            "POST",
            &post_url,
            repo,
            Access::Push,
            &[],
            &[],
            RequestBody::Empty,
        )?;
        if resp.status() != 202 {
            return Err(status_error("POST", &post_url, resp));
        }
        let upload = upload_location(&base, &resp, "POST", &post_url)?;
        let resp = self.request(
            "PATCH",
            &upload,
            repo,
            Access::Push,
            &[],
            &[("Content-Type", "application/octet-stream")],
            RequestBody::Chunked(data),
        );
        // A failed PATCH returns at once (the caller drops `data`, which
        // stops the writer); a finished one waits for the stream's end,
        // whose own error (the compression's, cut short) comes first.
        let resp = resp?;
        if resp.status() != 202 {
            return Err(status_error("PATCH", &strip_query(&upload), resp));
        }
        let digest = finish()?;
        let upload = upload_location(&base, &resp, "PATCH", &upload)?;
        self.close_upload(repo, &upload, &digest, &[], RequestBody::Empty)
    }
}

pub(crate) fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) fn read_limited(
    resp: &mut Response<ureq::Body>,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|source| match source {
            ureq::Error::BodyExceedsLimit(_) => RegistryError::Transport {
                url: url.to_string(),
                source: Box::new(source),
            },
            source => RegistryError::Cut {
                url: strip_query(url),
                received: None,
                source: Box::new(source),
            },
        })
}

/// The registry's error message: the `errors` array of the distribution
/// spec (`CODE: message`), else the start of the body.
pub(crate) fn error_detail(mut resp: Response<ureq::Body>) -> String {
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&bytes) {
        return e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&bytes);
    text.trim().chars().take(200).collect()
}

pub(crate) fn status_error(method: &str, url: &str, resp: Response<ureq::Body>) -> RegistryError {
    RegistryError::Status {
        method: method.to_string(),
        url: strip_query(url),
        status: resp.status().as_u16(),
        detail: error_detail(resp),
    }
}
