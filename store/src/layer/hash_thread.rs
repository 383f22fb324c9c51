//! sha256 on a helper thread, so hashing a layer overlaps with reading
//! files or writing entries instead of adding to them.
//!
//! Data is copied into 256 KiB blocks; full blocks go to the thread and come
//! back empty through a pool of four, so memory stays at 1 MiB and the
//! caller never waits unless the hasher is behind by three blocks.
//!
//! The thread starts with the first full block: most layers (a RUN's few
//! changed files, a COPY of one config file) are smaller than one block and
//! are hashed on the caller's thread, without a thread spawn, two channel
//! hand-offs and a wake-up on a busy machine for a microsecond of sha256.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rbuild_oci::Digest;
use sha2::Digest as _;

const BLOCK: usize = 256 * 1024;
const POOL: usize = 4;

/// A sha256 computed on another thread once there is a full block to
/// hash; feed it with [`HashThread::update`].
pub(crate) struct HashThread {
    block: Vec<u8>,
    hasher: Hasher,
    count: u64,
}

enum Hasher {
    /// No full block yet: what there is waits in `block`.
    NotStarted,
    /// No thread could start: hashed on the caller's thread.
    Inline(sha2::Sha256),
    Thread {
        full: SyncSender<Vec<u8>>,
        free: Receiver<Vec<u8>>,
        thread: JoinHandle<[u8; 32]>,
    },
}

impl HashThread {
    pub(crate) fn new() -> Self {
        HashThread {
            block: Vec::new(),
            hasher: Hasher::NotStarted,
            count: 0,
        }
    }

    /// Adds `data` to the hash.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.count += data.len() as u64;
        while !data.is_empty() {
            if self.block.capacity() == 0 {
                self.block.reserve_exact(BLOCK);
            }
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == BLOCK {
                self.send_block();
            }
        }
    }

    /// Hands the full block to the thread, starting it with the first one.
    fn send_block(&mut self) {
        if let Hasher::NotStarted = self.hasher {
            self.hasher = spawn_hasher().unwrap_or_else(|_| Hasher::Inline(sha2::Sha256::new()));
        }
        match &mut self.hasher {
            Hasher::NotStarted => unreachable!("started above"),
            Hasher::Inline(inline) => {
                inline.update(&self.block);
                self.block.clear();
            }
            Hasher::Thread { full, free, .. } => {
                let next = free.recv().expect("the hash thread runs until finish");
                let block = std::mem::replace(&mut self.block, next);
                full.send(block).expect("the hash thread runs until finish");
            }
        }
    }

    /// The digest and byte count of everything added.
    pub(crate) fn finish(self) -> (Digest, u64) {
        let bytes = match self.hasher {
            Hasher::NotStarted => sha2::Sha256::digest(&self.block).into(),
            Hasher::Inline(mut inline) => {
                inline.update(&self.block);
                inline.finalize().into()
            }
            Hasher::Thread { full, thread, .. } => {
                if !self.block.is_empty() {
                    full.send(self.block)
                        .expect("the hash thread runs until finish");
                }
                drop(full);
                thread.join().expect("hashing does not panic")
            }
        };
        (Digest::from_bytes(bytes), self.count)
    }
}

/// Starts the hashing thread with its pool of empty blocks.
fn spawn_hasher() -> io::Result<Hasher> {
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
    Ok(Hasher::Thread {
        full: full_tx,
        free: free_rx,
        thread,
    })
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
    /// Writes to `inner`.
    pub fn new(inner: W) -> Self {
        ThreadHashingWriter {
            inner,
            buf: Vec::new(),
            hash: HashThread::new(),
        }
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
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(BLOCK);
        }
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
    pub(crate) fn new(inner: R) -> Self {
        ThreadHashingReader {
            inner,
            hash: HashThread::new(),
        }
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
        let mut w = ThreadHashingWriter::new(Vec::new());
        for piece in data.chunks(70_000) {
            w.write_all(piece).unwrap();
        }
        let inner_len = data.len() as u64;
        let (digest, size) = w.finish().unwrap();
        assert_eq!(size, inner_len);
        assert_eq!(digest, Digest::of(&data));

        let mut r = ThreadHashingReader::new(data.as_slice());
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (Digest::of(&data), inner_len));

        assert_eq!(HashThread::new().finish(), (Digest::of(b""), 0));
    }

    /// Below one block nothing starts a thread (a small layer is hashed
    /// where it is written); at exactly one block and beyond the thread
    /// hashes. Either way the digest is sha256 of the bytes.
    #[test]
    fn small_data_is_hashed_without_a_thread_and_block_edges_are_right() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut h = HashThread::new();
            for piece in data.chunks(10_000) {
                h.update(piece);
            }
            let started = !matches!(h.hasher, Hasher::NotStarted);
            assert_eq!(started, len >= BLOCK, "len {len}");
            assert_eq!(h.finish(), (Digest::of(&data), len as u64), "len {len}");
        }
    }
}
