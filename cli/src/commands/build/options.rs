//! Parsing and validation of `rbuild build`'s flag values, with docker's
//! (and buildx's) syntax and semantics, into the build library's typed
//! specs ([`rbuild_builder::spec`]). Each parser is a clap value parser
//! or a pure function, so errors name the flag and the bad value and the
//! rules are unit-tested without spawning anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use rbuild_builder::spec::{CacheFromSpec, CacheToSpec, OutputSpec, SecretSource, SecretSpec};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::op::ExecNetwork;
use rbuild_solver::plan::Platform;
use rbuild_worker::cache_transfer::ExportMode;

/// `-t/--tag`: a reference as docker normalizes it; digests are refused
/// because a build names what it made by tag only.
pub fn parse_tag(s: &str) -> Result<ImageRef, String> {
    let r = ImageRef::parse(s).map_err(|e| e.to_string())?;
    if r.digest().is_some() {
        return Err(format!(
            "invalid tag {s:?}: a tag cannot contain a digest\nhint: write NAME[:TAG]"
        ));
    }
    Ok(r)
}

/// One `--build-arg`: `NAME=VALUE`, or `NAME` alone to take the value from
/// the environment (skipped when unset, as docker does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArgFlag {
    pub name: String,
    pub value: Option<String>,
}

/// `--build-arg NAME[=VALUE]`.
pub fn parse_build_arg(s: &str) -> Result<BuildArgFlag, String> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!(
            "invalid build arg {s:?}: the name is empty\nhint: write NAME=VALUE, or NAME to pass the variable from the environment"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid build arg {s:?}: the name {name:?} contains whitespace"
        ));
    }
    Ok(BuildArgFlag {
        name: name.to_string(),
        value,
    })
}

/// Resolves build args in order (a later one wins): `NAME` alone reads
/// `env(NAME)` and is skipped when unset.
pub fn resolve_build_args(
    flags: &[BuildArgFlag],
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in flags {
        match &f.value {
            Some(v) => {
                out.insert(f.name.clone(), v.clone());
            }
            None => {
                if let Some(v) = env(&f.name) {
                    out.insert(f.name.clone(), v);
                }
            }
        }
    }
    out
}

/// `--label KEY[=VALUE]` (`KEY` alone is an empty value, as docker's).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!(
            "invalid label {s:?}: the key is empty\nhint: write KEY=VALUE"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `--network`: BuildKit's three modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkFlag {
    /// the builder's default (the host's network, as rbuild has no bridge)
    Default,
    /// only a loopback interface
    None,
    /// the host's network
    Host,
}

impl NetworkFlag {
    /// The RUN steps' default network.
    pub fn exec_network(self) -> ExecNetwork {
        match self {
            NetworkFlag::Default | NetworkFlag::Host => ExecNetwork::Host,
            NetworkFlag::None => ExecNetwork::None,
        }
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFlag {
    /// tty when stderr is a terminal, else plain
    Auto,
    /// live status lines
    Tty,
    /// BuildKit's plain text log
    Plain,
    /// one JSON object per event and line
    Json,
}

/// `--secret id=X,src=FILE|env=VAR[,type=file|env]` with buildx's
/// parsing: comma-separated `key=value` fields (`source` = `src`); with
/// `type=env` and no `env=`, `src` names the variable; `id` defaults to
/// the base name of `src` (or the variable); with neither source given the
/// variable named `id` is used when set, else the file named `id`.
pub fn parse_secret(s: &str) -> Result<SecretSpec, String> {
    parse_secret_with(s, |k| std::env::var_os(k).is_some())
}

/// [`parse_secret`] with the environment injected.
pub fn parse_secret_with(s: &str, has_env: impl Fn(&str) -> bool) -> Result<SecretSpec, String> {
    let mut typ: Option<&str> = None;
    let (mut id, mut src, mut env) = (None, None, None);
    for field in split_csv("--secret", s)? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("invalid field {field:?}: must be a key=value pair"));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => match value {
                "file" => typ = Some("file"),
                "env" => typ = Some("env"),
                _ => {
                    return Err(format!(
                        "unsupported secret type {value:?}\nhint: type=file or type=env"
                    ));
                }
            },
            "id" => id = Some(value.to_string()),
            "source" | "src" => src = Some(value.to_string()),
            "env" => env = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unexpected key {key:?} in {field:?}\nhint: keys are id, type, src (or source) and env"
                ));
            }
        }
    }
    if typ == Some("env") && env.is_none() {
        env = src.take();
    }
    let id = match id.filter(|i| !i.is_empty()) {
        Some(id) => id,
        None => match (&src, &env) {
            (Some(p), _) => std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| format!("cannot derive a secret id from src={p:?}"))?,
            (None, Some(e)) => e.clone(),
            (None, None) => {
                return Err(
                    "a secret needs id=ID or src=PATH\nhint: e.g. id=token,src=./token.txt"
                        .to_string(),
                );
            }
        },
    };
    let source = match (src, env) {
        (_, Some(e)) if !e.is_empty() => SecretSource::Env(e),
        (Some(p), _) if !p.is_empty() => SecretSource::File(absolute(&p)),
        _ if typ == Some("env") || (typ.is_none() && has_env(&id)) => SecretSource::Env(id.clone()),
        _ => SecretSource::File(absolute(&id)),
    };
    Ok(SecretSpec { id, source })
}

