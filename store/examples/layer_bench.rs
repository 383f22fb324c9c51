//! Whole-tree benchmark driver for the layer codec, run by bench/layer.sh.
//!
//! ```text
//! layer_bench gen DIR MIB        make a mixed tree of about MIB MiB
//! layer_bench pack DIR           pack + sha256 to a sink
//! layer_bench pack-to DIR FILE   pack into FILE (input for the others)
//! layer_bench gzip TAR [LEVEL [THREADS]]   parallel gzip to a sink
//! layer_bench zstd TAR [LEVEL [THREADS]]   zstd (multithreaded) to a sink
//! layer_bench unpack TAR DEST    unpack into DEST (must be empty)
//! ```
//!
//! Prints one line: `<op> <bytes> bytes <secs> s <MB/s> MB/s`, where bytes
//! are uncompressed tar bytes and MB is 10^6 bytes.

use std::fs;
use std::io::{self, BufReader, Write};
use std::path::Path;
use std::time::Instant;

use rbuild_store::layer::{self, Compression, PackOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("usage: see the doc comment of examples/layer_bench.rs");
            std::process::exit(2)
        })
    };
    let start = Instant::now();
    let bytes = match arg(0) {
        "gen" => {
            generate(Path::new(arg(1)), arg(2).parse().expect("MiB is a number"));
            return;
        }
        "pack" => {
            layer::pack_dir(Path::new(arg(1)), &mut io::sink(), &PackOptions::default())
                .expect("pack")
                .size
        }
        "pack-to" => {
            let mut out = fs::File::create(arg(2)).expect("create output");
            let stats = layer::pack_dir(Path::new(arg(1)), &mut out, &PackOptions::default())
                .expect("pack");
            println!("diff_id {}", stats.diff_id);
            stats.size
        }
        op @ ("gzip" | "zstd") => {
            let compression = if op == "gzip" {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let mut input = fs::File::open(arg(1)).expect("open tar");
            let mut opts = layer::CompressOptions::new(compression);
            opts.level = args.get(2).map(|l| l.parse().expect("level is a number"));
            opts.threads = args.get(3).map(|t| t.parse().expect("threads is a number"));
            let stats = layer::compress_with(&mut input, &mut io::sink(), &opts).expect("compress");
            eprintln!("{op}: compressed size {} bytes", stats.size);
            fs::metadata(arg(1)).expect("stat tar").len()
        }
        "unpack" => {
            let mut input = BufReader::new(fs::File::open(arg(1)).expect("open tar"));
            layer::unpack(&mut input, Path::new(arg(2))).expect("unpack");
            // Count the data as written only once it is on its way to disk
            // as far as the page cache goes: no fsync, like Docker.
            fs::metadata(arg(1)).expect("stat tar").len()
        }
        other => {
            eprintln!("unknown operation {other}");
            std::process::exit(2)
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} {} bytes {:.2} s {:.0} MB/s",
        arg(0),
        bytes,
        secs,
        bytes as f64 / secs / 1e6
    );
}

/// A tree of about `mib` MiB: ~40% in 8 large files, the rest in small
/// files of 1–64 KiB spread over nested directories.
fn generate(root: &Path, mib: u64) {
    let total = mib * 1024 * 1024;
    let large_total = total * 4 / 10;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // A vocabulary of 512 pseudo-words: lines of them compress about as
    // well as source code (~3x); one run in 16 is random bytes (like
    // already-compressed data in an image).
    let words: Vec<Vec<u8>> = (0..512)
        .map(|_| {
            let r = next();
            let len = 2 + (r % 9) as usize;
            (0..len)
                .map(|k| b"etaoinshrdlucmfwypvbgkqjxz_"[((r >> (k * 5)) % 27) as usize])
                .collect()
        })
        .collect();
    let mut content = |len: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 512);
        while out.len() < len {
            let r = next();
            if r % 16 == 0 {
                for _ in 0..32 {
                    out.extend_from_slice(&next().to_le_bytes());
                }
            } else {
                for k in 0..8 {
                    out.extend_from_slice(&words[((r >> (k * 9)) % 512) as usize]);
                    out.push(if k == 7 { b'\n' } else { b' ' });
                }
            }
        }
        out.truncate(len);
        out
    };
    fs::create_dir_all(root.join("large")).expect("mkdir");
    for i in 0..8 {
        let mut f = fs::File::create(root.join(format!("large/blob{i}.bin"))).expect("create");
        let mut left = large_total / 8;
        while left > 0 {
            let n = left.min(4 * 1024 * 1024) as usize;
            f.write_all(&content(n)).expect("write");
            left -= n as u64;
        }
    }
    let mut written = large_total;
    let mut i = 0u64;
    while written < total {
        let dir = root.join(format!("small/d{:02}/e{:02}", i % 37, (i / 37) % 11));
        if i < 37 * 11 {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        let len = 1024 + (i * 7919 % (63 * 1024)) as usize;
        fs::write(dir.join(format!("f{i:06}.txt")), content(len)).expect("write");
        written += len as u64;
        i += 1;
    }
    println!("gen {} bytes in {} small files + 8 large", written, i);
}
