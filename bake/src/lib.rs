//! Bake files, read with buildx's rules: `docker-bake.hcl`,
//! `docker-bake.json` and the `build:` sections of compose files become
//! a [`Definition`] (targets and groups), and [`Definition::resolve`]
//! picks the targets a `bake` invocation builds: groups expanded (the
//! `default` group when none is named), `inherits` applied, `--set`
//! overrides applied, defaults filled in. What the targets mean for a
//! build (paths, specs, platforms) is the front end's business: this
//! crate returns plain data and never touches the store.
//!
//! HCL is read with hcl-rs/hcl-edit (the maintained Rust HCL
//! implementation, with expression evaluation and source spans, so an
//! error names `file:line:col`); compose YAML with serde_norway (the
//! maintained fork of serde_yaml, which is archived).
//!
//! The flow: [`read_files`] (the default file names in buildx's order,
//! or `-f`) → [`load`] (parse each file; evaluate variables, then
//! targets and groups, matrices expanded) → [`Definition::resolve`].

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

mod compose;
mod error;
mod eval;
mod functions;
mod model;
mod user_functions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::BakeError;
pub use model::{Group, Pos, Resolved, Target, UNSUPPORTED_KEYS, Variable};

/// The files `bake` reads when no `-f` is given, in buildx's order; every
/// one present is read, later files override earlier ones.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
];

/// A bake file's bytes and the name errors show (the path as given).
#[derive(Debug, Clone)]
pub struct BakeFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl BakeFile {
    fn text(&self) -> Result<&str, BakeError> {
        std::str::from_utf8(&self.bytes).map_err(|_| BakeError::NotText {
            name: self.name.clone(),
        })
    }
}

