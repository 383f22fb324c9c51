//! Contexts that do not start as a directory: a tarball at a URL
//! (`rbuild build https://host/ctx.tar.gz`, `--build-context
//! NAME=https://…`) or a tar on stdin (`rbuild build -`). Each is unpacked
//! into a directory the caller owns (a temporary one), which is then
//! opened as any context ([`crate::Context::open`]), so keys come from
//! content as for a local directory.
//!
//! Archives are read through the store's layer codec: compression is
//! sniffed (gzip, zstd, bzip2, xz, none) and the unpacker is the confined
//! one layers use (no entry lands outside the directory, no device files
//! unless root).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_store::layer::{self, LayerError};

/// A remote or piped context that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot download the context {url}")]
    Download {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("cannot read the context {what}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the context {what} is not a valid tar archive")]
    Unpack {
        what: String,
        #[source]
        source: LayerError,
    },
    #[error("I/O error at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// True when `head` (the first bytes of a stream, at least 512 of them
/// for an uncompressed one) starts a tar archive, compressed or not: the
/// test docker uses to tell a tar context on stdin from a Dockerfile.
pub fn is_archive(head: &[u8]) -> bool {
    if head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
    {
        return true;
    }
    // ustar (POSIX) or GNU magic at offset 257.
    head.len() >= 263 && &head[257..262] == b"ustar"
}

/// Unpacks the (possibly compressed) tar `input` into the existing
/// directory `dest`; `what` names the input in errors.
pub fn unpack_tar(what: &str, input: Box<dyn Read + '_>, dest: &Path) -> Result<(), RemoteError> {
    let mut plain = layer::decompress(input).map_err(|source| RemoteError::Read {
        what: what.to_string(),
        source,
    })?;
    layer::unpack(&mut plain, dest).map_err(|source| RemoteError::Unpack {
        what: what.to_string(),
        source,
    })?;
    Ok(())
}

/// Downloads the tarball at `url` and unpacks it into `dest`.
pub fn fetch_tarball(url: &str, dest: &Path) -> Result<(), RemoteError> {
    let response = ureq::get(url)
        .call()
        .map_err(|source| RemoteError::Download {
            url: url.to_string(),
            source: Box::new(source),
        })?;
    let reader = response.into_body().into_reader();
    unpack_tar(url, Box::new(reader), dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tars_are_told_from_dockerfiles_and_unpacked() {
        let t = tar_of(&[("Dockerfile", "FROM scratch\n"), ("a/b.txt", "hi")]);
        assert!(is_archive(&t));
        assert!(!is_archive(b"FROM busybox\nRUN echo hi\n"));
        let dir = tempfile::tempdir().unwrap();
        unpack_tar("<stdin>", Box::new(&t[..]), dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b.txt")).unwrap(),
            "hi"
        );
        let e = unpack_tar("<stdin>", Box::new(&b"not a tar at all"[..]), dir.path());
        assert!(e.is_err());
    }
}
