//! The Dockerfile as the rules see it: each instruction with its syntax
//! node (the keyword as written, flags, word spans), its typed form, the
//! stage it belongs to and the comment lines directly above it.

use rbuild_parser::ast::{self, Ast, Node};
use rbuild_parser::{Instruction, InstructionKind, ParseError, Stage};

use crate::config::CheckConfig;

/// One instruction.
pub(crate) struct Item<'a> {
    pub node: &'a Node,
    /// The typed instruction; `None` for a global ARG (see `global_arg`).
    pub inst: Option<&'a Instruction>,
    /// For an ARG before the first FROM: its names and defaults.
    pub global_arg: Option<&'a rbuild_parser::ArgInstruction>,
    /// The stage, `None` before the first FROM.
    pub stage: Option<usize>,
    /// The keyword exactly as written (`From`, `copy`).
    pub keyword: &'a str,
    /// BuildKit's `PrevComment`: the comment lines directly above, text
    /// after `#` trimmed, top to bottom (parser directives excluded).
    pub comments: Vec<&'a str>,
    /// A `# check=` comment among `comments`, parsed.
    pub check_comment: Option<CheckConfig>,
}

/// The parsed file.
pub(crate) struct File<'a> {
    pub ast: &'a Ast,
    pub df: &'a rbuild_parser::Dockerfile,
    /// Instructions in source order, one per `ast.nodes` entry.
    pub items: Vec<Item<'a>>,
}

/// Both layers of the parser over `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<(&str, Ast, rbuild_parser::Dockerfile), ParseError> {
    let ast = ast::parse(bytes)?;
    let df = rbuild_parser::instructions::from_ast_ref(&ast)?;
    // The parser refuses invalid UTF-8, so this holds once it accepted.
    let source = std::str::from_utf8(bytes).unwrap_or_default();
    Ok((source, ast, df))
}

/// The instructions of `file` in source order.
pub(crate) fn items<'f>(
    source: &'f str,
    ast: &'f Ast,
    df: &'f rbuild_parser::Dockerfile,
) -> Vec<Item<'f>> {
    let lines: Vec<&str> = source.split('\n').collect();
    let directive_lines: Vec<u32> = [
        &ast.directives.syntax,
        &ast.directives.escape,
        &ast.directives.check,
    ]
    .into_iter()
    .flatten()
    .map(|d| d.span.start_line)
    .collect();
    let mut typed: Vec<(
        Option<&Instruction>,
        Option<&rbuild_parser::ArgInstruction>,
        Option<usize>,
    )> = Vec::new();
    for g in &df.global_args {
        typed.push((None, Some(g), None));
    }
    for (i, st) in df.stages.iter().enumerate() {
        typed.push((Some(&st.from), None, Some(i)));
        for inst in &st.instructions {
            typed.push((Some(inst), None, Some(i)));
        }
    }
    ast.nodes
        .iter()
        .zip(typed)
        .map(|(node, (inst, global_arg, stage))| {
            let keyword = source
                .get(node.keyword_span.range())
                .unwrap_or(&node.keyword);
            let keyword = keyword.split_whitespace().next().unwrap_or(keyword);
            let comments = comments_above(&lines, node.span.start_line, &directive_lines);
            let check_comment = comments.iter().find_map(|c| {
                let (k, v) = c.split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("check") {
                    return None;
                }
                // BuildKit reads the value up to the first space.
                let v = v.trim();
                let v = v.split(' ').next().unwrap_or(v);
                CheckConfig::parse(v).ok()
            });
            Item {
                node,
                inst,
                global_arg,
                stage,
                keyword,
                comments,
                check_comment,
            }
        })
        .collect()
}

/// The comment lines directly above 1-based line `line`: a blank line or
/// an empty `#` ends the block (BuildKit resets its comment list there).
fn comments_above<'s>(lines: &[&'s str], line: u32, directive_lines: &[u32]) -> Vec<&'s str> {
    let mut out = Vec::new();
    let mut l = line as usize;
    while l >= 2 {
        let text = lines[l - 2].trim();
        let Some(c) = text.strip_prefix('#') else {
            break;
        };
        if directive_lines.contains(&(l as u32 - 1)) {
            break;
        }
        let c = c.trim();
        if c.is_empty() {
            break;
        }
        out.push(c);
        l -= 1;
    }
    out.reverse();
    out
}

/// The stage a FROM names as its base, if it is an earlier stage.
pub(crate) fn parent_stage(stages: &[Stage], idx: usize) -> Option<usize> {
    let base = stages[idx].base.to_ascii_lowercase();
    stages[..idx]
        .iter()
        .rposition(|s| s.name.as_deref() == Some(base.as_str()))
}

/// The words of a syntax node (FROM's `image AS name`, EXPOSE's ports).
pub(crate) fn words(node: &Node) -> Vec<&ast::Word> {
    match &node.args {
        ast::Args::Words { words, .. } => words.iter().collect(),
        _ => Vec::new(),
    }
}

/// The text a RUN runs: shell form, exec form joined, heredoc bodies.
pub(crate) fn run_text(inst: &Instruction) -> Option<String> {
    let InstructionKind::Run {
        command, heredocs, ..
    } = &inst.kind
    else {
        return None;
    };
    let mut s = match command {
        rbuild_parser::ShellOrExec::Shell(s) => s.clone(),
        rbuild_parser::ShellOrExec::Exec(v) => v.join(" "),
    };
    for h in heredocs {
        s.push('\n');
        s.push_str(&h.content);
    }
    Some(s)
}

/// The stages building `target` needs: its base chain and the stages its
/// `COPY --from` and `RUN --mount=from=` name, transitively.
pub(crate) fn needed_stages(stages: &[Stage], target: usize) -> std::collections::BTreeSet<usize> {
    let mut need = std::collections::BTreeSet::new();
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if s >= stages.len() || !need.insert(s) {
            continue;
        }
        if let Some(p) = parent_stage(stages, s) {
            todo.push(p);
        }
        for inst in &stages[s].instructions {
            let froms: Vec<&str> = match &inst.kind {
                InstructionKind::Copy { from: Some(f), .. } => vec![f.as_str()],
                InstructionKind::Run { mounts, .. } => {
                    mounts.iter().filter_map(|m| m.from.as_deref()).collect()
                }
                _ => Vec::new(),
            };
            for f in froms {
                let f = f.to_ascii_lowercase();
                let idx = stages[..s]
                    .iter()
                    .position(|x| x.name.as_deref() == Some(f.as_str()))
                    .or_else(|| f.parse::<usize>().ok().filter(|i| *i < s));
                if let Some(i) = idx {
                    todo.push(i);
                }
            }
        }
    }
    need
}