/// Reads `names` (relative to `dir` unless absolute), or, when empty,
/// every [`DEFAULT_FILES`] entry present in `dir`.
pub fn read_files(dir: &Path, names: &[PathBuf]) -> Result<Vec<BakeFile>, BakeError> {
    let read = |name: &Path| {
        let path = dir.join(name);
        fs_err::read(&path)
            .map(|bytes| BakeFile {
                name: name.display().to_string(),
                bytes,
            })
            .map_err(|source| BakeError::Read {
                path: path.clone(),
                source,
            })
    };
    if !names.is_empty() {
        return names.iter().map(|n| read(n)).collect();
    }
    let files: Vec<BakeFile> = DEFAULT_FILES
        .iter()
        .map(Path::new)
        .filter(|n| dir.join(n).is_file())
        .map(read)
        .collect::<Result<_, _>>()?;
    if files.is_empty() {
        return Err(BakeError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// What [`load`] reads besides the files.
pub struct LoadOptions<'a> {
    /// The environment: variables' overrides and compose interpolation.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `BAKE_LOCAL_PLATFORM`'s value, e.g. `linux/amd64`.
    pub local_platform: &'a str,
    /// The directory the files' names are relative to (a compose file's
    /// `.env` is read from beside it).
    pub dir: &'a Path,
}

/// Every target and group the files define, merged by name in file
/// order (a later definition overrides an earlier one's fields).
#[derive(Debug, Clone, Default)]
pub struct Definition {
    pub targets: Vec<Target>,
    pub groups: Vec<Group>,
    /// The HCL and JSON files' `variable` blocks, by name in file order.
    pub variables: Vec<Variable>,
}

/// Parses and evaluates `files`.
pub fn load(files: &[BakeFile], options: &LoadOptions<'_>) -> Result<Definition, BakeError> {
    let mut def = Definition::default();
    let mut raw = Vec::new();
    let mut texts = eval::Texts::new();
    for file in files {
        if compose::is_compose(file) {
            let (targets, group) = compose::parse(file, options.env, options.dir)?;
            def.add(targets, vec![group]);
            continue;
        }
        texts.insert(file.name.clone(), file.text()?.to_string());
        let json = file.name.to_ascii_lowercase().ends_with(".json")
            || file.bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        raw.push(if json {
            eval::parse_json(file)?
        } else {
            eval::parse_hcl(file)?
        });
    }
    if !raw.is_empty() {
        let env = eval::Env {
            lookup: options.env,
            local_platform: options.local_platform,
        };
        let evaluated = eval::evaluate(&raw, &env, &texts)?;
        def.add(evaluated.targets, evaluated.groups);
        def.variables = evaluated.variables;
    }
    Ok(def)
}

impl Definition {
    fn add(&mut self, targets: Vec<Target>, groups: Vec<Group>) {
        for t in targets {
            match self.targets.iter_mut().find(|x| x.name == t.name) {
                Some(existing) => existing.merge(&t),
                None => self.targets.push(t),
            }
        }
        for g in groups {
            match self.groups.iter_mut().find(|x| x.name == g.name) {
                Some(existing) => {
                    for t in g.targets {
                        if !existing.targets.contains(&t) {
                            existing.targets.push(t);
                        }
                    }
                    if g.description.is_some() {
                        existing.description = g.description;
                    }
                }
                None => self.groups.push(g),
            }
        }
    }

    fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The targets `name` stands for (a group's, recursively, or itself),
    /// and the groups passed through.
    fn expand(
        &self,
        name: &str,
        seen: &mut Vec<String>,
        targets: &mut Vec<String>,
        groups: &mut Vec<String>,
    ) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        match self.group(name) {
            Some(g) => {
                groups.push(name.to_string());
                for t in &g.targets {
                    self.expand(t, seen, targets, groups);
                }
            }
            None => {
                if !targets.iter().any(|t| t == name) {
                    targets.push(name.to_string());
                }
            }
        }
    }

    /// The fully merged target `name`: its `inherits` applied first, in
    /// order, then its own fields, then the overrides for it.
    fn resolve_target(
        &self,
        name: &str,
        chain: &mut Vec<String>,
        overrides: &Overrides,
    ) -> Result<Target, BakeError> {
        if chain.iter().any(|c| c == name) {
            chain.push(name.to_string());
            return Err(BakeError::InheritCycle {
                name: chain[0].clone(),
                chain: chain.join(" → "),
            });
        }
        let own = self.target(name).ok_or_else(|| BakeError::UnknownTarget {
            name: name.to_string(),
        })?;
        chain.push(name.to_string());
        let mut merged = Target::default();
        for parent in &own.inherits {
            let p = self.resolve_target(parent, chain, overrides)?;
            merged.merge(&p);
        }
        chain.pop();
        merged.merge(own);
        merged.name = own.name.clone();
        merged.pos = own.pos.clone();
        for o in overrides.get(name).into_iter().flatten() {
            merged
                .apply_override(&o.key, &o.values, o.append)
                .map_err(|message| BakeError::Override {
                    value: o.raw.clone(),
                    message,
                })?;
        }
        Ok(merged)
    }

    /// The targets `names` select (`default` when empty), with `--set`
    /// `overrides` (`PATTERN.KEY[.NAME]=VALUE` or `+=`; `args.NAME` alone
    /// takes `NAME` from `env`).
    pub fn resolve(
        &self,
        names: &[String],
        overrides: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, BakeError> {
        let requested: Vec<String> = if names.is_empty() {
            if self.group("default").is_none() && self.target("default").is_none() {
                let mut available: Vec<&str> = self
                    .groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .chain(self.targets.iter().map(|t| t.name.as_str()))
                    .filter(|n| !n.starts_with('_'))
                    .collect();
                available.sort();
                return Err(BakeError::NoDefault {
                    available: available.join(", "),
                });
            }
            vec!["default".to_string()]
        } else {
            names.to_vec()
        };
        let mut matched = Vec::new();
        for pattern in &requested {
            let pattern = pattern.replace('.', "_");
            if !pattern.contains(['*', '?', '[']) {
                matched.push(pattern);
                continue;
            }
            let mut any = false;
            for n in self
                .groups
                .iter()
                .map(|g| &g.name)
                .chain(self.targets.iter().map(|t| &t.name))
            {
                if glob_match(&pattern, n) && !matched.contains(n) {
                    matched.push(n.clone());
                    any = true;
                }
            }
            if !any {
                return Err(BakeError::NoMatch { pattern });
            }
        }
        let overrides = self.parse_overrides(overrides, env)?;
        let mut out = Resolved::default();
        for name in &matched {
            let (mut targets, mut groups) = (Vec::new(), Vec::new());
            self.expand(name, &mut Vec::new(), &mut targets, &mut groups);
            for t in targets {
                let mut target = self.resolve_target(&t, &mut Vec::new(), &overrides)?;
                target.finish();
                out.targets.insert(t, target);
            }
            for g in groups {
                if let Some(group) = self.group(&g) {
                    out.groups.insert(g, group.clone());
                }
            }
        }
        // buildx lists what was asked for in a `default` group.
        if !(matched.len() == 1 && matched[0] == "default" && out.groups.contains_key("default")) {
            let default = out
                .groups
                .entry("default".to_string())
                .or_insert_with(|| Group {
                    name: "default".to_string(),
                    ..Group::default()
                });
            for m in &matched {
                if m != "default" && !default.targets.contains(m) {
                    default.targets.push(m.clone());
                }
            }
            default.targets.sort();
        }
        Ok(out)
    }

    fn parse_overrides(
        &self,
        overrides: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Overrides, BakeError> {
        let mut out = Overrides::new();
        for raw in overrides {
            let bad = |message: &str| BakeError::Override {
                value: raw.clone(),
                message: message.to_string(),
            };
            let (lhs, value) = match raw.split_once('=') {
                Some((l, v)) => (l, Some(v.to_string())),
                None => (raw.as_str(), None),
            };
            let append = lhs.ends_with('+');
            let lhs = lhs.trim_end_matches('+');
            let Some((pattern, key)) = lhs.split_once('.') else {
                return Err(bad("expected TARGET.KEY=VALUE"));
            };
            let value = match value {
                Some(v) => v,
                None if key.starts_with("args.") => match env(&key["args.".len()..]) {
                    Some(v) => v,
                    None => continue,
                },
                None => return Err(bad("expected TARGET.KEY=VALUE")),
            };
            let names: Vec<String> = if self.target(pattern).is_some() {
                vec![pattern.to_string()]
            } else {
                let names: Vec<String> = self
                    .targets
                    .iter()
                    .filter(|t| glob_match(pattern, &t.name))
                    .map(|t| t.name.clone())
                    .collect();
                if names.is_empty() {
                    return Err(BakeError::NoMatch {
                        pattern: pattern.to_string(),
                    });
                }
                names
            };
            for name in names {
                let list = out.entry(name).or_default();
                // List keys accumulate values, as buildx's ArrValue.
                match list.iter_mut().find(|o| o.key == key) {
                    Some(entry) => {
                        entry.values.push(value.clone());
                        entry.append = append;
                    }
                    None => list.push(Override {
                        key: key.to_string(),
                        values: vec![value.clone()],
                        append,
                        raw: raw.clone(),
                    }),
                }
            }
        }
        Ok(out)
    }
}

/// One `--set` key of one target: every value given for it (list keys
/// such as `tags` take them all, scalars the last), `+=` or `=`.
struct Override {
    /// What follows `TARGET.`: `tags`, `args.NAME`, …
    key: String,
    values: Vec<String>,
    append: bool,
    /// The flag's value as given, for errors.
    raw: String,
}

/// `--set` overrides by target name.
type Overrides = BTreeMap<String, Vec<Override>>;

/// Go's `path.Match` for target names: `*`, `?` and `[…]` classes.
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') || chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(name))
}

#[cfg(test)]
mod tests;
