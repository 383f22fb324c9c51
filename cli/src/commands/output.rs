//! Where `save`/`export` write: stdout, or a file that only appears (by
//! rename) once complete, so a killed rbuild never leaves a truncated
//! archive under the requested name; a device or fifo (`/dev/null`,
//! `-o >(gzip > x.tgz)`) is written in place, since renaming onto it would
//! replace it with a regular file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A destination that becomes visible on [`Output::finish`].
pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    /// A destination that is not a regular file, written in place.
    Special(BufWriter<File>),
    File {
        tmp: PathBuf,
        dest: PathBuf,
        file: Option<BufWriter<File>>,
    },
}

impl Output {
    /// `None` or `-` is stdout, refused when stdout is a terminal.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        match path {
            None => {
                use std::io::IsTerminal;
                if io::stdout().is_terminal() {
                    anyhow::bail!(
                        "refusing to write an archive to a terminal\nhint: use -o FILE or redirect stdout"
                    );
                }
                Ok(Output::Stdout(BufWriter::with_capacity(
                    1 << 20,
                    io::stdout(),
                )))
            }
            Some(p) if p == Path::new("-") => Output::open(None),
            Some(dest) if fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir()) => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .with_context(|| format!("cannot open {}", dest.display()))?;
                Ok(Output::Special(BufWriter::with_capacity(1 << 20, file)))
            }
            Some(dest) => {
                let name = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tmp = dest.with_file_name(format!(".{name}.rbuild-tmp-{}", std::process::id()));
                let file = File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                Ok(Output::File {
                    tmp,
                    dest: dest.to_path_buf(),
                    file: Some(BufWriter::with_capacity(1 << 20, file)),
                })
            }
        }
    }

    /// Flushes, fsyncs and renames into place.
    pub fn finish(mut self) -> anyhow::Result<()> {
        match &mut self {
            Output::Stdout(w) => Ok(w.flush()?),
            Output::Special(w) => Ok(w.flush()?),
            Output::File { tmp, dest, file } => {
                let file = file
                    .take()
                    .expect("finish runs once")
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                file.sync_all()
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                fs::rename(&*tmp, &*dest).with_context(|| {
                    format!("cannot rename {} to {}", tmp.display(), dest.display())
                })?;
                Ok(())
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File { tmp, .. } = self {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::Special(w) => w.write(buf),
            Output::File { file, .. } => file.as_mut().expect("not finished").write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Special(w) => w.flush(),
            Output::File { file, .. } => file.as_mut().expect("not finished").flush(),
        }
    }
}
