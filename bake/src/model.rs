//! The typed bake definition: [`Target`]s and [`Group`]s as buildx
//! models them, how targets merge (`inherits`, a target defined twice,
//! several files), `--set` overrides, and `--print`'s JSON.

use std::collections::BTreeMap;

use serde::Serialize;

/// Where something was written: `docker-bake.hcl:12:5`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: String,
    /// 1-based; 0 when only the file is known.
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A `variable` block, evaluated: for `--list=variables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// `string`, `bool`, `number`, `list`, `map` or `null`.
    pub kind: &'static str,
    /// The value in effect (the environment's or the default), as text.
    pub value: String,
    pub description: Option<String>,
}

/// A `group` block: a name for several targets (or groups).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Group {
    #[serde(skip)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub targets: Vec<String>,
}

/// A `target` block: one image build. Every field is optional so that
/// merging (`inherits`, repeated definitions, `--set`) can tell "not set"
/// from "set to empty", as buildx does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub name: String,
    pub description: Option<String>,
    pub inherits: Vec<String>,
    pub context: Option<String>,
    /// Named contexts (`--build-context NAME=VALUE`).
    pub contexts: BTreeMap<String, String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    /// Build args; a null value in the file leaves the arg unset.
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Option<Vec<String>>,
    pub target: Option<String>,
    pub platforms: Option<Vec<String>>,
    pub cache_from: Option<Vec<String>>,
    pub cache_to: Option<Vec<String>>,
    pub output: Option<Vec<String>>,
    pub secret: Option<Vec<String>>,
    pub ssh: Option<Vec<String>>,
    pub pull: Option<bool>,
    pub no_cache: Option<bool>,
    pub network: Option<String>,
    pub no_cache_filter: Option<Vec<String>>,
    /// `annotations`: `[TYPE:]KEY=VALUE` strings, as `--annotation` takes.
    pub annotations: Option<Vec<String>>,
    /// `attest`: `type=provenance|sbom,…` strings, as `--attest` takes.
    pub attest: Option<Vec<String>>,
    /// Keys buildx knows that rbuild cannot build with yet
    /// (`shm-size`, `ulimits`, `call`, `entitlements`,
    /// `extra-hosts`), as written; a target using one is refused at build
    /// time, and `--print` shows them.
    pub unsupported: BTreeMap<String, serde_json::Value>,
    /// Where the target's block starts (the first definition).
    pub pos: Pos,
}

/// The keys of a target block that rbuild knows but cannot build with yet.
pub const UNSUPPORTED_KEYS: &[&str] =
    &["shm-size", "ulimits", "call", "entitlements", "extra-hosts"];

fn merge_list(into: &mut Option<Vec<String>>, from: &Option<Vec<String>>) {
    if let Some(from) = from {
        let list = into.get_or_insert_with(Vec::new);
        for v in from {
            if !list.contains(v) {
                list.push(v.clone());
            }
        }
    }
}

impl Target {
    /// Applies `other` on top of `self` with buildx's rules: scalars and
    /// `tags`, `platforms`, `cache-to`, `output` are replaced; maps
    /// (`args`, `labels`, `contexts`) merge key by key; `cache-from`,
    /// `secret`, `ssh` and `no-cache-filter` are appended.
    pub fn merge(&mut self, other: &Target) {
        fn set<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                into.clone_from(from);
            }
        }
        set(&mut self.context, &other.context);
        set(&mut self.dockerfile, &other.dockerfile);
        set(&mut self.dockerfile_inline, &other.dockerfile_inline);
        self.args
            .extend(other.args.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.contexts
            .extend(other.contexts.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.labels
            .extend(other.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        set(&mut self.tags, &other.tags);
        set(&mut self.target, &other.target);
        merge_list(&mut self.secret, &other.secret);
        merge_list(&mut self.ssh, &other.ssh);
        set(&mut self.platforms, &other.platforms);
        merge_list(&mut self.cache_from, &other.cache_from);
        set(&mut self.cache_to, &other.cache_to);
        set(&mut self.output, &other.output);
        set(&mut self.pull, &other.pull);
        set(&mut self.no_cache, &other.no_cache);
        set(&mut self.network, &other.network);
        merge_list(&mut self.no_cache_filter, &other.no_cache_filter);
        merge_list(&mut self.annotations, &other.annotations);
        merge_list(&mut self.attest, &other.attest);
        set(&mut self.description, &other.description);
        self.unsupported.extend(
            other
                .unsupported
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        self.inherits.extend(other.inherits.iter().cloned());
    }

    /// Applies one `--set` override (`key` is what follows `TARGET.`,
    /// e.g. `args.VERSION`, `tags`, `platform`; `append` for `+=`).
    pub fn apply_override(
        &mut self,
        key: &str,
        values: &[String],
        append: bool,
    ) -> Result<(), String> {
        let value = values.last().cloned().unwrap_or_default();
        let (head, sub) = match key.split_once('.') {
            Some((h, s)) => (h, Some(s)),
            None => (key, None),
        };
        let needs_name = |what: &str| {
            sub.map(str::to_string).ok_or_else(|| {
                format!("invalid format for {what}, expecting {what}.<name>=<value>")
            })
        };
        let list = |into: &mut Option<Vec<String>>| {
            if append {
                into.get_or_insert_with(Vec::new)
                    .extend(values.iter().cloned());
            } else {
                *into = Some(values.to_vec());
            }
        };
        let boolean = |what: &str| {
            parse_bool(&value)
                .ok_or_else(|| format!("invalid value {value} for boolean key {what}"))
        };
        match head {
            "context" => self.context = Some(value),
            "dockerfile" => self.dockerfile = Some(value),
            "dockerfile-inline" => self.dockerfile_inline = Some(value),
            "target" => self.target = Some(value),
            "network" => self.network = Some(value),
            "description" => self.description = Some(value),
            "args" => {
                let name = needs_name("args")?;
                self.args.insert(name, value);
            }
            "labels" => {
                let name = needs_name("labels")?;
                self.labels.insert(name, value);
            }
            "contexts" => {
                let name = needs_name("contexts")?;
                self.contexts.insert(name, value);
            }
            "tags" => list(&mut self.tags),
            "platform" | "platforms" => list(&mut self.platforms),
            "cache-from" => list(&mut self.cache_from),
            "cache-to" => list(&mut self.cache_to),
            "output" => list(&mut self.output),
            "secrets" | "secret" => list(&mut self.secret),
            "ssh" => list(&mut self.ssh),
            "no-cache-filter" => list(&mut self.no_cache_filter),
            "annotations" => list(&mut self.annotations),
            "attest" => list(&mut self.attest),
            "no-cache" => self.no_cache = Some(boolean("no-cache")?),
            "pull" => self.pull = Some(boolean("pull")?),
            "push" => {
                if boolean("push")? {
                    let outputs = self.output.get_or_insert_with(Vec::new);
                    if outputs.is_empty() {
                        outputs.push("type=image".to_string());
                    }
                    for o in outputs.iter_mut() {
                        if o.starts_with("type=image") && !o.contains("push=") {
                            o.push_str(",push=true");
                        }
                    }
                }
            }
            "load" => {
                if boolean("load")? {
                    let outputs = self.output.get_or_insert_with(Vec::new);
                    if !outputs.iter().any(|o| o.starts_with("type=image")) {
                        outputs.push("type=image".to_string());
                    }
                }
            }
            k if UNSUPPORTED_KEYS.contains(&k) => {
                self.unsupported
                    .insert(k.to_string(), serde_json::json!(values));
            }
            other => return Err(format!("unknown key: {other}")),
        }
        Ok(())
    }

    /// buildx's defaults for a resolved target: context `.`, dockerfile
    /// `Dockerfile`; duplicates dropped from lists.
    pub(crate) fn finish(&mut self) {
        self.inherits.clear();
        if self.context.is_none() {
            self.context = Some(".".to_string());
        }
        if self.dockerfile.as_deref().is_none_or(str::is_empty) {
            self.dockerfile = Some("Dockerfile".to_string());
        }
        for list in [
            &mut self.tags,
            &mut self.platforms,
            &mut self.cache_from,
            &mut self.cache_to,
            &mut self.output,
            &mut self.secret,
            &mut self.ssh,
            &mut self.no_cache_filter,
            &mut self.annotations,
            &mut self.attest,
        ]
        .into_iter()
        .flatten()
        {
            let mut seen = Vec::new();
            list.retain(|v| {
                if seen.contains(v) {
                    false
                } else {
                    seen.push(v.clone());
                    true
                }
            });
        }
        self.contexts.retain(|_, v| !v.is_empty());
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `k=v,k=v` as an object, `type` included (a bare value is `default`'s).
fn csv_object(s: &str, bare: &str, bare_key: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if !s.contains('=') {
        map.insert("type".to_string(), bare.to_string());
        map.insert(bare_key.to_string(), s.to_string());
        return map;
    }
    for field in s.split(',') {
        if let Some((k, v)) = field.split_once('=') {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    map
}

/// A target as `--print` shows it: buildx's field names and order.
#[derive(Serialize)]
struct PrintTarget<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    contexts: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dockerfile: Option<&'a String>,
    #[serde(rename = "dockerfile-inline", skip_serializing_if = "Option::is_none")]
    dockerfile_inline: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attest: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a Vec<String>>,
    #[serde(rename = "cache-from", skip_serializing_if = "Option::is_none")]
    cache_from: Option<Vec<BTreeMap<String, String>>>,
    #[serde(rename = "cache-to", skip_serializing_if = "Option::is_none")]
    cache_to: Option<Vec<BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<Vec<BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<Vec<BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platforms: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Vec<BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull: Option<bool>,
    #[serde(rename = "no-cache", skip_serializing_if = "Option::is_none")]
    no_cache: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a String>,
    #[serde(rename = "no-cache-filter", skip_serializing_if = "Option::is_none")]
    no_cache_filter: Option<&'a Vec<String>>,
    #[serde(rename = "shm-size", skip_serializing_if = "Option::is_none")]
    shm_size: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ulimits: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entitlements: Option<&'a serde_json::Value>,
    #[serde(rename = "extra-hosts", skip_serializing_if = "Option::is_none")]
    extra_hosts: Option<&'a serde_json::Value>,
}

impl Target {
    fn print(&self) -> PrintTarget<'_> {
        let objects = |list: &Option<Vec<String>>, bare: &str, key: &str| {
            list.as_ref().map(|l| {
                l.iter()
                    .map(|s| csv_object(s, bare, key))
                    .collect::<Vec<_>>()
            })
        };
        let ids = |list: &Option<Vec<String>>| {
            list.as_ref().map(|l| {
                l.iter()
                    .map(|s| {
                        let mut m = csv_object(s, "", "id");
                        if m.get("type").is_some_and(String::is_empty) {
                            m.remove("type");
                        }
                        m
                    })
                    .collect::<Vec<_>>()
            })
        };
        let extra = |k: &str| self.unsupported.get(k);
        // As buildx prints them: `${` and `%{` escaped, so that the
        // printed JSON reads back as a bake file with the same values.
        let esc = |v: &String| v.replace("${", "$${").replace("%{", "%%{");
        let esc_map = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), esc(v)))
                .collect::<BTreeMap<_, _>>()
        };
        PrintTarget {
            description: self.description.as_ref(),
            context: self.context.as_ref(),
            contexts: &self.contexts,
            dockerfile: self.dockerfile.as_ref(),
            dockerfile_inline: self.dockerfile_inline.as_ref().map(esc),
            args: esc_map(&self.args),
            annotations: self.annotations.as_ref(),
            attest: self.attest.as_ref(),
            labels: esc_map(&self.labels),
            tags: self.tags.as_ref(),
            cache_from: objects(&self.cache_from, "registry", "ref"),
            cache_to: objects(&self.cache_to, "registry", "ref"),
            target: self.target.as_ref(),
            secret: ids(&self.secret),
            ssh: ids(&self.ssh),
            platforms: self.platforms.as_ref(),
            output: objects(&self.output, "local", "dest"),
            pull: self.pull,
            no_cache: self.no_cache,
            network: self.network.as_ref(),
            no_cache_filter: self.no_cache_filter.as_ref(),
            shm_size: extra("shm-size"),
            ulimits: extra("ulimits"),
            call: extra("call"),
            entitlements: extra("entitlements"),
            extra_hosts: extra("extra-hosts"),
        }
    }
}

/// The targets (and groups) a bake invocation selected, resolved:
/// inherits applied, overrides applied, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// The groups named on the command line (and the groups they
    /// contain), plus `default` listing the targets built.
    pub groups: BTreeMap<String, Group>,
    /// By name; built in name order.
    pub targets: BTreeMap<String, Target>,
}

impl Resolved {
    /// `--print`'s JSON, as buildx prints it (two-space indent, a
    /// trailing newline).
    pub fn print_json(&self) -> String {
        #[derive(Serialize)]
        struct Print<'a> {
            group: &'a BTreeMap<String, Group>,
            target: BTreeMap<&'a str, PrintTarget<'a>>,
        }
        let print = Print {
            group: &self.groups,
            target: self
                .targets
                .iter()
                .map(|(k, t)| (k.as_str(), t.print()))
                .collect(),
        };
        let mut s = serde_json::to_string_pretty(&print).expect("plain data serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_follows_buildx_per_field() {
        let mut base = Target {
            args: [("A".into(), "1".into()), ("B".into(), "1".into())].into(),
            tags: Some(vec!["a".into()]),
            cache_from: Some(vec!["x".into()]),
            platforms: Some(vec!["linux/amd64".into()]),
            ..Target::default()
        };
        let child = Target {
            args: [("B".into(), "2".into())].into(),
            tags: Some(vec!["b".into()]),
            cache_from: Some(vec!["y".into()]),
            ..Target::default()
        };
        base.merge(&child);
        assert_eq!(base.args["A"], "1");
        assert_eq!(base.args["B"], "2");
        assert_eq!(base.tags, Some(vec!["b".into()]), "tags replace");
        assert_eq!(
            base.cache_from,
            Some(vec!["x".into(), "y".into()]),
            "cache-from appends"
        );
        assert_eq!(base.platforms, Some(vec!["linux/amd64".into()]));
    }

    #[test]
    fn overrides_set_and_append() {
        let mut t = Target {
            tags: Some(vec!["a".into()]),
            ..Target::default()
        };
        t.apply_override("tags", &["b".into()], true).unwrap();
        assert_eq!(t.tags, Some(vec!["a".into(), "b".into()]));
        t.apply_override("tags", &["c".into()], false).unwrap();
        assert_eq!(t.tags, Some(vec!["c".into()]));
        t.apply_override("args.X", &["1".into()], false).unwrap();
        assert_eq!(t.args["X"], "1");
        assert!(t.apply_override("args", &["1".into()], false).is_err());
        assert!(
            t.apply_override("no-cache", &["maybe".into()], false)
                .is_err()
        );
        let e = t
            .apply_override("colour", &["1".into()], false)
            .unwrap_err();
        assert!(e.contains("unknown key: colour"), "{e}");
    }
}
