//! Helpers for the `--cache-to` / `--cache-from` tests: builds with a
//! report, the contexts they share, and the two-machine fixture (machine A
//! exports its cache, a fresh machine B with A's base image imports it).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Rbuild, Run, run_command, s};

/// `rbuild build --progress plain ARGS CTX` reading no user configuration
/// (see [`Rbuild::private_command`]); whatever happens.
pub fn try_build(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    all.push(s(ctx));
    run_command(rb.private_command(&all), None)
}

/// [`try_build`], asserting success.
pub fn build(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let r = try_build(rb, ctx, args);
    assert_eq!(
        r.code,
        0,
        "build {args:?} of {} failed:\n{}\n{}",
        ctx.display(),
        r.stdout,
        r.stderr
    );
    r
}

/// [`try_build`], asserting failure.
pub fn build_fails(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let r = try_build(rb, ctx, args);
    assert_ne!(
        r.code, 0,
        "build {args:?} should have failed:\n{}",
        r.stderr
    );
    r
}

/// A successful build with `--report` (written to `name` next to the
/// root); returns the report and the run.
pub fn build_report(rb: &Rbuild, ctx: &Path, args: &[&str], name: &str) -> (Value, Run) {
    let path = rb.path(name);
    let mut all = args.to_vec();
    all.extend_from_slice(&["--report", s(&path)]);
    let r = build(rb, ctx, &all);
    (
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
        r,
    )
}

/// The steps of a build report.
pub fn steps(report: &Value) -> &Vec<Value> {
    report["steps"].as_array().unwrap()
}

/// The instructions of the steps a build executed.
pub fn executed(report: &Value) -> Vec<String> {
    steps(report)
        .iter()
        .filter(|s| s["status"] == "executed")
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

/// How many RUN steps a build executed.
pub fn executed_runs(report: &Value) -> usize {
    executed(report)
        .iter()
        .filter(|i| i.starts_with("RUN"))
        .count()
}

/// Asserts that a build executed nothing: every step is a cache hit.
pub fn assert_all_cached(report: &Value) {
    assert_eq!(executed(report), Vec::<String>::new(), "{report}");
    for step in steps(report) {
        assert_eq!(step["status"], "cached", "{step}");
    }
}

/// Two stages sharing a cache mount: the first fills it, the second reads
/// it (and prints `missing` when it is empty).
pub const TWO_STAGES: &str = "\
FROM busybox AS base
COPY a.txt /a.txt
RUN --mount=type=cache,target=/cache,id=pkgs echo from-a > /cache/note && cp /a.txt /built

FROM base AS final
RUN --mount=type=cache,target=/cache,id=pkgs cat /cache/note > /seen || echo missing > /seen
CMD [\"cat\", \"/seen\"]
";

/// A context of [`TWO_STAGES`] at `ctx` next to the root.
pub fn two_stage_context(rb: &Rbuild) -> PathBuf {
    rb.tree(
        "ctx",
        &[("Dockerfile", TWO_STAGES), ("a.txt", "hello from a\n")],
    )
}

/// A copy of `testdata/contexts/NAME` at `ctx` next to the root.
pub fn testdata_context(rb: &Rbuild, name: &str) -> PathBuf {
    let src = super::repo_root().join("testdata/contexts").join(name);
    let ctx = rb.path("ctx");
    super::tool("cp", &["-a", s(&src), s(&ctx)]);
    ctx
}

/// A copy of `testdata/contexts/lazy-side`: a side stage read only
/// through `RUN --mount=type=bind,from=side` (a 3 MB random layer), and a
/// final RUN that `--build-arg FLAVOR` changes.
pub fn lazy_context(rb: &Rbuild) -> PathBuf {
    testdata_context(rb, "lazy-side")
}

/// Machine B: a fresh store with A's `images` (saved and loaded, so their
/// manifest digests are the same).
pub fn machine_b(a: &Rbuild, images: &[&str]) -> Rbuild {
    let b = Rbuild::new();
    for image in images {
        let tar = a.path(&format!("{}.tar", image.replace([':', '/'], "_")));
        a.ok(&["save", image, "-o", s(&tar)]);
        b.ok(&["load", "-i", s(&tar)]);
    }
    b
}

/// Machine A, with busybox, built a context with arguments that export
/// its cache; machine B is a fresh store with A's busybox and the same
/// context, ready to import it.
pub struct TwoMachines {
    pub a: Rbuild,
    pub ctx_a: PathBuf,
    /// A's build report.
    pub report_a: Value,
    pub b: Rbuild,
    pub ctx_b: PathBuf,
}

impl TwoMachines {
    /// Imports busybox into `a`, builds `context(&a)` there with `a_args`
    /// (e.g. `--cache-to …`), then makes B. `a` is passed in so the
    /// arguments can name paths next to its root.
    pub fn new(a: Rbuild, context: fn(&Rbuild) -> PathBuf, a_args: &[&str]) -> TwoMachines {
        a.busybox();
        let ctx_a = context(&a);
        let (report_a, _) = build_report(&a, &ctx_a, a_args, "a.json");
        let b = machine_b(&a, &["busybox"]);
        let ctx_b = context(&b);
        TwoMachines {
            a,
            ctx_a,
            report_a,
            b,
            ctx_b,
        }
    }
}

/// Asserts that a build failed on a damaged blob of the imported cache
/// `cache` (its name in the message), at a cached step, with the hint to
/// build without it.
pub fn assert_fails_on_a_damaged_cache(r: &Run, cache: &str) {
    assert_ne!(r.code, 0, "{}", r.stderr);
    super::assert_contains_all(
        &r.stderr,
        &[
            "does not match its digest",
            cache,
            "cached step",
            "build again without that --cache-from",
        ],
    );
}
