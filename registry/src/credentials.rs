//! Registry credentials in Docker's config format: `$DOCKER_CONFIG/config.json`
//! (or `~/.docker/config.json`) with `auths` (base64 `user:password`),
//! `credsStore` (one helper for every registry) and `credHelpers` (a helper
//! per registry), helpers being `docker-credential-<name>` programs speaking
//! JSON on stdin/stdout. Reading and writing keep every other field of the
//! file as it is, since Docker and other tools share it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::RegistryError;

/// The key Docker uses in `auths` for Docker Hub.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the secret, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", BASE64.encode(raw))
    }
}

/// Docker's client config file, read once; `None` fields when absent.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// Where Docker keeps its config: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("config.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".docker").join("config.json")
    }

    /// Reads the config at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfig, RegistryError> {
        let doc = match fs_err::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| RegistryError::ConfigJson {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => return Err(RegistryError::Io { source }),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The file this config was read from (and is saved to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper for `registry`: its `credHelpers` entry, else
    /// `credsStore`.
    fn helper(&self, registry: &str) -> Option<String> {
        let key = auth_key(registry);
        let per_registry = self
            .doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| normalize_key(k) == normalize_key(&key))
                    .and_then(|(_, v)| v.as_str())
            });
        per_registry
            .or_else(|| self.doc.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// The credentials stored for `registry` (a reference domain such as
    /// `docker.io` or `127.0.0.1:5000`), from its helper or `auths`.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(helper) = self.helper(registry) {
            return helper_get(&helper, &auth_key(registry));
        }
        let key = normalize_key(&auth_key(registry));
        let Some(auths) = self.doc.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        for (k, v) in auths {
            if normalize_key(k) != key {
                continue;
            }
            if let Some(encoded) = v.get("auth").and_then(Value::as_str)
                && !encoded.is_empty()
            {
                let bad = || RegistryError::BadAuthEntry {
                    path: self.path.clone(),
                    registry: k.clone(),
                };
                let raw = BASE64.decode(encoded.trim()).map_err(|_| bad())?;
                let raw = String::from_utf8(raw).map_err(|_| bad())?;
                let (user, pass) = raw.split_once(':').ok_or_else(bad)?;
                return Ok(Some(Credentials {
                    username: user.to_string(),
                    password: pass.to_string(),
                }));
            }
            // Older files keep the two apart.
            if let (Some(u), Some(p)) = (
                v.get("username").and_then(Value::as_str),
                v.get("password").and_then(Value::as_str),
            ) {
                return Ok(Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
        }
        Ok(None)
    }

    /// Stores `creds` for `registry`: through the credential helper when one
    /// is configured (then `auths` gets an empty entry, as Docker writes),
    /// else base64 in `auths`. Saves the file atomically, mode 0600.
    pub fn store(&mut self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let key = auth_key(registry);
        let entry = match self.helper(registry) {
            Some(helper) => {
                helper_store(&helper, &key, creds)?;
                Value::Object(Map::new())
            }
            None => {
                let raw = format!("{}:{}", creds.username, creds.password);
                serde_json::json!({ "auth": BASE64.encode(raw) })
            }
        };
        self.remove_auth_entries(&key);
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths
            .as_object_mut()
            .expect("made an object above")
            .insert(key, entry);
        self.save()
    }

    /// Forgets the credentials of `registry` (helper `erase` and `auths`).
    /// Returns false when there were none.
    pub fn erase(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let key = auth_key(registry);
        let mut found = false;
        if let Some(helper) = self.helper(registry) {
            found |= helper_erase(&helper, &key)?;
        }
        found |= self.remove_auth_entries(&key);
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn remove_auth_entries(&mut self, key: &str) -> bool {
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != normalize_key(key));
        auths.len() != before
    }

    fn save(&self) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).map_err(|source| RegistryError::Io { source })?;
        let mut bytes = serde_json::to_vec_pretty(&self.doc).expect("a JSON map serializes");
        bytes.push(b'\n');
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let result = (|| {
            use fs_err::os::unix::fs::OpenOptionsExt as _;
            let mut f = fs_err::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs_err::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|source| RegistryError::Io { source })
    }
}

