//! The build context as COPY sees it: `.dockerignore` filtering, symlinks
//! never followed (out of the context or at all), and the stat cache that
//! keeps an unchanged file from being read twice across builds.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_context::copy::{EntryKind, SourceFs};
use rbuild_context::{CacheLoad, Context, ContextError, IgnoreRules};
use rbuild_solver::Digest;

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn rules(text: &str) -> IgnoreRules {
    IgnoreRules::parse(text.as_bytes(), Path::new(".dockerignore")).unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
}

/// Lets the kernel's coarse clock move past the files just written, as
/// it has for any file in a real context by the time a build starts
/// (otherwise their digests are, rightly, not trusted next time).
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

/// A context with nested dirs, symlinks in and out, ignored and
/// re-included entries. `outside` is a sibling directory that must never
/// be reachable.
fn sample() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let outside = tmp.path().join("outside");
    write(&outside, "secret", "top secret");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    write(&ctx, "src/main.rs", "fn main() {}\n");
    write(&ctx, "src/lib/mod.rs", "// lib\n");
    write(&ctx, "app.log", "log\n");
    write(
        &ctx,
        "src/debug.log",
        "nested log is not matched by *.log\n",
    );
    write(&ctx, "node_modules/keep/index.js", "kept\n");
    write(&ctx, "node_modules/drop/index.js", "dropped\n");
    write(&ctx, "build/out.bin", "artifact\n");
    symlink("src/main.rs", ctx.join("link-in")).unwrap();
    symlink("/etc/passwd", ctx.join("link-abs")).unwrap();
    symlink("../outside", ctx.join("link-out")).unwrap();
    symlink("src", ctx.join("link-dir")).unwrap();
    (tmp, ctx)
}

const SAMPLE_IGNORE: &str = "*.log\nnode_modules\n!node_modules/keep\nbuild/\n";

#[test]
fn read_dir_hides_excluded_and_keeps_parents_of_reincluded() {
    let (_tmp, ctx) = sample();
    let c = Context::open(&ctx, rules(SAMPLE_IGNORE), None).unwrap();
    assert_eq!(
        c.read_dir("").unwrap(),
        [
            "Dockerfile",
            "link-abs",
            "link-dir",
            "link-in",
            "link-out",
            "node_modules",
            "src"
        ]
    );
    assert_eq!(c.read_dir("src").unwrap(), ["debug.log", "lib", "main.rs"]);
    // `node_modules` is excluded but holds a re-included entry: listed,
    // walkable, showing only that entry.
    assert_eq!(c.read_dir("node_modules").unwrap(), ["keep"]);
    assert_eq!(c.read_dir("node_modules/keep").unwrap(), ["index.js"]);
    assert_eq!(
        c.lstat("node_modules").unwrap().map(|m| m.kind),
        Some(EntryKind::Dir)
    );
    assert_eq!(c.lstat("node_modules/drop").unwrap(), None);
    assert_eq!(c.lstat("node_modules/drop/index.js").unwrap(), None);
    assert_eq!(c.lstat("app.log").unwrap(), None);
    assert_eq!(c.lstat("build").unwrap(), None);
    assert_eq!(c.lstat("build/out.bin").unwrap(), None);
    assert_eq!(
        c.read_dir("build").unwrap_err().kind(),
        ErrorKind::NotFound,
        "an excluded directory cannot be listed"
    );
    assert_eq!(c.open("app.log").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        c.file_digest("node_modules/drop/index.js")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let mut kept = String::new();
    c.open("node_modules/keep/index.js")
        .unwrap()
        .read_to_string(&mut kept)
        .unwrap();
    assert_eq!(kept, "kept\n");
}

#[test]
fn reinclusion_deep_and_by_wildcard() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path();
    write(ctx, "dir/a/b/c.txt", "c");
    write(ctx, "dir/a/b/d.txt", "d");
    write(ctx, "dir/a/e.txt", "e");
    write(ctx, "docs/guide/x.md", "x");
    write(ctx, "docs/guide/x.html", "x");
    write(ctx, "README.md", "r");
    write(ctx, "main.go", "m");

    // A deep re-include keeps each directory on its way, and only it.
    let c = Context::open(ctx, rules("dir\n!dir/a/b/c.txt\n"), None).unwrap();
    assert_eq!(c.read_dir("dir").unwrap(), ["a"]);
    assert_eq!(c.read_dir("dir/a").unwrap(), ["b"]);
    assert_eq!(c.read_dir("dir/a/b").unwrap(), ["c.txt"]);
    assert_eq!(c.lstat("dir/a/e.txt").unwrap(), None);

    // `*` re-includes only at the top; `**/` at any depth.
    let c = Context::open(ctx, rules("*\n!*.md\n"), None).unwrap();
    assert_eq!(c.read_dir("").unwrap(), ["README.md"]);
    let c = Context::open(ctx, rules("*\n!**/*.md\n"), None).unwrap();
    assert_eq!(c.read_dir("").unwrap(), ["README.md", "docs"]);
    assert_eq!(c.read_dir("docs/guide").unwrap(), ["x.md"]);
    assert_eq!(c.lstat("docs/guide/x.html").unwrap(), None);

    // The allow-list kubebuilder scaffolds, which relies on BuildKit
    // walking into excluded directories.
    write(ctx, "cmd/main.go", "m");
    write(ctx, "cmd/main_test.go", "t");
    write(ctx, "go.mod", "g");
    let allow = "**\n!**/*.go\n**/*_test.go\n!go.mod\n!go.sum\n";
    let c = Context::open(ctx, rules(allow), None).unwrap();
    assert_eq!(c.read_dir("").unwrap(), ["cmd", "go.mod", "main.go"]);
    assert_eq!(c.read_dir("cmd").unwrap(), ["main.go"]);
}

