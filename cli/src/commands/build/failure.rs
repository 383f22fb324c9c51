//! How a failed step is shown at the end of a build, as BuildKit does:
//! the step's last output lines in a box, the Dockerfile lines around the
//! failing instruction with `>>>` on its lines, then `ERROR: failed to
//! solve: …`.
//!
//! ```text
//! ------
//!  > [build 2/2] RUN echo hi; exit 3:
//! 0.105 hi
//! ------
//! Dockerfile:2
//! --------------------
//!    1 |     FROM busybox
//!    2 | >>> RUN echo hi; exit 3
//!    3 |
//! --------------------
//! ERROR: failed to solve: process "/bin/sh -c echo hi; exit 3" did not complete successfully: exit code: 3
//! ```

/// A step that failed, with what is needed to show it.
#[derive(Debug, Clone)]
pub struct StepFailure<'a> {
    /// `[build 2/2] RUN echo hi; exit 3`.
    pub step_name: &'a str,
    /// The step's last output lines (BuildKit shows up to 10), each
    /// prefixed by its time as in plain progress (`0.105 hi`).
    pub output_tail: &'a [String],
    /// The Dockerfile's display name (`Dockerfile`, `<stdin>`).
    pub dockerfile_name: &'a str,
    /// The Dockerfile's bytes.
    pub source: &'a [u8],
    /// 1-based first and last line of the instruction.
    pub lines: (usize, usize),
    /// The error, one line: `process "/bin/sh -c …" did not complete
    /// successfully: exit code: 3`.
    pub error: &'a str,
}

/// The failure text (ends with a newline).
pub fn render(f: &StepFailure<'_>) -> String {
    let mut out = String::new();
    out.push_str("------\n");
    out.push_str(&format!(" > {}:\n", f.step_name));
    for line in f.output_tail {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("------\n");
    let (first, last) = f.lines;
    if first > 0 {
        out.push_str(&if first == last {
            format!("{}:{first}\n", f.dockerfile_name)
        } else {
            format!("{}:{first}-{last}\n", f.dockerfile_name)
        });
        out.push_str(&source_excerpt(f.source, first, last.max(first)));
    }
    out.push_str(&format!("ERROR: failed to solve: {}\n", f.error));
    out
}

/// The instruction's lines marked `>>>`, with context: two lines each side
/// for one-line instructions, one for longer ones (BuildKit's padding).
fn source_excerpt(source: &[u8], first: usize, last: usize) -> String {
    let text = String::from_utf8_lossy(source);
    let lines: Vec<&str> = text.split('\n').collect();
    let n = lines.len();
    if first > n {
        return String::new();
    }
    let last = last.min(n);
    let (mut start, mut end) = (first, last);
    let pad = if first == last { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end < n {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = String::from("--------------------\n");
    for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
        let no = i + 1;
        let mark = if (first..=last).contains(&no) {
            ">>>"
        } else {
            "   "
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(format!(" {no:>3} | {mark} {line}").trim_end());
        out.push('\n');
    }
    out.push_str("--------------------\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_buildkit() {
        let src = b"FROM busybox\nRUN echo hi; exit 3\n";
        let tail = vec!["0.105 hi".to_string()];
        let text = render(&StepFailure {
            step_name: "[2/2] RUN echo hi; exit 3",
            output_tail: &tail,
            dockerfile_name: "Dockerfile",
            source: src,
            lines: (2, 2),
            error: "process \"/bin/sh -c echo hi; exit 3\" did not complete successfully: exit code: 3",
        });
        assert_eq!(
            text,
            "------\n > [2/2] RUN echo hi; exit 3:\n0.105 hi\n------\nDockerfile:2\n\
             --------------------\n   1 |     FROM busybox\n   2 | >>> RUN echo hi; exit 3\n   3 |\n\
             --------------------\n\
             ERROR: failed to solve: process \"/bin/sh -c echo hi; exit 3\" did not complete successfully: exit code: 3\n"
        );
    }

    #[test]
    fn context_is_bounded_and_multi_line_instructions_are_all_marked() {
        let src: String = (1..=20).map(|i| format!("L{i}\n")).collect();
        let ex = source_excerpt(src.as_bytes(), 10, 10);
        let shown: Vec<&str> = ex.lines().filter(|l| l.contains('|')).collect();
        assert_eq!(shown.len(), 5, "{ex}");
        assert!(shown[0].contains("L8") && shown[4].contains("L12"));
        let ex = source_excerpt(src.as_bytes(), 10, 12);
        let marked = ex.lines().filter(|l| l.contains(">>>")).count();
        assert_eq!(marked, 3, "{ex}");
        assert!(
            ex.contains("   9 |     L9") && ex.contains("  13 |     L13"),
            "{ex}"
        );
        let ex = source_excerpt(src.as_bytes(), 1, 1);
        assert!(
            ex.contains("   1 | >>> L1") && ex.contains("   3 |     L3"),
            "{ex}"
        );
    }
}
