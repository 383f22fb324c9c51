//! Which source entries a COPY/ADD source selects, with BuildKit's rules:
//!
//! - A source is cleaned as an absolute path (`..` stops at the root). A
//!   source with an unescaped `*`, `?` or `[` is a glob: its components up
//!   to the first wildcard one are a literal base (symlinks followed inside
//!   the tree), the rest are matched component by component with Go's
//!   `filepath.Match` (`*` never crosses `/`). Each match is one *root*.
//! - A root is resolved following symlinks, the last one included (so a
//!   link to a directory copies the directory); it keeps the match's name.
//! - A directory root copies its *contents*. Entries below it are walked
//!   without following symlinks.
//! - `--exclude` patterns (`.dockerignore` dialect) are matched against
//!   each entry's path relative to the root it is copied from (BuildKit's
//!   fsutil), and a glob match is also dropped when its own path matches
//!   (so `--exclude=*.txt hom*` leaves out `home.txt`, as Docker's
//!   reference says). A directory that is excluded is skipped whole unless
//!   a `!` pattern could re-include something in it.
//! - `--parents`: the source splits at a `/./` pivot (none: the source
//!   root); the part before is the root directory (globbed too), the part
//!   after is an include pattern (`**` allowed) relative to it. An entry is
//!   copied when it or a parent matches; the directories leading to it are
//!   copied with their own metadata, so paths below the pivot are kept.

use rbuild_solver::op::CopyOp;

use super::CopyError;
use super::pattern::{PatternSet, clean_components, has_wildcards, match_component, unescape};
use super::source::{EntryKind, SourceFs, SourceMeta};

/// One entry below a directory root.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Path relative to the root (`/`-separated), i.e. relative to where
    /// the root's contents land.
    pub rel: String,
    /// Path in the source tree.
    pub path: String,
    pub meta: SourceMeta,
}

/// One match of a source.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// The match's own name (its last component, before resolving
    /// symlinks): the name it gets inside a destination directory.
    pub name: String,
    /// The resolved path in the source tree.
    pub path: String,
    pub meta: SourceMeta,
    /// For a directory root: its contents, parents before children,
    /// siblings sorted.
    pub contents: Option<Vec<Item>>,
}

/// Whether `source` is a URL ADD downloads.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The roots one local source (`op.sources[i]`) selects.
pub(crate) fn select_source(
    src: &dyn SourceFs,
    op: &CopyOp,
    source: &str,
) -> Result<Vec<Root>, CopyError> {
    let bad = |e: super::pattern::BadPattern| CopyError::BadPattern { pattern: e.pattern };
    let excludes = PatternSet::new(&op.exclude).map_err(bad)?;
    let io = |path: &str| {
        let path = path.to_string();
        move |source| CopyError::Source { path, source }
    };

    if op.parents {
        let (parent, pattern) = match source.split_once("/./") {
            Some((parent, pattern)) => (parent, pattern),
            None => ("/", source),
        };
        let parent_comps = clean_components(parent);
        let pattern_comps = clean_components(pattern);
        let pattern_text = pattern_comps.join("/");
        let include = PatternSet::new(&[pattern_text.as_str()]).map_err(bad)?;
        let wildcard = has_wildcards(parent) || has_wildcards(pattern);
        let mut roots = Vec::new();
        for base in glob(src, &parent_comps)? {
            let resolved = resolve(src, &base, source)?;
            let Some(meta) = src.lstat(&resolved).map_err(io(&resolved))? else {
                continue;
            };
            if !wildcard {
                // A literal path must exist (BuildKit's RequiredPaths).
                let full = join(&resolved, &pattern_text);
                let full = resolve(src, &full, source)?;
                if src.lstat(&full).map_err(io(&full))?.is_none() {
                    return Err(CopyError::SourceNotFound {
                        path: source.to_string(),
                    });
                }
            }
            if meta.kind != EntryKind::Dir {
                continue;
            }
            let mut items = Vec::new();
            walk(
                src,
                &resolved,
                "",
                Some(&include),
                &excludes,
                &mut items,
                &mut Vec::new(),
            )?;
            if !items.is_empty() {
                roots.push(Root {
                    name: String::new(),
                    path: resolved,
                    meta,
                    contents: Some(items),
                });
            }
        }
        // A wildcard matching nothing copies nothing, as BuildKit does
        // (`AllowEmptyWildcard`); a literal path must exist.
        if roots.is_empty() && !wildcard {
            return Err(CopyError::SourceNotFound {
                path: source.to_string(),
            });
        }
        return Ok(roots);
    }

    let comps = clean_components(source);
    let wildcard = comps.iter().any(|c| has_wildcards(c));
    let matches = glob(src, &comps)?;
    let mut roots = Vec::new();
    for m in matches {
        if wildcard && !excludes.is_empty() && excludes.matches(&m) {
            continue;
        }
        let resolved = resolve(src, &m, source)?;
        let Some(meta) = src.lstat(&resolved).map_err(io(&resolved))? else {
            return Err(CopyError::SourceNotFound {
                path: source.to_string(),
            });
        };
        let name = m.rsplit('/').next().unwrap_or_default().to_string();
        let contents = if meta.kind == EntryKind::Dir {
            let mut items = Vec::new();
            walk(
                src,
                &resolved,
                "",
                None,
                &excludes,
                &mut items,
                &mut Vec::new(),
            )?;
            Some(items)
        } else {
            None
        };
        roots.push(Root {
            name,
            path: resolved,
            meta,
            contents,
        });
    }
    // An empty wildcard match is not an error (BuildKit's
    // `AllowEmptyWildcard`): `COPY *.log /logs/` with no logs copies nothing.
    Ok(roots)
}

