//! `rbuild import FILE|DIR|- [REF]`: a root filesystem (tar, plain or gzip,
//! or a directory) becomes a one-layer image, like `docker import`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};
use rbuild_oci::reference::ImageRef;
use rbuild_store::LayerInfo;
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::layout::MEDIA_TYPE_LAYER_TAR;

use super::timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A tar archive (plain or gzip), a directory, or `-` for a tar on stdin
    pub source: String,
    /// Name and tag for the new image, e.g. busybox:latest
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message for the imported layer's history
    #[arg(short = 'm', long)]
    pub message: Option<String>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let tag = args
        .reference
        .as_deref()
        .map(ImageRef::parse)
        .transpose()
        .with_context(|| "bad image name for import".to_string())?;
    let mut config = ConfigBuilder::default()
        .build()
        .expect("empty config builds");
    for change in &args.changes {
        apply_change(&mut config, change)?;
    }

    let store = crate::root::open_store(root)?;
    let _session = store.write_session()?;
    let mut blob = store.blob_writer(None)?;
    let source = args.source.as_str();
    let path = PathBuf::from(source);
    if source != "-" && path.is_dir() {
        layer::pack_dir(&path, &mut blob, &PackOptions::default())
            .with_context(|| format!("cannot pack directory {source}"))?;
    } else {
        let input: Box<dyn Read> = if source == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(&path).with_context(|| format!("cannot open {source}"))?)
        };
        let input = decompressed(input).with_context(|| format!("cannot read {source}"))?;
        copy_checked_tar(input, &mut blob)
            .with_context(|| format!("cannot import {source}: not a valid tar archive"))?;
    }
    blob.flush().context("cannot write layer")?;
    let (digest, size) = blob.commit()?;
    let layer = LayerInfo {
        digest,
        diff_id: digest,
        size,
        media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
    };

    let (secs, nanos) = timestamp::now();
    let created = timestamp::format_rfc3339(secs, nanos);
    let history = HistoryBuilder::default()
        .created(created.clone())
        .created_by(String::new())
        .comment(
            args.message
                .clone()
                .unwrap_or_else(|| format!("Imported from {source}")),
        )
        .build()
        .expect("history builds");
    let image_config: ImageConfiguration = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(host_arch())
        .os(Os::Linux)
        .config(config)
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
    let tags: Vec<ImageRef> = tag.into_iter().collect();
    let id = store.write_image(&image_config, &[layer], &tags)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Copies a tar stream to `out` unchanged while parsing it, in one pass:
/// a file that is not a tar archive is refused instead of becoming a layer.
fn copy_checked_tar(input: Box<dyn Read + '_>, out: &mut dyn Write) -> io::Result<()> {
    struct Tee<'a, R> {
        inner: R,
        out: &'a mut dyn Write,
    }
    impl<R: Read> Read for Tee<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.out.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    let mut tee = Tee { inner: input, out };
    let mut entries = 0u64;
    {
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries()? {
            let mut entry = entry?;
            io::copy(&mut entry, &mut io::sink())?;
            entries += 1;
        }
    }
    if entries == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no entries"));
    }
    // The end-of-archive blocks and any padding belong to the layer too.
    io::copy(&mut tee, &mut io::sink())?;
    Ok(())
}

/// Wraps `input` in a gzip decoder when it starts with the gzip magic.
pub fn decompressed<'a>(input: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 20, input);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// The OCI architecture name of this machine.
pub fn host_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "arm" => Arch::ARM,
        "x86" => Arch::i386,
        "riscv64" => Arch::RISCV64,
        "powerpc64" => Arch::PowerPC64le,
        "s390x" => Arch::s390x,
        other => Arch::Other(other.to_string()),
    }
}

/// Applies one `--change` instruction the way `docker import` does.
fn apply_change(config: &mut oci_spec::image::Config, change: &str) -> anyhow::Result<()> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .map(|(k, r)| (k, r.trim()))
        .unwrap_or((change, ""));
    let bad = |why: &str| {
        anyhow::anyhow!(
            "invalid --change {change:?}: {why}\nhint: use a Dockerfile instruction such as 'CMD [\"sh\"]' or 'ENV KEY=value'"
        )
    };
    if rest.is_empty() {
        return Err(bad("missing arguments"));
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
            for (k, v) in key_values(rest).map_err(|e| bad(&e))? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels = config.labels().clone().unwrap_or_default();
            for (k, v) in key_values(rest).map_err(|e| bad(&e))? {
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
                    return Err(bad(&format!("invalid port {p:?}")));
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
        other => bail!(
            "invalid --change {change:?}: {other} is not supported by import\nhint: supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR"
        ),
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
fn key_values(rest: &str) -> Result<Vec<(String, String)>, String> {
    let words = shell_words(rest)?;
    if !words.is_empty() && !words[0].contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or("missing value")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{w:?} is not KEY=value"))
        })
        .collect()
}

/// Splits on whitespace, honouring double and single quotes and `\`.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
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
                        None => return Err("unterminated quote".into()),
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
