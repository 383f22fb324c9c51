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

pub mod config;
pub mod credentials;
mod platform;
mod pull;
mod push;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbuild_oci::Digest;
use ureq::http::{self, Response};

pub use config::{CONFIG_FILE_NAME, ConfigFile};
pub use credentials::{Credentials, DockerConfig};
pub use platform::select_manifest;
pub use pull::{PullEvent, PullOutcome, PullProgress, pull};
pub use push::{BlobPush, PushEvent, PushOutcome, PushProgress, push};
use rbuild_oci::reference::ImageRef;
use rbuild_store::StoreError;

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

/// What a request needs from the repository: read, or read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// How a [`Client`] connects and authenticates.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`HOST[:PORT]`, `HOST`, or a CIDR range) reached over
    /// plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Docker's config file; [`DockerConfig::default_path`] when `None`.
    pub docker_config: Option<PathBuf>,
    /// rbuild's config files that were looked for (read or not), named
    /// in the hint when a registry does not speak TLS.
    pub config_files: Vec<PathBuf>,
}

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
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    /// The last challenge each registry sent.
    challenges: HashMap<String, Challenge>,
    /// Tokens by registry and the scope string they were issued for.
    /// Each slot has its own lock, held while its token is fetched, so
    /// parallel requests needing the same scope (blob uploads and
    /// downloads, all answered 401 at once) ask the token server once
    /// and the others wait for that token.
    tokens: HashMap<(String, String), std::sync::Arc<Mutex<Option<Token>>>>,
    /// Credentials per registry (`Some(None)`: anonymous), each slot
    /// locked while they are looked up, so parallel requests answered 401
    /// at once read the Docker config (or run its helper) once.
    credentials: HashMap<String, CredentialSlot>,
}

/// One registry's credentials once looked up; see `AuthState::credentials`.
type CredentialSlot = std::sync::Arc<Mutex<Option<Option<Credentials>>>>;

/// A request body: nothing, bytes (can be resent after an auth
/// challenge) or a stream of known length (sent once).
pub enum RequestBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
}

