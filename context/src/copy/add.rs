//! ADD's extras: recognising and reading local tar archives (plain, gzip,
//! bzip2, xz, zstd, sniffed by content as Docker does), and downloading
//! URL sources.
//!
//! An archive is decompressed once into a temporary plain tar whose
//! entries are indexed (path, metadata, data offset), so the layer writer
//! can emit them in its own sorted order by seeking.
//!
//! Downloads go to temporary files. `content_digest` needs the content of
//! a URL without a `--checksum`; the download is kept, keyed by URL, for
//! the `write_layer` of the same process, which takes it out again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rbuild_solver::Digest;
use sha2::Digest as _;

use super::CopyError;
use rbuild_store::layer;

/// Whether `file` holds a tar archive, possibly compressed (BuildKit's
/// `isArchivePath`: the first header parses).
pub(crate) fn is_archive(file: File) -> bool {
    let Ok(reader) = layer::decompress(Box::new(file)) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// The kind of an archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberKind {
    Dir,
    /// Data at `offset` in the decompressed tar.
    File {
        offset: u64,
        size: u64,
    },
    Symlink(String),
    /// A hard link to an earlier member (its cleaned components).
    HardLink(Vec<String>),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One archive member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Cleaned path components (never empty, never climbing out).
    pub path: Vec<String>,
    pub kind: MemberKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// A temporary file with no name on disk (`O_TMPFILE`, else unlinked as
/// soon as made): the kernel frees it when its last descriptor closes, so
/// a build killed with SIGKILL leaves no download or decompressed archive
/// in the temp dir. Reached by path through `/proc/self/fd`.
#[derive(Debug)]
pub(crate) struct UnnamedFile {
    file: File,
}

impl UnnamedFile {
    fn new() -> io::Result<UnnamedFile> {
        Ok(UnnamedFile {
            file: tempfile::tempfile()?,
        })
    }

    /// A path that opens this file (in this process) for as long as it
    /// lives.
    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.file)
        ))
    }

    /// A descriptor of its own (its own offset) for reading.
    fn reopen(&self) -> io::Result<File> {
        File::open(self.path())
    }
}

/// A decompressed archive and its members, in archive order.
pub(crate) struct Archive {
    /// The archive's name, for errors.
    pub name: String,
    pub tar: UnnamedFile,
    pub members: Vec<Member>,
}

/// Decompresses and indexes the archive in `file` (named `name` in
/// errors). Whiteout members (`.wh.*`) are skipped: they mean nothing in
/// an archive added to an image.
pub(crate) fn index_archive(file: File, name: &str) -> Result<Archive, CopyError> {
    let err = |source: io::Error| CopyError::Archive {
        archive: name.to_string(),
        source,
    };
    let mut reader = layer::decompress(Box::new(file)).map_err(err)?;
    let mut tar_file = UnnamedFile::new().map_err(err)?;
    io::copy(&mut reader, &mut tar_file.file).map_err(err)?;
    tar_file.file.flush().map_err(err)?;
    let read = tar_file.reopen().map_err(err)?;
    let mut archive = tar::Archive::new(read);
    let mut members = Vec::new();
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let raw = rbuild_oci::path_text::from_bytes(&entry.path_bytes()).into_owned();
        let path = clean_member(&raw).ok_or_else(|| CopyError::UnsafeArchiveEntry {
            archive: name.to_string(),
            entry: raw.clone(),
        })?;
        if path.is_empty() || path.last().is_some_and(|n| n.starts_with(".wh.")) {
            continue;
        }
        let header = entry.header();
        use tar::EntryType as T;
        let rdev = || {
            let major = u64::from(header.device_major().ok().flatten().unwrap_or(0));
            let minor = u64::from(header.device_minor().ok().flatten().unwrap_or(0));
            libc::makedev(major as u32, minor as u32)
        };
        let kind = match header.entry_type() {
            T::Directory => MemberKind::Dir,
            T::Regular | T::Continuous => MemberKind::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            T::Symlink => MemberKind::Symlink(
                entry
                    .link_name_bytes()
                    .map(|b| rbuild_oci::path_text::from_bytes(&b).into_owned())
                    .unwrap_or_default(),
            ),
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| rbuild_oci::path_text::from_bytes(&b).into_owned())
                    .unwrap_or_default();
                let target =
                    clean_member(&target).ok_or_else(|| CopyError::UnsafeArchiveEntry {
                        archive: name.to_string(),
                        entry: raw.clone(),
                    })?;
                MemberKind::HardLink(target)
            }
            T::Char => MemberKind::Char(rdev()),
            T::Block => MemberKind::Block(rdev()),
            T::Fifo => MemberKind::Fifo,
            // pax/GNU metadata entries are folded into the next entry by
            // the tar crate; anything else is not a file.
            _ => continue,
        };
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                else {
                    continue;
                };
                if !name.starts_with("trusted.overlay.") && !name.starts_with("user.overlay.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        xattrs.sort();
        let header = entry.header();
        members.push(Member {
            path,
            kind,
            mode: header.mode().map_err(err)? & 0o7777,
            uid: header.uid().map_err(err)? as u32,
            gid: header.gid().map_err(err)? as u32,
            mtime: header.mtime().map_err(err)? as i64,
            xattrs,
        });
    }
    Ok(Archive {
        name: name.to_string(),
        tar: tar_file,
        members,
    })
}