fn absolute(p: &str) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p))
}

/// The fields of `flag`'s CSV value `s` (the parser's reader, as BuildKit).
fn split_csv(flag: &str, s: &str) -> Result<Vec<String>, String> {
    rbuild_parser::split_csv(s).map_err(|e| format!("invalid {flag} value {s:?}: {e}"))
}

/// A boolean attribute value, spelled as BuildKit accepts them (Go's
/// `strconv.ParseBool`).
fn parse_bool(value: &str) -> Result<bool, ()> {
    rbuild_parser::parse_bool(value).ok_or(())
}

/// `-o type=image|oci|docker|local|tar[,dest=…][,name=…][,push=…]`, or buildx's
/// shorthands: `-o DIR` is `type=local,dest=DIR` and `-o -` is
/// `type=tar,dest=-`.
pub fn parse_output(s: &str) -> Result<OutputSpec, String> {
    let fields = split_csv("--output", s)?;
    if fields.len() == 1 && !s.contains('=') {
        if s.is_empty() {
            return Err("empty output\nhint: -o type=local,dest=DIR or -o DIR".into());
        }
        return Ok(if s == "-" {
            OutputSpec::Tar { dest: "-".into() }
        } else {
            OutputSpec::Local { dest: s.into() }
        });
    }
    let mut typ = None;
    let mut dest: Option<PathBuf> = None;
    let mut names = Vec::new();
    let mut push = None;
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("invalid field {field:?}: must be a key=value pair"));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => typ = Some(value.to_string()),
            "dest" => dest = Some(value.into()),
            "name" => {
                for n in value.split(',').filter(|n| !n.is_empty()) {
                    names.push(parse_tag(n)?);
                }
            }
            "push" => {
                push = Some(parse_bool(value).map_err(|()| {
                    format!("invalid value {value:?} for push: must be true or false")
                })?)
            }
            _ => {
                return Err(format!(
                    "unsupported output attribute {key:?}\nhint: rbuild's outputs take type=, dest= and (for type=image) name= and push="
                ));
            }
        }
    }
    let Some(typ) = typ else {
        return Err("type is required for output".into());
    };
    let need_dest = |dest: Option<PathBuf>, stdout_ok: bool| -> Result<PathBuf, String> {
        match dest {
            None => Err(format!("output type={typ} needs dest=…")),
            Some(d) if d.as_os_str() == "-" && !stdout_ok => Err(format!(
                "output type={typ} cannot write to stdout (dest=-)\nhint: give a directory"
            )),
            Some(d) if d.as_os_str().is_empty() => Err(format!("output type={typ}: dest is empty")),
            Some(d) => Ok(d),
        }
    };
    if !names.is_empty() && typ != "image" {
        return Err(format!("name= is only for type=image, not type={typ}"));
    }
    if push.is_some() && typ != "image" {
        return Err(format!("push= is only for type=image, not type={typ}"));
    }
    Ok(match typ.as_str() {
        "image" => {
            if dest.is_some() {
                return Err("output type=image takes no dest=".into());
            }
            OutputSpec::Image {
                names,
                push: push.unwrap_or(false),
            }
        }
        "oci" => OutputSpec::Oci {
            dest: need_dest(dest, true)?,
        },
        "docker" => OutputSpec::Docker {
            dest: need_dest(dest, true)?,
        },
        "tar" => OutputSpec::Tar {
            dest: need_dest(dest, true)?,
        },
        "local" => OutputSpec::Local {
            dest: need_dest(dest, false)?,
        },
        other => {
            return Err(format!(
                "unsupported output type {other:?}\nhint: image, oci, docker, tar or local"
            ));
        }
    })
}