#[test]
fn dockerfile_and_dockerignore_can_be_excluded() {
    // BuildKit sends the Dockerfile separately: excluding it (or the
    // ignore file) hides it from COPY, unlike the legacy builder.
    let (_tmp, ctx) = sample();
    write(&ctx, ".dockerignore", "Dockerfile\n.dockerignore\n");
    let c = Context::open(&ctx, IgnoreRules::load(&ctx, None).unwrap(), None).unwrap();
    assert_eq!(c.lstat("Dockerfile").unwrap(), None);
    assert_eq!(c.lstat(".dockerignore").unwrap(), None);
    assert!(!c.read_dir("").unwrap().contains(&"Dockerfile".to_string()));
}

#[test]
fn lstat_reports_entries_without_following_symlinks() {
    let (_tmp, ctx) = sample();
    fs::set_permissions(ctx.join("src/main.rs"), fs::Permissions::from_mode(0o4751)).unwrap();
    let c = Context::open(&ctx, IgnoreRules::none(), None).unwrap();
    let root = c.lstat("").unwrap().unwrap();
    assert_eq!(root.kind, EntryKind::Dir);
    let main = c.lstat("src/main.rs").unwrap().unwrap();
    let md = fs::symlink_metadata(ctx.join("src/main.rs")).unwrap();
    assert_eq!(
        (main.kind, main.mode, main.size, main.uid, main.mtime),
        (EntryKind::File, 0o4751, 13, md.uid(), md.mtime())
    );
    for link in ["link-in", "link-abs", "link-out", "link-dir"] {
        assert_eq!(
            c.lstat(link).unwrap().unwrap().kind,
            EntryKind::Symlink,
            "{link}"
        );
    }
    assert_eq!(c.read_link("link-abs").unwrap(), Path::new("/etc/passwd"));
    assert_eq!(c.read_link("link-out").unwrap(), Path::new("../outside"));
    // Paths through a symlink are not entries of the tree, whether the
    // link points inside or out.
    assert_eq!(c.lstat("link-out/secret").unwrap(), None);
    assert_eq!(c.lstat("link-dir/main.rs").unwrap(), None);
    assert!(c.read_dir("link-out").is_err());
    assert!(c.read_dir("link-dir").is_err());
    assert!(c.open("link-out/secret").is_err());
    assert!(c.file_digest("link-out/secret").is_err());
    // Opening a symlink does not follow it either.
    assert!(c.open("link-abs").is_err());
    assert!(c.file_digest("link-in").is_err());
    // Nothing climbs above the root.
    assert!(c.lstat("../outside/secret").is_err());
    assert!(c.open("src/../../outside/secret").is_err());
    // Missing is None for lstat, NotFound elsewhere.
    assert_eq!(c.lstat("nope").unwrap(), None);
    assert_eq!(c.lstat("src/main.rs/x").unwrap(), None);
    assert_eq!(c.open("nope").unwrap_err().kind(), ErrorKind::NotFound);
    // Cleaned paths name the same entry.
    assert!(c.lstat("./src//main.rs").unwrap().is_some());
}

