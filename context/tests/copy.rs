//! COPY/ADD/WORKDIR engine: layers written on top of snapshot stacks built
//! with the layer codec (overlay whiteouts), checked by listing the tar.
//! Runs as root (whiteouts are character devices).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rbuild_context::copy::{
    CopyError, LayeredFs, SourceFs, content_digest, write_layer, write_mkdir_layer,
};
use rbuild_solver::Digest;
use rbuild_solver::op::{AddOptions, CopyOp, CopySource, MkdirOp};
use rbuild_store::layer::{UnpackOptions, WhiteoutMode, unpack_with};
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

/// Builds a layer tar entry by entry.
struct TarSpec {
    builder: tar::Builder<Vec<u8>>,
}

impl TarSpec {
    fn new() -> Self {
        TarSpec {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(
        mut self,
        path: &str,
        ty: tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        data: &[u8],
        link: Option<&str>,
    ) -> Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(self, path: &str, mode: u32) -> Self {
        self.entry(path, tar::EntryType::Directory, mode, (0, 0), b"", None)
    }

    fn file(self, path: &str, content: &str) -> Self {
        self.entry(
            path,
            tar::EntryType::Regular,
            0o644,
            (0, 0),
            content.as_bytes(),
            None,
        )
    }

    fn owned_file(self, path: &str, content: &str, mode: u32, owner: (u64, u64)) -> Self {
        self.entry(
            path,
            tar::EntryType::Regular,
            mode,
            owner,
            content.as_bytes(),
            None,
        )
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(
            path,
            tar::EntryType::Symlink,
            0o777,
            (0, 0),
            b"",
            Some(target),
        )
    }

    fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }

    /// Unpacks into a fresh snapshot dir, whiteouts kept in overlay form.
    fn snapshot(self) -> TempDir {
        let dir = TempDir::new().unwrap();
        let bytes = self.bytes();
        unpack_with(
            &mut bytes.as_slice(),
            dir.path(),
            &UnpackOptions {
                whiteouts: WhiteoutMode::Overlay,
            },
        )
        .unwrap();
        dir
    }
}

fn stack(layers: &[&TempDir]) -> LayeredFs {
    LayeredFs::new(layers.iter().map(|d| d.path().to_path_buf()).collect())
}

/// One entry of a produced layer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ent {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: String,
    link: String,
}

fn list(layer: &[u8]) -> BTreeMap<String, Ent> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(layer);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        let data = String::from_utf8_lossy(&bytes).into_owned();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => '?',
        };
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).unwrap())
            .unwrap_or_default();
        out.insert(
            path,
            Ent {
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                data,
                link,
            },
        );
    }
    out
}

fn paths(layer: &BTreeMap<String, Ent>) -> Vec<&str> {
    layer.keys().map(String::as_str).collect()
}

fn op(source: CopySource, sources: &[&str], dest: &str) -> CopyOp {
    CopyOp::plain(source, sources, dest)
}

fn copy(sources: &[&str], dest: &str) -> CopyOp {
    op(CopySource::Context, sources, dest)
}

/// Runs `write_layer` and lists the result.
fn run(dest: &LayeredFs, src: &dyn SourceFs, op: &CopyOp) -> BTreeMap<String, Ent> {
    let mut out = Vec::new();
    let stats = write_layer(dest, Some(src), op, &mut out).unwrap();
    assert_eq!(stats.size, out.len() as u64);
    assert_eq!(stats.diff_id, Digest::of(&out));
    list(&out)
}

fn run_err(dest: &LayeredFs, src: &dyn SourceFs, op: &CopyOp) -> CopyError {
    write_layer(dest, Some(src), op, &mut Vec::new()).unwrap_err()
}

/// A build context: a plain directory (a one-layer stack reads it).
struct Context {
    dir: TempDir,
}

impl Context {
    fn new() -> Self {
        Context {
            dir: TempDir::new().unwrap(),
        }
    }

    fn file(&self, path: &str, content: &str) -> &Self {
        self.file_mode(path, content, 0o644)
    }

