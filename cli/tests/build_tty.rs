//! The tty progress renderer as a user sees it: `rbuild build` runs on a
//! pseudo-terminal and its bytes go through a terminal emulator (vt100);
//! the test reads the final screen, not the escape codes.

mod support;

use support::pty::on_terminal;
use support::{Rbuild, s};

/// A parallel multi-stage build with step names wider than the terminal:
/// every finished step keeps its line on the final screen, in one row cut
/// to the width (never wrapped onto the next), and the summary follows.
#[test]
fn finished_steps_of_a_parallel_build_stay_on_screen_cut_to_the_width() {
    let rb = Rbuild::new();
    rb.busybox();
    let long = "and then it goes on and on well past the width of the terminal";
    let ctx = rb.tree(
        "ctx-tty",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox AS first-stage-with-a-long-name\n\
                 RUN echo first {long}; for i in 1 2 3 4 5 6; do echo a$i; sleep 0.1; done; echo a > /a\n\
                 FROM busybox AS second-stage-with-a-long-name\n\
                 RUN echo second {long}; for i in 1 2 3 4 5 6 7 8; do echo b$i; sleep 0.1; done; echo b > /b\n\
                 FROM busybox AS third\n\
                 RUN for i in 1 2 3 4; do echo c$i; sleep 0.1; done; echo c > /c\n\
                 FROM busybox\n\
                 COPY --from=first-stage-with-a-long-name /a /a\n\
                 COPY --from=second-stage-with-a-long-name /b /b\n\
                 COPY --from=third /c /c\n"
            ),
        )],
    );
    // A small terminal: the live area scrolls the finished lines up.
    let cols = 60;
    let (code, screen) = on_terminal(
        &rb,
        &["build", "--progress", "tty", "-t", "tty-test", s(&ctx)],
        8,
        cols,
    );
    let text = screen.join("\n");
    assert_eq!(code, 0, "{text}");
    // The start of each step's finished line, as the renderer prints it.
    let steps = [
        "=> [stage-3 1/4] FROM docker.io/library/busybox",
        "=> [first-stage-with-a-long-name 2/2] RUN echo first",
        "=> [second-stage-with-a-long-name 2/2] RUN echo seco",
        "=> [third 2/2] RUN for i in 1 2 3 4; do echo c$i; s",
        "=> [stage-3 2/4] COPY --from=first-stage-with-a-long",
        "=> [stage-3 3/4] COPY --from=second-stage-with-a-lon",
        // Its duration varies (0.0s or 0.1s): the name is whole, uncut.
        "=> [stage-3 4/4] COPY --from=third /c /c  0.",
    ];
    for step in steps {
        let rows = screen.iter().filter(|r| r.starts_with(step)).count();
        assert_eq!(rows, 1, "{step:?} on the final screen:\n{text}");
    }
    // Every row before the summary (whose image ID is not cut) fits.
    let summary = screen.iter().position(|r| r.starts_with("Built in "));
    for row in &screen[..summary.unwrap_or(screen.len())] {
        assert!(
            row.chars().count() < usize::from(cols),
            "a row fills the width (a wrapped or uncut line): {row:?}\n{text}"
        );
        assert!(
            row.is_empty() || row.starts_with("=> ") || !row.contains("on and on"),
            "a step name wrapped onto the next row: {row:?}\n{text}"
        );
    }
    // The summary is last, after every step.
    let built = screen
        .iter()
        .position(|r| r.starts_with("Built in "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let last_step = screen.iter().rposition(|r| r.starts_with("=> ")).unwrap();
    assert!(built > last_step, "{text}");
}