/// An HTTP client for registries, shared by reference across threads.
pub struct Client {
    /// Made on the first request: loading the system's TLS roots costs
    /// milliseconds a build that never contacts a registry should not pay.
    agent: std::sync::OnceLock<ureq::Agent>,
    options: ClientOptions,
    auth: Mutex<AuthState>,
}

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
        }
    }

    fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(system_roots())
                .build();
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls)
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(300)))
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                // Blob GETs redirect to storage (S3, a CDN); credentials must
                // not follow to another host.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
                .build()
                .into()
        })
    }

    /// Uses `creds` for `registry` instead of looking them up (`login`
    /// verifies credentials before storing them).
    pub fn set_credentials(&self, registry: &str, creds: Option<Credentials>) {
        let mut auth = self.auth.lock().expect("auth state lock");
        auth.credentials.insert(
            registry.to_string(),
            std::sync::Arc::new(Mutex::new(Some(creds))),
        );
        auth.tokens.retain(|(r, _), _| r != registry);
    }

    /// The base URL of `registry`'s API: `https://host/v2`, or `http://`
    /// for loopback and insecure registries. Docker Hub's API lives on
    /// `registry-1.docker.io`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2")
    }

    /// True when `registry` is reached over plain HTTP: loopback (as
    /// docker: `localhost`, `127.0.0.0/8`, `::1`) or listed as insecure,
    /// by `HOST[:PORT]`, `HOST`, or a CIDR range holding its IP address.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let hostname = registry_hostname(registry);
        let ip = hostname.parse::<std::net::IpAddr>().ok();
        hostname == "localhost"
            || ip.is_some_and(|ip| ip.is_loopback())
            || self.options.insecure_registries.iter().any(|h| {
                h == registry || h == hostname || ip.is_some_and(|ip| cidr_contains(h, ip))
            })
    }

    /// The error for a failed request to `url`: a TLS failure with a
    /// registry not listed as insecure hints at the flag and the config
    /// file, since the usual cause is a plain-HTTP registry.
    fn transport_error(&self, url: &str, source: ureq::Error) -> RegistryError {
        let tls_failure = matches!(source, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || matches!(&source, ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData);
        if tls_failure && let Some(rest) = url.strip_prefix("https://") {
            let registry = rest.split('/').next().unwrap_or(rest).to_string();
            let config = match self.options.config_files.as_slice() {
                [] => "rbuild's config.json".to_string(),
                files => files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            return RegistryError::NotTls {
                registry,
                url: url.to_string(),
                config,
                source: Box::new(source),
            };
        }
        RegistryError::Transport {
            url: url.to_string(),
            source: Box::new(source),
        }
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let slot = self
            .auth
            .lock()
            .expect("auth state lock")
            .credentials
            .entry(registry.to_string())
            .or_default()
            .clone();
        // The slot's lock, not the auth state's, is held while looking up.
        let mut slot = slot.lock().expect("credential slot lock");
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let path = self
            .options
            .docker_config
            .clone()
            .unwrap_or_else(DockerConfig::default_path);
        let creds = DockerConfig::load(&path)?.credentials(registry)?;
        *slot = Some(creds.clone());
        Ok(creds)
    }

    /// `…/v2/<repo>/manifests/<reference>` (a tag or a digest).
    fn manifest_url(&self, repo: &Repository, reference: &str) -> String {
        format!(
            "{}/{}/manifests/{reference}",
            self.base_url(&repo.registry),
            repo.name
        )
    }

    /// `…/v2/<repo>/blobs/<digest>`.
    fn blob_url(&self, repo: &Repository, digest: &Digest) -> String {
        format!(
            "{}/{}/blobs/{digest}",
            self.base_url(&repo.registry),
            repo.name
        )
    }

    /// Checks that `registry` speaks the distribution API (`GET /v2/`) and
    /// that its credentials (stored or set) are accepted, going through
    /// the token flow when the registry uses one. This is what `login`
    /// verifies.
    pub fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let url = format!("{}/", self.base_url(registry));
        let resp = self.send_raw("GET", &url, None, &[], RequestBody::Empty)?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != 401 {
            return Err(status_error("GET", &url, resp));
        }
        let challenge = parse_challenge(&resp, registry)?;
        let creds = self.credentials(registry)?;
        let authorization = match &challenge {
            Challenge::Basic => match &creds {
                Some(c) => c.basic_header(),
                None => {
                    return Err(RegistryError::LoginFailed {
                        registry: registry.to_string(),
                        detail: "no credentials given".to_string(),
                    });
                }
            },
            Challenge::Bearer { realm, service } => {
                // Docker asks for a token with no scope: the token server
                // checks the credentials only.
                let token = self
                    .fetch_token(realm, service.as_deref(), &[], creds.as_ref())
                    .map_err(|e| match e {
                        RegistryError::Token { status: 401, .. } => RegistryError::LoginFailed {
                            registry: registry.to_string(),
                            detail: String::new(),
                        },
                        e => e,
                    })?;
                format!("Bearer {}", token.value)
            }
        };
        let resp = self.send_raw("GET", &url, Some(&authorization), &[], RequestBody::Empty)?;
        if resp.status().is_success() {
            self.auth
                .lock()
                .expect("auth state lock")
                .challenges
                .insert(registry.to_string(), challenge);
            return Ok(());
        }
        if resp.status() == 401 {
            return Err(RegistryError::LoginFailed {
                registry: registry.to_string(),
                detail: error_detail(resp),
            });
        }
        Err(status_error("GET", &url, resp))
    }

    /// Sends one request, without auth handling.
    fn send_raw(
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
        }
    }

    /// The `scope` values for `access` to `repo` (and pull access to the
    /// extra repositories, for cross-repository mounts).
    fn scopes(repo: &Repository, access: Access, extra_pull: &[&Repository]) -> Vec<String> {
        let mut scopes = vec![format!("repository:{}:{}", repo.name, access.actions())];
        for r in extra_pull {
            if r.registry == repo.registry && r.name != repo.name {
                scopes.push(format!("repository:{}:pull", r.name));
            }
        }
        scopes
    }

    /// The Authorization header for a request to `registry` needing
    /// `scopes`, from the last challenge it sent (none before the first).
    fn authorization(
        &self,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self
            .auth
            .lock()
            .expect("auth state lock")
            .challenges
            .get(registry)
            .cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials(registry)?.map(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service }) => {
                let key = (registry.to_string(), scopes.join(" "));
                let slot = self
                    .auth
                    .lock()
                    .expect("auth state lock")
                    .tokens
                    .entry(key)
                    .or_default()
                    .clone();
                let mut slot = slot.lock().expect("token slot lock");
                let token = match slot.as_ref().filter(|t| t.expires > Instant::now()) {
                    Some(t) => t.clone(),
                    None => {
                        let creds = self.credentials(registry)?;
                        let t =
                            self.fetch_token(&realm, service.as_deref(), scopes, creds.as_ref())?;
                        *slot = Some(t.clone());
                        t
                    }
                };
                Ok(Some(format!("Bearer {}", token.value)))
            }
        }
    }

    /// Asks a token server for a bearer token (the distribution token
    /// spec: GET realm?service=…&scope=…, Basic auth when we have
    /// credentials; the answer has `token` or `access_token`).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<Token, RegistryError> {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", url_encode(s)));
        }
        for s in scopes {
            query.push(format!("scope={}", url_encode(s)));
        }
        if let Some(c) = creds {
            query.push(format!("account={}", url_encode(&c.username)));
        }
        let url = if query.is_empty() {
            realm.to_string()
        } else {
            let sep = if realm.contains('?') { '&' } else { '?' };
            format!("{realm}{sep}{}", query.join("&"))
        };
        let authorization = creds.map(Credentials::basic_header);
        let mut resp = self.send_raw(
            "GET",
            &url,
            authorization.as_deref(),
            &[],
            RequestBody::Empty,
        )?;
        if !resp.status().is_success() {
            return Err(RegistryError::Token {
                realm: realm.to_string(),
                status: resp.status().as_u16(),
                detail: error_detail(resp),
            });
        }
        let bytes = read_limited(&mut resp, &url, MAX_MANIFEST_SIZE)?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
                what: format!("token response from {realm}"),
                source,
            })?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Token {
                realm: realm.to_string(),
                status: 200,
                detail: "the response has no token".to_string(),
            })?;
        // The spec's default lifetime is 60 s; stop a little early so a
        // token does not expire in flight.
        let lifetime = parsed.expires_in.unwrap_or(60).max(10);
        Ok(Token {
            value,
            expires: Instant::now() + Duration::from_secs(lifetime - lifetime / 10),
        })
    }

    /// Sends a request to `repo` with `access`, answering one auth
    /// challenge: on `401` the challenge is remembered, a token or Basic
    /// credentials obtained, and the request sent again (streams cannot be
    /// resent: send something small first to settle auth, as [`Client::push_blob`]
    /// does with its POST).
    // One argument per part of the exchange (method, URL, what access,
    // headers, body); a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        method: &str,
        url: &str,
        repo: &Repository,
        access: Access,
        extra_pull: &[&Repository],
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let scopes = Client::scopes(repo, access, extra_pull);
        let authorization = self.authorization(&repo.registry, &scopes)?;
        let replay = match &body {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Bytes(b) => Some(RequestBody::Bytes(b)),
            RequestBody::Stream(..) => None,
        };
        let resp = self.send_raw(method, url, authorization.as_deref(), headers, body)?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = parse_challenge(&resp, &repo.registry)?;
        let previous = self
            .auth
            .lock()
            .expect("auth state lock")
            .challenges
            .insert(repo.registry.clone(), challenge.clone());
        let unauthorized = |resp| RegistryError::Unauthorized {
            registry: repo.registry.clone(),
            repository: repo.name.clone(),
            action: access.actions().replace(',', "/"),
            detail: error_detail(resp),
        };
        // Already answered this very challenge, or nothing to resend.
        if (authorization.is_some() && previous.as_ref() == Some(&challenge)) || replay.is_none() {
            return Err(unauthorized(resp));
        }
        let Some(authorization) = self.authorization(&repo.registry, &scopes)? else {
            return Err(unauthorized(resp));
        };
        let resp = self.send_raw(
            method,
            url,
            Some(&authorization),
            headers,
            replay.expect("checked above"),
        )?;
        if resp.status() == 401 {
            return Err(unauthorized(resp));
        }
        Ok(resp)
    }

    /// Fetches the manifest `reference` (a tag or digest) of `repo`.
    /// Returns its bytes, media type and digest; when `reference` is a
    /// digest the bytes are verified against it.
    pub fn get_manifest(
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
                    return Err(RegistryError::Transport {
                        url,
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
        let location = header(&resp, "location").ok_or_else(|| RegistryError::Status {
            method: "POST".to_string(),
            url: post_url.clone(),
            status: 202,
            detail: "no Location header for the upload".to_string(),
        })?;
        let upload = absolute_url(&base, &location);
        let sep = if upload.contains('?') { '&' } else { '?' };
        let put_url = format!("{upload}{sep}digest={digest}");
        let resp = self.request(
            "PUT",
            &put_url,
            repo,
            Access::Push,
            &[],
            &[("Content-Type", "application/octet-stream")],
            RequestBody::Stream(data, size),
        )?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &strip_query(&put_url), resp));
        }
        Ok(BlobPush::Uploaded)
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