    fn file_mode(&self, path: &str, content: &str, mode: u32) -> &Self {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn dir(&self, path: &str) -> &Self {
        std::fs::create_dir_all(self.dir.path().join(path)).unwrap();
        self
    }

    fn link(&self, path: &str, target: &str) -> &Self {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
        self
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn fs(&self) -> LayeredFs {
        LayeredFs::new(vec![self.dir.path().to_path_buf()])
    }
}

fn base() -> TempDir {
    TarSpec::new()
        .dir("etc/", 0o755)
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .file("etc/group", "root:x:0:\napp:x:1001:\nstaff:x:50:\n")
        .dir("usr/", 0o755)
        .dir("usr/share/", 0o700)
        .snapshot()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

// ------------------------------------------------------------ LayeredFs

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files() {
    let lower = TarSpec::new()
        .dir("a/", 0o755)
        .file("a/gone", "1")
        .file("a/kept", "2")
        .dir("b/", 0o755)
        .file("b/old", "3")
        .dir("c/", 0o755)
        .file("c/x", "4")
        .snapshot();
    let upper = TarSpec::new()
        .dir("a/", 0o755)
        .file("a/.wh.gone", "")
        .file("a/new", "5")
        .dir("b/", 0o750)
        .file("b/.wh..wh..opq", "")
        .file("b/fresh", "6")
        .file(".wh.c", "")
        .snapshot();
    let fs = stack(&[&upper, &lower]);
    assert_eq!(fs.read_dir("").unwrap(), ["a", "b"]);
    assert_eq!(fs.read_dir("a").unwrap(), ["kept", "new"]);
    assert_eq!(fs.read_dir("b").unwrap(), ["fresh"]);
    assert!(fs.lstat("a/gone").unwrap().is_none());
    assert!(fs.lstat("b/old").unwrap().is_none());
    assert!(fs.lstat("c").unwrap().is_none());
    assert!(fs.lstat("c/x").unwrap().is_none());
    assert_eq!(
        fs.lstat("b").unwrap().unwrap().mode,
        0o750,
        "top copy's metadata"
    );
    let mut kept = String::new();
    fs.open("a/kept")
        .unwrap()
        .read_to_string(&mut kept)
        .unwrap();
    assert_eq!(kept, "2");

    // A file in an upper layer hides a lower directory of the same name.
    let top = TarSpec::new().file("a", "file now").snapshot();
    let fs = stack(&[&top, &upper, &lower]);
    assert!(fs.lstat("a/kept").unwrap().is_none());
    assert_eq!(
        fs.lstat("a").unwrap().unwrap().kind,
        rbuild_context::copy::EntryKind::File
    );
}

#[test]
fn resolution_follows_symlinks_inside_the_root_only() {
    let layer = TarSpec::new()
        .dir("usr/", 0o755)
        .dir("opt/", 0o755)
        .dir("opt/local/", 0o755)
        .symlink("usr/local", "../opt/local")
        .symlink("abs", "/opt")
        .symlink("loop1", "loop2")
        .symlink("loop2", "loop1")
        .snapshot();
    // The unpacker refuses such a link; a RUN step could still make one.
    symlink("../../../../etc", layer.path().join("escape")).unwrap();
    let fs = stack(&[&layer]);
    assert_eq!(
        fs.resolve("/usr/local/bin", true).unwrap(),
        ["opt", "local", "bin"]
    );
    assert_eq!(
        fs.resolve("/escape/passwd", true).unwrap(),
        ["etc", "passwd"]
    );
    assert_eq!(fs.resolve("/../../abs/x", true).unwrap(), ["opt", "x"]);
    assert_eq!(fs.resolve("/abs", false).unwrap(), ["abs"]);
    assert!(fs.resolve("/loop1/x", true).is_err());
}

// -------------------------------------------------------- dest placement

#[test]
fn dest_dir_or_file_follows_docker_rules() {
    let ctx = Context::new();
    ctx.file("a.txt", "A").file("b.txt", "B");
    let dest_layer = TarSpec::new().dir("existing/", 0o711).snapshot();
    let dest = stack(&[&dest_layer]);
    let src = ctx.fs();

    // No trailing slash, missing dest: the file *is* the dest.
    let l = run(&dest, &src, &copy(&["a.txt"], "/new"));
    assert_eq!(paths(&l), ["new"]);
    assert_eq!(l["new"].data, "A");

    // Trailing slash: a directory, created 0755 root.
    let l = run(&dest, &src, &copy(&["a.txt"], "/new/"));
    assert_eq!(paths(&l), ["new/", "new/a.txt"]);
    assert_eq!((l["new/"].mode, l["new/"].uid), (0o755, 0));

    // An existing directory: inside it, its metadata kept.
    let l = run(&dest, &src, &copy(&["a.txt"], "/existing"));
    assert_eq!(paths(&l), ["existing/", "existing/a.txt"]);
    assert_eq!(l["existing/"].mode, 0o711);
    assert_eq!(l["existing/"].mtime, 1_600_000_000);

    // Several sources and no trailing slash: as BuildKit, each is written
    // to that one path and the last remains (not a directory).
    let l = run(&dest, &src, &copy(&["a.txt", "b.txt"], "/multi"));
    assert_eq!(paths(&l), ["multi"]);
    assert_eq!(l["multi"].data, "B");
    // ... but into an existing directory, or with the slash, a directory.
    let l = run(&dest, &src, &copy(&["a.txt", "b.txt"], "/existing"));
    assert_eq!(paths(&l), ["existing/", "existing/a.txt", "existing/b.txt"]);
    let l = run(&dest, &src, &copy(&["a.txt", "b.txt"], "/multi/"));
    assert_eq!(paths(&l), ["multi/", "multi/a.txt", "multi/b.txt"]);

    // A glob matching several files: the same.
    let l = run(&dest, &src, &copy(&["*.txt"], "/g"));
    assert_eq!(paths(&l), ["g"]);
    let l = run(&dest, &src, &copy(&["*.txt"], "/g/"));
    assert_eq!(paths(&l), ["g/", "g/a.txt", "g/b.txt"]);

    // Missing parents created.
    let l = run(&dest, &src, &copy(&["a.txt"], "/x/y/z.txt"));
    assert_eq!(paths(&l), ["x/", "x/y/", "x/y/z.txt"]);
}

#[test]
fn copied_files_keep_mode_and_mtime_and_get_root_owner_from_context() {
    let ctx = Context::new();
    ctx.file_mode("tool", "#!/bin/sh\n", 0o751);
    set_mtime(&ctx.path("tool"), 1_234_567_890);
    // The context file is owned by someone else: the layer says 0:0.
    std::os::unix::fs::chown(ctx.path("tool"), Some(4242), Some(4343)).unwrap();
    let dest = LayeredFs::new(Vec::new());
    let l = run(&dest, &ctx.fs(), &copy(&["tool"], "/bin/"));
    let e = &l["bin/tool"];
    assert_eq!(
        (e.mode, e.mtime, e.uid, e.gid),
        (0o751, 1_234_567_890, 0, 0)
    );

    // From a stage, owners are preserved.
    let stage = TarSpec::new()
        .owned_file("app/run", "x", 0o700, (1000, 1001))
        .snapshot();
    let l = run(
        &dest,
        &stack(&[&stage]),
        &op(CopySource::Input, &["app/run"], "/bin/"),
    );
    assert_eq!((l["bin/run"].uid, l["bin/run"].gid), (1000, 1001));
}

#[test]
fn symlinked_dest_parent_is_resolved_inside_the_root() {
    let ctx = Context::new();
    ctx.file("tool", "T");
    let layer = TarSpec::new()
        .dir("usr/", 0o755)
        .dir("opt/", 0o755)
        .dir("opt/local/", 0o700)
        .symlink("usr/local", "/opt/local")
        .snapshot();
    symlink("../../../../../tmp", layer.path().join("evil")).unwrap();
    let dest = stack(&[&layer]);
    let l = run(&dest, &ctx.fs(), &copy(&["tool"], "/usr/local/bin/"));
    assert_eq!(
        paths(&l),
        ["opt/", "opt/local/", "opt/local/bin/", "opt/local/bin/tool"]
    );
    assert_eq!(l["opt/local/"].mode, 0o700, "existing dir keeps its mode");

    // `..` in a symlink clamps at the image root: /evil is /tmp in the image.
    let l = run(&dest, &ctx.fs(), &copy(&["tool"], "/evil/"));
    assert_eq!(paths(&l), ["tmp/", "tmp/tool"]);
}

#[test]
fn file_over_directory_is_an_error() {
    let ctx = Context::new();
    ctx.dir("d").file("d/x", "file");
    let layer = TarSpec::new()
        .dir("dst/", 0o755)
        .dir("dst/x/", 0o755)
        .snapshot();
    let err = run_err(&stack(&[&layer]), &ctx.fs(), &copy(&["d"], "/dst"));
    assert!(
        matches!(err, CopyError::ReplaceDirectory { ref path } if path == "/dst/x"),
        "{err}"
    );
}

/// A COPY looks each destination directory up once for the files under
/// it (a new directory's files cannot clash with anything); files in
/// directories the destination has are still checked one by one.
#[test]
fn files_in_existing_nested_dirs_are_checked_against_them() {
    let layer = TarSpec::new()
        .dir("dst/", 0o755)
        .dir("dst/a/", 0o755)
        .dir("dst/a/b/", 0o750)
        .dir("dst/a/b/x/", 0o755)
        .file("dst/a/b/y", "old")
        .snapshot();
    let dest = stack(&[&layer]);
    let ctx = Context::new();
    ctx.file("d/a/b/new.txt", "new")
        .file("d/a/b/y", "replaced")
        .file("d/a/c.txt", "c")
        .file("d/n/m/o.txt", "o");
    let l = run(&dest, &ctx.fs(), &copy(&["d"], "/dst"));
    assert_eq!(
        paths(&l),
        [
            "dst/",
            "dst/a/",
            "dst/a/b/",
            "dst/a/b/new.txt",
            "dst/a/b/y",
            "dst/a/c.txt",
            "dst/n/",
            "dst/n/m/",
            "dst/n/m/o.txt"
        ]
    );
    assert_eq!(l["dst/a/b/y"].data, "replaced");

    ctx.file("d/a/b/x", "file over a directory");
    let err = run_err(&dest, &ctx.fs(), &copy(&["d"], "/dst"));
    assert!(
        matches!(err, CopyError::ReplaceDirectory { ref path } if path == "/dst/a/b/x"),
        "{err}"
    );
}

// ------------------------------------------------------------- selection

#[test]
fn directory_source_copies_its_contents() {
    let ctx = Context::new();
    ctx.dir("src/empty")
        .file("src/main.rs", "fn main() {}")
        .file("src/lib/mod.rs", "")
        .link("src/link", "main.rs");
    let dest = LayeredFs::new(Vec::new());
    let l = run(&dest, &ctx.fs(), &copy(&["src"], "/app"));
    assert_eq!(
        paths(&l),
        [
            "app/",
            "app/empty/",
            "app/lib/",
            "app/lib/mod.rs",
            "app/link",
            "app/main.rs"
        ]
    );
    assert_eq!(l["app/link"].kind, 'l');
    assert_eq!(l["app/link"].link, "main.rs");

    // A symlink to a directory as the source copies the directory.
    ctx.link("alias", "src");
    let l = run(&dest, &ctx.fs(), &copy(&["alias"], "/app2/"));
    assert!(l.contains_key("app2/main.rs"));
}

#[test]
fn globs_match_classes_and_not_across_slashes() {
    let ctx = Context::new();
    ctx.file("a1.txt", "")
        .file("b2.txt", "")
        .file("c3.txt", "")
        .file("sub/d4.txt", "")
        .file("[x].txt", "");
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();
    let l = run(&dest, &src, &copy(&["[a-b]?.txt"], "/o/"));
    assert_eq!(paths(&l), ["o/", "o/a1.txt", "o/b2.txt"]);
    let l = run(&dest, &src, &copy(&["[^a-b]*.txt"], "/o/"));
    assert_eq!(paths(&l), ["o/", "o/[x].txt", "o/c3.txt"]);
    let l = run(&dest, &src, &copy(&["*/*.txt"], "/o/"));
    assert_eq!(paths(&l), ["o/", "o/d4.txt"]);
    let l = run(&dest, &src, &copy(&["\\[x\\].txt"], "/o/"));
    assert_eq!(paths(&l), ["o/", "o/[x].txt"]);

    // A wildcard that matches nothing copies nothing (BuildKit's
    // AllowEmptyWildcard); the other sources still are copied.
    let l = run(&dest, &src, &copy(&["*.md", "a1.txt"], "/o/"));
    assert_eq!(paths(&l), ["o/", "o/a1.txt"]);
    // Nothing at all: a layer with no entries (BuildKit's COPY always has
    // one), not no layer.
    let l = run(&dest, &src, &copy(&["*.md"], "/o/"));
    assert!(l.is_empty(), "{l:?}");
    let err = run_err(&dest, &src, &copy(&["missing.txt"], "/o/"));
    assert_eq!(err.to_string(), "\"/missing.txt\": not found");
    let err = run_err(&dest, &src, &copy(&["[a-"], "/o/"));
    assert!(matches!(err, CopyError::BadPattern { .. }), "{err}");
}

#[test]
fn exclude_drops_matches_relative_to_the_copied_source() {
    let ctx = Context::new();
    ctx.file("dir/keep.rs", "")
        .file("dir/skip.md", "")
        .file("dir/sub/deep.md", "")
        .file("dir/logs/a.log", "")
        .file("dir/logs/keep.log", "")
        .file("home.txt", "")
        .file("home.rs", "");
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();
    let mut o = copy(&["dir"], "/o");
    o.exclude = vec![
        "*.md".into(),
        "logs".into(),
        "!logs/keep.log".into(),
        "sub/**".into(),
    ];
    let l = run(&dest, &src, &o);
    assert_eq!(
        paths(&l),
        ["o/", "o/keep.rs", "o/logs/", "o/logs/keep.log", "o/sub/"]
    );
    // Docker's reference example: `COPY --exclude=*.txt hom* /mydir/`.
    let mut o = copy(&["hom*"], "/mydir/");
    o.exclude = vec!["*.txt".into()];
    let l = run(&dest, &src, &o);
    assert_eq!(paths(&l), ["mydir/", "mydir/home.rs"]);
}

/// Regression: `--exclude` used a matcher of its own, so `**.txt` kept
/// `a/b.txt`. It now matches exactly as `.dockerignore` does.
#[test]
fn exclude_matches_like_dockerignore() {
    let ctx = Context::new();
    ctx.file("a/b.txt", "b")
        .file("c.txt", "c")
        .file("d.md", "d");
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();
    let with = |exclude: &[&str]| {
        let mut o = copy(&["."], "/out");
        o.exclude = exclude.iter().map(|e| e.to_string()).collect();
        run(&dest, &src, &o)
    };
    // `**.txt` drops every .txt file at any depth; the directory `a`
    // itself does not match, so it is still copied (empty), as BuildKit's
    // copier creates every directory it does not exclude.
    let l = with(&["**.txt"]);
    assert_eq!(paths(&l), ["out/", "out/a/", "out/d.md"]);
    // Excluding a directory drops it with everything below it.
    let l = with(&["a"]);
    assert_eq!(paths(&l), ["out/", "out/c.txt", "out/d.md"]);
    // `!` re-includes, the last matching pattern wins.
    let l = with(&["**.txt", "!a/b.txt"]);
    assert_eq!(paths(&l), ["out/", "out/a/", "out/a/b.txt", "out/d.md"]);
    assert_eq!(l["out/a/b.txt"].data, "b");
    let l = with(&["!a/b.txt", "**.txt"]);
    assert_eq!(paths(&l), ["out/", "out/a/", "out/d.md"]);
    let l = with(&["*", "!d.md"]);
    assert_eq!(paths(&l), ["out/", "out/d.md"]);
    // A bad pattern names itself.
    let mut o = copy(&["."], "/out");
    o.exclude = vec!["[".into()];
    let err = run_err(&dest, &src, &o);
    assert_eq!(err.to_string(), "invalid pattern \"[\"");
}

#[test]
fn parents_keep_paths_below_the_pivot() {
    let ctx = Context::new();
    ctx.file("x/a.txt", "xa")
        .file("y/a.txt", "ya")
        .file("src/a.txt", "")
        .file("src/x/b.txt", "")
        .file("src/x/y/c.txt", "")
        .file("src/x/y/c.rs", "")
        .file("p/q/r.txt", "");
    std::fs::set_permissions(ctx.path("src/x"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();
    let mut o = copy(&["./x/a.txt", "./y/a.txt"], "/parents/");
    o.parents = true;
    let l = run(&dest, &src, &o);
    assert_eq!(
        paths(&l),
        [
            "parents/",
            "parents/x/",
            "parents/x/a.txt",
            "parents/y/",
            "parents/y/a.txt"
        ]
    );
    assert_eq!(l["parents/y/a.txt"].data, "ya");

    let mut o = copy(&["./src/**/*.txt"], "/parents/");
    o.parents = true;
    let l = run(&dest, &src, &o);
    assert_eq!(
        paths(&l),
        [
            "parents/",
            "parents/src/",
            "parents/src/a.txt",
            "parents/src/x/",
            "parents/src/x/b.txt",
            "parents/src/x/y/",
            "parents/src/x/y/c.txt"
        ]
    );
    assert_eq!(
        l["parents/src/x/"].mode, 0o750,
        "parents keep their metadata"
    );

    // The `./` pivot: only what follows it is kept.
    let mut o = copy(&["./p/./q/*.txt"], "/parents/");
    o.parents = true;
    let l = run(&dest, &src, &o);
    assert_eq!(paths(&l), ["parents/", "parents/q/", "parents/q/r.txt"]);

    let mut o = copy(&["./nope.txt"], "/parents/");
    o.parents = true;
    let err = run_err(&dest, &src, &o);
    assert!(matches!(err, CopyError::SourceNotFound { .. }), "{err}");
}

// --------------------------------------------------------- owner and mode

#[test]
fn chown_by_name_and_id_owns_copied_files_and_created_dirs() {
    let ctx = Context::new();
    ctx.file("f", "x").file("d/g", "y");
    let b = base();
    let dest = stack(&[&b]);
    let src = ctx.fs();

    let mut o = copy(&["f"], "/srv/app/");
    o.chown = Some("app".into());
    let l = run(&dest, &src, &o);
    assert_eq!((l["srv/app/f"].uid, l["srv/app/f"].gid), (1000, 1001));
    assert_eq!((l["srv/"].uid, l["srv/app/"].gid), (1000, 1001));
    assert_eq!((l["srv/"].mode, l["srv/app/"].mode), (0o755, 0o755));

    let mut o = copy(&["d"], "/usr/share/d");
    o.chown = Some("4000:staff".into());
    let l = run(&dest, &src, &o);
    assert_eq!((l["usr/share/d/g"].uid, l["usr/share/d/g"].gid), (4000, 50));
    assert_eq!(
        (l["usr/share/"].uid, l["usr/share/"].mode),
        (0, 0o700),
        "existing parents keep their owner and mode"
    );

    let mut o = copy(&["f"], "/f");
    o.chown = Some("1234".into());
    let l = run(&dest, &src, &o);
    assert_eq!(
        (l["f"].uid, l["f"].gid),
        (1234, 1234),
        "BuildKit: gid = uid"
    );

    // Names the image does not list: BuildKit's readUser leaves 0 for an
    // unknown user and the gid as it was for an unknown group.
    let mut o = copy(&["f"], "/f");
    o.chown = Some("nobody".into());
    let l = run(&dest, &src, &o);
    assert_eq!((l["f"].uid, l["f"].gid), (0, 0));
    o.chown = Some("app:nogroup".into());
    let l = run(&dest, &src, &o);
    assert_eq!((l["f"].uid, l["f"].gid), (1000, 1001));
    o.chown = Some("4000:nogroup".into());
    let l = run(&dest, &src, &o);
    assert_eq!((l["f"].uid, l["f"].gid), (4000, 4000));
}

#[test]
fn chmod_octal_and_symbolic_apply_to_files_and_dirs() {
    let ctx = Context::new();
    ctx.file_mode("d/run", "", 0o644)
        .file_mode("d/exe", "", 0o700)
        .dir("d/sub");
    std::fs::set_permissions(ctx.path("d/sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();

    let mut o = copy(&["d"], "/o");
    o.chmod = Some("750".into());
    let l = run(&dest, &src, &o);
    for p in ["o/", "o/run", "o/exe", "o/sub/"] {
        assert_eq!(l[p].mode, 0o750, "{p}");
    }

    let mut o = copy(&["d"], "/o");
    o.chmod = Some("a=rX".into());
    let l = run(&dest, &src, &o);
    assert_eq!(l["o/run"].mode, 0o444);
    assert_eq!(l["o/exe"].mode, 0o555);
    assert_eq!(l["o/sub/"].mode, 0o555);

    let mut o = copy(&["d/run"], "/o/run");
    o.chmod = Some("u+x,go-w".into());
    let l = run(&dest, &src, &o);
    assert_eq!(l["o/run"].mode, 0o744);

    let mut o = copy(&["d/run"], "/o/run");
    o.chmod = Some("99".into());
    let err = run_err(&dest, &src, &o);
    assert!(matches!(err, CopyError::InvalidChmod(_)), "{err}");
}

#[test]
fn hardlinks_stay_hardlinks() {
    let ctx = Context::new();
    ctx.file("d/a", "same");
    std::fs::hard_link(ctx.path("d/a"), ctx.path("d/b")).unwrap();
    let l = run(&LayeredFs::new(Vec::new()), &ctx.fs(), &copy(&["d"], "/o"));
    assert_eq!(l["o/a"].kind, 'f');
    assert_eq!(l["o/b"].kind, 'h');
    assert_eq!(l["o/b"].link, "o/a");
}

#[test]
fn inline_files_are_0644_root_mtime_0() {
    let dest = LayeredFs::new(Vec::new());
    let o = op(
        CopySource::Inline(vec![("greeting".into(), "hello\n".into())]),
        &[],
        "/etc/",
    );
    let mut out = Vec::new();
    write_layer(&dest, None, &o, &mut out).unwrap();
    let l = list(&out);
    let e = &l["etc/greeting"];
    assert_eq!(
        (e.mode, e.uid, e.mtime, e.data.as_str()),
        (0o644, 0, 0, "hello\n")
    );
}

// -------------------------------------------------------------------- ADD

fn targz(spec: TarSpec) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&spec.bytes()).unwrap();
    gz.finish().unwrap()
}

fn add(sources: &[&str], dest: &str, unpack: bool) -> CopyOp {
    let mut o = copy(sources, dest);
    o.add = Some(AddOptions {
        unpack,
        checksum: None,
        keep_git_dir: false,
    });
    o
}

#[test]
fn add_extracts_local_archives_unless_unpack_is_false() {
    let ctx = Context::new();
    let archive = targz(
        TarSpec::new()
            .dir("pkg/", 0o755)
            .owned_file("pkg/bin", "B", 0o755, (7, 8))
            .symlink("pkg/link", "bin"),
    );
    std::fs::write(ctx.path("pkg.tar.gz"), &archive).unwrap();
    ctx.file("plain.txt", "not an archive");
    let dest = LayeredFs::new(Vec::new());
    let src = ctx.fs();

    let l = run(&dest, &src, &add(&["pkg.tar.gz"], "/opt/", true));
    assert_eq!(
        paths(&l),
        ["opt/", "opt/pkg/", "opt/pkg/bin", "opt/pkg/link"]
    );
    assert_eq!((l["opt/pkg/bin"].uid, l["opt/pkg/bin"].gid), (7, 8));
    assert_eq!(l["opt/pkg/bin"].data, "B");
    assert_eq!(l["opt/pkg/link"].link, "bin");

    let mut o = add(&["pkg.tar.gz"], "/opt/", true);
    o.chown = Some("9:9".into());
    let l = run(&dest, &src, &o);
    assert_eq!(l["opt/pkg/bin"].uid, 9);

    let l = run(&dest, &src, &add(&["pkg.tar.gz"], "/opt/", false));
    assert_eq!(paths(&l), ["opt/", "opt/pkg.tar.gz"]);
    assert_eq!(l["opt/pkg.tar.gz"].data, String::from_utf8_lossy(&archive));

    let l = run(&dest, &src, &add(&["plain.txt"], "/opt/", true));
    assert_eq!(paths(&l), ["opt/", "opt/plain.txt"]);
}

/// Serves `body` to `count` requests on 127.0.0.1, then stops.
fn serve(body: &'static [u8], count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut s = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body).unwrap();
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_downloads_urls_and_verifies_checksums() {
    const BODY: &[u8] = b"downloaded content\n";
    let base_url = serve(BODY, 4);
    let url = format!("{base_url}/files/tool.sh?v=1");
    let dest = LayeredFs::new(Vec::new());
    let ctx = Context::new();

    let mut o = add(&[&url], "/usr/bin/", true);
    o.add.as_mut().unwrap().checksum = Some(Digest::of(BODY));
    let l = run(&dest, &ctx.fs(), &o);
    let e = &l["usr/bin/tool.sh"];
    assert_eq!((e.mode, e.uid, e.mtime), (0o600, 0, 784_111_777));
    assert_eq!(e.data.as_bytes(), BODY);

    // Not a directory: the download is the dest file.
    let l = run(&dest, &ctx.fs(), &add(&[&url], "/renamed", true));
    assert_eq!(paths(&l), ["renamed"]);

    let mut o = add(&[&url], "/usr/bin/", true);
    o.add.as_mut().unwrap().checksum = Some(Digest::of(b"other"));
    let err = run_err(&dest, &ctx.fs(), &o);
    assert!(matches!(err, CopyError::ChecksumMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&Digest::of(b"other").to_string()), "{text}");
    assert!(text.contains(&Digest::of(BODY).to_string()), "{text}");

    // The content digest downloads without a checksum; the layer reuses it.
    let o = add(&[&url], "/x/", true);
    let d = content_digest(None, &o).unwrap();
    assert_eq!(d.files.to_vec().unwrap(), [(url.clone(), Digest::of(BODY))]);
    let l = run(&dest, &ctx.fs(), &o);
    assert_eq!(l["x/tool.sh"].data.as_bytes(), BODY);
}

// ---------------------------------------------------------------- WORKDIR

#[test]
fn workdir_creates_missing_dirs_owned_by_the_user() {
    let b = base();
    let dest = stack(&[&b]);
    let o = MkdirOp {
        path: "/usr/share/app/data".into(),
        user: "app".into(),
        display: String::new(),
    };
    let mut out = Vec::new();
    write_mkdir_layer(&dest, &o, &mut out).unwrap();
    let l = list(&out);
    assert_eq!(
        paths(&l),
        [
            "usr/",
            "usr/share/",
            "usr/share/app/",
            "usr/share/app/data/"
        ]
    );
    let e = &l["usr/share/app/data/"];
    assert_eq!((e.mode, e.uid, e.gid), (0o755, 1000, 1001));
    assert_eq!((l["usr/share/"].uid, l["usr/share/"].mode), (0, 0o700));

    let o = MkdirOp {
        path: "/usr/share".into(),
        user: String::new(),
        display: String::new(),
    };
    // A directory that exists already: still a layer, with no entries
    // (BuildKit gives every WORKDIR but `/` a layer, empty or not).
    let mut out = Vec::new();
    let stats = write_mkdir_layer(&dest, &o, &mut out).unwrap();
    assert!(list(&out).is_empty());
    assert_eq!(stats.diff_id, Digest::of(&out));
}

// ---------------------------------------------------------- content digest

#[test]
fn content_digest_tracks_content_not_mtime_or_context_owner() {
    let ctx = Context::new();
    ctx.file("d/a.txt", "A")
        .file("d/b.txt", "B")
        .link("d/l", "a.txt");
    let src = ctx.fs();
    let o = copy(&["d"], "/o");
    let digest = || {
        content_digest(Some(&src as &dyn SourceFs), &o)
            .unwrap()
            .digest
    };
    let d0 = digest();

    set_mtime(&ctx.path("d/a.txt"), 1);
    std::os::unix::fs::chown(ctx.path("d/a.txt"), Some(4242), Some(4242)).unwrap();
    assert_eq!(digest(), d0, "mtime and context owner are not part of it");

    std::fs::write(ctx.path("d/a.txt"), "A2").unwrap();
    let d1 = digest();
    assert_ne!(d1, d0, "content");

    std::fs::set_permissions(ctx.path("d/a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let d2 = digest();
    assert_ne!(d2, d1, "mode");

    std::fs::remove_file(ctx.path("d/l")).unwrap();
    symlink("b.txt", ctx.path("d/l")).unwrap();
    let d3 = digest();
    assert_ne!(d3, d2, "symlink target");

    ctx.file("d/c.txt", "C");
    let d4 = digest();
    assert_ne!(d4, d3, "new file");

    // From a stage, the owner is copied, so it is part of the digest.
    let stage = |owner| TarSpec::new().owned_file("f", "x", 0o644, owner).snapshot();
    let (s1, s2) = (stage((0, 0)), stage((5, 5)));
    let o = op(CopySource::Input, &["f"], "/f");
    let a = content_digest(Some(&stack(&[&s1]) as &dyn SourceFs), &o)
        .unwrap()
        .digest;
    let b = content_digest(Some(&stack(&[&s2]) as &dyn SourceFs), &o)
        .unwrap()
        .digest;
    assert_ne!(a, b);
    let mut chowned = o.clone();
    chowned.chown = Some("1".into());
    let a = content_digest(Some(&stack(&[&s1]) as &dyn SourceFs), &chowned)
        .unwrap()
        .digest;
    let b = content_digest(Some(&stack(&[&s2]) as &dyn SourceFs), &chowned)
        .unwrap()
        .digest;
    assert_eq!(a, b, "--chown replaces the owner");
}

#[test]
fn content_digest_is_pinned() {
    let ctx = Context::new();
    ctx.file_mode("app/main.sh", "echo hi\n", 0o755)
        .file_mode("app/conf/x.conf", "k=v\n", 0o644);
    std::fs::set_permissions(ctx.path("app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(ctx.path("app/conf"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = content_digest(Some(&ctx.fs() as &dyn SourceFs), &copy(&["app"], "/srv/")).unwrap();
    assert_eq!(
        d.files
            .to_vec()
            .unwrap()
            .into_iter()
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        ["app/conf", "app/conf/x.conf", "app/main.sh"]
    );
    assert_eq!(
        d.digest.to_string(),
        "sha256:767be712b774a85417d5fecd6b54caf321274288705d3c4a694a4fbc7444a687"
    );
}

#[test]
fn parallel_digest_of_1000_files_equals_serial() {
    let ctx = Context::new();
    for i in 0..1000 {
        ctx.file(&format!("many/{:02}/{i}.txt", i % 37), &format!("file {i}"));
    }
    let src = ctx.fs();
    let o = copy(&["many"], "/m/");
    let parallel = content_digest(Some(&src as &dyn SourceFs), &o).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let serial = pool.install(|| content_digest(Some(&src as &dyn SourceFs), &o).unwrap());
    assert_eq!(parallel, serial);
    assert_eq!(parallel.files.len(), 1000 + 37);
}

#[test]
fn names_that_are_not_utf8_are_copied_as_bytes_from_a_stage() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let ctx = Context::new();
    let raw = |b: &[u8]| ctx.path("src").join(OsStr::from_bytes(b));
    std::fs::create_dir_all(raw(b"d\xff")).unwrap();
    std::fs::write(raw(b"d\xff/f\xfe"), "x").unwrap();
    symlink(OsStr::from_bytes(b"d\xff/f\xfe"), raw(b"l\xc3")).unwrap();
    // The destination has a directory whose name is not UTF-8 either.
    let dest = Context::new();
    std::fs::create_dir_all(dest.dir.path().join(OsStr::from_bytes(b"out\xff"))).unwrap();
    let mut op = op(CopySource::Input, &["/src"], "");
    op.dest = rbuild_oci::path_text::from_bytes(b"/out\xff/").into_owned();

    let mut out = Vec::new();
    write_layer(&dest.fs(), Some(&ctx.fs()), &op, &mut out).unwrap();
    let mut entries = Vec::new();
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let e = e.unwrap();
        let link = e.link_name_bytes().map(|l| l.to_vec()).unwrap_or_default();
        entries.push((e.path_bytes().to_vec(), link));
    }
    let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"out\xff/".to_vec(), vec![]),
        (b"out\xff/d\xff/".to_vec(), vec![]),
        (b"out\xff/d\xff/f\xfe".to_vec(), vec![]),
        (b"out\xff/l\xc3".to_vec(), b"d\xff/f\xfe".to_vec()),
    ];
    assert_eq!(entries, want);

    // The content digest names the files in text form, one per name.
    let digest = content_digest(Some(&ctx.fs()), &op).unwrap();
    let names: Vec<Vec<u8>> = digest
        .files
        .to_vec()
        .unwrap()
        .iter()
        .map(|(n, _)| rbuild_oci::path_text::to_bytes(n).into_owned())
        .collect();
    assert_eq!(names, [&b"src/d\xff"[..], b"src/d\xff/f\xfe", b"src/l\xc3"]);
}

#[test]
fn add_extracts_archive_members_whose_names_are_not_utf8_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, OsStr::from_bytes(b"pkg/f\xff"), &b"x"[..])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_link(
        &mut h,
        OsStr::from_bytes(b"pkg/l\xfe"),
        OsStr::from_bytes(b"f\xff"),
    )
    .unwrap();
    let archive = b.into_inner().unwrap();
    let ctx = Context::new();
    std::fs::write(ctx.path("pkg.tar"), &archive).unwrap();

    let mut out = Vec::new();
    write_layer(
        &LayeredFs::new(Vec::new()),
        Some(&ctx.fs()),
        &add(&["pkg.tar"], "/opt/", true),
        &mut out,
    )
    .unwrap();
    let mut entries = Vec::new();
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let e = e.unwrap();
        let link = e.link_name_bytes().map(|l| l.to_vec()).unwrap_or_default();
        entries.push((e.path_bytes().to_vec(), link));
    }
    assert_eq!(
        entries,
        [
            (b"opt/".to_vec(), vec![]),
            (b"opt/pkg/".to_vec(), vec![]),
            (b"opt/pkg/f\xff".to_vec(), vec![]),
            (b"opt/pkg/l\xfe".to_vec(), b"f\xff".to_vec()),
        ]
    );
}

/// The key of a COPY whose walk spans several of the batches its digests
/// are computed in, with hard links from one batch (and one source) to
/// another: pinned, as the walk was held whole when it was recorded.
/// 9,000 files in 30 directories under `big` (more than a batch of the
/// walk), `other/x`, and hard links to `big/d00/f0` (walked first) from
/// `big/d29/z` (last) and `other/y`.
fn context_longer_than_a_batch() -> Context {
    let ctx = Context::new();
    for i in 0..9000 {
        ctx.file_mode(
            &format!("big/d{:02}/f{i}", i % 30),
            &format!("{i}\n"),
            0o644,
        );
    }
    ctx.file_mode("other/x", "x\n", 0o600);
    for d in ["big", "other"].into_iter().chain(
        (0..30)
            .map(|i| format!("big/d{i:02}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    ) {
        std::fs::set_permissions(ctx.path(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // `big/d00/f0` is walked first, `big/d29/z` last: a link to it from
    // the last batch and from the second source.
    std::fs::hard_link(ctx.path("big/d00/f0"), ctx.path("big/d29/z")).unwrap();
    std::fs::hard_link(ctx.path("big/d00/f0"), ctx.path("other/y")).unwrap();
    ctx
}

#[test]
fn content_digest_of_a_walk_longer_than_a_batch_is_pinned() {
    let ctx = context_longer_than_a_batch();
    let src = ctx.fs();
    let d = content_digest(
        Some(&src as &dyn SourceFs),
        &copy(&["big", "other"], "/srv/"),
    )
    .unwrap();
    assert_eq!(d.files.len(), 9000 + 30 + 1 + 2);
    assert_eq!(
        d.digest.to_string(),
        "sha256:d87722fdcd7a7baa832b0de23dcfff5e07d405c5831a85a757e8567113867ed0"
    );
    // With a spill directory, the walk's digests and the per-file list go
    // to temporary files past a few thousand entries: the same digest and
    // the same list, and nothing left in the directory.
    let spill = tempfile::tempdir().unwrap();
    let spilled = rbuild_context::copy::content_digest_in(
        Some(&src as &dyn SourceFs),
        &copy(&["big", "other"], "/srv/"),
        Some(spill.path()),
    )
    .unwrap();
    assert_eq!(spilled.digest, d.digest);
    assert!(spilled.files.is_spilled() && !d.files.is_spilled());
    assert_eq!(spilled.files, d.files);
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);
}

/// A bind mount's tree digest (RUN --mount=type=bind, a named context)
/// is pinned too: it was computed over the whole tree listed breadth
/// first, and is now digested a batch at a time as the walk goes, with
/// the same value; with a spill directory, the same value and list.
#[test]
fn tree_digest_of_a_tree_longer_than_a_batch_is_pinned() {
    let ctx = context_longer_than_a_batch();
    let src = ctx.fs();
    let d = rbuild_context::copy::tree_digest(&src, "").unwrap();
    assert_eq!(d.files.len(), 1 + 2 + 30 + 9000 + 1 + 2);
    assert_eq!(
        d.digest.to_string(),
        "sha256:764c288bdbe29fe885d6997a71f4df749e392f37a56e82277b92d3a4262f6863"
    );
    let spill = tempfile::tempdir().unwrap();
    let spilled = rbuild_context::copy::tree_digest_in(&src, "", Some(spill.path())).unwrap();
    assert_eq!(spilled.digest, d.digest);
    assert!(spilled.files.is_spilled());
    assert_eq!(spilled.files, d.files);
    let sub = rbuild_context::copy::tree_digest(&src, "big/d07").unwrap();
    assert_eq!(sub.files.len(), 1 + 300);
    assert_eq!(
        sub.digest.to_string(),
        "sha256:80f0a209ba6ca6708650619e30c8e41fbd259e1273e13ea9b590a255940bca0c"
    );
}

/// A COPY of one directory's contents is written as its walk goes, with
/// no plan of the layer; beside a source that selects nothing (which
/// makes it build the plan) it must write the same bytes: the created
/// destination and its existing parents first, a re-included file's
/// excluded directory before it, hard links to the first of their group.
#[test]
fn one_directory_streamed_writes_the_bytes_of_a_whole_plan() {
    let ctx = Context::new();
    for i in 0..50 {
        ctx.file(&format!("tree/d{}/f{i}", i % 7), &format!("{i}\n"));
    }
    ctx.file("tree/a-b", "dash\n")
        .file("tree/a/x", "x\n")
        .file("tree/skip/drop", "no\n")
        .file("tree/skip/deep/keep", "yes\n")
        .link("tree/d0/ln", "../a/x");
    std::fs::hard_link(ctx.path("tree/a/x"), ctx.path("tree/z-link")).unwrap();
    let dest = LayeredFs::new(vec![base().path().to_path_buf()]);
    let src = ctx.fs();
    for (dest_dir, exclude) in [
        ("/usr/share/app/", vec!["skip", "!skip/deep/keep"]),
        ("/etc/", vec![]),
        ("/new/deeper/", vec!["*"]),
    ] {
        let mut streamed = copy(&["tree"], dest_dir);
        streamed.exclude = exclude.iter().map(|s| s.to_string()).collect();
        let mut planned = streamed.clone();
        planned.sources.push("nomatch*".to_string());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let stats_a = write_layer(&dest, Some(&src), &streamed, &mut a).unwrap();
        let stats_b = write_layer(&dest, Some(&src), &planned, &mut b).unwrap();
        assert!(a == b, "{dest_dir}: {:?}", paths(&list(&a)));
        assert_eq!(stats_a, stats_b);
        // Everything excluded: the created directories only.
        let least = if exclude == ["*"] { 2 } else { 50 };
        assert!(
            list(&a).len() >= least,
            "{dest_dir}: {:?}",
            paths(&list(&a))
        );
    }
}