/// The `auths`/helper key Docker uses for a registry domain.
pub fn auth_key(registry: &str) -> String {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host:port/path` → `host:port`, so keys written with or
/// without a scheme (Docker accepts both) match.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>), RegistryError> {
    let program = format!("docker-credential-{helper}");
    let failed = |source| RegistryError::Helper {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    // Dropping stdin after the write closes it, which the helper waits for.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .map_err(failed)?;
    let out = child.wait_with_output().map_err(failed)?;
    if out.status.success() {
        return Ok((true, out.stdout));
    }
    let message = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .to_string();
    // The helpers' protocol: this exact text means "no credentials".
    if message.contains("credentials not found") {
        return Ok((false, Vec::new()));
    }
    Err(RegistryError::HelperFailed {
        program,
        action: action.to_string(),
        message,
    })
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let (found, out) = run_helper(helper, "get", server.as_bytes())?;
    if !found {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out).map_err(|_| RegistryError::HelperFailed {
        program: format!("docker-credential-{helper}"),
        action: "get".to_string(),
        message: "its output is not the expected JSON".to_string(),
    })?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (username, password) = (field("Username"), field("Secret"));
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

fn helper_store(helper: &str, server: &str, creds: &Credentials) -> Result<(), RegistryError> {
    let input = serde_json::json!({
        "ServerURL": server,
        "Username": creds.username,
        "Secret": creds.password,
    });
    run_helper(helper, "store", input.to_string().as_bytes()).map(|_| ())
}

fn helper_erase(helper: &str, server: &str) -> Result<bool, RegistryError> {
    run_helper(helper, "erase", server.as_bytes()).map(|(found, _)| found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entries_match_with_or_without_scheme_and_docker_hub_uses_its_legacy_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let enc = |s: &str| BASE64.encode(s);
        std::fs::write(
            &path,
            serde_json::json!({
                "auths": {
                    "https://index.docker.io/v1/": {"auth": enc("hub:secret")},
                    "http://reg.example:5000": {"auth": enc("u:p:with:colons")},
                },
                "other": {"kept": true},
            })
            .to_string(),
        )
        .unwrap();
        let config = DockerConfig::load(&path).unwrap();
        let hub = config.credentials("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let r = config.credentials("reg.example:5000").unwrap().unwrap();
        assert_eq!(r.password, "p:with:colons");
        assert!(config.credentials("reg.example").unwrap().is_none());
    }

    #[test]
    fn store_and_erase_keep_other_fields_and_write_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"psFormat":"table"}"#).unwrap();
        let mut config = DockerConfig::load(&path).unwrap();
        let creds = Credentials {
            username: "alice".into(),
            password: "pw".into(),
        };
        config.store("127.0.0.1:5000", &creds).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"), "{text}");
        assert!(text.contains(&BASE64.encode("alice:pw")), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let reread = DockerConfig::load(&path).unwrap();
        assert_eq!(reread.credentials("127.0.0.1:5000").unwrap(), Some(creds));
        let mut config = reread;
        assert!(config.erase("127.0.0.1:5000").unwrap());
        assert!(!config.erase("127.0.0.1:5000").unwrap());
        let reread = DockerConfig::load(&path).unwrap();
        assert!(reread.credentials("127.0.0.1:5000").unwrap().is_none());
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers":{"reg.example":"nope-rbuild-test"}}"#,
        )
        .unwrap();
        let config = DockerConfig::load(&path).unwrap();
        let err = config.credentials("reg.example").unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-nope-rbuild-test"),
            "{err}"
        );
        // Other registries do not use that helper.
        assert!(config.credentials("other.example").unwrap().is_none());
    }
}
