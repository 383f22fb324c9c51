//! Finding and reading the Dockerfile a command works on.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A Dockerfile's bytes and the name to show in diagnostics.
pub struct DockerfileInput {
    pub bytes: Vec<u8>,
    /// The path as the user gave it (or `Dockerfile` under the context),
    /// `<stdin>` for `-`.
    pub display_name: String,
    /// Where it was read from; `None` for stdin.
    #[allow(dead_code)] // used by build once it reads `<Dockerfile>.dockerignore`
    pub path: Option<PathBuf>,
}

impl DockerfileInput {
    /// Reads `file` (relative to the current directory, as docker's `-f`),
    /// or `CONTEXT/Dockerfile` when no file is given; `-` reads stdin.
    pub fn read(file: Option<&Path>, context: &Path) -> anyhow::Result<DockerfileInput> {
        if file == Some(Path::new("-")) {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from stdin")?;
            return Ok(DockerfileInput {
                bytes,
                display_name: "<stdin>".into(),
                path: None,
            });
        }
        let path = match file {
            Some(f) => f.to_path_buf(),
            None => context.join("Dockerfile"),
        };
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read Dockerfile {}\nhint: pass its path with -f, or run in the directory that holds it",
                path.display()
            )
        })?;
        // `./Dockerfile` reads better as `Dockerfile`, as docker prints it.
        let display_name = path
            .strip_prefix(".")
            .unwrap_or(&path)
            .display()
            .to_string();
        Ok(DockerfileInput {
            bytes,
            display_name,
            path: Some(path),
        })
    }
}
