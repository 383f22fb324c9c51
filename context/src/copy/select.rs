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
//! - `--exclude` patterns are `.dockerignore` patterns, compiled and
//!   matched by the same [`IgnoreRules`] (BuildKit hands them to
//!   moby/patternmatcher, as it does `.dockerignore`): `**` crosses
//!   directories, excluding a directory excludes what is below it, `!`
//!   re-includes, the last matching pattern wins, and each directory
//!   passes down which patterns it matched (fsutil's copier). They are
//!   matched against each entry's path relative to the root it is copied
//!   from, and a glob match is also dropped when its own path matches (so
//!   `--exclude=*.txt hom*` leaves out `home.txt`, as Docker's reference
//!   says). A directory that is excluded is skipped whole unless a `!`
//!   pattern could re-include something in it.
//! - `--parents`: the source splits at a `/./` pivot (none: the source
//!   root); the part before is the root directory (globbed too), the part
//!   after is an include pattern (the same dialect, `**` allowed) relative
//!   to it. An entry is copied when it or a parent matches; the
//!   directories leading to it are copied with their own metadata, so
//!   paths below the pivot are kept.

use std::ops::ControlFlow;
use std::sync::Arc;

use rayon::prelude::*;
use rbuild_solver::op::CopyOp;

use super::CopyError;
use super::pattern::{clean_components, has_wildcards, match_component, unescape};
use super::source::{EntryKind, SourceFs, SourceMeta};
use crate::{IgnoreRules, MatchState};

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
    /// For a directory root: what selects its contents, which
    /// [`Root::walk`] reads.
    pub contents: Option<Contents>,
}

/// The rules that select a directory root's contents. The contents are
/// not held: [`Root::walk`] hands them out one at a time, so a COPY of a
/// 100,000-file context never holds a list of them (it was most of a
/// large build's memory).
#[derive(Debug, Clone)]
pub(crate) struct Contents {
    /// The `--parents` include pattern.
    include: Option<Arc<IgnoreRules>>,
    /// The `--exclude` patterns.
    exclude: Arc<IgnoreRules>,
}

/// What [`Root::walk`] hands each entry to; [`ControlFlow::Break`] stops
/// the walk.
pub(crate) type Sink<'s> = dyn FnMut(Item) -> Result<ControlFlow<()>, CopyError> + 's;

impl Root {
    /// Calls `sink` with each entry below a directory root, parents
    /// before children, siblings sorted (the walk order: that of the
    /// layer's tar); nothing for another root. Says whether `sink`
    /// stopped it.
    pub fn walk(
        &self,
        src: &dyn SourceFs,
        sink: &mut Sink<'_>,
    ) -> Result<ControlFlow<()>, CopyError> {
        let Some(contents) = &self.contents else {
            return Ok(ControlFlow::Continue(()));
        };
        let top = MatchState::default();
        let filters = Filters {
            include: contents.include.as_deref().map(|i| (i, &top)),
            exclude: (&contents.exclude, &top),
        };
        walk(src, &self.path, "", filters, sink)
    }

