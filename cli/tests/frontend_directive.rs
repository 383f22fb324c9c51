//! `# syntax=`: the official Dockerfile frontend images select rbuild's
//! built-in frontend (with a note in the progress output); any other
//! frontend image is refused before anything is built.

mod support;

use support::{Rbuild, s};

fn build(rb: &Rbuild, dockerfile: &str, tag: &str) -> support::Run {
    let dir = rb.tree(&format!("ctx-{tag}"), &[("Dockerfile", dockerfile)]);
    rb.run(&["build", "--progress", "plain", "-t", tag, s(&dir)])
}

#[test]
fn official_dockerfile_frontends_use_the_built_in_one() {
    let rb = Rbuild::new();
    rb.busybox();
    let digest = "a".repeat(64);
    for (syntax, shown) in [
        ("docker/dockerfile:1", "docker/dockerfile:1"),
        ("docker/dockerfile:1.7-labs", "docker/dockerfile:1.7-labs"),
        (
            &format!("docker.io/docker/dockerfile:1.7@sha256:{digest}") as &str,
            "docker.io/docker/dockerfile:1.7",
        ),
    ] {
        let r = build(
            &rb,
            &format!("# syntax={syntax}\nFROM busybox\nENV A=1\n"),
            "ok",
        );
        assert_eq!(r.code, 0, "{syntax}: {}", r.stderr);
        let note = format!("[internal] using the built-in Dockerfile frontend for {shown}");
        assert!(r.stderr.contains(&note), "{syntax}:\n{}", r.stderr);
    }
}

#[test]
fn other_frontend_images_are_refused_and_nothing_is_tagged() {
    let rb = Rbuild::new();
    rb.busybox();
    for syntax in [
        "example.com/frontends/custom:2",
        "docker/dockerfile-upstream:master",
    ] {
        let r = build(
            &rb,
            &format!("# syntax={syntax}\nFROM busybox\nENV A=1\n"),
            "refused",
        );
        assert_eq!(r.code, 1, "{syntax}: {}", r.stderr);
        assert!(
            r.stderr.contains("Dockerfile:1")
                && r.stderr.contains(syntax)
                && r.stderr
                    .contains("rbuild builds with its built-in Dockerfile frontend only"),
            "{}",
            r.stderr
        );
        let images = rb.ok(&["images"]);
        assert!(!images.contains("refused"), "{images}");
    }
}
