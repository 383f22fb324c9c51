//! File names are bytes: a build context whose names are not valid UTF-8
//! (0xff bytes, cut and stray sequences, the characters rbuild's own text
//! form reserves) is walked, filtered by `.dockerignore`, keyed, copied
//! (whole directories, by glob, through a RUN bind mount) and run exactly
//! as docker does, and such names are printed escaped as Go prints them.

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use support::Rbuild;
use support::cache::{assert_all_cached, build, build_report, executed};

/// Names in `d/` (each a file holding its own name and a newline).
const NAMES: &[&[u8]] = &[
    b"a\xffb",
    b"\xc3(",               // a cut two-byte sequence
    b"ok\xe2\x82",          // a cut three-byte sequence at the end
    b"\xed\xa0\x80surr",    // an encoded surrogate
    b"\xf4\x8f\xbe\x80res", // U+10FF80, which rbuild's text form reserves
    b"plain.txt",
];

fn path_of(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

const DOCKERFILE: &str = "\
FROM busybox
COPY g?.glob /q/
COPY g*.glob /g/
COPY d/ /d/
RUN --mount=type=bind,source=d,target=/m cat /m/a*b > /from-mount
";

/// What `rbuild run IMAGE sh -c LIST` prints: every path under the copied
/// trees (sorted as bytes), then each file's path and content.
const LIST: &str = "find /d /q /g /from-mount | LC_ALL=C sort; \
    find /d /q /g /from-mount -type f | LC_ALL=C sort | while read -r f; do printf '%s:' \"$f\"; cat \"$f\"; done";

fn context(rb: &Rbuild) -> PathBuf {
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    for name in NAMES {
        write(&path_of(&ctx.join("d"), name), &[*name, b"\n"].concat());
    }
    write(&path_of(&ctx.join("d"), b"sub\xff/in\xfe.txt"), b"nested\n");
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"a\xffb"),
        path_of(&ctx.join("d"), b"ln\xfe"),
    )
    .unwrap();
    // `.dockerignore` lines that are not UTF-8 match these bytes.
    write(&path_of(&ctx.join("d"), b"skip\xffme"), b"ignored\n");
    write(&ctx.join(".dockerignore"), b"d/skip\xff*\n");
    // `?` is one byte, as in Go's filepath.Match.
    write(&path_of(&ctx, b"g\xfe.glob"), b"one\n");
    write(&path_of(&ctx, b"g\xff\xfe.glob"), b"two\n");
    ctx
}

/// The bytes [`LIST`] must print for the context as written.
fn expected(a_content: &[u8]) -> Vec<u8> {
    let mut d_names: Vec<Vec<u8>> = NAMES.iter().map(|n| n.to_vec()).collect();
    d_names.extend([
        b"ln\xfe".to_vec(),
        b"sub\xff".to_vec(),
        b"sub\xff/in\xfe.txt".to_vec(),
    ]);
    let mut paths: Vec<Vec<u8>> = vec![b"/d".to_vec(), b"/q".to_vec(), b"/g".to_vec()];
    paths.extend(d_names.iter().map(|n| [b"/d/", &n[..]].concat()));
    paths.push(b"/q/g\xfe.glob".to_vec());
    paths.push(b"/g/g\xfe.glob".to_vec());
    paths.push(b"/g/g\xff\xfe.glob".to_vec());
    paths.push(b"/from-mount".to_vec());
    paths.sort();
    let content = |p: &[u8]| -> Vec<u8> {
        match p {
            b"/d/a\xffb" | b"/from-mount" => a_content.to_vec(),
            b"/d/sub\xff/in\xfe.txt" => b"nested\n".to_vec(),
            b"/q/g\xfe.glob" | b"/g/g\xfe.glob" => b"one\n".to_vec(),
            b"/g/g\xff\xfe.glob" => b"two\n".to_vec(),
            p => [&p[3..], b"\n"].concat(),
        }
    };
    let mut out = Vec::new();
    for p in &paths {
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    for p in &paths {
        // `find -type f` lists files; the symlink and directories are not.
        if p.starts_with(b"/d/ln")
            || p.ends_with(b"sub\xff")
            || ["/d", "/q", "/g"].iter().any(|d| p == d.as_bytes())
        {
            continue;
        }
        out.extend_from_slice(p);
        out.push(b':');
        out.extend(content(p));
    }
    out
}

/// Runs `sh -c LIST` in `image`; its raw stdout.
fn listing(rb: &Rbuild, image: &str) -> Vec<u8> {
    let out = rb
        .command(&["run", "--rm", image, "sh", "-c", LIST])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[test]
fn names_that_are_not_utf8_are_copied_cached_and_run_byte_for_byte() {
    if !nix::unistd::geteuid().is_root() {
        support::skipped(
            "names_that_are_not_utf8_are_copied_cached_and_run_byte_for_byte",
            "RUN and rbuild run need root",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);

    build(&rb, &ctx, &["-t", "names:1"]);
    let got = listing(&rb, "names:1");
    let want = expected(b"a\xffb\n");
    assert_eq!(show(&got), show(&want));
    // The symlink kept its target, bytes and all.
    let out = rb
        .command(&["run", "--rm", "names:1", "sh", "-c", "readlink /d/ln?"])
        .output()
        .unwrap();
    assert_eq!(show(&out.stdout), show(b"a\xffb\n"));

    // A rebuild is all cache hits.
    let (report, _) = build_report(&rb, &ctx, &["-t", "names:1"], "again.json");
    assert_all_cached(&report);

    // An edit re-runs what reads the file, and --explain names it escaped.
    write(&path_of(&ctx.join("d"), b"a\xffb"), b"edited\n");
    let (report, r) = build_report(&rb, &ctx, &["-t", "names:2", "--explain"], "edit.json");
    let ran = executed(&report);
    assert!(
        ran.iter().any(|i| i.starts_with("COPY d/")) && ran.iter().any(|i| i.starts_with("RUN")),
        "{ran:?}"
    );
    assert!(
        !ran.iter().any(|i| i.starts_with("COPY g")),
        "the globs (before it) read nothing that changed: {ran:?}"
    );
    assert!(r.stderr.contains(r"changed d/a\xffb"), "{}", r.stderr);
    assert_eq!(show(&listing(&rb, "names:2")), show(&expected(b"edited\n")));
}

#[test]
fn an_invalid_ignore_pattern_is_quoted_as_go_quotes_it() {
    let rb = Rbuild::new();
    let ctx = rb.tree("ctx", &[("Dockerfile", "FROM scratch\nCOPY . /\n")]);
    write(&ctx.join(".dockerignore"), b"ok\n[\xff\n");
    let r = support::cache::build_fails(&rb, &ctx, &[]);
    assert!(
        r.stderr
            .contains(r#".dockerignore:2: invalid pattern "[\xff""#),
        "{}",
        r.stderr
    );
}
