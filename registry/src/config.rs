//! rbuild's own config file: `config.json`, in the store root (per store,
//! as docker's `daemon.json` is per daemon) and in the user's config
//! directory (`$XDG_CONFIG_HOME/rbuild/config.json`, else
//! `~/.config/rbuild/config.json`), so a user's settings also apply to a
//! store picked with `--root`. Both are read; list values are merged.
//!
//! Today it holds registry settings only, with docker's `daemon.json` key
//! names so a line can be copied over:
//!
//! ```json
//! { "insecure-registries": ["registry.lan:5000", "10.0.0.7"] }
//! ```
//!
//! Unknown keys are errors (as in docker): a misspelt key silently
//! ignored would look like a setting that does not work.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::RegistryError;

/// The file name of rbuild's config file, in the store root and in the
/// user's config directory.
pub const CONFIG_FILE_NAME: &str = "config.json";

/// One config file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Registries (`HOST[:PORT]`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "insecure-registries")]
    insecure_registries: Vec<String>,
}

impl ConfigFile {
    /// Reads `path`; `Ok(None)` when there is no such file. A file that
    /// is not valid JSON, or has keys rbuild does not know, is an error
    /// naming the file, line and column.
    pub fn load(path: &Path) -> Result<Option<ConfigFile>, RegistryError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::ConfigRead {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let raw: RawConfig =
            serde_json::from_slice(&text).map_err(|source| RegistryError::ConfigFile {
                path: path.to_path_buf(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
        Ok(Some(ConfigFile {
            path: path.to_path_buf(),
            insecure_registries: raw
                .insecure_registries
                .into_iter()
                .map(|h| normalize_host(&h))
                .filter(|h| !h.is_empty())
                .collect(),
        }))
    }

    /// Where rbuild looks for config files for the store at `root`, in
    /// order: the store's, then the user's.
    pub fn locations(root: &Path) -> Vec<PathBuf> {
        locations_from(root, process_env)
    }

    /// Reads every config file of [`ConfigFile::locations`] that exists.
    pub fn load_all(root: &Path) -> Result<Vec<ConfigFile>, RegistryError> {
        let mut out = Vec::new();
        for path in ConfigFile::locations(root) {
            out.extend(ConfigFile::load(&path)?);
        }
        Ok(out)
    }
}

/// `http://reg.lan:5000/` → `reg.lan:5000`: docker drops a scheme in
/// `insecure-registries` (with a warning) rather than never matching.
pub(crate) fn normalize_host(entry: &str) -> String {
    let e = entry.trim();
    let lower = e.to_ascii_lowercase();
    let e = if lower.starts_with("http://") {
        &e[7..]
    } else if lower.starts_with("https://") {
        &e[8..]
    } else {
        e
    };
    e.trim_end_matches('/').to_string()
}

/// An environment variable of this process, `None` when unset or empty:
/// the XDG base directory spec treats an empty `$XDG_…_HOME` as unset, and
/// an empty `$HOME` names no directory.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A per-user base directory as the XDG base directory spec resolves it:
/// `$xdg_var` when set, else `home_default` under `$HOME` (e.g.
/// `XDG_CONFIG_HOME`, `.config`); `None` when neither is set. `env` reads
/// a variable (see [`process_env`]), so tests pass a fake environment.
///
/// Shared by rbuild's config file lookup (`$XDG_CONFIG_HOME/rbuild`) and
/// the CLI's default store root (`$XDG_DATA_HOME/rbuild`), so both agree
/// on which variables count.
pub fn user_base_dir(
    env: impl Fn(&str) -> Option<OsString>,
    xdg_var: &str,
    home_default: &str,
) -> Option<PathBuf> {
    env(xdg_var)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(home_default)))
}

fn locations_from(root: &Path, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut out = vec![root.join(CONFIG_FILE_NAME)];
    if let Some(dir) = user_base_dir(env, "XDG_CONFIG_HOME", ".config") {
        let user = dir.join("rbuild").join(CONFIG_FILE_NAME);
        if !out.contains(&user) {
            out.push(user);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_root_first_then_the_users_config_dir() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            locations_from(
                Path::new("/r"),
                env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])
            ),
            [
                PathBuf::from("/r/config.json"),
                PathBuf::from("/x/rbuild/config.json")
            ]
        );
        assert_eq!(
            locations_from(Path::new("/r"), env(&[("HOME", "/h")])),
            [
                PathBuf::from("/r/config.json"),
                PathBuf::from("/h/.config/rbuild/config.json")
            ]
        );
        assert_eq!(
            locations_from(Path::new("/r"), env(&[])),
            [PathBuf::from("/r/config.json")]
        );
    }

    #[test]
    fn reads_docker_daemon_json_key_and_names_file_line_column_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(ConfigFile::load(&path).unwrap(), None);

        std::fs::write(
            &path,
            r#"{ "insecure-registries": ["reg.lan:5000", " 10.0.0.7 ", "", "http://a.lan:80/", "HTTPS://b.lan"] }"#,
        )
        .unwrap();
        let c = ConfigFile::load(&path).unwrap().unwrap();
        assert_eq!(
            c.insecure_registries,
            ["reg.lan:5000", "10.0.0.7", "a.lan:80", "b.lan"]
        );

        std::fs::write(&path, "{}").unwrap();
        assert!(
            ConfigFile::load(&path)
                .unwrap()
                .unwrap()
                .insecure_registries
                .is_empty()
        );

        std::fs::write(&path, "{\n  \"insecure-registries\": [\"a\",]\n}\n").unwrap();
        let e = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("malformed config file {}:2:", path.display())),
            "{e}"
        );

        // A typo is an error, not a setting that silently does nothing.
        std::fs::write(&path, "{\"insecure-registry\": [\"a\"]}").unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("malformed config file {}:1:", path.display())),
            "{e}"
        );
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(
            source.contains("unknown field `insecure-registry`"),
            "{source}"
        );
    }
}
