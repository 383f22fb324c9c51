//! `rbuild build`'s command line through the real binary: flag validation
//! (exit 1, the flag and the bad value named), Dockerfile diagnostics,
//! `build` as the default subcommand, and `rbuild cache`'s flags. None of
//! these need the planner or the worker.

mod support;

use support::Rbuild;

fn context(rb: &Rbuild, dockerfile: &str) -> String {
    rb.tree("ctx", &[("Dockerfile", dockerfile)])
        .to_str()
        .unwrap()
        .to_string()
}

/// Fails with exit 1 and stderr naming every `needle`.
fn fails_naming(rb: &Rbuild, args: &[&str], needles: &[&str]) {
    let r = rb.run(args);
    assert_eq!(r.code, 1, "rbuild {args:?}:\n{}", r.stderr);
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "{n:?} not in stderr of {args:?}:\n{}",
            r.stderr
        );
    }
    assert_eq!(r.stdout, "");
}

#[test]
fn bad_flag_values_exit_1_naming_the_flag_and_value() {
    let rb = Rbuild::new();
    let ctx = context(&rb, "FROM busybox\n");
    let c = ctx.as_str();
    fails_naming(
        &rb,
        &["build", "-t", "App:1", c],
        &["--tag", "App:1", "lowercase"],
    );
    fails_naming(
        &rb,
        &["build", "--tag", "app:-bad", c],
        &["--tag", "app:-bad"],
    );
    fails_naming(
        &rb,
        &["build", "--platform", "linux/s390x-nope", c],
        &["--platform", "linux/s390x-nope", "unknown platform"],
    );
    fails_naming(
        &rb,
        &["build", "--platform", "linux/amd64,amd64", c],
        &["--platform", "named twice"],
    );
    fails_naming(
        &rb,
        &["build", "--network", "bridge", c],
        &["--network", "bridge"],
    );
    fails_naming(
        &rb,
        &["build", "--secret", "id=a,kind=file", c],
        &["--secret", "kind"],
    );
    fails_naming(
        &rb,
        &["build", "--secret", "type=ssh,id=a", c],
        &["--secret", "ssh"],
    );
    fails_naming(&rb, &["build", "-o", "type=s3", c], &["--output", "s3"]);
    // type=registry pushes, so it needs a name; said before anything runs.
    fails_naming(
        &rb,
        &["build", "-o", "type=registry", c],
        &["pushing needs a name", "-t"],
    );
    fails_naming(
        &rb,
        &["build", "-o", "type=local", c],
        &["--output", "dest"],
    );
    fails_naming(
        &rb,
        &["build", "--progress", "fancy", c],
        &["--progress", "fancy"],
    );
    fails_naming(&rb, &["build", "--jobs", "0", c], &["--jobs", "0"]);
    fails_naming(
        &rb,
        &["build", "--build-arg", "=x", c],
        &["--build-arg", "=x"],
    );
    fails_naming(&rb, &["build", "--label", "=x", c], &["--label", "=x"]);
    fails_naming(&rb, &["build", "--no-such-flag", c], &["--no-such-flag"]);
    fails_naming(&rb, &["build", "-q", "-o", "-", c], &["--quiet"]);
}

#[test]
fn the_context_must_be_an_existing_directory() {
    let rb = Rbuild::new();
    let missing = rb.path("missing");
    fails_naming(
        &rb,
        &["build", missing.to_str().unwrap()],
        &["missing", "not found"],
    );
    fails_naming(&rb, &["build", "-"], &["stdin"]);
    // A remote context is fetched; one that cannot be is named.
    fails_naming(
        &rb,
        &["build", "https://example.invalid/repo.git"],
        &["unable to prepare context https://example.invalid/repo.git"],
    );
    let r = rb.run(&["build"]);
    assert_eq!(r.code, 1, "PATH is required: {}", r.stderr);
    assert!(r.stderr.contains("PATH"), "{}", r.stderr);
}

#[test]
fn a_missing_dockerfile_is_named() {
    let rb = Rbuild::new();
    let ctx = rb.tree("ctx", &[("other", "x")]);
    fails_naming(
        &rb,
        &["build", ctx.to_str().unwrap()],
        &["Dockerfile", "-f"],
    );
    let r = rb.run(&[
        "build",
        "-f",
        rb.path("nope").to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
}

#[test]
fn dockerfile_errors_are_shown_like_rbuild_check() {
    let rb = Rbuild::new();
    let ctx = context(&rb, "FROM busybox\nCOPPY . /app\n");
    let r = rb.run(&["build", "-t", "x", &ctx]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown instruction: COPPY"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Dockerfile:2:1"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `COPY`?"), "{}", r.stderr);
    // -f - reads the Dockerfile from stdin, named <stdin>.
    let r = rb.run_with_stdin(&["build", "-f", "-", &ctx], Some(b"FROM busybox\nRUNN x\n"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("<stdin>:2:1"), "{}", r.stderr);
}

#[test]
fn build_is_the_default_subcommand() {
    let rb = Rbuild::new();
    let ctx = context(&rb, "FROM busybox\n");
    // Reaches build's validation with or without --root before it.
    fails_naming(&rb, &["-t", "Bad", &ctx], &["--tag", "Bad"]);
    let r = support::to_run(
        std::process::Command::new(support::bin())
            .args(["-t", "Bad", &ctx, "--root", rb.root().to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--tag"), "{}", r.stderr);
    let missing = rb.path("missing");
    fails_naming(&rb, &[missing.to_str().unwrap()], &["not found"]);
    // Other subcommands and help are untouched.
    let r = rb.run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("build") && r.stdout.contains("images"),
        "{}",
        r.stdout
    );
    let r = rb.run(&["build", "--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--tag",
        "--file",
        "--build-arg",
        "--target",
        "--no-cache",
        "--no-cache-filter",
        "--pull",
        "--label",
        "--network",
        "--secret",
        "--jobs",
        "--quiet",
        "--iidfile",
        "--metadata-file",
        "--output",
        "--progress",
        "--platform",
        "--report",
        "--explain",
    ] {
        assert!(r.stdout.contains(flag), "{flag} missing from build --help");
    }
    assert_eq!(rb.ok(&["images", "-q"]), "");
}

#[test]
fn cache_commands_validate_their_flags() {
    let rb = Rbuild::new();
    fails_naming(
        &rb,
        &["cache", "prune", "-f", "--filter", "label=x"],
        &["--filter", "label=x"],
    );
    fails_naming(
        &rb,
        &["cache", "prune", "-f", "--filter", "until=soon"],
        &["soon"],
    );
    // A clap-level error outside build: clap's exit code, like other commands.
    let r = rb.fails(&["cache", "prune", "-f", "--keep-storage", "lots"]);
    assert!(
        r.stderr.contains("--keep-storage") && r.stderr.contains("lots"),
        "{}",
        r.stderr
    );
    let r = rb.run(&["builder", "prune", "--help"]);
    assert_eq!(r.code, 0, "builder is an alias of cache");
    assert!(r.stdout.contains("--keep-storage"));
    let r = rb.run(&["cache", "du", "--help"]);
    assert_eq!(r.code, 0);
}
