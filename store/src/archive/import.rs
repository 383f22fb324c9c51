//! [`import`]: a root filesystem (a tar, plain or gzip'd, or a directory)
//! → a one-layer image, like `docker import`; [`config_from_changes`]: its
//! `--change` instructions → the image's config.

use std::io::{self, Read, Write};
use std::path::Path;

use oci_spec::image::{
    Config, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};
use rbuild_oci::Digest;
use rbuild_oci::reference::ImageRef;

use super::{ArchiveError, decompressed, host_arch};
use crate::layer::{self, PackOptions};
use crate::layout::MEDIA_TYPE_LAYER_TAR;
use crate::{LayerInfo, Store};

/// The root filesystem [`import`] makes a layer of.
pub enum RootFs<'a> {
    /// A directory, packed as a build packs a layer.
    Dir(&'a Path),
    /// A tar stream, plain or gzip'd: the uncompressed tar is the layer,
    /// byte for byte, once it has been read through as a valid tar.
    Tar(Box<dyn Read + 'a>),
}

/// How [`import`] describes the new image.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The config's `config` (see [`config_from_changes`]).
    pub config: Config,
    /// The image's and its history entry's `created` time, RFC 3339.
    pub created: String,
    /// The history entry's comment; `None`: `Imported from NAME`.
    pub comment: Option<String>,
    /// Names to point at the new image.
    pub tags: Vec<ImageRef>,
    /// The image's platform (`import --platform`); `None`: this machine's.
    pub platform: Option<rbuild_oci::Platform>,
}

/// Stores `rootfs` (named `name` in errors and the default comment) as
/// the single layer of a new image for this machine's architecture and
/// returns its ID.
pub fn import(
    store: &Store,
    name: &str,
    rootfs: RootFs<'_>,
    options: &ImportOptions,
) -> Result<Digest, ArchiveError> {
    let _session = store.write_session()?;
    let mut blob = store.blob_writer(None)?;
    match rootfs {
        RootFs::Dir(dir) => {
            layer::pack_dir(dir, &mut blob, &PackOptions::default()).map_err(|source| {
                ArchiveError::PackDir {
                    name: name.to_string(),
                    source,
                }
            })?;
        }
        RootFs::Tar(input) => {
            let input = decompressed(input).map_err(|source| ArchiveError::Read {
                name: name.to_string(),
                source,
            })?;
            copy_checked_tar(input, &mut blob, name, store.tmp_dir())?;
        }
    }
    blob.flush()
        .map_err(|source| ArchiveError::WriteLayer { source })?;
    let (digest, size) = blob.commit()?;
    let layer = LayerInfo {
        digest,
        diff_id: digest,
        size,
        media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
    };

    let history = HistoryBuilder::default()
        .created(options.created.clone())
        .created_by(String::new())
        .comment(
            options
                .comment
                .clone()
                .unwrap_or_else(|| format!("Imported from {name}")),
        )
        .build()
        .expect("history builds");
    let arch = match &options.platform {
        Some(p) => oci_spec::image::Arch::from(p.architecture.as_str()),
        None => host_arch(),
    };
    let mut builder = ImageConfigurationBuilder::default();
    if let Some(v) = options.platform.as_ref().and_then(|p| p.variant.clone()) {
        builder = builder.variant(v);
    }
    let image_config: ImageConfiguration = builder
        .created(options.created.clone())
        .architecture(arch)
        .os(Os::Linux)
        .config(options.config.clone())
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![digest.to_string()])
                .build()
                .expect("rootfs builds"),
        )
        .history(vec![history])
        .build()
        .expect("config builds");
    // Built with oci-spec's builders (the `--change` editor works on its
    // `Config`), stored byte for byte as it serializes.
    let bytes = crate::layout::canonical_json(&image_config);
    Ok(store.write_image_raw(&bytes, &[layer], &options.tags)?.id)
}

