//! The auth handshake: a request goes out with what the registry's last
//! challenge asked for (nothing before the first); on `401` the
//! `WWW-Authenticate` challenge is parsed and remembered, Basic credentials
//! or a bearer token for the request's scopes obtained, and the request
//! sent again. Tokens are cached per registry and scope until they expire,
//! credentials per registry; parallel requests needing the same token or
//! credentials wait for one fetch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::Response;

use crate::client::{error_detail, header, read_limited, status_error};
use crate::{
    Client, Credentials, DockerConfig, MAX_MANIFEST_SIZE, RegistryError, Repository, RequestBody,
};

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
pub(crate) struct AuthState {
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

impl Client {
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
            RequestBody::Stream(..) | RequestBody::Chunked(..) => None,
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
