//! What a RUN step leaves becomes its layer and, as root, its snapshot
//! directly (the overlay upper dir is renamed into the store rather than
//! the layer's blob unpacked again). Deletions, a directory replaced by a
//! file, a directory emptied and remade (opaque), hardlinks and sparse
//! files must read the same to a dependent step, to `rbuild run`, to an
//! export, and to a store whose snapshots are unpacked from the blobs.

mod support;

use std::path::Path;

use support::Rbuild;

/// Base content the second RUN then changes.
const SETUP: &str = "mkdir -p /data/dir /data/keep \
    && echo a > /data/dir/f && echo old > /data/keep/old && echo y > /data/keep/y";

/// Deletes a base file, replaces a dir with a file, empties and remakes a
/// dir, makes a hardlink and a sparse file.
const CHANGE: &str = "rm /etc/group && rm -rf /data/dir && echo file > /data/dir \
    && rm -rf /data/keep && mkdir /data/keep && echo new > /data/keep/new \
    && echo h > /h1 && ln /h1 /h2 \
    && echo end | dd of=/sparse bs=1 seek=1048576 2>/dev/null";

/// What a step sees of the changed paths, one fact a line.
const LOOK: &str = "test -e /etc/group && echo group; test -e /etc/passwd && echo passwd; \
    test -f /data/dir && cat /data/dir; ls /data/keep; \
    echo links=$(stat -c %h /h1) same=$(test /h1 -ef /h2 && echo yes); \
    echo sparse=$(stat -c %s /sparse) $(tail -c 4 /sparse)";

const SEEN: &str = "passwd\nfile\nnew\nlinks=2 same=yes\nsparse=1048580 end\n";

fn context(rb: &Rbuild) -> std::path::PathBuf {
    let dockerfile = format!("FROM busybox\nRUN {SETUP}\nRUN {CHANGE}\nRUN ({LOOK}) > /seen\n");
    rb.tree("ctx", &[("Dockerfile", &dockerfile)])
}

fn seen(rb: &Rbuild, image: &str) -> String {
    rb.ok(&["run", "--rm", image, "sh", "-c", LOOK])
}

/// Regression for the RUN commit path: the tree a RUN leaves, as later
/// steps, `rbuild run` and an exported tar see it.
#[test]
fn a_run_steps_deletions_replacements_and_hardlinks_reach_later_steps_and_exports() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    rb.ok(&["build", "-q", "-t", "changed", ctx.to_str().unwrap()]);

    // The dependent RUN (on the snapshots the build made) and `run`.
    assert_eq!(rb.ok(&["run", "--rm", "changed", "cat", "/seen"]), SEEN);
    assert_eq!(seen(&rb, "changed"), SEEN);

    // The exported layers say the same: a whiteout for the deleted file,
    // the replaced dir as a file, an opaque marker, one hardlink.
    let tar = rb.path("out.tar");
    rb.ok(&[
        "build",
        "-q",
        "--output",
        &format!("type=oci,dest={}", tar.display()),
        ctx.to_str().unwrap(),
    ]);
    let out = rb.path("out");
    std::fs::create_dir(&out).unwrap();
    support::tool(
        "tar",
        &["-xf", tar.to_str().unwrap(), "-C", out.to_str().unwrap()],
    );
    let entries = layer_entries(&out);
    let change = entries
        .iter()
        .find(|l| l.iter().any(|e| e.starts_with("h2")))
        .expect("a layer with the hardlink");
    for want in [
        "etc/.wh.group",
        "data/dir",
        "data/keep/",
        "data/keep/.wh..wh..opq",
        "data/keep/new",
        "h1",
        "h2 link to h1",
        "sparse",
    ] {
        assert!(
            change.iter().any(|e| e == want),
            "{want} missing from {change:?}"
        );
    }

    // A store that unpacks the same layers from their blobs (snapshots
    // gone, as on a machine that pulled the image) sees the same tree.
    let snapshots = rb.root().join("store-v1/snapshots");
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let path = entry.unwrap().path();
        make_removable(&path);
        std::fs::remove_dir_all(&path).unwrap();
    }
    assert_eq!(seen(&rb, "changed"), SEEN);
    assert_eq!(rb.ok(&["run", "--rm", "changed", "cat", "/seen"]), SEEN);

    // And the store checks clean.
    rb.ok(&["system", "check"]);
}

/// Regression: a RUN whose layer has the same diffID as one already in the
/// store (its snapshot exists) keeps the snapshot there and drops its own
/// upper dir; the store stays consistent and a rebuild sees the same tree.
#[test]
fn a_run_layer_made_twice_keeps_one_snapshot() {
    let rb = Rbuild::new();
    rb.busybox();
    // The base gets /dev, /proc and /sys from the context (the same layer
    // each build): where the image lacks them, a RUN's layer adds them
    // with the time of the build, and its diffID would differ.
    let ctx = rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY root/ /\nRUN mkdir /x && echo same > /x/f && touch -d @0 /x/f /x\n",
        )],
    );
    for dir in ["dev", "proc", "sys"] {
        std::fs::create_dir_all(ctx.join("root").join(dir)).unwrap();
    }
    let snapshots = rb.root().join("store-v1/snapshots");
    let count = || std::fs::read_dir(&snapshots).unwrap().count();
    rb.ok(&["build", "-q", "-t", "one", ctx.to_str().unwrap()]);
    let after_first = count();
    rb.ok(&[
        "build",
        "-q",
        "--no-cache",
        "-t",
        "two",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(
        count(),
        after_first,
        "the same layer made twice, one snapshot"
    );
    assert_eq!(rb.ok(&["run", "--rm", "two", "cat", "/x/f"]), "same\n");
    let tmp = rb.root().join("store-v1/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in tmp: {left:?}");
    rb.ok(&["system", "check"]);
}

/// Snapshots can hold directories without write permission (and overlay
/// work dirs without any); open them up so a test can delete the tree.
fn make_removable(path: &Path) {
    support::tool("chmod", &["-R", "u+rwx", path.to_str().unwrap()]);
}

/// Per layer of the OCI layout at `out` (its one manifest), the entries
/// as `tar -tv` names them: `path`, `dir/`, or `path link to target`.
fn layer_entries(out: &Path) -> Vec<Vec<String>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::blob_path(out, manifest_digest)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let blob = support::blob_path(out, l["digest"].as_str().unwrap());
            // perms, owner, size, date, time, then the name.
            support::tool("tar", &["-tvf", blob.to_str().unwrap()])
                .lines()
                .map(|line| {
                    let name = line
                        .split_whitespace()
                        .skip(5)
                        .collect::<Vec<_>>()
                        .join(" ");
                    name.trim_start_matches("./").to_string()
                })
                .collect()
        })
        .collect()
}
