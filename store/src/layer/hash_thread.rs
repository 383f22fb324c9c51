//! sha256 on a helper thread, so hashing a layer overlaps with reading
//! files or writing entries instead of adding to them.
//!
//! Data is copied into 256 KiB blocks; full blocks go to the thread and come
//! back empty through a pool of four, so memory stays at 1 MiB and the
//! caller never waits unless the hasher is behind by three blocks.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rbuild_oci::Digest;
use sha2::Digest as _;

const BLOCK: usize = 256 * 1024;
const POOL: usize = 4;

/// A sha256 computed on another thread; feed it with [`HashThread::update`].
pub(crate) struct HashThread {
    block: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<[u8; 32]>>,
    count: u64,
}

impl HashThread {
    pub(crate) fn new() -> io::Result<Self> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(POOL);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(POOL);
        for _ in 1..POOL {
            free_tx
                .send(Vec::with_capacity(BLOCK))
                .expect("the pool channel has room for the pool");
        }
        let thread = std::thread::Builder::new()
            .name("layer-sha256".into())
            .spawn(move || {
                let mut hasher = sha2::Sha256::new();
                for mut block in full_rx {
                    hasher.update(&block);
                    block.clear();
                    // The receiver is gone only once the owner is dropped.
                    let _ = free_tx.send(block);
                }
                hasher.finalize().into()
            })?;
        Ok(HashThread {
            block: Vec::with_capacity(BLOCK),
            full: Some(full_tx),
            free: free_rx,
            thread: Some(thread),
            count: 0,
        })
    }

    /// Adds `data` to the hash.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.count += data.len() as u64;
        while !data.is_empty() {
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == BLOCK {
                self.send_block();
            }
        }
    }

    fn send_block(&mut self) {
        let next = self.free.recv().expect("the hash thread runs until finish");
        let full = std::mem::replace(&mut self.block, next);
        self.full
            .as_ref()
            .expect("sender lives until finish")
            .send(full)
            .expect("the hash thread runs until finish");
    }

    /// The digest and byte count of everything added.
    pub(crate) fn finish(mut self) -> (Digest, u64) {
        if !self.block.is_empty() {
            self.send_block();
        }
        drop(self.full.take());
        let bytes = self
            .thread
            .take()
            .expect("joined only here")
            .join()
            .expect("hashing does not panic");
        (Digest::from_bytes(bytes), self.count)
    }
}

/// A writer that passes whole 256 KiB blocks to `inner` and hashes them on
/// a helper thread (sha256 overlaps with reading files and writing the
/// blob). Also does the job of a `BufWriter`.
pub struct ThreadHashingWriter<W> {
    inner: W,
    buf: Vec<u8>,
    hash: HashThread,
}

impl<W: Write> ThreadHashingWriter<W> {
    /// Writes to `inner`; fails only when the hashing thread cannot start.
    pub fn new(inner: W) -> io::Result<Self> {
        Ok(ThreadHashingWriter {
            inner,
            buf: Vec::with_capacity(BLOCK),
            hash: HashThread::new()?,
        })
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.hash.update(&self.buf);
            self.buf.clear();
        }
        Ok(())
    }

    /// Flushes, then returns the digest and size of everything written.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.flush_buf()?;
        self.inner.flush()?;
        Ok(self.hash.finish())
    }
}

impl<W: Write> Write for ThreadHashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (BLOCK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.flush_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.inner.flush()
    }
}

/// A reader whose bytes are hashed on a [`HashThread`].
pub(crate) struct ThreadHashingReader<R> {
    inner: R,
    hash: HashThread,
}

impl<R: Read> ThreadHashingReader<R> {
    pub(crate) fn new(inner: R) -> io::Result<Self> {
        Ok(ThreadHashingReader {
            inner,
            hash: HashThread::new()?,
        })
    }

    /// The digest and byte count of everything read.
    pub(crate) fn finish(self) -> (Digest, u64) {
        self.hash.finish()
    }
}

impl<R: Read> Read for ThreadHashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_digest_as_inline_sha256() {
        let data: Vec<u8> = (0..BLOCK * 5 + 123).map(|i| (i % 253) as u8).collect();
        let mut w = ThreadHashingWriter::new(Vec::new()).unwrap();
        for piece in data.chunks(70_000) {
            w.write_all(piece).unwrap();
        }
        let inner_len = data.len() as u64;
        let (digest, size) = w.finish().unwrap();
        assert_eq!(size, inner_len);
        assert_eq!(digest, Digest::of(&data));

        let mut r = ThreadHashingReader::new(data.as_slice()).unwrap();
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (Digest::of(&data), inner_len));

        assert_eq!(HashThread::new().unwrap().finish(), (Digest::of(b""), 0));
    }
}
