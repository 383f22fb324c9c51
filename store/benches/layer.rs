//! Small-size layer codec benchmarks (criterion). The whole-tree figures
//! (1 GiB, peak RSS) come from bench/layer.sh.

use std::fs;
use std::hint::black_box;
use std::io;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rbuild_store::layer::{self, CompressOptions, Compression, PackOptions};

/// ~8 MiB: 200 small files of 1–40 KiB plus two 2 MiB files.
fn make_tree(root: &Path) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut content = |len: usize| {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                v.extend_from_slice(&x.to_le_bytes());
            } else {
                v.extend_from_slice(b"let layer = pack(tree); // text\n");
            }
        }
        v.truncate(len);
        v
    };
    for i in 0..200 {
        let dir = root.join(format!("d{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), content(1024 + i * 200)).unwrap();
    }
    fs::write(root.join("big1"), content(2 << 20)).unwrap();
    fs::write(root.join("big2"), content(2 << 20)).unwrap();
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let mut tar = Vec::new();
    layer::pack_dir(&tree, &mut tar, &PackOptions::default()).unwrap();

    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.sample_size(10);
    g.bench_function("pack_sha256", |b| {
        b.iter(|| layer::pack_dir(&tree, &mut io::sink(), &PackOptions::default()).unwrap())
    });
    for (name, compression) in [("gzip", Compression::Gzip), ("zstd", Compression::Zstd)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                layer::compress_with(
                    &mut tar.as_slice(),
                    &mut io::sink(),
                    &CompressOptions::new(compression),
                )
                .unwrap()
            })
        });
    }
    g.bench_function("unpack", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(tmp.path()).unwrap(),
            |dest| {
                black_box(layer::unpack(&mut tar.as_slice(), dest.path()).unwrap());
                // Returned, so the removal happens outside the timing.
                dest
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(layer_benches, benches);
criterion_main!(layer_benches);