/// `--platform`: only the host platform (rbuild does not cross-build), in
/// any of containerd's spellings (`linux/amd64`, `amd64`, `linux`,
/// `x86_64`, `local`).
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    parse_platform_for(s, &Platform::host())
}

/// [`parse_platform`] against a given host.
pub fn parse_platform_for(s: &str, host: &Platform) -> Result<Platform, String> {
    if s.contains(',') {
        return Err(format!(
            "{s:?}: building for several platforms is not supported\nhint: rbuild builds for the host platform, {host}"
        ));
    }
    let lower = s.trim().to_ascii_lowercase();
    if lower == "local" {
        return Ok(host.clone());
    }
    let parts: Vec<&str> = lower.split('/').collect();
    let norm_arch = |a: &str| match a {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" | "i686" => "386".to_string(),
        other => other.to_string(),
    };
    let (os, arch, variant) = match parts.as_slice() {
        [one] if *one == "linux" => (host.os.clone(), host.architecture.clone(), None),
        [one] => (host.os.clone(), norm_arch(one), None),
        [os, arch] => (os.to_string(), norm_arch(arch), None),
        [os, arch, variant] => (os.to_string(), norm_arch(arch), Some(variant.to_string())),
        _ => return Err(format!("{s:?} is not a platform (os/arch[/variant])")),
    };
    // arm64's only variant is v8, and it is implied.
    let variant_ok = match (&variant, &host.variant) {
        (None, _) => true,
        (Some(v), Some(h)) => v == h,
        (Some(v), None) => arch == "amd64" && v == "v1",
    };
    if os != host.os || arch != host.architecture || !variant_ok {
        return Err(format!(
            "{s:?} is not the host platform\nhint: rbuild builds only for the host platform, {host}"
        ));
    }
    Ok(host.clone())
}

/// A size as docker's `--keep-storage` (`units.RAMInBytes`): bytes, or a
/// number with a binary unit `k`, `m`, `g`, `t`, `p` (optionally followed
/// by `b` or `ib`), case-insensitive; decimals allowed (`1.5g`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    rbuild_parser::ram_in_bytes(s.trim())
        .ok_or_else(|| format!("invalid size {s:?}\nhint: e.g. 512m, 10gb, 1073741824"))
}

/// The `type=…,key=value` fields of a cache flag, keys lowercased.
fn cache_fields(flag: &str, s: &str) -> Result<Vec<(String, String)>, String> {
    split_csv(flag, s)?
        .into_iter()
        .map(|field| match field.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
            None => Err(format!(
                "invalid {flag} field {field:?}: must be a key=value pair"
            )),
        })
        .collect()
}

fn parse_bool_attr(flag: &str, key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "invalid {flag} {key}={v:?}: expected true or false"
        )),
    }
}

fn parse_mode_attr(flag: &str, v: &str) -> Result<ExportMode, String> {
    match v.to_ascii_lowercase().as_str() {
        "min" => Ok(ExportMode::Min),
        "max" => Ok(ExportMode::Max),
        _ => Err(format!(
            "invalid {flag} mode={v:?}\nhint: mode=min or mode=max"
        )),
    }
}