/// An archive path as components; `None` when `..` climbs above the root.
fn clean_member(raw: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_string()),
        }
    }
    Some(out)
}

/// A downloaded URL.
#[derive(Debug)]
pub(crate) struct Download {
    pub file: UnnamedFile,
    pub digest: Digest,
    pub size: u64,
    /// From `Last-Modified`, else 0.
    pub mtime: i64,
}

impl Download {
    pub(crate) fn path(&self) -> PathBuf {
        self.file.path()
    }
}

fn downloads() -> &'static Mutex<HashMap<String, Arc<Download>>> {
    static DOWNLOADS: std::sync::OnceLock<Mutex<HashMap<String, Arc<Download>>>> =
        std::sync::OnceLock::new();
    DOWNLOADS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Downloads `url` (or takes the copy an earlier call kept), verifying
/// `checksum` when given. `keep` leaves it for a later call; otherwise a
/// kept copy is taken out (and deleted once dropped).
pub(crate) fn fetch(
    url: &str,
    checksum: Option<Digest>,
    keep: bool,
) -> Result<Arc<Download>, CopyError> {
    let cached = {
        let mut map = downloads().lock().unwrap_or_else(|e| e.into_inner());
        if keep {
            map.get(url).cloned()
        } else {
            map.remove(url)
        }
    };
    let download = match cached {
        Some(d) => d,
        None => Arc::new(download(url)?),
    };
    if let Some(expected) = checksum {
        if expected != download.digest {
            return Err(CopyError::ChecksumMismatch {
                url: url.to_string(),
                expected,
                actual: download.digest,
            });
        }
    }
    if keep {
        downloads()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_string(), download.clone());
    }
    Ok(download)
}

fn download(url: &str) -> Result<Download, CopyError> {
    let io_err = |source: io::Error| CopyError::DownloadIo {
        url: url.to_string(),
        source,
    };
    let response = ureq::get(url)
        .call()
        .map_err(|source| CopyError::Download {
            url: url.to_string(),
            source: Box::new(source),
        })?;
    let mtime = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(rbuild_oci::time::parse_http_date)
        .unwrap_or(0);
    let mut reader = response.into_body().into_reader();
    let mut file = UnnamedFile::new().map_err(io_err)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        hasher.update(&buf[..n]);
        file.file.write_all(&buf[..n]).map_err(io_err)?;
        size += n as u64;
    }
    file.file.flush().map_err(io_err)?;
    file.file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Ok(Download {
        file,
        digest: Digest::from_bytes(hasher.finalize().into()),
        size,
        mtime,
    })
}

/// The file name ADD gives a download: the last segment of the URL's
/// path, `__unnamed__` when there is none (BuildKit).
pub(crate) fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Reads `size` bytes at `offset` of `file` into `out`; a short file is an
/// error (the tar header already promised `size` bytes).
pub(crate) fn copy_range(
    file: &mut File,
    offset: u64,
    size: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut Read::by_ref(file).take(size), out)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while it was being copied",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_follow_buildkit() {
        assert_eq!(url_file_name("https://x.org/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("http://x.org/"), "__unnamed__");
        assert_eq!(url_file_name("http://x.org"), "__unnamed__");
    }

    #[test]
    fn archive_members_cannot_climb_out() {
        assert_eq!(clean_member("./a/../b").unwrap(), ["b"]);
        assert!(clean_member("../etc/passwd").is_none());
    }
}
