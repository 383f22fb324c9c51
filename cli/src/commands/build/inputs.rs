//! `rbuild build`'s inputs besides a local context directory: `--ssh`
//! and `--build-context` (checked for duplicates, as buildx does), and a
//! context that is not a directory — a git or tarball URL, fetched into a
//! temporary directory, or `-`: a tar of the context on stdin, or a
//! Dockerfile alone (docker's `docker build - < Dockerfile`, which has no
//! context files).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use rbuild_builder::BuildInputs;
use rbuild_builder::spec::inputs::{ContextSource, parse_context_source};

use super::BuildArgs;

/// `--ssh` and `--build-context` of `args`, each id and name once.
pub fn build_inputs(args: &BuildArgs) -> anyhow::Result<BuildInputs> {
    let mut ids = std::collections::BTreeSet::new();
    for s in &args.ssh {
        if !ids.insert(&s.id) {
            bail!("invalid value for --ssh: the id {:?} is given twice", s.id);
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for c in &args.build_contexts {
        if !names.insert(rbuild_solver::plan::context_key(&c.name)) {
            bail!(
                "invalid value for --build-context: the name {:?} is given twice",
                c.name
            );
        }
    }
    Ok(BuildInputs {
        ssh: args.ssh.clone(),
        contexts: args.build_contexts.clone(),
        fetched_context: false,
    })
}

/// A context made into a directory for the build; the directory lives
/// as long as this.
pub struct PreparedContext {
    _temp: tempfile::TempDir,
    /// The Dockerfile when stdin held one rather than a context.
    pub dockerfile: Option<Vec<u8>>,
}

/// When `args.context` is not a local directory, fetches it into a
/// temporary directory and points `args.context` (and a relative `-f`,
/// which names a file in the context, as docker has it) there.
pub fn prepare_context(args: &mut BuildArgs) -> anyhow::Result<Option<PreparedContext>> {
    let text = args.context.to_string_lossy().into_owned();
    let source = if text == "-" {
        None
    } else if text.contains("://") || text.starts_with("git@") {
        Some(parse_context_source(&text)?)
    } else {
        return Ok(None);
    };
    let temp = tempfile::Builder::new()
        .prefix("rbuild-context-")
        .tempdir()
        .context("cannot make a temporary directory for the build context")?;
    let mut dockerfile = None;
    let dir = match source {
        None => {
            if args.file.as_deref() == Some(Path::new("-")) {
                bail!(
                    "the context and the Dockerfile cannot both come from stdin\nhint: pass the context as a directory, or put the Dockerfile in the tar"
                );
            }
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the build context from stdin")?;
            if bytes.is_empty() {
                bail!(
                    "stdin is empty: `-` reads a tar of the build context, or a Dockerfile alone, from stdin\nhint: rbuild build - < context.tar, or rbuild build - < Dockerfile"
                );
            }
            if rbuild_context::remote::is_archive(&bytes) {
                rbuild_context::remote::unpack_tar("<stdin>", Box::new(&bytes[..]), temp.path())?;
            } else {
                dockerfile = Some(bytes);
            }
            temp.path().to_path_buf()
        }
        Some(ContextSource::Image(_) | ContextSource::OciLayout { .. }) => {
            bail!("unable to prepare context: {text:?} is an image, not a build context");
        }
        Some(source) => {
            let ssh = rbuild_builder::inputs::agents(&args.ssh, &|k| std::env::var(k).ok())?;
            let secrets = args.secrets.clone();
            let secret = move |id: &str| {
                secrets
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(|s| s.read().ok())
            };
            rbuild_builder::inputs::fetch_context(&source, temp.path(), &ssh.sockets, &secret)
                .with_context(|| format!("unable to prepare context {text}"))?
        }
    };
    if let Some(f) = &args.file
        && f.is_relative()
        && f.as_os_str() != "-"
    {
        args.file = Some(dir.join(f));
    }
    args.context = dir;
    Ok(Some(PreparedContext {
        _temp: temp,
        dockerfile,
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BuildArgs,
    }

    fn parse(argv: &[&str]) -> Result<BuildArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("build").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn ssh_and_build_context_flags_as_buildx() {
        let args = parse(&[
            "--ssh",
            "default",
            "--ssh",
            "gh=/run/agent.sock",
            "--build-context",
            "lib=../lib",
            "--build-context",
            "alpine=docker-image://busybox",
            ".",
        ])
        .unwrap();
        let inputs = build_inputs(&args).unwrap();
        assert_eq!(inputs.ssh.len(), 2);
        assert_eq!(inputs.contexts.len(), 2);
        assert!(!inputs.fetched_context);
    }

    #[test]
    fn a_repeated_id_or_name_is_refused() {
        let e = build_inputs(&parse(&["--ssh", "a", "--ssh", "a=/x", "."]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("--ssh"), "{e}");
        // Names compare as BuildKit compares them.
        let e = build_inputs(
            &parse(&[
                "--build-context",
                "alpine=/a",
                "--build-context",
                "docker.io/library/alpine:latest=/b",
                ".",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--build-context"), "{e}");
        let e = parse(&["--build-context", "novalue", "."])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--build-context") && e.contains("NAME=VALUE"),
            "{e}"
        );
    }
}
