//! The parser never panics and stays correct on hostile input: arbitrary
//! bytes, soups of Dockerfile-ish lines, a 100 MB line, 10,000 chained
//! continuations, deep nesting. Correctness only; no timing asserts.

use proptest::prelude::*;
use rbuild_parser::{ErrorKind, InstructionKind, ShellOrExec, ast};

/// Parse both layers and render any error: none of it may panic. Spans
/// must lie inside the source, and a node's span must start at its keyword.
fn exercise(src: &[u8]) {
    if let Ok(tree) = ast::parse(src) {
        for node in &tree.nodes {
            let s = node.span;
            assert!(s.start <= s.end && s.end <= src.len(), "{s:?}");
            assert!(s.start_line >= 1 && s.start_line <= s.end_line, "{s:?}");
            let text = String::from_utf8_lossy(&src[s.range()]).to_lowercase();
            // The keyword may itself be split by a line continuation, so
            // only its first character is sure to open the span.
            if let Some(first) = node.keyword.chars().next() {
                assert!(text.starts_with(first), "{text:?} vs {:?}", node.keyword);
            }
        }
    }
    match rbuild_parser::parse(src) {
        Ok(df) => {
            let _ = serde_json::to_string(&df).expect("serializable");
        }
        Err(e) => {
            let rendered = e.render("Dockerfile", src);
            assert!(rendered.contains("Dockerfile:"), "{rendered}");
            assert!(e.span.start <= src.len() && e.span.start <= e.span.end.max(e.span.start));
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "FROM alpine",
    "FROM --platform=linux/amd64 a AS b",
    "from x as Y",
    "RUN echo hi \\",
    "RUN <<EOF",
    "RUN <<-EOT cat",
    "RUN <<\"Q\" <<'R'",
    "EOF",
    "\tEOT",
    "Q",
    "COPY <<EOF /x",
    "ADD --checksum=sha256:x a b",
    "RUN --mount=type=cache,target=/x",
    "RUN --mount=type=",
    "RUN --network=none --security=insecure x",
    "CMD [\"a\", \"b\"]",
    "CMD [\"a\", [",
    "CMD [",
    "ENV a=b c=\"d e\" \\",
    "ENV k",
    "LABEL a b c",
    "ARG x=1 y",
    "ONBUILD ONBUILD RUN x",
    "ONBUILD RUN <<EOF",
    "HEALTHCHECK --interval=1s CMD x",
    "HEALTHCHECK --interval=1y CMD x",
    "HEALTHCHECK NONE",
    "SHELL [\"sh\"]",
    "# escape=`",
    "# syntax=x",
    "#",
    "",
    "   ",
    "\\",
    "`",
    "\u{feff}FROM a",
    "WORKDIR `",
    "COPY --from=a --from=b",
    "--",
    "EXPOSE 80 \\",
    "é ☃ \u{2028}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn never_panics_on_line_soups(
        lines in proptest::collection::vec(0..FRAGMENTS.len(), 0..40),
        crlf in any::<bool>(),
        trailing_newline in any::<bool>(),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let mut src = lines.iter().map(|&i| FRAGMENTS[i]).collect::<Vec<_>>().join(sep);
        if trailing_newline {
            src.push_str(sep);
        }
        exercise(src.as_bytes());
    }

    #[test]
    fn crlf_and_lf_parse_alike(lines in proptest::collection::vec(0..FRAGMENTS.len(), 0..30)) {
        let pick: Vec<&str> = lines.iter().map(|&i| FRAGMENTS[i]).collect();
        let lf = pick.join("\n") + "\n";
        let crlf = pick.join("\r\n") + "\r\n";
        match (ast::parse(lf.as_bytes()), ast::parse(crlf.as_bytes())) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.nodes.len(), b.nodes.len());
                for (x, y) in a.nodes.iter().zip(&b.nodes) {
                    prop_assert_eq!(&x.keyword, &y.keyword);
                    prop_assert_eq!(&x.original, &y.original);
                    prop_assert_eq!(x.span.start_line, y.span.start_line);
                    prop_assert_eq!(x.heredocs.len(), y.heredocs.len());
                }
                prop_assert_eq!(a.directives.escape_token, b.directives.escape_token);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.kind, b.kind),
            (a, b) => prop_assert!(false, "LF {:?} vs CRLF {:?}", a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn never_panics_on_printable_text(src in "[ -~\t\n\\\\`]{0,300}") {
        exercise(src.as_bytes());
    }
}

#[test]
fn hundred_megabyte_line_parses() {
    let n = 100 * 1024 * 1024;
    let mut src = String::with_capacity(n + 32);
    src.push_str("FROM alpine\nRUN ");
    src.extend(std::iter::repeat_n('x', n));
    src.push('\n');
    let df = rbuild_parser::parse(src.as_bytes()).expect("parses");
    let InstructionKind::Run { command, .. } = &df.stages[0].instructions[0].kind else {
        panic!("expected RUN");
    };
    let ShellOrExec::Shell(cmd) = command else {
        panic!("expected shell form");
    };
    assert_eq!(cmd.len(), n);
    assert_eq!(df.stages[0].instructions[0].span.end_line, 2);
}

#[test]
fn ten_thousand_continuations_join_into_one_instruction() {
    let mut src = String::from("FROM alpine\nRUN echo start \\\n");
    for i in 0..10_000 {
        src.push_str(&format!("  w{i} \\\n"));
    }
    src.push_str("  end\n");
    let df = rbuild_parser::parse(src.as_bytes()).expect("parses");
    let inst = &df.stages[0].instructions[0];
    let InstructionKind::Run {
        command: ShellOrExec::Shell(cmd),
        ..
    } = &inst.kind
    else {
        panic!("expected shell RUN");
    };
    assert!(cmd.starts_with("echo start   w0"));
    assert!(cmd.ends_with("w9999   end"));
    assert_eq!(inst.span.start_line, 2);
    assert_eq!(inst.span.end_line, 10_003);
}

#[test]
fn ten_thousand_onbuilds_are_rejected_without_recursion() {
    let src = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(10_000));
    let err = rbuild_parser::parse(src.as_bytes()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOnbuild);
}

#[test]
fn deeply_nested_json_falls_back_to_shell_form() {
    let src = format!("FROM a\nCMD {}\n", "[".repeat(200_000));
    let df = rbuild_parser::parse(src.as_bytes()).expect("parses");
    assert!(matches!(
        &df.stages[0].instructions[0].kind,
        InstructionKind::Cmd {
            command: ShellOrExec::Shell(_)
        }
    ));
}

#[test]
fn many_heredocs_and_long_env_lines_parse() {
    let mut src = String::from("FROM a\nENV");
    for i in 0..20_000 {
        src.push_str(&format!(" k{i}=\"v é {i}\""));
    }
    src.push('\n');
    let df = rbuild_parser::parse(src.as_bytes()).expect("parses");
    let InstructionKind::Env { pairs } = &df.stages[0].instructions[0].kind else {
        panic!("expected ENV");
    };
    assert_eq!(pairs.len(), 20_000);
    assert_eq!(pairs[19_999].value, "\"v é 19999\"");
}
