//! Compose files (`compose.yaml`, `docker-compose.yml`) as bake reads
//! them: every service with a `build:` section is a target named after
//! the service (`.` becomes `_`), in the `default` group; the service's
//! `image` is its first tag. `${VAR}`, `${VAR:-default}`, `${VAR-default}`
//! and `$VAR` are interpolated from the environment (`$$` is a `$`),
//! as compose does; paths are relative to the compose file's directory.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::BakeFile;
use crate::error::BakeError;
use crate::model::{Group, Pos, Target};

/// True when `file` looks like a compose file: YAML with a top-level
/// `services` key (a bake file in HCL or JSON has none).
pub(crate) fn is_compose(file: &BakeFile) -> bool {
    let lower = file.name.to_ascii_lowercase();
    if lower.ends_with(".yml") || lower.ends_with(".yaml") {
        return true;
    }
    if lower.ends_with(".hcl") || lower.ends_with(".json") {
        return false;
    }
    std::str::from_utf8(&file.bytes).is_ok_and(|t| t.lines().any(|l| l.trim_end() == "services:"))
}

/// Replaces `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?err}`, `$VAR`
/// and `$$` in `s`.
fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let expr = &r[..end];
            rest = &r[end + 1..];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = env(name);
            let v = if let Some(d) = op.strip_prefix(":-") {
                value
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| d.to_string())
            } else if let Some(d) = op.strip_prefix('-') {
                value.unwrap_or_else(|| d.to_string())
            } else if let Some(m) = op.strip_prefix(":?") {
                value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("required variable {name} is missing a value: {m}"))?
            } else if let Some(m) = op.strip_prefix('?') {
                value.ok_or_else(|| format!("required variable {name} is missing a value: {m}"))?
            } else if op.is_empty() {
                value.unwrap_or_default()
            } else {
                return Err(format!("invalid interpolation format for {s:?}"));
            };
            out.push_str(&v);
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&env(&rest[..end]).unwrap_or_default());
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_all(v: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = interpolate(s, env)?,
        Value::Array(a) => {
            for i in a {
                interpolate_all(i, env)?;
            }
        }
        Value::Object(o) => {
            for (_, i) in o.iter_mut() {
                interpolate_all(i, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A `.env` file: `KEY=VALUE` lines (`export ` allowed, `#` comments,
/// values optionally in single or double quotes).
fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v.split(" #").next().unwrap_or(v).trim_end()
        };
        out.push((k.trim().to_string(), v.to_string()));
    }
    out
}

/// A compose map: `{K: V}` or `["K=V", "K"]` (a bare `K` takes the
/// environment's value, and is left out when unset).
fn kv_map(v: &Value, env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if let Some(s) = scalar(v) {
                    out.insert(k.clone(), s);
                } else if v.is_null()
                    && let Some(e) = env(k)
                {
                    out.insert(k.clone(), e);
                }
            }
        }
        Value::Array(a) => {
            for item in a.iter().filter_map(scalar) {
                match item.split_once('=') {
                    Some((k, v)) => {
                        out.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        if let Some(e) = env(&item) {
                            out.insert(item, e);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

fn list(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(scalar).collect())
}

/// `dir/path`, or `path` when absolute or `dir` is empty.
fn join(dir: &str, path: &str) -> String {
    if dir.is_empty() || path.starts_with('/') || path.contains("://") {
        return path.to_string();
    }
    let path = path.strip_prefix("./").unwrap_or(path);
    if path == "." || path.is_empty() {
        return dir.to_string();
    }
    format!("{}/{path}", dir.trim_end_matches('/'))
}

/// Reads one compose file's build sections.
pub(crate) fn parse(
    file: &BakeFile,
    process_env: &dyn Fn(&str) -> Option<String>,
    base: &std::path::Path,
) -> Result<(Vec<Target>, Group), BakeError> {
    let text = file.text()?;
    // Compose reads `.env` beside the compose file; the process's
    // environment wins over it.
    let dotenv_path = base
        .join(&file.name)
        .parent()
        .map(|d| d.join(".env"))
        .unwrap_or_else(|| std::path::PathBuf::from(".env"));
    let dotenv = match fs_err::read_to_string(&dotenv_path) {
        Ok(text) => parse_dotenv(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(BakeError::Read {
                path: dotenv_path,
                source,
            });
        }
    };
    let env_fn = |k: &str| {
        process_env(k).or_else(|| dotenv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    let env: &dyn Fn(&str) -> Option<String> = &env_fn;
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| {
        let pos = e.location().map_or(
            Pos {
                file: file.name.clone(),
                line: 0,
                column: 0,
            },
            |l| Pos {
                file: file.name.clone(),
                line: l.line(),
                column: l.column(),
            },
        );
        BakeError::invalid(text, pos, format!("invalid compose file: {e}"))
    })?;
    let file_pos = Pos {
        file: file.name.clone(),
        line: 0,
        column: 0,
    };
    let bad = |message: String| BakeError::invalid(text, file_pos.clone(), message);
    interpolate_all(&mut doc, env).map_err(bad)?;
    let dir = std::path::Path::new(&file.name)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let secrets = doc.get("secrets").and_then(Value::as_object);
    let mut targets = Vec::new();
    let mut group = Group {
        name: "default".to_string(),
        ..Group::default()
    };
    let Some(services) = doc.get("services").and_then(Value::as_object) else {
        return Err(bad("a compose file needs a top-level services: map".into()));
    };
    for (service, def) in services {
        let Some(build) = def.get("build") else {
            continue;
        };
        let name = service.replace('.', "_");
        let mut t = Target {
            name: name.clone(),
            pos: file_pos.clone(),
            ..Target::default()
        };
        let context = match build {
            Value::String(s) => Some(s.clone()),
            Value::Object(b) => b.get("context").and_then(scalar),
            _ => {
                return Err(bad(format!(
                    "services.{service}.build must be a path or a map"
                )));
            }
        };
        t.context = Some(join(&dir, context.as_deref().unwrap_or(".")));
        let mut tags: Vec<String> = def.get("image").and_then(scalar).into_iter().collect();
        if let Value::Object(b) = build {
            for (key, v) in b {
                match key.as_str() {
                    "context" => {}
                    "dockerfile" => t.dockerfile = scalar(v),
                    "dockerfile_inline" => t.dockerfile_inline = scalar(v),
                    "args" => t.args = kv_map(v, env),
                    "labels" => t.labels = kv_map(v, env),
                    "target" => t.target = scalar(v),
                    "tags" => tags.extend(list(Some(v)).unwrap_or_default()),
                    "platforms" => t.platforms = list(Some(v)),
                    "cache_from" => t.cache_from = list(Some(v)),
                    "cache_to" => t.cache_to = list(Some(v)),
                    "network" => t.network = scalar(v),
                    "no_cache" => t.no_cache = v.as_bool(),
                    "pull" => t.pull = v.as_bool(),
                    "additional_contexts" => t.contexts = kv_map(v, env),
                    "ssh" => {
                        t.ssh = Some(match v {
                            Value::Object(_) => kv_map(v, env)
                                .into_iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect(),
                            _ => list(Some(v)).unwrap_or_default(),
                        })
                    }
                    "secrets" => {
                        let mut specs = Vec::new();
                        for s in v.as_array().into_iter().flatten() {
                            let (id, source) = match s {
                                Value::String(id) => (id.clone(), id.clone()),
                                Value::Object(o) => {
                                    let source =
                                        o.get("source").and_then(scalar).unwrap_or_default();
                                    let id = o
                                        .get("target")
                                        .and_then(scalar)
                                        .unwrap_or_else(|| source.clone());
                                    (id, source)
                                }
                                _ => continue,
                            };
                            let def = secrets.and_then(|m| m.get(&source)).ok_or_else(|| {
                                bad(format!("services.{service}.build.secrets: secret {source:?} is not defined in the top-level secrets"))
                            })?;
                            if let Some(path) = def.get("file").and_then(scalar) {
                                specs.push(format!("id={id},src={}", join(&dir, &path)));
                            } else if let Some(var) = def.get("environment").and_then(scalar) {
                                specs.push(format!("id={id},env={var}"));
                            } else {
                                return Err(bad(format!(
                                    "secret {source:?} needs file: or environment:"
                                )));
                            }
                        }
                        t.secret = Some(specs);
                    }
                    "shm_size" => {
                        t.unsupported.insert("shm-size".into(), v.clone());
                    }
                    "ulimits" | "extra_hosts" | "entitlements" | "privileged" | "isolation" => {
                        t.unsupported.insert(key.replace('_', "-"), v.clone());
                    }
                    k if k.starts_with("x-") => {}
                    other => {
                        return Err(bad(format!(
                            "services.{service}.build: unknown key {other:?}"
                        )));
                    }
                }
            }
        }
        if !tags.is_empty() {
            t.tags = Some(tags);
        }
        group.targets.push(name);
        targets.push(t);
    }
    Ok((targets, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_compose() {
        let env = |k: &str| match k {
            "SET" => Some("v".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let i = |s: &str| interpolate(s, &env).unwrap();
        assert_eq!(i("a-${SET}-$SET"), "a-v-v");
        assert_eq!(i("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}"), "d d  d");
        assert_eq!(i("$$SET"), "$SET");
        assert!(interpolate("${UNSET:?needed}", &env).is_err());
    }

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x' \nD=v # note\n\nbad\n");
        assert_eq!(
            vars,
            [("A", "1"), ("B", "two words"), ("C", "x"), ("D", "v")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