/// `--cache-to type=local,dest=DIR[,mode=min|max][,mounts=true]`,
/// `type=registry,ref=REF[,…]` (a bare `REF` is that, as in buildx) or
/// `type=inline`. Keys buildx knows but rbuild does not use (compression,
/// oci-mediatypes, …) are refused by name rather than ignored.
pub fn parse_cache_to(s: &str) -> Result<CacheToSpec, String> {
    const FLAG: &str = "--cache-to";
    if !s.contains('=') {
        if s.is_empty() {
            return Err("empty --cache-to\nhint: --cache-to type=local,dest=DIR".into());
        }
        return Ok(CacheToSpec::Registry {
            reference: s.to_string(),
            mode: ExportMode::Min,
            mounts: false,
        });
    }
    let (mut typ, mut dest, mut reference, mut mode, mut mounts) = (None, None, None, None, false);
    for (key, value) in cache_fields(FLAG, s)? {
        match key.as_str() {
            "type" => typ = Some(value.to_ascii_lowercase()),
            "dest" => dest = Some(value),
            "ref" => reference = Some(value),
            "mode" => mode = Some(parse_mode_attr(FLAG, &value)?),
            "mounts" => mounts = parse_bool_attr(FLAG, &key, &value)?,
            _ => {
                return Err(format!(
                    "unsupported {FLAG} key {key:?}\nhint: rbuild's cache exports take type=, dest= (local), ref= (registry), mode=min|max and mounts=true"
                ));
            }
        }
    }
    let typ = typ.ok_or_else(|| format!("{FLAG}: type= is required"))?;
    let refuse = |key: &str, present: bool| {
        if present {
            Err(format!("{FLAG} type={typ} takes no {key}="))
        } else {
            Ok(())
        }
    };
    let mode = mode.unwrap_or_default();
    match typ.as_str() {
        "local" => {
            refuse("ref", reference.is_some())?;
            let dest = dest
                .filter(|d| !d.is_empty())
                .ok_or_else(|| format!("{FLAG} type=local needs dest=DIR"))?;
            Ok(CacheToSpec::Local {
                dest: dest.into(),
                mode,
                mounts,
            })
        }
        "registry" => {
            refuse("dest", dest.is_some())?;
            let reference = reference
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("{FLAG} type=registry needs ref=REF"))?;
            Ok(CacheToSpec::Registry {
                reference,
                mode,
                mounts,
            })
        }
        "inline" => {
            refuse("dest", dest.is_some())?;
            refuse("ref", reference.is_some())?;
            if mode == ExportMode::Max {
                return Err(format!(
                    "{FLAG} type=inline supports only mode=min (the image carries only its own layers)\nhint: use type=local or type=registry for mode=max"
                ));
            }
            if mounts {
                return Err(format!(
                    "{FLAG} type=inline cannot carry cache mounts (mounts=true)\nhint: use type=local or type=registry"
                ));
            }
            Ok(CacheToSpec::Inline)
        }
        other => Err(format!(
            "unsupported {FLAG} type {other:?}\nhint: local, registry or inline"
        )),
    }
}