fn resolve(src: &dyn SourceFs, path: &str, source: &str) -> Result<String, CopyError> {
    super::layered::resolve_in(src, path, true)
        .map(|c| c.join("/"))
        .map_err(|e| CopyError::Source {
            path: source.to_string(),
            source: e,
        })
}

fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{name}"),
    }
}

/// The paths a cleaned source selects: itself when it has no wildcard,
/// else every match, in walk order.
fn glob(src: &dyn SourceFs, comps: &[String]) -> Result<Vec<String>, CopyError> {
    let literal = |comps: &[String]| {
        comps
            .iter()
            .map(|c| unescape(c))
            .collect::<Vec<_>>()
            .join("/")
    };
    let Some(first_wild) = comps.iter().position(|c| has_wildcards(c)) else {
        return Ok(vec![literal(comps)]);
    };
    let base_text = literal(&comps[..first_wild]);
    let base = resolve(src, &base_text, &comps.join("/"))?;
    let mut candidates = vec![base];
    for pattern in &comps[first_wild..] {
        let mut next = Vec::new();
        for dir in &candidates {
            let is_dir = src
                .lstat(dir)
                .map_err(|source| CopyError::Source {
                    path: dir.clone(),
                    source,
                })?
                .is_some_and(|m| m.kind == EntryKind::Dir);
            if !is_dir {
                continue;
            }
            let names = src.read_dir(dir).map_err(|source| CopyError::Source {
                path: dir.clone(),
                source,
            })?;
            for name in names {
                let hit = match_component(pattern, &name).map_err(|_| CopyError::BadPattern {
                    pattern: comps.join("/"),
                })?;
                if hit {
                    next.push(join(dir, &name));
                }
            }
        }
        candidates = next;
    }
    Ok(candidates)
}

/// Walks the directory `dir` (source path) whose entries are `rel_prefix`
/// relative to the root, appending the selected entries to `out`.
/// `pending` holds directories not selected themselves whose children may
/// be: they are written just before the first selected descendant.
fn walk(
    src: &dyn SourceFs,
    dir: &str,
    rel_prefix: &str,
    include: Option<&PatternSet>,
    exclude: &PatternSet,
    out: &mut Vec<Item>,
    pending: &mut Vec<Item>,
) -> Result<(), CopyError> {
    let names = src.read_dir(dir).map_err(|source| CopyError::Source {
        path: dir.to_string(),
        source,
    })?;
    for name in names {
        let path = join(dir, &name);
        let rel = join(rel_prefix, &name);
        let Some(meta) = src.lstat(&path).map_err(|source| CopyError::Source {
            path: path.clone(),
            source,
        })?
        else {
            continue;
        };
        let excluded = !exclude.is_empty() && exclude.matches(&rel);
        let selected = !excluded && include.is_none_or(|p| p.matches(&rel));
        let is_dir = meta.kind == EntryKind::Dir;
        let item = Item {
            rel: rel.clone(),
            path: path.clone(),
            meta,
        };
        let descend = is_dir && (!excluded || exclude.has_exclusions());
        let mark = pending.len();
        if selected {
            out.append(pending);
            out.push(item);
        } else if descend {
            pending.push(item);
        }
        if descend {
            walk(src, &path, &rel, include, exclude, out, pending)?;
        }
        pending.truncate(mark.min(pending.len()));
    }
    Ok(())
}