/// The root certificates of the system (Debian's ca-certificates bundle,
/// or `SSL_CERT_FILE`); Mozilla's bundled roots when none can be read.
fn system_roots() -> ureq::tls::RootCerts {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::RootCerts::new_with_certs(&certs);
        }
    }
    ureq::tls::RootCerts::WebPki
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn read_limited(
    resp: &mut Response<ureq::Body>,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|source| RegistryError::Transport {
            url: url.to_string(),
            source: Box::new(source),
        })
}

/// The registry's error message: the `errors` array of the distribution
/// spec (`CODE: message`), else the start of the body.
fn error_detail(mut resp: Response<ureq::Body>) -> String {
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

fn status_error(method: &str, url: &str, resp: Response<ureq::Body>) -> RegistryError {
    RegistryError::Status {
        method: method.to_string(),
        url: strip_query(url),
        status: resp.status().as_u16(),
        detail: error_detail(resp),
    }
}

/// Upload URLs carry state in their query; error messages don't need it.
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Resolves a `Location` header (absolute, or a path on the registry).
fn absolute_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    // base is scheme://host/v2
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

/// Parses a `WWW-Authenticate` header: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(
    resp: &Response<ureq::Body>,
    registry: &str,
) -> Result<Challenge, RegistryError> {
    let raw = header(resp, "www-authenticate").unwrap_or_default();
    parse_challenge_text(&raw).ok_or_else(|| RegistryError::Challenge {
        registry: registry.to_string(),
        challenge: raw,
    })
}

