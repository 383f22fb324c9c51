//! Layer compression ([`super::compress`]) and format sniffing
//! ([`super::decompress`]).
//!
//! gzip is written pigz-style: the input is cut into fixed-size chunks,
//! each deflated on its own thread as raw deflate ending with a sync flush
//! (so it ends byte-aligned), and the pieces are concatenated behind one gzip
//! header, followed by an empty final block and the CRC-32/size trailer. The
//! result is a single ordinary gzip member that any gunzip or Go reader
//! accepts. The chunking does not depend on the thread count, so the same
//! input always yields the same bytes. Memory stays bounded: at most
//! `2 × threads` chunks are in flight.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use flate2::{Compress, FlushCompress};
use sha2::Digest as _;

use super::{CompressOptions, CompressStats, Compression, HashingWriter, LayerError};

/// Uncompressed bytes per gzip chunk.
const GZIP_CHUNK: usize = 1024 * 1024;
/// Read size for the single-threaded paths.
const READ_BUF: usize = 256 * 1024;

/// The default gzip level, as Docker and BuildKit use.
pub(crate) const DEFAULT_GZIP_LEVEL: u32 = 6;
/// zstd's own default level.
pub(crate) const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The largest zstd job (uncompressed bytes one worker compresses at a
/// time). zstd's default is 4 × the window: 8 MiB up to level 8, 16 MiB
/// from level 9, 32 MiB from level 13. Its multithreaded mode holds
/// about `workers + 3` jobs of input (a round buffer) and a job of output
/// per worker, so a 16 MiB job made level 9 peak at 123 MB of RSS on two
/// cores (bench/compression.sh). 8 MiB keeps levels ≤ 8 byte for byte
/// as zstd's default writes them.
const ZSTD_JOB_MAX: u32 = 8 << 20;
/// From this level on zstd's default job is larger than
/// [`ZSTD_JOB_MAX`].
const ZSTD_FIRST_LARGE_JOB_LEVEL: i32 = 9;

pub(crate) fn compress(
    input: &mut dyn Read,
    out: &mut dyn Write,
    opts: &CompressOptions,
) -> Result<CompressStats, LayerError> {
    let threads = opts.threads.unwrap_or_else(|| {
        thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(READ_BUF, out));
    let mut diff = sha2::Sha256::new();
    match opts.compression {
        Compression::None => {
            copy_hashing(input, &mut out, &mut diff)?;
        }
        Compression::Gzip => {
            let level = opts
                .level
                .map_or(DEFAULT_GZIP_LEVEL, |l| l.clamp(0, 9) as u32);
            gzip_parallel(input, &mut out, &mut diff, level, threads.max(1))?;
        }
        Compression::Zstd => {
            let level = opts.level.unwrap_or(DEFAULT_ZSTD_LEVEL);
            let mut enc = zstd::stream::write::Encoder::new(&mut out, level).map_err(output_err)?;
            // Always zstd's multithreaded mode, even with one worker: its
            // output does not depend on the worker count, while the
            // single-threaded mode (0 workers) writes other bytes. So a
            // layer's zstd digest is the same on a 1-core and a 64-core
            // machine.
            enc.multithread(threads.max(1) as u32).map_err(output_err)?;
            if level >= ZSTD_FIRST_LARGE_JOB_LEVEL {
                // Fixed, not derived from the machine: the bytes stay the
                // same everywhere.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_MAX))
                    .map_err(output_err)?;
            }
            copy_hashing(input, &mut enc, &mut diff)?;
            enc.finish().map_err(output_err)?;
        }
    }
    out.flush().map_err(output_err)?;
    let (digest, size) = out.finish();
    Ok(CompressStats {
        digest,
        size,
        diff_id: rbuild_oci::Digest::from_bytes(diff.finalize().into()),
    })
}

fn copy_hashing(
    input: &mut dyn Read,
    out: &mut dyn Write,
    diff: &mut sha2::Sha256,
) -> Result<(), LayerError> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = read_full(input, &mut buf).map_err(input_err)?;
        if n == 0 {
            return Ok(());
        }
        diff.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(output_err)?;
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

fn gzip_parallel(
    input: &mut dyn Read,
    out: &mut dyn Write,
    diff: &mut sha2::Sha256,
    level: u32,
    threads: usize,
) -> Result<(), LayerError> {
    // Fixed header: no name, no mtime, no extra flags, OS "unknown" (as Go
    // writes it), so the output depends only on the input.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
        .map_err(output_err)?;
    let mut crc = flate2::Crc::new();
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    thread::scope(|scope| -> Result<(), LayerError> {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            scope.spawn(move || worker(&job_rx, level));
        }
        let mut pending: VecDeque<Receiver<io::Result<Vec<u8>>>> = VecDeque::new();
        let result = (|| {
            loop {
                let mut chunk = vec![0u8; GZIP_CHUNK];
                let n = read_full(input, &mut chunk).map_err(input_err)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                diff.update(&chunk);
                crc.update(&chunk);
                let (tx, rx) = sync_channel(1);
                job_tx
                    .send((chunk, tx))
                    .expect("gzip workers live as long as the scope");
                pending.push_back(rx);
                if pending.len() >= 2 * threads {
                    write_next(&mut pending, out)?;
                }
                if n < GZIP_CHUNK {
                    break;
                }
            }
            while !pending.is_empty() {
                write_next(&mut pending, out)?;
            }
            Ok(())
        })();
        // Closing the job channel lets the workers finish.
        drop(job_tx);
        result
    })?;
    // An empty final fixed-Huffman block, then CRC-32 and size mod 2^32.
    let mut trailer = vec![0x03, 0x00];
    trailer.extend_from_slice(&crc.sum().to_le_bytes());
    trailer.extend_from_slice(&crc.amount().to_le_bytes());
    out.write_all(&trailer).map_err(output_err)
}

fn write_next(
    pending: &mut VecDeque<Receiver<io::Result<Vec<u8>>>>,
    out: &mut dyn Write,
) -> Result<(), LayerError> {
    let rx = pending.pop_front().expect("caller checked non-empty");
    let piece = rx
        .recv()
        .expect("a gzip worker answers every job")
        .map_err(output_err)?;
    out.write_all(&piece).map_err(output_err)
}

fn worker(jobs: &Mutex<Receiver<Job>>, level: u32) {
    // One deflate state per worker, reset for each chunk: every chunk
    // starts with an empty window, so the output does not depend on which
    // worker took it.
    let mut c = Compress::new(flate2::Compression::new(level), false);
    loop {
        let job = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok((chunk, reply))) = job else { return };
        c.reset();
        let _ = reply.send(deflate_chunk(&mut c, &chunk));
    }
}