    /// [`Root::walk`] to the end.
    pub fn for_each(
        &self,
        src: &dyn SourceFs,
        mut f: impl FnMut(Item) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        self.walk(src, &mut |item| f(item).map(ControlFlow::Continue))
            .map(drop)
    }
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
    let excludes = Arc::new(IgnoreRules::from_patterns(&op.exclude)?);
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
        // `COPY --parents . /d` (or `dir/./`): the pattern names the parent
        // itself, so everything in it is copied, as without --parents.
        let include = (!pattern_text.is_empty())
            .then(|| IgnoreRules::from_patterns(&[pattern_text.as_str()]).map(Arc::new))
            .transpose()?;
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
            let root = Root {
                name: String::new(),
                path: resolved,
                meta,
                contents: Some(Contents {
                    include: include.clone(),
                    exclude: excludes.clone(),
                }),
            };
            // A root that selects nothing is left out: walked up to its
            // first entry to tell.
            if root
                .walk(src, &mut |_| Ok(ControlFlow::Break(())))?
                .is_break()
            {
                roots.push(root);
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
        if wildcard && excludes.is_excluded(&m) {
            continue;
        }
        let resolved = resolve(src, &m, source)?;
        let Some(meta) = src.lstat(&resolved).map_err(io(&resolved))? else {
            return Err(CopyError::SourceNotFound {
                path: source.to_string(),
            });
        };
        let name = m.rsplit('/').next().unwrap_or_default().to_string();
        let contents = (meta.kind == EntryKind::Dir).then(|| Contents {
            include: None,
            exclude: excludes.clone(),
        });
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

/// The `--parents` include pattern and the `--exclude` patterns, with
/// what `dir`'s own path matched (which its entries inherit).
#[derive(Clone, Copy)]
struct Filters<'a> {
    include: Option<(&'a IgnoreRules, &'a MatchState)>,
    exclude: (&'a IgnoreRules, &'a MatchState),
}

/// The entries of the directory `dir`, by their path in the source tree,
/// with their metadata.
fn list(src: &dyn SourceFs, dir: &str) -> Result<Vec<(String, SourceMeta)>, CopyError> {
    // One listing with every entry's metadata: for the context, one
    // getdents and one stat per entry.
    let entries = src.read_dir_meta(dir).map_err(|source| CopyError::Source {
        path: dir.to_string(),
        source,
    })?;
    Ok(entries
        .into_iter()
        .map(|(name, meta)| (join(dir, &name), meta))
        .collect())
}

/// Hands `sink` the selected entries below the directory `dir` (source
/// path), whose entries are `rel_prefix` relative to the root, in walk
/// order: each directory's entries sorted by name, a directory before its
/// contents. A directory not selected itself comes just before its first
/// selected descendant (and not at all without one).
fn walk(
    src: &dyn SourceFs,
    dir: &str,
    rel_prefix: &str,
    filters: Filters<'_>,
    sink: &mut Sink<'_>,
) -> Result<ControlFlow<()>, CopyError> {
    walk_into(
        src,
        rel_prefix,
        filters,
        list(src, dir)?,
        sink,
        &mut Vec::new(),
    )
}

/// Walks one directory, given its `entries` (paths in the source tree
/// under `dir`), handing the selected ones to `sink`. `pending` holds
/// directories not selected themselves whose children may be: they are
/// handed out just before the first selected descendant.
///
/// The listings of the subdirectories walked into are read in parallel
/// before walking them in order: the walk is one stat per entry, most of
/// a no-op rebuild of a large context, and this spreads it over the cores
/// while the entries still come out in one pass, in order. What is held
/// meanwhile is one listing per level of the tree, not the whole walk.
fn walk_into(
    src: &dyn SourceFs,
    rel_prefix: &str,
    filters: Filters<'_>,
    entries: Vec<(String, SourceMeta)>,
    sink: &mut Sink<'_>,
    pending: &mut Vec<Item>,
) -> Result<ControlFlow<()>, CopyError> {
    /// One entry of the directory and, for a directory walked into, its
    /// match states for the include and exclude rules.
    struct Step {
        item: Item,
        selected: bool,
        below: Option<(MatchState, MatchState)>,
    }
    let mut steps = Vec::with_capacity(entries.len());
    for (path, meta) in entries {
        let name = path.rsplit('/').next().unwrap_or(&path);
        let rel = join(rel_prefix, name);
        let (exclude, exclude_parent) = filters.exclude;
        let (excluded, exclude_state) = exclude.evaluate(&rel, exclude_parent);
        let (included, include_state) = match filters.include {
            // For include rules, "excluded" reads "matched".
            Some((include, parent)) => include.evaluate(&rel, parent),
            None => (true, MatchState::default()),
        };
        let selected = !excluded && included;
        let descend =
            meta.kind == EntryKind::Dir && (!excluded || exclude.may_reinclude_below(&rel));
        if selected || descend {
            steps.push(Step {
                item: Item { rel, path, meta },
                selected,
                below: descend.then_some((include_state, exclude_state)),
            });
        }
    }
    let dirs: Vec<&str> = steps
        .iter()
        .filter(|s| s.below.is_some())
        .map(|s| s.item.path.as_str())
        .collect();
    let listing = |dir: &&str| list(src, dir);
    let listings: Vec<Result<Vec<(String, SourceMeta)>, CopyError>> = if dirs.len() > 1 {
        dirs.par_iter().map(listing).collect()
    } else {
        dirs.iter().map(listing).collect()
    };
    let mut listings = listings.into_iter();
    for step in steps {
        let mark = pending.len();
        let Step {
            item,
            selected,
            below,
        } = step;
        let walk_below = below.map(|states| (item.rel.clone(), states));
        if selected {
            for parent in pending.drain(..) {
                if sink(parent)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            if sink(item)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        } else {
            pending.push(item);
        }
        if let Some((rel, (include_state, exclude_state))) = walk_below {
            let entries = listings
                .next()
                .expect("one listing per directory walked into")?;
            let below = Filters {
                include: filters.include.map(|(rules, _)| (rules, &include_state)),
                exclude: (filters.exclude.0, &exclude_state),
            };
            if walk_into(src, &rel, below, entries, sink, pending)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        pending.truncate(mark.min(pending.len()));
    }
    Ok(ControlFlow::Continue(()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;

    use rbuild_solver::op::CopySource;

    use super::*;
    use crate::PatternErrorKind;

    /// An in-memory tree: each path with whether it is a directory.
    struct Tree(BTreeMap<String, EntryKind>);

    impl Tree {
        /// Files at `paths`, with their parent directories.
        fn of(paths: &[&str]) -> Tree {
            let mut map = BTreeMap::new();
            map.insert(String::new(), EntryKind::Dir);
            for path in paths {
                let (dir, kind) = match path.strip_suffix('/') {
                    Some(dir) => (dir, EntryKind::Dir),
                    None => (*path, EntryKind::File),
                };
                for (i, _) in dir.match_indices('/') {
                    map.insert(dir[..i].to_string(), EntryKind::Dir);
                }
                map.insert(dir.to_string(), kind);
            }
            Tree(map)
        }
    }

    impl SourceFs for Tree {
        fn lstat(&self, path: &str) -> io::Result<Option<SourceMeta>> {
            Ok(self.0.get(path).map(|&kind| SourceMeta {
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                rdev: 0,
                host: None,
            }))
        }
        fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
            Ok(self
                .0
                .keys()
                .filter_map(|p| {
                    let rest = if path.is_empty() {
                        p.as_str()
                    } else {
                        p.strip_prefix(path)?.strip_prefix('/')?
                    };
                    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
                })
                .collect())
        }
        fn open(&self, path: &str) -> io::Result<std::fs::File> {
            Err(io::Error::other(format!("{path}: not readable here")))
        }
        fn read_link(&self, path: &str) -> io::Result<std::path::PathBuf> {
            Err(io::Error::other(format!("{path}: not a symlink")))
        }
        fn file_digest(&self, path: &str) -> io::Result<rbuild_solver::Digest> {
            Err(io::Error::other(format!("{path}: not readable here")))
        }
    }

    fn op(exclude: &[&str], parents: bool) -> CopyOp {
        CopyOp {
            source: CopySource::Context,
            sources: Vec::new(),
            dest: "/out/".to_string(),
            chown: None,
            chmod: None,
            link: false,
            parents,
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            add: None,
            display: String::new(),
        }
    }

    /// What `source` copies with `exclude`, as paths relative to the
    /// destination (a directory root contributes its contents).
    fn copied(tree: &Tree, source: &str, exclude: &[&str], parents: bool) -> Vec<String> {
        let roots = select_source(tree, &op(exclude, parents), source).unwrap();
        let mut out = Vec::new();
        for root in roots {
            match root.contents {
                Some(_) => {
                    root.for_each(tree, |item| {
                        out.push(item.rel);
                        Ok(())
                    })
                    .unwrap();
                }
                None => out.push(root.name),
            }
        }
        out
    }

    fn context() -> Tree {
        Tree::of(&["a/b.txt", "a/c/d.txt", "a/e.md", "c.txt", "d.md"])
    }

    /// Paths in walk order: sorted component by component.
    fn walk_order(mut paths: Vec<String>) -> Vec<String> {
        paths.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        paths
    }

    #[test]
    fn a_wide_tree_keeps_the_walk_order_while_its_listings_are_read_in_parallel() {
        // Many sibling directories at every level, so their listings are
        // read in parallel; the result must still come in walk order, and
        // a re-included file deep in one subtree must bring its parents.
        let mut files = Vec::new();
        for d in 0..12 {
            for e in 0..6 {
                for f in 0..4 {
                    files.push(format!("d{d}/e{e}/f{f}.txt"));
                }
                files.push(format!("d{d}/e{e}/keep.md"));
            }
        }
        let tree = Tree::of(&files.iter().map(String::as_str).collect::<Vec<_>>());
        let mut want: Vec<String> = files
            .iter()
            .filter(|f| f.ends_with(".md"))
            .cloned()
            .collect();
        for d in 0..12 {
            want.push(format!("d{d}"));
            for e in 0..6 {
                want.push(format!("d{d}/e{e}"));
            }
        }
        want.push("d3/e1/f2.txt".to_string());
        assert_eq!(
            copied(&tree, ".", &["**.txt", "!d3/e1/f2.txt"], false),
            walk_order(want)
        );
        assert_eq!(
            copied(&tree, ".", &["d*", "!d10/e5/keep.md"], false),
            ["d10", "d10/e5", "d10/e5/keep.md"]
        );
        assert_eq!(
            copied(&tree, ".", &[], false).len(),
            files.len() + 12 + 12 * 6
        );
    }

    #[test]
    fn exclude_double_star_crosses_directories_like_dockerignore() {
        // Regression: `--exclude=**.txt` kept `a/b.txt`; `.dockerignore`
        // (patternmatcher) reads `**.txt` as a suffix test over the path.
        let tree = context();
        assert_eq!(
            copied(&tree, ".", &["**.txt"], false),
            ["a", "a/c", "a/e.md", "d.md"]
        );
        assert_eq!(
            copied(&tree, ".", &["**/*.txt"], false),
            ["a", "a/c", "a/e.md", "d.md"]
        );
        // `*` alone stays within one component.
        assert_eq!(
            copied(&tree, ".", &["*.txt"], false),
            ["a", "a/b.txt", "a/c", "a/c/d.txt", "a/e.md", "d.md"]
        );
    }

    #[test]
    fn exclude_a_directory_drops_everything_below_it() {
        let tree = context();
        assert_eq!(copied(&tree, ".", &["a"], false), ["c.txt", "d.md"]);
        assert_eq!(copied(&tree, ".", &["a/"], false), ["c.txt", "d.md"]);
        // `a/**` matches below `a` only: the directory itself stays.
        assert_eq!(copied(&tree, ".", &["a/**"], false), ["a", "c.txt", "d.md"]);
    }

    #[test]
    fn exclude_reincludes_with_bang_and_the_last_match_wins() {
        let tree = context();
        assert_eq!(
            copied(&tree, ".", &["a", "!a/c/d.txt"], false),
            ["a", "a/c", "a/c/d.txt", "c.txt", "d.md"],
            "the parents of a re-included file are copied with it"
        );
        assert_eq!(
            copied(&tree, ".", &["!a/c/d.txt", "a"], false),
            ["c.txt", "d.md"]
        );
        assert_eq!(
            copied(&tree, ".", &["**.txt", "!c.txt"], false),
            ["a", "a/c", "a/e.md", "c.txt", "d.md"]
        );
        // BuildKit's walker: `!a` is not consulted at `a` (nothing is
        // excluded yet), so `a/b.txt`, which inherits that, stays excluded.
        assert_eq!(
            copied(&tree, ".", &["a/b.txt", "!a"], false),
            ["a", "a/c", "a/c/d.txt", "a/e.md", "c.txt", "d.md"]
        );
    }

    #[test]
    fn exclude_is_relative_to_the_copied_source() {
        let tree = context();
        assert_eq!(
            copied(&tree, "a", &["*.txt"], false),
            ["c", "c/d.txt", "e.md"]
        );
        assert_eq!(
            copied(&tree, "a", &["a"], false),
            ["b.txt", "c", "c/d.txt", "e.md"]
        );
        assert_eq!(copied(&tree, "a", &["c"], false), ["b.txt", "e.md"]);
    }

    #[test]
    fn exclude_patterns_are_cleaned_but_keep_a_leading_slash() {
        // patternmatcher.New trims and cleans each pattern but, unlike a
        // `.dockerignore` file, does not strip a leading `/`.
        let tree = context();
        assert_eq!(
            copied(&tree, ".", &["  ./a/c/  ", ""], false),
            ["a", "a/b.txt", "a/e.md", "c.txt", "d.md"]
        );
        assert_eq!(
            copied(&tree, ".", &["/a"], false),
            [
                "a",
                "a/b.txt",
                "a/c",
                "a/c/d.txt",
                "a/e.md",
                "c.txt",
                "d.md"
            ]
        );
    }

    #[test]
    fn invalid_exclude_patterns_are_errors() {
        let tree = context();
        for (pattern, reason) in [
            ("!", PatternErrorKind::LoneExclamation),
            ("[a-", PatternErrorKind::Syntax),
            ("a\\", PatternErrorKind::Syntax),
        ] {
            let err = select_source(&tree, &op(&[pattern], false), ".").unwrap_err();
            match err {
                CopyError::Pattern(e) => {
                    assert_eq!((e.pattern.as_str(), e.reason), (pattern, reason))
                }
                other => panic!("{pattern}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn parents_of_the_whole_context_copy_everything() {
        // Regression: `COPY --parents . /d` failed with `"/": not found`.
        let tree = context();
        let all = copied(&tree, ".", &[], false);
        assert_eq!(copied(&tree, ".", &[], true), all);
        assert_eq!(copied(&tree, "./", &[], true), all);
        assert_eq!(
            copied(&tree, "a/./", &[], true),
            ["b.txt", "c", "c/d.txt", "e.md"]
        );
        assert_eq!(
            copied(&tree, ".", &["*.md"], true),
            ["a", "a/b.txt", "a/c", "a/c/d.txt", "a/e.md", "c.txt"]
        );
    }

    #[test]
    fn parents_include_pattern_uses_the_dockerignore_dialect() {
        let tree = context();
        assert_eq!(
            copied(&tree, "./**.txt", &[], true),
            ["a", "a/b.txt", "a/c", "a/c/d.txt", "c.txt"]
        );
        assert_eq!(
            copied(&tree, "./**/*.txt", &["a/c"], true),
            ["a", "a/b.txt", "c.txt"]
        );
    }
}
