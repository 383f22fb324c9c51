//! Sparse files made by GNU tar (`--sparse`, in the old GNU format with
//! extension blocks and in the PAX formats 0.0, 0.1 and 1.0): validated
//! and unpacked to the right content, under the right name, with holes
//! as holes (few allocated blocks), and a bound on what is written.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rbuild_store::layer;

/// A 64 MiB file with ten 4 KiB data regions (more than the four a GNU
/// header holds, so extension blocks follow) and holes between them.
fn sparse_file(dir: &Path) -> Vec<u8> {
    let path = dir.join("src/sparse.bin");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    let mut expected = vec![0u8; 64 << 20];
    use std::os::unix::fs::FileExt;
    for i in 0..10u64 {
        let off = i * (6 << 20) + 8192;
        let chunk: Vec<u8> = (0..4096).map(|j| (i as u8) ^ (j as u8) | 1).collect();
        f.write_all_at(&chunk, off).unwrap();
        expected[off as usize..off as usize + 4096].copy_from_slice(&chunk);
    }
    fs::write(dir.join("src/plain.txt"), b"plain\n").unwrap();
    expected
}

/// `tar` with `args`, archiving `src` of `dir` into `out`; false when
/// this tar does not know the options.
fn gnu_tar(dir: &Path, out: &Path, args: &[&str]) -> bool {
    let status = Command::new("tar")
        .args(args)
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir.join("src"))
        .args(["sparse.bin", "plain.txt"])
        .status()
        .expect("GNU tar");
    status.success()
}

#[test]
fn gnu_and_pax_sparse_files_unpack_with_holes_and_the_right_name() {
    let dir = tempfile::tempdir().unwrap();
    let expected = sparse_file(dir.path());
    let formats: [(&str, &[&str]); 4] = [
        ("gnu", &["--sparse", "--format=gnu"]),
        (
            "pax-0.0",
            &["--sparse", "--format=posix", "--sparse-version=0.0"],
        ),
        (
            "pax-0.1",
            &["--sparse", "--format=posix", "--sparse-version=0.1"],
        ),
        (
            "pax-1.0",
            &["--sparse", "--format=posix", "--sparse-version=1.0"],
        ),
    ];
    for (name, args) in formats {
        let archive = dir.path().join(format!("{name}.tar"));
        assert!(gnu_tar(dir.path(), &archive, args), "tar {args:?}");
        let bytes = fs::read(&archive).unwrap();
        assert!(
            bytes.len() < 1 << 20,
            "{name}: the archive itself is sparse"
        );

        let stats = layer::validate(&mut &bytes[..], true)
            .unwrap_or_else(|e| panic!("{name}: {}", rbuild_oci::error_chain(&e)));
        assert_eq!(stats.diff_id, rbuild_oci::Digest::of(&bytes), "{name}");
        assert_eq!(stats.file_bytes, 10 * 4096 + 6, "{name}: data, not holes");

        let dest = dir.path().join(format!("out-{name}"));
        fs::create_dir(&dest).unwrap();
        let u = layer::unpack(&mut &bytes[..], &dest)
            .unwrap_or_else(|e| panic!("{name}: {}", rbuild_oci::error_chain(&e)));
        assert_eq!(u.bytes, 10 * 4096 + 6, "{name}: only data is written");
        let mut names: Vec<String> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["plain.txt", "sparse.bin"], "{name}");
        let out = dest.join("sparse.bin");
        let meta = fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), 64 << 20, "{name}");
        assert!(
            meta.blocks() * 512 < 4 << 20,
            "{name}: {} bytes allocated for 40 KiB of data",
            meta.blocks() * 512
        );
        assert!(fs::read(&out).unwrap() == expected, "{name}: content");
        assert_eq!(fs::read(dest.join("plain.txt")).unwrap(), b"plain\n");
    }
}

/// A GNU sparse entry whose map asks for more than its data, or a
/// region beyond its size, is refused by both validate and unpack.
#[test]
fn an_inconsistent_sparse_map_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    sparse_file(dir.path());
    let archive = dir.path().join("gnu.tar");
    assert!(gnu_tar(dir.path(), &archive, &["--sparse", "--format=gnu"]));
    let mut bytes = fs::read(&archive).unwrap();
    // The first header is the sparse file's: make its first region
    // claim 1 GiB of data (octal in the 12-byte numbytes field at 398).
    assert_eq!(bytes[156], b'S');
    bytes[398..410].copy_from_slice(b"10000000000\0");
    let mut sum: u32 = 0;
    bytes[148..156].fill(b' ');
    for b in &bytes[..512] {
        sum += u32::from(*b);
    }
    bytes[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let err = layer::validate(&mut &bytes[..], true).unwrap_err();
    let text = rbuild_oci::error_chain(&err);
    assert!(text.contains("sparse"), "{text}");
    let dest = dir.path().join("out");
    fs::create_dir(&dest).unwrap();
    assert!(layer::unpack(&mut &bytes[..], &dest).is_err());
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);
}