fn parse_challenge_text(raw: &str) -> Option<Challenge> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once(' ').unwrap_or((raw, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_auth_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `key="value", key2=value2` (quoted values may hold commas).
fn parse_auth_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// The host part of a registry name: `[::1]:5000` → `::1`,
/// `reg.lan:5000` → `reg.lan`.
fn registry_hostname(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    }
}

/// True when `range` is a CIDR range (`10.0.0.0/8`, `fd00::/8`) holding
/// `ip`; false for anything else (host names, bad ranges).
fn cidr_contains(range: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let Some((net, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_like_docker_hubs() {
        let c = parse_challenge_text(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge_text(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge_text("Negotiate abc"), None);
        assert_eq!(parse_challenge_text("Bearer service=x"), None);
        let p = parse_auth_params(r#"realm="a,b", scope="repository:x:pull,push",err=x"#);
        assert_eq!(p["realm"], "a,b");
        assert_eq!(p["scope"], "repository:x:pull,push");
        assert_eq!(p["err"], "x");
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let c = Client::new(ClientOptions {
            insecure_registries: vec![
                "reg.lan:5000".into(),
                "other.lan".into(),
                "10.1.0.0/16".into(),
                "fd00::/8".into(),
            ],
            ..ClientOptions::default()
        });
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000/v2");
        // All of 127.0.0.0/8 is loopback, as docker's default.
        assert_eq!(c.base_url("127.0.0.2:5000"), "http://127.0.0.2:5000/v2");
        assert_eq!(c.base_url("10.1.2.3:5000"), "http://10.1.2.3:5000/v2");
        assert_eq!(c.base_url("10.2.0.1:5000"), "https://10.2.0.1:5000/v2");
        assert_eq!(c.base_url("[fd00::2]:5000"), "http://[fd00::2]:5000/v2");
        assert_eq!(c.base_url("[fe80::1]:5000"), "https://[fe80::1]:5000/v2");
        // A name is not matched by a range, nor by a longer name.
        assert_eq!(
            c.base_url("reg.lan.evil:5000"),
            "https://reg.lan.evil:5000/v2"
        );
        assert_eq!(c.base_url("vm:5000"), "https://vm:5000/v2");
        assert_eq!(c.base_url("localhost"), "http://localhost/v2");
        assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000/v2");
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000/v2");
        assert_eq!(c.base_url("reg.lan:6000"), "https://reg.lan:6000/v2");
        assert_eq!(c.base_url("other.lan:1234"), "http://other.lan:1234/v2");
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io/v2");
        assert_eq!(c.base_url("ghcr.io"), "https://ghcr.io/v2");
    }

    #[test]
    fn insecure_registries_from_the_flag_or_env_lose_a_scheme_like_config_entries() {
        // Regression: only config-file entries were normalised, so
        // `--insecure-registry http://reg.lan:5000/` never matched.
        let c = Client::new(ClientOptions {
            insecure_registries: vec!["http://reg.lan:5000/".into(), "HTTPS://b.lan".into()],
            ..ClientOptions::default()
        });
        assert!(c.is_insecure("reg.lan:5000"));
        assert!(c.is_insecure("b.lan:443"));
        assert!(!c.is_insecure("reg.lan:6000"));
    }

    #[test]
    fn cidr_ranges_match_only_addresses_of_their_family_and_prefix() {
        let v4 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(cidr_contains("0.0.0.0/0", v4("203.0.113.9")));
        assert!(cidr_contains("192.0.2.2/32", v4("192.0.2.2")));
        assert!(!cidr_contains("192.0.2.2/32", v4("192.0.2.3")));
        assert!(cidr_contains("192.0.2.0/24", v4("192.0.2.255")));
        assert!(!cidr_contains("192.0.2.0/24", v4("fd00::2")));
        assert!(cidr_contains("::/0", v4("fd00::2")));
        assert!(!cidr_contains("192.0.2.0/33", v4("192.0.2.1")));
        assert!(!cidr_contains("reg.lan", v4("192.0.2.1")));
        assert!(!cidr_contains("192.0.2.0/x", v4("192.0.2.1")));
    }

    #[test]
    fn upload_locations_resolve_against_the_registry() {
        assert_eq!(
            absolute_url("http://127.0.0.1:5000/v2", "/v2/x/blobs/uploads/u?_state=s"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u?_state=s"
        );
        assert_eq!(
            absolute_url("https://r/v2", "https://elsewhere/up"),
            "https://elsewhere/up"
        );
    }

    #[test]
    fn scopes_name_the_repository_and_mount_sources() {
        let repo = Repository {
            registry: "r".into(),
            name: "team/app".into(),
        };
        let base = Repository {
            registry: "r".into(),
            name: "base".into(),
        };
        assert_eq!(
            Client::scopes(&repo, Access::Push, &[&base]),
            ["repository:team/app:pull,push", "repository:base:pull"]
        );
        assert_eq!(
            url_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