#[test]
fn special_files_are_skipped_or_refused() {
    let (_tmp, ctx) = sample();
    let _listener = std::os::unix::net::UnixListener::bind(ctx.join("sock")).unwrap();
    nix::unistd::mkfifo(
        &ctx.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let c = Context::open(&ctx, IgnoreRules::none(), None).unwrap();
    let names = c.read_dir("").unwrap();
    assert!(
        !names.contains(&"sock".to_string()),
        "sockets are never listed"
    );
    assert!(names.contains(&"fifo".to_string()));
    assert_eq!(c.lstat("sock").unwrap(), None);
    assert_eq!(c.lstat("fifo").unwrap().unwrap().kind, EntryKind::Other);
    // Neither hangs on the fifo nor reads it as a file.
    assert_eq!(c.open("fifo").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(c.file_digest("src").is_err());
}

#[test]
fn names_that_are_not_utf8_are_entries_like_any_other() {
    use rbuild_oci::path_text;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(ctx.join(std::ffi::OsStr::from_bytes(b"dir-\xfe"))).unwrap();
    let file = std::ffi::OsStr::from_bytes(b"dir-\xfe/bad-\xff");
    fs::write(ctx.join(file), "x").unwrap();
    fs::write(ctx.join("good"), "x").unwrap();
    let dir = path_text::from_bytes(b"dir-\xfe").into_owned();
    let bad = path_text::from_bytes(b"bad-\xff").into_owned();
    let path = format!("{dir}/{bad}");
    let cache = tmp.path().join("stat-cache");
    settle();

    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.read_dir("").unwrap(), [dir.as_str(), "good"]);
    assert_eq!(c.read_dir(&dir).unwrap(), [bad.as_str()]);
    assert_eq!(c.lstat(&path).unwrap().unwrap().kind, EntryKind::File);
    let digest = c.file_digest(&path).unwrap();
    assert_eq!(digest, c.file_digest("good").unwrap());
    c.save().unwrap();
    // The stat cache remembers the name across builds.
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.file_digest(&path).unwrap(), digest);
    assert_eq!(c.stats().files_hashed, 0);

    let c = Context::open(&ctx, rules("dir-*/bad-*\n"), None).unwrap();
    assert_eq!(c.read_dir(&dir).unwrap(), Vec::<String>::new());
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path();
    write(ctx, ".dockerignore", "a\n");
    write(ctx, "docker/app.Dockerfile", "FROM scratch\n");
    write(ctx, "docker/app.Dockerfile.dockerignore", "b\n");
    let r = IgnoreRules::load(ctx, Some(&ctx.join("docker/app.Dockerfile"))).unwrap();
    assert!(r.is_excluded("b") && !r.is_excluded("a"));
    assert_eq!(
        r.source(),
        Some(ctx.join("docker/app.Dockerfile.dockerignore").as_path())
    );
    let r = IgnoreRules::load(ctx, Some(&ctx.join("Dockerfile"))).unwrap();
    assert!(r.is_excluded("a") && !r.is_excluded("b"));
    let empty = tempfile::tempdir().unwrap();
    let r = IgnoreRules::load(empty.path(), None).unwrap();
    assert!(r.is_empty() && r.source().is_none());
    write(ctx, ".dockerignore", "ok\n[\n");
    let err = IgnoreRules::load(ctx, None).unwrap_err();
    assert!(
        matches!(&err, ContextError::Pattern { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: invalid pattern \"[\"",
            ctx.join(".dockerignore").display()
        )
    );
}

fn digest_all(c: &Context, files: &[&str]) -> Vec<Digest> {
    files.iter().map(|f| c.file_digest(f).unwrap()).collect()
}

#[test]
fn stat_cache_answers_for_unchanged_files_only() {
    let (tmp, ctx) = sample();
    let cache = tmp.path().join("cache/ctx-stat");
    let files = ["Dockerfile", "src/main.rs", "src/lib/mod.rs"];
    settle();

    // First build: everything is read.
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.stats().cache_load, CacheLoad::Missing);
    let first = digest_all(&c, &files);
    assert_eq!(first[0], Digest::of(b"FROM scratch\n"));
    assert_eq!(c.stats().files_hashed, 3);
    c.save().unwrap();

    // Second build, nothing changed: nothing is read.
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.stats().cache_load, CacheLoad::Loaded(3));
    assert_eq!(digest_all(&c, &files), first);
    let s = c.stats();
    assert_eq!(
        (s.files_hashed, s.files_from_cache, s.bytes_hashed),
        (0, 3, 0)
    );
    c.save().unwrap();

    // Touching one file's mtime re-reads only it, to the same digest.
    set_mtime(
        &ctx.join("src/main.rs"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(digest_all(&c, &files), first);
    assert_eq!((c.stats().files_hashed, c.stats().files_from_cache), (1, 2));
    c.save().unwrap();

    // Editing content changes the digest.
    write(&ctx, "src/lib/mod.rs", "// lib, edited\n");
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    let third = digest_all(&c, &files);
    assert_eq!(third[2], Digest::of(b"// lib, edited\n"));
    assert_eq!((&third[..2], c.stats().files_hashed), (&first[..2], 1));
    c.save().unwrap();

    // Replaced by a new file (new inode) with the same size and mtime:
    // re-read, and its new content seen.
    let old = fs::metadata(ctx.join("Dockerfile")).unwrap();
    let replacement = ctx.join(".Dockerfile.new");
    fs::write(&replacement, "FROM scratcH\n").unwrap();
    set_mtime(&replacement, old.modified().unwrap());
    fs::rename(&replacement, ctx.join("Dockerfile")).unwrap();
    let new = fs::metadata(ctx.join("Dockerfile")).unwrap();
    assert_eq!(
        (new.len(), new.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
    assert_ne!(new.ino(), old.ino());
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(
        c.file_digest("Dockerfile").unwrap(),
        Digest::of(b"FROM scratcH\n")
    );
    assert_eq!(c.stats().files_hashed, 1);
}

#[test]
fn stat_cache_drops_files_not_seen_and_digests_twice_once() {
    let (tmp, ctx) = sample();
    let cache = tmp.path().join("stat");
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    digest_all(&c, &["Dockerfile", "src/main.rs"]);
    c.save().unwrap();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    // The same file asked for twice in one build is read at most once.
    digest_all(&c, &["src/main.rs", "src/main.rs"]);
    assert_eq!(c.stats().files_from_cache, 2);
    c.save().unwrap();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.stats().cache_load, CacheLoad::Loaded(1));
    digest_all(&c, &["Dockerfile"]);
    assert_eq!(c.stats().files_hashed, 1);
    // Without a cache file nothing is remembered and save does nothing.
    let c = Context::open(&ctx, IgnoreRules::none(), None).unwrap();
    digest_all(&c, &["Dockerfile", "Dockerfile"]);
    assert_eq!(c.stats().files_hashed, 2);
    assert_eq!(c.stats().cache_load, CacheLoad::Disabled);
    c.save().unwrap();
}

#[test]
fn racy_files_are_rehashed() {
    let (tmp, ctx) = sample();
    let cache = tmp.path().join("stat");
    // An mtime at or after the moment the file was read: it may have been
    // written again right after, within the same timestamp tick. (An
    // mtime in the future stands in for that deterministically.)
    set_mtime(
        &ctx.join("Dockerfile"),
        SystemTime::now() + Duration::from_secs(3600),
    );
    settle();
    for _ in 0..2 {
        let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
        digest_all(&c, &["Dockerfile", "src/main.rs"]);
        c.save().unwrap();
    }
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    digest_all(&c, &["Dockerfile", "src/main.rs"]);
    assert_eq!((c.stats().files_hashed, c.stats().files_from_cache), (1, 1));
}

#[test]
fn damaged_or_old_cache_files_are_ignored() {
    let (tmp, ctx) = sample();
    let cache = tmp.path().join("stat");
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    let first = digest_all(&c, &["Dockerfile"]);
    c.save().unwrap();
    let good = fs::read(&cache).unwrap();
    assert!(good.starts_with(b"rbuild context stat cache v2\n"));

    let mut old = good.clone();
    old[b"rbuild context stat cache v".len()] = b'1';
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x40;
    for (what, bytes) in [
        ("old version", old),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("bit flip", flipped),
        ("empty", Vec::new()),
        ("json", b"{\"version\": 1}".to_vec()),
    ] {
        fs::write(&cache, &bytes).unwrap();
        let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
        assert_eq!(c.stats().cache_load, CacheLoad::Discarded, "{what}");
        assert_eq!(digest_all(&c, &["Dockerfile"]), first, "{what}");
        assert_eq!(c.stats().files_hashed, 1, "{what}");
        // And it is replaced by a good one.
        c.save().unwrap();
        let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
        assert_eq!(c.stats().cache_load, CacheLoad::Loaded(1), "{what}");
    }
    // No temporary files left next to it.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn concurrent_digests_agree_with_sequential_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let names: Vec<String> = (0..200).map(|i| format!("d{}/f{i}", i % 7)).collect();
    for (i, name) in names.iter().enumerate() {
        write(&ctx, name, &"x".repeat(i * 37));
    }
    let cache = tmp.path().join("stat");
    settle();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    let results: Vec<Vec<Digest>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let c = &c;
                let names = &names;
                s.spawn(move || {
                    // Each thread walks the files from a different start.
                    (0..names.len())
                        .map(|i| c.file_digest(&names[(i + t * 25) % names.len()]).unwrap())
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, digests) in results.iter().enumerate() {
        for (i, d) in digests.iter().enumerate() {
            let k = (i + t * 25) % names.len();
            assert_eq!(*d, Digest::of("x".repeat(k * 37).as_bytes()));
        }
    }
    let s = c.stats();
    assert_eq!(s.files_hashed + s.files_from_cache, 8 * 200);
    assert!(s.files_hashed >= 200);
    c.save().unwrap();
    let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
    assert_eq!(c.stats().cache_load, CacheLoad::Loaded(200));
}

#[test]
fn xattrs_are_read_and_overlay_ones_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, "x").unwrap();
    let set = |name: &str, value: &[u8]| {
        rustix::fs::setxattr(&f, name, value, rustix::fs::XattrFlags::empty())
    };
    if set("user.b", b"2").is_err() {
        skipped(
            "xattrs_are_read_and_overlay_ones_left_out",
            "the temp filesystem has no user xattrs",
        );
        return;
    }
    set("user.a", b"1").unwrap();
    // Only root may set trusted.*; skip that part otherwise.
    if set("trusted.overlay.opaque", b"y").is_err() {
        skipped(
            "xattrs_are_read_and_overlay_ones_left_out",
            "its trusted.overlay.* check needs root",
        );
    }
    let c = Context::open(tmp.path(), IgnoreRules::none(), None).unwrap();
    assert_eq!(
        c.xattrs("f").unwrap(),
        [
            ("user.a".to_string(), b"1".to_vec()),
            ("user.b".to_string(), b"2".to_vec())
        ]
    );
    assert!(c.xattrs("").is_ok());
    // In a subdirectory, and on the directory itself; a symlink has none
    // (it is not followed).
    fs::create_dir(tmp.path().join("d")).unwrap();
    fs::write(tmp.path().join("d/g"), "g").unwrap();
    std::os::unix::fs::symlink("../f", tmp.path().join("d/link")).unwrap();
    for (path, value) in [("d", b"dir"), ("d/g", b"sub")] {
        rustix::fs::setxattr(
            tmp.path().join(path),
            "user.x",
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let c = Context::open(tmp.path(), IgnoreRules::none(), None).unwrap();
    assert_eq!(
        c.xattrs("d").unwrap(),
        [("user.x".to_string(), b"dir".to_vec())]
    );
    assert_eq!(
        c.xattrs("d/g").unwrap(),
        [("user.x".to_string(), b"sub".to_vec())]
    );
    assert!(c.xattrs("d/link").unwrap().is_empty());
}

/// The stat cache remembers that a file has no xattrs, so a cached walk
/// reads none; one added afterwards changes the file's ctime, and the
/// next walk reads and keys it.
#[test]
fn an_xattr_added_after_caching_reaches_the_tree_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(ctx.join("d")).unwrap();
    fs::write(ctx.join("d/f"), "x").unwrap();
    let cache = tmp.path().join("stat");
    settle();
    let digest = || {
        let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
        let d = rbuild_context::copy::tree_digest(&c, "").unwrap().digest;
        c.save().unwrap();
        (d, c.stats().files_from_cache)
    };
    let (first, _) = digest();
    let (again, from_cache) = digest();
    assert_eq!((again, from_cache), (first, 1));
    if rustix::fs::setxattr(
        ctx.join("d/f"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        skipped(
            "an_xattr_added_after_caching_reaches_the_tree_digest",
            "the temp filesystem has no user xattrs",
        );
        return;
    }
    settle();
    let (with_xattr, _) = digest();
    assert_ne!(with_xattr, first);
    // Now cached, with the xattr still read and keyed.
    assert_eq!(digest(), (with_xattr, 1));
}

/// Not a test: open + lstat + digest of 10,000 small files, without and
/// with the stat cache, plus the cache's load/save time. Run with
/// `cargo test -p rbuild-context --test context -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_10k_files() {
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("dir{}/sub{}/file{i}.txt", i % 20, i % 7))
        .collect();
    for name in &names {
        // 4 KiB each, so reading shows next to the per-file syscalls.
        write(&ctx, name, &format!("{:<63}\n", name).repeat(64));
    }
    let cache = tmp.path().join("stat");
    settle();
    for round in ["uncached", "cached"] {
        let t = Instant::now();
        let c = Context::open(&ctx, IgnoreRules::none(), Some(&cache)).unwrap();
        let opened = t.elapsed();
        let t = Instant::now();
        for name in &names {
            c.lstat(name).unwrap().unwrap();
            c.file_digest(name).unwrap();
        }
        let walked = t.elapsed();
        let t = Instant::now();
        c.save().unwrap();
        let saved = t.elapsed();
        let s = c.stats();
        eprintln!(
            "{round}: open (cache load) {opened:?}, lstat+digest {walked:?}, save {saved:?}, \
             hashed {} from cache {}, cache file {} bytes",
            s.files_hashed,
            s.files_from_cache,
            fs::metadata(&cache).unwrap().len()
        );
    }
}

use rbuild_testkit::skipped;