/// Raw deflate of `chunk`, ended with a sync flush so the next chunk's
/// blocks can follow directly.
fn deflate_chunk(c: &mut Compress, chunk: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        c.compress_vec(&chunk[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // zlib's rule: a flush is complete once all input is taken and the
        // call left output room unused.
        if c.total_in() as usize == chunk.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

fn input_err(source: io::Error) -> LayerError {
    LayerError::Input { source }
}

fn output_err(source: io::Error) -> LayerError {
    LayerError::Output { source }
}

/// The formats [`super::decompress`] recognises by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Plain,
}

pub(crate) fn sniff(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if head.starts_with(b"BZh") {
        Format::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Format::Xz
    } else {
        Format::Plain
    }
}

pub(crate) fn decompress<'a>(mut input: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 6];
    let n = read_full(&mut input, &mut head)?;
    let head = head[..n].to_vec();
    let format = sniff(&head);
    let whole: Box<dyn Read + 'a> = Box::new(io::Cursor::new(head).chain(input));
    Ok(match format {
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Format::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(whole)),
        Format::Plain => whole,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Format::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Format::Zstd);
        assert_eq!(sniff(b"BZh91AY"), Format::Bzip2);
        assert_eq!(sniff(b"\xfd7zXZ\0"), Format::Xz);
        assert_eq!(sniff(b"etc/"), Format::Plain);
        assert_eq!(sniff(b""), Format::Plain);
    }

    #[test]
    fn compressed_bytes_do_not_depend_on_the_thread_count() {
        // Compressible but not trivial, over several gzip chunks and zstd
        // jobs.
        let data: Vec<u8> = (0..5 * GZIP_CHUNK as u64)
            .map(|i| ((i * 2_654_435_761) >> 13) as u8 & 0x3f)
            .collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let run = |threads| {
                let mut opts = CompressOptions::new(c);
                opts.threads = Some(threads);
                let mut out = Vec::new();
                compress(&mut data.as_slice(), &mut out, &opts)
                    .unwrap()
                    .digest
            };
            assert_eq!(run(1), run(3), "{c:?}");
        }
    }

    #[test]
    fn deflate_chunks_concatenate_into_one_stream() {
        let data: Vec<u8> = (0..3 * GZIP_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut opts = CompressOptions::new(Compression::Gzip);
        opts.threads = Some(3);
        let mut gz = Vec::new();
        compress(&mut data.as_slice(), &mut gz, &opts).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
