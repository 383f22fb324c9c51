//! Checking a 1,000-line Dockerfile (the editor case: the target is under
//! 10 ms), with and without a build context to look at.
//!
//! Run: `cargo bench -p rbuild-lint --bench check`

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_lint::{ContextView, Options};

/// A realistic multi-stage Dockerfile of `lines` lines: ARGs, ENV, RUN
/// with continuations and cache mounts, COPY, a few rule triggers.
fn dockerfile(lines: usize) -> String {
    let mut s = String::from(
        "# syntax=docker/dockerfile:1\n# check=experimental=all\nARG BASE=debian:bookworm\n",
    );
    let mut i = 0;
    while s.lines().count() < lines {
        write!(
            s,
            "\n# stage{i} builds part {i}\nFROM ${{BASE}} AS stage{i}\n\
             ARG VERSION=1.{i}\n\
             ENV PATH=/opt/{i}/bin:$PATH LANG=C.UTF-8\n\
             WORKDIR /src/{i}\n\
             RUN --mount=type=cache,target=/var/cache/apt apt-get update && \\\n    \
                 apt-get install -y --no-install-recommends curl ca-certificates && \\\n    \
                 rm -rf /var/lib/apt/lists/*\n\
             COPY package.json package-lock.json ./\n\
             RUN npm ci\n\
             COPY . .\n\
             RUN pip install -r requirements.txt\n\
             LABEL org.example.version=\"$VERSION\"\n\
             ENV LEGACY value\n\
             EXPOSE 80{i}/tcp\n\
             CMD [\"/opt/{i}/bin/app\", \"--port\", \"80{i}\"]\n"
        )
        .unwrap();
        i += 1;
    }
    s
}

struct Ctx;

impl ContextView for Ctx {
    fn list_dir(&self, _: &str) -> Option<Vec<String>> {
        Some(vec![
            "package.json".into(),
            "package-lock.json".into(),
            "requirements.txt".into(),
        ])
    }
    fn exists(&self, path: &str) -> bool {
        matches!(
            path,
            "package.json" | "package-lock.json" | "requirements.txt"
        )
    }
    fn ignore_file(&self) -> Option<String> {
        Some(".dockerignore".into())
    }
    fn ignore_patterns(&self) -> Vec<String> {
        vec![".git".into(), "node_modules".into()]
    }
    fn is_ignored(&self, path: &str) -> bool {
        path.starts_with(".git") || path.starts_with("node_modules")
    }
    fn size_up_to(&self, _: u64) -> u64 {
        1 << 20
    }
}

fn bench(c: &mut Criterion) {
    let src = dockerfile(1000);
    assert!(src.lines().count() >= 1000);
    let report = rbuild_lint::check(src.as_bytes(), &Options::default()).unwrap();
    assert!(!report.findings.is_empty());
    // The parser's share (both layers), for comparison.
    c.bench_function("parse only 1000 lines", |b| {
        b.iter(|| rbuild_parser::parse(std::hint::black_box(src.as_bytes())).unwrap())
    });
    c.bench_function("check 1000 lines, no context", |b| {
        b.iter(|| {
            rbuild_lint::check(std::hint::black_box(src.as_bytes()), &Options::default()).unwrap()
        })
    });
    let ctx = Ctx;
    let opts = Options {
        check_arg: None,
        context: Some(&ctx),
        target: None,
        for_build: false,
        images: None,
        platforms: Vec::new(),
    };
    c.bench_function("check 1000 lines, with context", |b| {
        b.iter(|| rbuild_lint::check(std::hint::black_box(src.as_bytes()), &opts).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
