//! Where the store lives: `--root`, else `RBUILD_ROOT`, else
//! `/var/lib/rbuild` when running as root, else `$XDG_DATA_HOME/rbuild` or
//! `~/.local/share/rbuild`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rbuild_registry::config::user_base_dir;

/// Resolves the store root from the flag and the environment.
pub fn store_root(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    resolve(
        flag,
        rbuild_registry::config::process_env,
        // SAFETY-free: geteuid has no preconditions.
        nix::unistd::geteuid().is_root(),
    )
}

fn resolve(
    flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    is_root: bool,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = env("RBUILD_ROOT") {
        return Ok(PathBuf::from(p));
    }
    if is_root {
        return Ok(PathBuf::from("/var/lib/rbuild"));
    }
    let Some(data) = user_base_dir(env, "XDG_DATA_HOME", ".local/share") else {
        bail!(
            "cannot choose a store root: HOME is not set\nhint: pass --root DIR or set RBUILD_ROOT"
        );
    };
    Ok(data.join("rbuild"))
}

/// Opens the store at the resolved root, naming it in errors.
pub fn open_store(root: &std::path::Path) -> anyhow::Result<rbuild_store::Store> {
    rbuild_store::Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))
}

/// [`open_store`] for commands that wait for builds (prunes, `system
/// check`) or that builds wait for (loads, pulls): a wait for another
/// process is said on stderr, with who holds the store and, once over,
/// for how long.
pub fn open_store_saying_waits(root: &std::path::Path) -> anyhow::Result<rbuild_store::Store> {
    let store = open_store(root)?;
    store.on_wait(|w| {
        let who = if w.holders.is_empty() {
            "another rbuild process".to_string()
        } else {
            w.holders
                .iter()
                .map(|(pid, cmd)| format!("pid {pid} ({cmd})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match w.waited {
            None => eprintln!("waiting for {}: held by {who}", w.what),
            Some(d) => eprintln!("waited {:.1}s for {}", d.as_secs_f64(), w.what),
        }
    });
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_env_then_defaults() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = env(&[
            ("RBUILD_ROOT", "/env"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            resolve(Some("/flag".into()), all, true).unwrap(),
            PathBuf::from("/flag")
        );
        assert_eq!(resolve(None, all, true).unwrap(), PathBuf::from("/env"));
        let no_rbuild = env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve(None, no_rbuild, true).unwrap(),
            PathBuf::from("/var/lib/rbuild")
        );
        assert_eq!(
            resolve(None, no_rbuild, false).unwrap(),
            PathBuf::from("/xdg/rbuild")
        );
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(
            resolve(None, home, false).unwrap(),
            PathBuf::from("/home/u/.local/share/rbuild")
        );
        assert!(resolve(None, env(&[]), false).is_err());
    }
}
