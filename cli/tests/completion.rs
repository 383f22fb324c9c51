//! Shell completions and man pages, as a user installs and uses them:
//! the bash script sourced into a real bash and asked to complete, the
//! man pages written to a directory and checked against the command tree
//! that `rbuild --help` shows.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Rbuild, s};

/// The subcommands a `--help` text lists under `Commands:`.
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A wrapped description continues further indented.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path (`["image", "ls"]`) found by walking `--help`.
fn command_tree(rb: &Rbuild) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = rb.ok(&args);
        for c in commands_in_help(&help) {
            let mut sub = path.clone();
            sub.push(c);
            todo.push(sub.clone());
            out.push(sub);
        }
    }
    out
}

/// What bash's completion of `words` (the last one being completed)
/// offers, with the script `rbuild completion bash` printed.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let cur = words.last().unwrap();
    let prev = words[words.len() - 2];
    let program = format!(
        "source '{}'\nCOMP_WORDS=({array}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}\n\
         _rbuild rbuild '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.len() - 1,
        line.len(),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let rb = Rbuild::new();
    let script = rb.path("rbuild.bash");
    std::fs::write(&script, rb.ok(&["completion", "bash"])).unwrap();
    let offered = bash_complete(&script, &["rbuild", "ba"]);
    assert!(offered.contains(&"bake".to_string()), "{offered:?}");
    let offered = bash_complete(&script, &["rbuild", "bake", "--pr"]);
    assert!(
        offered.contains(&"--print".to_string()) && offered.contains(&"--progress".to_string()),
        "{offered:?}"
    );
    let offered = bash_complete(&script, &["rbuild", "image", "l"]);
    assert!(offered.contains(&"ls".to_string()), "{offered:?}");
    let offered = bash_complete(&script, &["rbuild", "completion", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(offered.contains(&shell.to_string()), "{offered:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_cover_every_command() {
    let rb = Rbuild::new();
    let tree = command_tree(&rb);
    for shell in ["zsh", "fish", "bash"] {
        let script = rb.ok(&["completion", shell]);
        for path in &tree {
            let last = path.last().unwrap();
            assert!(
                script.contains(last.as_str()),
                "{shell} completion lacks {path:?}"
            );
        }
        // Syntax-check with the shell itself where it is installed.
        let file = rb.path(&format!("rbuild.{shell}"));
        std::fs::write(&file, &script).unwrap();
        match Command::new(shell).arg("-n").arg(&file).output() {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => support::skipped(
                "zsh_and_fish_scripts_cover_every_command",
                &format!("{shell} is not installed: its script's syntax is not checked"),
            ),
        }
    }
    let r = rb.run(&["completion", "powershell"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("powershell"), "{}", r.stderr);
}

#[test]
fn man_pages_cover_every_command_and_flag() {
    let rb = Rbuild::new();
    let dir = rb.path("man1");
    let listed = rb.ok(&["man-pages", s(&dir)]);
    let tree = command_tree(&rb);
    assert!(tree.len() > 30, "{tree:?}");
    let main = std::fs::read_to_string(dir.join("rbuild.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH rbuild 1"),
        "{main}"
    );
    for path in &tree {
        let name = format!("rbuild-{}.1", path.join("-"));
        let page =
            std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(listed.contains(&name), "{name} not listed:\n{listed}");
        assert!(page.contains(".TH"), "{name}");
    }
    // The flags of one command, as --help lists them, are in its page.
    let bake = std::fs::read_to_string(dir.join("rbuild-bake.1")).unwrap();
    for flag in ["\\-\\-set", "\\-\\-print", "\\-\\-file", "\\-\\-push"] {
        assert!(bake.contains(flag), "rbuild-bake.1 lacks {flag}");
    }
    // `man` renders it where man is installed.
    if let Ok(out) = Command::new("man")
        .args(["-l", s(&dir.join("rbuild-bake.1"))])
        .env("MANPAGER", "cat")
        .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("bake"), "{text}");
    }
}
