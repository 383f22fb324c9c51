//! `--call=targets` and `--call=outline` (buildx): the stages with the
//! comment above each FROM as description, and for one target the build
//! args it uses (defaults, descriptions), the secrets and ssh ids its RUN
//! mounts ask for, and whether they are required. JSON shapes follow
//! BuildKit's `frontend/subrequests/{targets,outline}`.

use std::fmt::Write as _;

use rbuild_parser::shell::Lex;
use rbuild_parser::{InstructionKind, MountType, ParseError};

use crate::model::{self, File};

/// One stage, as `--call=targets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// The FROM line.
    pub line: u32,
}

/// A build arg a target uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Arg {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub line: u32,
}

/// A secret or ssh id a target's RUN mounts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    pub line: u32,
}

/// `--call=outline` for one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outline {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Requirement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<Requirement>,
}

/// A target name that is no stage.
#[derive(Debug, thiserror::Error)]
pub enum OutlineError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
}

/// BuildKit's `getDocComment`: the comment line that starts with
/// `NAME ` gives the description (the rest of that line).
fn doc_comment(comments: &[&str], name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    comments
        .iter()
        .find_map(|c| c.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or("")
        .to_string()
}

/// The stages of `source`, the last one marked default.
pub fn targets(source: &[u8]) -> Result<Vec<Target>, ParseError> {
    let (text, ast, df) = model::parse(source)?;
    let file = File {
        ast: &ast,
        df: &df,
        items: model::items(text, &ast, &df),
    };
    let n = df.stages.len();
    let mut out = Vec::new();
    for it in &file.items {
        let (Some(inst), Some(si)) = (it.inst, it.stage) else {
            continue;
        };
        if let InstructionKind::From {
            image,
            platform,
            name,
        } = &inst.kind
        {
            let name = name.clone().unwrap_or_default();
            out.push(Target {
                description: doc_comment(&it.comments, &name),
                name,
                default: si + 1 == n,
                base: image.clone(),
                platform: platform.clone().unwrap_or_default(),
                line: inst.span.start_line,
            });
        }
    }
    Ok(out)
}

/// The outline of `target` (the last stage when `None`).
pub fn outline(source: &[u8], target: Option<&str>) -> Result<Outline, OutlineError> {
    let (text, ast, df) = model::parse(source)?;
    let file = File {
        ast: &ast,
        df: &df,
        items: model::items(text, &ast, &df),
    };
    let stages = &df.stages;
    let target_idx = match target {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or(OutlineError::UnknownTarget(t))?
        }
        None => stages.len().saturating_sub(1),
    };
    let need = model::needed_stages(stages, target_idx);
    let lex = Lex::new(ast.directives.escape_token);
    let mut global: Vec<(String, String, String, u32)> = Vec::new(); // name, value, description, line
    let mut env: Vec<(String, String)> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut secrets: Vec<Requirement> = Vec::new();
    let mut ssh: Vec<Requirement> = Vec::new();
    let mut description = String::new();
    let push_arg = |args: &mut Vec<Arg>, a: Arg| {
        if !args.iter().any(|x| x.name == a.name) {
            args.push(a);
        }
    };
    for it in &file.items {
        if let Some(g) = it.global_arg {
            for a in &g.args {
                let value = a
                    .default
                    .as_deref()
                    .and_then(|d| lex.process_word(d, &env).ok())
                    .map(|e| e.value)
                    .unwrap_or_default();
                env.push((a.name.clone(), value.clone()));
                global.push((
                    a.name.clone(),
                    value,
                    doc_comment(&it.comments, &a.name),
                    g.span.start_line,
                ));
            }
            continue;
        }
        let (Some(inst), Some(si)) = (it.inst, it.stage) else {
            continue;
        };
        if !need.contains(&si) {
            continue;
        }
        match &inst.kind {
            InstructionKind::From {
                image,
                platform,
                name,
            } => {
                if si == target_idx {
                    description = doc_comment(&it.comments, name.as_deref().unwrap_or(""));
                }
                for w in [Some(image), platform.as_ref()].into_iter().flatten() {
                    if let Ok(e) = lex.process_word(w, &env) {
                        for m in e.matched {
                            if let Some((n, v, d, l)) = global.iter().find(|g| g.0 == m) {
                                push_arg(
                                    &mut args,
                                    Arg {
                                        name: n.clone(),
                                        value: v.clone(),
                                        description: d.clone(),
                                        line: *l,
                                    },
                                );
                            }
                        }
                    }
                }
            }
            InstructionKind::Arg { args: defs } => {
                for a in defs {
                    let global_value = global.iter().find(|g| g.0 == a.name);
                    let value = match (&a.default, global_value) {
                        (Some(d), _) => d.clone(),
                        (None, Some(g)) => g.1.clone(),
                        (None, None) => String::new(),
                    };
                    let mut desc = doc_comment(&it.comments, &a.name);
                    if desc.is_empty() {
                        if let Some(g) = global_value {
                            desc = g.2.clone();
                        }
                    }
                    push_arg(
                        &mut args,
                        Arg {
                            name: a.name.clone(),
                            value,
                            description: desc,
                            line: inst.span.start_line,
                        },
                    );
                }
            }
            InstructionKind::Run { mounts, .. } => {
                for m in mounts {
                    let line = inst.span.start_line;
                    match m.kind {
                        MountType::Secret => {
                            let id =
                                m.id.clone()
                                    .or_else(|| {
                                        m.target
                                            .as_deref()
                                            .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                                    })
                                    .or_else(|| m.env.clone())
                                    .unwrap_or_default();
                            if !secrets.iter().any(|s| s.name == id) {
                                secrets.push(Requirement {
                                    name: id,
                                    required: m.required,
                                    line,
                                });
                            }
                        }
                        MountType::Ssh => {
                            let id = m.id.clone().unwrap_or_else(|| "default".into());
                            if !ssh.iter().any(|s| s.name == id) {
                                ssh.push(Requirement {
                                    name: id,
                                    required: m.required,
                                    line,
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Outline {
        name: stages
            .get(target_idx)
            .and_then(|s| s.name.clone())
            .unwrap_or_default(),
        description,
        args,
        secrets,
        ssh,
    })
}

/// Left-aligned columns, `gap` spaces apart (Go's tabwriter as buildx
/// sets it up).
fn table(rows: &[Vec<String>], gap: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[c] + gap);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `TARGET  DESCRIPTION` as buildx prints `--call=targets`.
pub fn targets_text(ts: &[Target]) -> String {
    let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
    for t in ts {
        let name = match (t.name.is_empty(), t.default) {
            (true, true) => "(default)".to_string(),
            (false, true) => format!("{} (default)", t.name),
            _ => t.name.clone(),
        };
        rows.push(vec![name, t.description.clone()]);
    }
    table(&rows, 1)
}

/// The outline as buildx prints `--call=outline`.
pub fn outline_text(o: &Outline) -> String {
    let mut out = String::new();
    if !o.name.is_empty() || !o.description.is_empty() {
        let mut rows = vec![vec![
            "TARGET:".to_string(),
            if o.name.is_empty() {
                "(default)".into()
            } else {
                o.name.clone()
            },
        ]];
        if !o.description.is_empty() {
            rows.push(vec!["DESCRIPTION:".into(), o.description.clone()]);
        }
        out.push_str(&table(&rows, 1));
        out.push('\n');
    }
    if !o.args.is_empty() {
        let mut rows = vec![vec![
            "BUILD ARG".to_string(),
            "VALUE".into(),
            "DESCRIPTION".into(),
        ]];
        rows.extend(
            o.args
                .iter()
                .map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]),
        );
        out.push_str(&table(&rows, 3));
        out.push('\n');
    }
    for (head, list) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if !list.is_empty() {
            let mut rows = vec![vec![head.to_string(), "REQUIRED".into()]];
            rows.extend(list.iter().map(|s| {
                vec![
                    s.name.clone(),
                    if s.required {
                        "true".into()
                    } else {
                        String::new()
                    },
                ]
            }));
            out.push_str(&table(&rows, 3));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DF: &[u8] = b"# VERSION the release to build\nARG VERSION=1.2\nARG UNUSED=x\n\n# base holds the toolchain\nFROM alpine:$VERSION AS base\n# GOFLAGS extra flags\nARG GOFLAGS=-trimpath\nRUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true\n\nFROM scratch AS other\nRUN --mount=type=secret,id=other true\n\n# app is the image\nFROM base AS app\nRUN --mount=type=secret,id=token,env=TOKEN true\n";

    #[test]
    fn targets_have_descriptions_and_a_default() {
        let ts = targets(DF).unwrap();
        assert_eq!(ts.len(), 3);
        assert_eq!(ts[0].description, "holds the toolchain");
        assert_eq!(ts[1].description, "");
        assert!(ts[2].default && !ts[0].default);
        let text = targets_text(&ts);
        assert_eq!(
            text,
            "TARGET        DESCRIPTION\nbase          holds the toolchain\nother\napp (default) is the image\n"
        );
    }

    #[test]
    fn outline_lists_what_the_target_uses() {
        let o = outline(DF, None).unwrap();
        assert_eq!(o.name, "app");
        assert_eq!(o.description, "is the image");
        let names: Vec<&str> = o.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["VERSION", "GOFLAGS"]);
        assert_eq!(o.args[0].value, "1.2");
        assert_eq!(o.args[0].description, "the release to build");
        let secrets: Vec<(&str, bool)> = o
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s.required))
            .collect();
        assert_eq!(secrets, [("npmrc", true), ("token", false)]);
        assert_eq!(o.ssh[0].name, "default");
        assert!(matches!(
            outline(DF, Some("nope")),
            Err(OutlineError::UnknownTarget(_))
        ));
    }
}
