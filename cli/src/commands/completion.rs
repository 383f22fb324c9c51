//! `rbuild completion bash|zsh|fish` and `rbuild man-pages DIR`: shell
//! completions (clap_complete) and man pages (clap_mangen) generated from
//! the same clap definition the parser uses, so every subcommand and
//! flag is covered and none goes stale. `scripts/install` installs both.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `rbuild completion SHELL`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    rbuild completion bash > /etc/bash_completion.d/rbuild\n  \
    rbuild completion zsh > /usr/local/share/zsh/site-functions/_rbuild\n  \
    rbuild completion fish > /usr/share/fish/vendor_completions.d/rbuild.fish")]
pub struct CompletionArgs {
    /// The shell to print the completion script for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// `rbuild man-pages DIR`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    rbuild man-pages /usr/local/share/man/man1")]
pub struct ManPagesArgs {
    /// Directory to write the pages to (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "rbuild", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "rbuild", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "rbuild", &mut out)
        }
    }
    out
}

/// Every man page: (file name, roff text), `rbuild.1` and one
/// `rbuild-SUB[-SUB…].1` per subcommand, nested ones included.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, out)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let mut page = Vec::new();
        man.render(&mut page).context("rendering a man page")?;
        out.push((man.get_filename(), page));
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives subcommands their display names (`rbuild-image-ls`).
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out)?;
    out.sort();
    Ok(out)
}

/// Runs `rbuild completion`.
pub fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script(args.shell))
        .and_then(|()| stdout.flush())
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `rbuild man-pages`: writes the pages, prints their paths.
pub fn run_man_pages(args: ManPagesArgs) -> anyhow::Result<ExitCode> {
    let dir: &Path = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, page) in man_pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (man page name, the command) for the command and every
    /// subcommand, nested ones included.
    fn tree() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("{prefix}-{}", sub.get_name());
                out.push((name.clone(), sub.clone()));
                walk(&name, sub, out);
            }
        }
        let cmd = Cli::command();
        let mut out = vec![("rbuild".to_string(), cmd.clone())];
        walk("rbuild", &cmd, &mut out);
        out
    }

    #[test]
    fn every_subcommand_has_a_man_page_and_completions() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let bash = String::from_utf8(script(Shell::Bash)).unwrap();
        let zsh = String::from_utf8(script(Shell::Zsh)).unwrap();
        let fish = String::from_utf8(script(Shell::Fish)).unwrap();
        let tree = tree();
        assert!(tree.len() > 30, "the walk found {} commands", tree.len());
        for (name, cmd) in &tree {
            let page = format!("{name}.1");
            assert!(
                names.contains(&page.as_str()),
                "no man page {page}: {names:?}"
            );
            let roff = String::from_utf8_lossy(&pages.iter().find(|(n, _)| *n == page).unwrap().1)
                .into_owned();
            let sub = cmd.get_name();
            if name != "rbuild" {
                assert!(bash.contains(sub), "bash completion lacks {name}");
                assert!(zsh.contains(sub), "zsh completion lacks {name}");
                assert!(fish.contains(sub), "fish completion lacks {name}");
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("--{long}");
                    assert!(bash.contains(&flag), "bash completion lacks {name} {flag}");
                    assert!(zsh.contains(&flag), "zsh completion lacks {name} {flag}");
                    assert!(
                        fish.contains(&format!("-l {long}")),
                        "fish lacks {name} {flag}"
                    );
                    // roff escapes `-` as `\-`.
                    assert!(
                        roff.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                        "{page} lacks {flag}"
                    );
                }
            }
        }
        assert!(names.contains(&"rbuild-bake.1") && names.contains(&"rbuild-image-ls.1"));
    }
}