/// `--cache-from type=local,src=DIR[,mounts=true]`,
/// `type=registry,ref=REF[,mounts=true]`, or a bare `IMAGE` (its inline
/// cache, from the store).
pub fn parse_cache_from(s: &str) -> Result<CacheFromSpec, String> {
    const FLAG: &str = "--cache-from";
    if !s.contains('=') {
        if s.is_empty() {
            return Err("empty --cache-from\nhint: --cache-from type=local,src=DIR".into());
        }
        return Ok(CacheFromSpec::Image {
            reference: s.to_string(),
        });
    }
    let (mut typ, mut src, mut reference, mut mounts) = (None, None, None, false);
    for (key, value) in cache_fields(FLAG, s)? {
        match key.as_str() {
            "type" => typ = Some(value.to_ascii_lowercase()),
            "src" => src = Some(value),
            "ref" => reference = Some(value),
            "mounts" => mounts = parse_bool_attr(FLAG, &key, &value)?,
            _ => {
                return Err(format!(
                    "unsupported {FLAG} key {key:?}\nhint: rbuild's cache imports take type=, src= (local), ref= (registry) and mounts=true"
                ));
            }
        }
    }
    let typ = typ.ok_or_else(|| format!("{FLAG}: type= is required"))?;
    match typ.as_str() {
        "local" => {
            if reference.is_some() {
                return Err(format!("{FLAG} type=local takes no ref="));
            }
            let src = src
                .filter(|d| !d.is_empty())
                .ok_or_else(|| format!("{FLAG} type=local needs src=DIR"))?;
            Ok(CacheFromSpec::Local {
                src: src.into(),
                mounts,
            })
        }
        "registry" => {
            if src.is_some() {
                return Err(format!("{FLAG} type=registry takes no src="));
            }
            let reference = reference
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("{FLAG} type=registry needs ref=REF"))?;
            Ok(CacheFromSpec::Registry { reference, mounts })
        }
        other => Err(format!(
            "unsupported {FLAG} type {other:?}\nhint: local, registry, or a bare IMAGE for its inline cache"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_normalize_and_refuse_bad_or_digested_names() {
        assert_eq!(
            parse_tag("app:1.0").unwrap().to_string(),
            "docker.io/library/app:1.0"
        );
        assert_eq!(
            parse_tag("app").unwrap().to_string(),
            "docker.io/library/app:latest"
        );
        assert!(parse_tag("App:1").unwrap_err().contains("lowercase"));
        assert!(parse_tag("app:-x").is_err());
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert!(parse_tag(&d).unwrap_err().contains("digest"));
    }

    #[test]
    fn build_args_take_unset_values_from_the_environment_or_skip_them() {
        let flags: Vec<_> = ["A=1", "B", "C", "A=2", "D="]
            .iter()
            .map(|s| parse_build_arg(s).unwrap())
            .collect();
        let env = |k: &str| (k == "B").then(|| "from-env".to_string());
        let got = resolve_build_args(&flags, env);
        let want: BTreeMap<String, String> = [("A", "2"), ("B", "from-env"), ("D", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(parse_build_arg("=x").is_err());
        assert_eq!(
            parse_build_arg("K=a=b").unwrap().value.as_deref(),
            Some("a=b")
        );
    }

    #[test]
    fn labels_default_to_empty_values() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn secrets_follow_buildx_parsing() {
        let no_env = |_: &str| false;
        let s = parse_secret_with("id=tok,src=/x/token.txt", no_env).unwrap();
        assert_eq!(s.id, "tok");
        assert_eq!(s.source, SecretSource::File("/x/token.txt".into()));
        // id defaults to the file's base name; source is a synonym of src.
        let s = parse_secret_with("source=/x/token.txt", no_env).unwrap();
        assert_eq!(s.id, "token.txt");
        // type=env: src names the variable.
        let s = parse_secret_with("id=a,type=env,src=MY_VAR", no_env).unwrap();
        assert_eq!(s.source, SecretSource::Env("MY_VAR".into()));
        let s = parse_secret_with("id=a,env=MY_VAR", no_env).unwrap();
        assert_eq!(s.source, SecretSource::Env("MY_VAR".into()));
        let s = parse_secret_with("env=MY_VAR", no_env).unwrap();
        assert_eq!(s.id, "MY_VAR");
        // Only an id: the variable of that name when set, else the file.
        let s = parse_secret_with("id=TOKEN", |k| k == "TOKEN").unwrap();
        assert_eq!(s.source, SecretSource::Env("TOKEN".into()));
        let s = parse_secret_with("id=TOKEN", no_env).unwrap();
        assert!(
            matches!(s.source, SecretSource::File(p) if p.ends_with("TOKEN") && p.is_absolute())
        );
        // Keys are case-insensitive, values are not.
        let s = parse_secret_with("ID=Tok,SRC=/f", no_env).unwrap();
        assert_eq!(s.id, "Tok");
        assert!(
            parse_secret_with("id", no_env)
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            parse_secret_with("id=a,type=ssh", no_env)
                .unwrap_err()
                .contains("\"ssh\"")
        );
        assert!(
            parse_secret_with("id=a,foo=b", no_env)
                .unwrap_err()
                .contains("\"foo\"")
        );
        assert!(parse_secret_with("type=file", no_env).is_err());
    }

    #[test]
    fn outputs_parse_like_buildx() {
        assert_eq!(
            parse_output("out").unwrap(),
            OutputSpec::Local { dest: "out".into() }
        );
        assert_eq!(
            parse_output("-").unwrap(),
            OutputSpec::Tar { dest: "-".into() }
        );
        assert!(parse_output("-").unwrap().is_stdout());
        assert_eq!(
            parse_output("type=oci,dest=img.tar").unwrap(),
            OutputSpec::Oci {
                dest: "img.tar".into()
            }
        );
        assert_eq!(
            parse_output("type=docker,dest=-").unwrap(),
            OutputSpec::Docker { dest: "-".into() }
        );
        assert_eq!(
            parse_output("type=local,dest=/tmp/x").unwrap(),
            OutputSpec::Local {
                dest: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse_output("type=image").unwrap(),
            OutputSpec::Image {
                names: vec![],
                push: false
            }
        );
        match parse_output("type=image,\"name=a:1,b:2\"").unwrap() {
            OutputSpec::Image { names, push } => {
                assert_eq!(
                    names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
                    ["a:1", "b:2"]
                );
                assert!(!push);
            }
            other => panic!("{other:?}"),
        }
        match parse_output("type=image,name=reg.example:5000/x:1,push=true").unwrap() {
            OutputSpec::Image { names, push } => {
                assert_eq!(names[0].familiar(), "reg.example:5000/x:1");
                assert!(push);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_output("type=image,push=false").unwrap(),
            OutputSpec::Image {
                names: vec![],
                push: false
            }
        );
        assert!(
            parse_output("type=image,push=yes")
                .unwrap_err()
                .contains("push")
        );
        assert!(
            parse_output("dest=x")
                .unwrap_err()
                .contains("type is required")
        );
        assert!(parse_output("type=local").unwrap_err().contains("dest"));
        assert!(
            parse_output("type=local,dest=-")
                .unwrap_err()
                .contains("stdout")
        );
        assert!(
            parse_output("type=registry")
                .unwrap_err()
                .contains("registry")
        );
        assert!(
            parse_output("type=tar,dest=x,push=true")
                .unwrap_err()
                .contains("push")
        );
        assert!(parse_output("type=image,name=BAD").is_err());
    }

    #[test]
    fn only_the_host_platform_is_accepted() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        for ok in [
            "linux/amd64",
            "LINUX/AMD64",
            "amd64",
            "linux",
            "x86_64",
            "local",
            "linux/amd64/v1",
        ] {
            assert_eq!(parse_platform_for(ok, &host).unwrap(), host, "{ok}");
        }
        for bad in [
            "linux/arm64",
            "windows/amd64",
            "s390x",
            "linux/amd64/v3",
            "a/b/c/d",
        ] {
            assert!(parse_platform_for(bad, &host).is_err(), "{bad}");
        }
        assert!(
            parse_platform_for("linux/amd64,linux/arm64", &host)
                .unwrap_err()
                .contains("several")
        );
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(parse_platform_for("linux/arm64", &arm).unwrap(), arm);
        assert_eq!(parse_platform_for("linux/arm64/v8", &arm).unwrap(), arm);
        assert_eq!(parse_platform_for("aarch64", &arm).unwrap(), arm);
        assert_eq!(parse_platform("local").unwrap(), Platform::host());
    }

    #[test]
    fn sizes_use_binary_units_like_docker() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("10gb").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5x").is_err());
    }

    #[test]
    fn csv_fields_may_be_quoted() {
        assert_eq!(split_csv("-o", "a,\"b,c\",d").unwrap(), ["a", "b,c", "d"]);
        assert_eq!(split_csv("-o", "\"x\"\"y\"").unwrap(), ["x\"y"]);
        assert!(split_csv("-o", "a\"b").unwrap_err().contains("bare \""));
    }

    #[test]
    fn cache_flags_parse_like_buildx_and_name_the_bad_key() {
        assert_eq!(
            parse_cache_to("type=local,dest=/tmp/c,mode=max,mounts=true").unwrap(),
            CacheToSpec::Local {
                dest: "/tmp/c".into(),
                mode: ExportMode::Max,
                mounts: true
            }
        );
        assert_eq!(
            parse_cache_to("type=local,dest=d").unwrap(),
            CacheToSpec::Local {
                dest: "d".into(),
                mode: ExportMode::Min,
                mounts: false
            }
        );
        assert_eq!(
            parse_cache_to("reg.example/app:cache").unwrap(),
            CacheToSpec::Registry {
                reference: "reg.example/app:cache".into(),
                mode: ExportMode::Min,
                mounts: false
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheToSpec::Inline);
        let e = parse_cache_to("type=local,dest=d,colour=blue").unwrap_err();
        assert!(e.contains("--cache-to") && e.contains("\"colour\""), "{e}");
        let e = parse_cache_to("type=local,dest=d,mode=medium").unwrap_err();
        assert!(e.contains("mode=\"medium\""), "{e}");
        assert!(parse_cache_to("type=local").unwrap_err().contains("dest="));
        assert!(parse_cache_to("type=inline,mode=max").is_err());
        assert!(parse_cache_to("type=gha").unwrap_err().contains("\"gha\""));
        assert_eq!(
            parse_cache_from("type=local,src=/c,mounts=true").unwrap(),
            CacheFromSpec::Local {
                src: "/c".into(),
                mounts: true
            }
        );
        assert_eq!(
            parse_cache_from("app:1").unwrap(),
            CacheFromSpec::Image {
                reference: "app:1".into()
            }
        );
        let e = parse_cache_from("type=local,src=/c,mode=max").unwrap_err();
        assert!(e.contains("--cache-from") && e.contains("\"mode\""), "{e}");
        assert!(
            parse_cache_from("type=registry")
                .unwrap_err()
                .contains("ref=")
        );
    }
}
