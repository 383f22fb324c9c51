//! Parse throughput on generated Dockerfiles, at 1 MiB and 10 MiB, in three
//! shapes: a realistic mix of instructions, one very long line, and one
//! instruction made of many continuation lines. Throughput (MiB/s) that
//! stays flat from 1 MiB to 10 MiB shows cost grows linearly in input size,
//! line length and continuation count.
//!
//! Run: `cargo bench -p rbuild-parser --bench parse`

use std::fmt::Write as _;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;

/// A realistic multi-stage Dockerfile, repeated until it is `size` bytes.
fn mixed(size: usize) -> String {
    let mut s = String::with_capacity(size + 4096);
    s.push_str("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut i = 0usize;
    while s.len() < size {
        write!(
            s,
            "FROM ${{BASE}} AS stage{i}\n\
             ENV PATH=/usr/local/bin:$PATH LANG=C.UTF-8 NAME=\"value {i}\"\n\
             LABEL org.example.version=\"{i}\" org.example.desc='a stage'\n\
             RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    \
                 apt-get update && \\\n    \
                 apt-get install -y --no-install-recommends curl ca-certificates && \\\n    \
                 rm -rf /var/lib/apt/lists/*\n\
             COPY --from=stage0 --chown=app:app --chmod=0755 /src/{i} /app/{i}/\n\
             # a comment between instructions\n\
             WORKDIR /app\n\
             EXPOSE 80/tcp 443\n\
             RUN <<EOF\nset -e\necho building {i}\nEOF\n\
             HEALTHCHECK --interval=30s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost/\"]\n\
             CMD [\"/app/run\", \"--port\", \"80\"]\n\n"
        )
        .unwrap();
        i += 1;
    }
    s
}

/// `FROM scratch` and one RUN whose single line is `size` bytes.
fn long_line(size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    s.push_str("FROM scratch\nRUN echo");
    while s.len() < size {
        s.push_str(" word$VAR");
    }
    s.push('\n');
    s
}

/// `FROM scratch` and one RUN continued over as many lines as fit in `size`.
fn continuations(size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    s.push_str("FROM scratch\nRUN true");
    while s.len() < size {
        s.push_str(" && \\\n  echo x");
    }
    s.push('\n');
    s
}

/// A named generator of Dockerfile text of about the given size.
type Shape = (&'static str, fn(usize) -> String);

fn bench(c: &mut Criterion) {
    let shapes: [Shape; 3] = [
        ("mixed", mixed),
        ("long_line", long_line),
        ("continuations", continuations),
    ];
    for (name, make) in shapes {
        let mut group = c.benchmark_group(format!("parse/{name}"));
        group.sample_size(10);
        for size in [MIB, 10 * MIB] {
            let text = make(size);
            // A benchmark of an error path would measure nothing useful.
            rbuild_parser::parse(text.as_bytes()).expect("generated Dockerfile parses");
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{}MiB", size / MIB)),
                &text,
                |b, t| b.iter(|| rbuild_parser::parse(t.as_bytes()).unwrap()),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
