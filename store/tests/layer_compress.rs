//! Compression round trips: parallel gzip output is one valid gzip stream
//! that gzip(1) and flate2 read; zstd likewise; digests are the sha256 of
//! the bytes actually produced; decompress() sniffs every format.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use rbuild_store::layer::{self, CompressOptions, Compression};
use sha2::Digest as _;

/// Mixed data: text-like runs and pseudo-random bytes, a few MiB so the
/// parallel gzip uses several chunks.
fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x >> 60) < 10 {
            out.extend_from_slice(b"the quick brown fox jumps over the lazy dog\n");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn sha(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

use rbuild_testkit::skipped;

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Pipes `input` through `cmd args` and returns (success, stdout).
fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (out.status.success(), out.stdout)
}

fn compress(data: &[u8], opts: &CompressOptions) -> (Vec<u8>, layer::CompressStats) {
    let mut out = Vec::new();
    let stats = layer::compress_with(&mut &data[..], &mut out, opts).unwrap();
    (out, stats)
}

#[test]
fn parallel_gzip_is_one_valid_stream_with_true_digests() {
    let data = sample(5 * 1024 * 1024 + 333);
    let (gz, stats) = compress(&data, &CompressOptions::new(Compression::Gzip));
    assert_eq!(stats.digest.as_bytes().as_slice(), sha(&gz));
    assert_eq!(stats.size, gz.len() as u64);
    assert_eq!(stats.diff_id.as_bytes().as_slice(), sha(&data));
    assert!(gz.len() < data.len(), "it actually compresses");

    // flate2's single-member decoder reads all of it: one gzip member.
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data);
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(gz.as_slice())
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data);

    if tool("gzip") {
        assert!(pipe("gzip", &["-t"], &gz).0, "gzip -t rejects the stream");
        let (ok, out) = pipe("gzip", &["-dc"], &gz);
        assert!(ok && out == data, "gunzip gives other bytes");
    } else {
        skipped(
            "parallel_gzip_is_one_valid_stream_with_true_digests",
            "its gzip check needs gzip",
        );
    }
    // Other independent readers, where installed.
    if std::path::Path::new("/bin/busybox").exists() {
        let (ok, out) = pipe("/bin/busybox", &["gunzip", "-c"], &gz);
        assert!(ok && out == data, "busybox gunzip gives other bytes");
    } else {
        skipped(
            "parallel_gzip_is_one_valid_stream_with_true_digests",
            "its busybox gunzip check needs /bin/busybox",
        );
    }
    if tool("python3") {
        let script =
            "import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))";
        let (ok, out) = pipe("python3", &["-c", script], &gz);
        assert!(ok && out == data, "python gzip gives other bytes");
    } else {
        skipped(
            "parallel_gzip_is_one_valid_stream_with_true_digests",
            "its Python gzip check needs python3",
        );
    }
}

#[test]
fn gzip_bytes_do_not_depend_on_thread_count() {
    let data = sample(3 * 1024 * 1024 + 5);
    let mut one = CompressOptions::new(Compression::Gzip);
    one.threads = Some(1);
    let mut four = CompressOptions::new(Compression::Gzip);
    four.threads = Some(4);
    let (a, sa) = compress(&data, &one);
    let (b, sb) = compress(&data, &four);
    assert!(a == b);
    assert_eq!(sa, sb);
}

#[test]
fn gzip_of_empty_input_is_valid() {
    let (gz, stats) = compress(b"", &CompressOptions::new(Compression::Gzip));
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut back)
        .unwrap();
    assert!(back.is_empty());
    assert_eq!(stats.diff_id.as_bytes().as_slice(), sha(b""));
    if tool("gzip") {
        assert!(pipe("gzip", &["-t"], &gz).0);
    }
}

#[test]
fn zstd_round_trips_with_true_digests() {
    let data = sample(3 * 1024 * 1024);
    let (zs, stats) = compress(&data, &CompressOptions::new(Compression::Zstd));
    assert_eq!(stats.digest.as_bytes().as_slice(), sha(&zs));
    assert_eq!(stats.size, zs.len() as u64);
    assert_eq!(stats.diff_id.as_bytes().as_slice(), sha(&data));
    let back = zstd::decode_all(zs.as_slice()).unwrap();
    assert!(back == data);
    if tool("zstd") {
        assert!(pipe("zstd", &["-t", "-q"], &zs).0, "zstd -t rejects it");
    }
}

#[test]
fn no_compression_has_digest_equal_to_diff_id() {
    let data = sample(100_000);
    let (out, stats) = compress(&data, &CompressOptions::new(Compression::None));
    assert!(out == data);
    assert_eq!(stats.digest, stats.diff_id);
}

#[test]
fn decompress_sniffs_every_format() {
    let data = sample(200_000);
    let mut blobs: Vec<(&str, Vec<u8>)> = vec![
        ("plain", data.clone()),
        (
            "gzip",
            compress(&data, &CompressOptions::new(Compression::Gzip)).0,
        ),
        (
            "zstd",
            compress(&data, &CompressOptions::new(Compression::Zstd)).0,
        ),
    ];
    // Two concatenated gzip members (as some tools write) read as one.
    let mut two = Vec::new();
    for half in [&data[..100_000], &data[100_000..]] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(half).unwrap();
        two.extend(enc.finish().unwrap());
    }
    blobs.push(("gzip members", two));
    for (name, cmd) in [("bzip2", "bzip2"), ("xz", "xz")] {
        if tool(cmd) {
            let (ok, out) = pipe(cmd, &["-c"], &data);
            assert!(ok);
            blobs.push((name, out));
        }
    }
    for (name, blob) in blobs {
        let mut back = Vec::new();
        layer::decompress(Box::new(std::io::Cursor::new(blob)))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "{name} did not round trip");
    }
}

#[test]
fn packed_layer_survives_gzip_and_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), sample(2_000_000)).unwrap();
    let mut tar_bytes = Vec::new();
    let packed = layer::pack_dir(&src, &mut tar_bytes, &Default::default()).unwrap();
    let (gz, stats) = compress(&tar_bytes, &CompressOptions::new(Compression::Gzip));
    assert_eq!(stats.diff_id, packed.diff_id);
    let dst = tmp.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let mut reader = layer::decompress(Box::new(gz.as_slice())).unwrap();
    let unpacked = layer::unpack(&mut reader, &dst).unwrap();
    assert_eq!(unpacked.diff_id, Some(packed.diff_id));
    assert_eq!(
        std::fs::read(dst.join("d/f")).unwrap(),
        std::fs::read(src.join("d/f")).unwrap()
    );
}