/// Copies a tar stream to `out` unchanged while reading it once through
/// the unpacker's checks ([`layer::validate`]): a file that is not a tar,
/// or a tar that could never be unpacked (`../` entries, writes through
/// symlinks, a cut-short body), is refused instead of becoming a layer.
fn copy_checked_tar(
    input: Box<dyn Read + '_>,
    out: &mut dyn Write,
    name: &str,
    tmp: &Path,
) -> Result<(), ArchiveError> {
    struct Tee<'a, R> {
        inner: R,
        out: &'a mut dyn Write,
        /// A failed write (the disk, not the archive), kept apart.
        write_error: Option<io::Error>,
    }
    impl<R: Read> Read for Tee<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            if let Err(e) = self.out.write_all(&buf[..n]) {
                let kind = e.kind();
                self.write_error = Some(e);
                return Err(io::Error::new(kind, "writing the layer failed"));
            }
            Ok(n)
        }
    }
    let mut tee = Tee {
        inner: input,
        out,
        write_error: None,
    };
    let result = layer::validate(&mut tee, true);
    if let Some(e) = tee.write_error {
        return Err(crate::StoreError::io(tmp)(e).into());
    }
    match result {
        Ok(stats) if stats.entries > 0 => Ok(()),
        Ok(_) => Err(ArchiveError::ImportNotTar {
            name: name.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidData, "no entries"),
        }),
        Err(layer::LayerError::Malformed { after, source, .. })
            if after == "<start of archive>" =>
        {
            Err(ArchiveError::ImportNotTar {
                name: name.to_string(),
                source,
            })
        }
        Err(source) => Err(ArchiveError::ImportRefused {
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

/// What is wrong with a `--change` instruction [`import`] supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadChange {
    #[error("missing arguments")]
    MissingArguments,
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// The legacy `KEY value` form without a value.
    #[error("missing value")]
    MissingValue,
    #[error("{0:?} is not KEY=value")]
    NotKeyValue(String),
    #[error("invalid port {0:?}")]
    InvalidPort(String),
}

/// An empty config with `changes` (Dockerfile instructions: CMD,
/// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)
/// applied in order, the way `docker import --change` applies them.
pub fn config_from_changes(changes: &[String]) -> Result<Config, ArchiveError> {
    let mut config = ConfigBuilder::default()
        .build()
        .expect("empty config builds");
    for change in changes {
        apply_change(&mut config, change)?;
    }
    Ok(config)
}

/// Applies one `--change` instruction the way `docker import` does.
fn apply_change(config: &mut Config, change: &str) -> Result<(), ArchiveError> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .map(|(k, r)| (k, r.trim()))
        .unwrap_or((change, ""));
    let bad = |problem: BadChange| ArchiveError::InvalidChange {
        change: change.to_string(),
        problem,
    };
    if rest.is_empty() {
        return Err(bad(BadChange::MissingArguments));
    }
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.set_cmd(Some(command_form(rest)));
        }
        "ENTRYPOINT" => {
            config.set_entrypoint(Some(command_form(rest)));
        }
        "ENV" => {
            let mut env = config.env().clone().unwrap_or_default();
            for (k, v) in key_values(rest).map_err(bad)? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels = config.labels().clone().unwrap_or_default();
            for (k, v) in key_values(rest).map_err(bad)? {
                labels.insert(k, v);
            }
            config.set_labels(Some(labels));
        }
        "EXPOSE" => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                let (num, proto) = p.split_once('/').expect("has a slash");
                if num.split('-').any(|n| n.parse::<u16>().is_err())
                    || !matches!(proto, "tcp" | "udp" | "sctp")
                {
                    return Err(bad(BadChange::InvalidPort(p)));
                }
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            config.set_exposed_ports(Some(ports));
        }
        "VOLUME" => {
            let mut vols = config.volumes().clone().unwrap_or_default();
            let list: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => rest.split_whitespace().map(str::to_string).collect(),
            };
            for v in list {
                if !vols.contains(&v) {
                    vols.push(v);
                }
            }
            config.set_volumes(Some(vols));
        }
        "USER" => {
            config.set_user(Some(rest.to_string()));
        }
        "WORKDIR" => {
            config.set_working_dir(Some(rest.to_string()));
        }
        "STOPSIGNAL" => {
            config.set_stop_signal(Some(rest.to_string()));
        }
        other => {
            return Err(ArchiveError::UnsupportedChange {
                change: change.to_string(),
                keyword: other.to_string(),
            });
        }
    };
    Ok(())
}

/// JSON (exec) form as is; shell form wrapped in `/bin/sh -c`.
fn command_form(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
    }
}

/// `k=v k2="v 2"` or the legacy `k v` form.
fn key_values(rest: &str) -> Result<Vec<(String, String)>, BadChange> {
    let words = shell_words(rest)?;
    if !words.is_empty() && !words[0].contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or(BadChange::MissingValue)?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(BadChange::NotKeyValue(w)),
        })
        .collect()
}

/// Splits on whitespace, honouring double and single quotes and `\`.
fn shell_words(s: &str) -> Result<Vec<String>, BadChange> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.extend(chars.next()),
                        Some(o) => cur.push(o),
                        None => return Err(BadChange::UnterminatedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_docker_import() {
        let mut c = ConfigBuilder::default().build().unwrap();
        for ch in [
            r#"CMD ["sh"]"#,
            "ENTRYPOINT echo hi",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "WORKDIR /x",
            "USER nobody",
            "EXPOSE 80 53/udp",
            "LABEL k=v",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        assert_eq!(c.cmd().clone().unwrap(), vec!["sh"]);
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(c.env().clone().unwrap(), vec!["B=two words", "A=3"]);
        assert_eq!(c.working_dir().as_deref(), Some("/x"));
        assert_eq!(c.user().as_deref(), Some("nobody"));
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp", "53/udp"]);
        assert_eq!(c.labels().clone().unwrap()["k"], "v");
        assert!(apply_change(&mut c, "RUN x").is_err());
        assert!(apply_change(&mut c, "EXPOSE http").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
    }
}
