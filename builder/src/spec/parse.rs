//! The flag syntaxes of `docker build` and buildx, parsed into the typed
//! specs a [`BuildRequest`](crate::BuildRequest) holds: `-t`,
//! `--build-arg`, `--label`, `--secret`, `-o`, `--platform`,
//! `--cache-to`, `--cache-from`, and docker's size syntax. Every front
//! end (`rbuild build`, a bake file) parses with these, so a spec means
//! the same wherever it is written.
//!
//! Pure syntax: nothing here reads the environment (callers pass what a
//! bare `--build-arg NAME` or `--secret id=X` would look up) and nothing
//! is opened; the only outside fact is the current directory, against
//! which a secret's relative `src=` is made absolute. Errors are
//! [`SpecError`]s: each names the [`Flag`] it is about and displays as a
//! complete message for the user (clap prefixes the flag and the value).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rbuild_oci::Platform;
use rbuild_oci::reference::{ImageRef, ReferenceError};
use rbuild_worker::cache_transfer::ExportMode;

use super::{
    Annotation, AnnotationKind, BuildArg, CacheFromSpec, CacheToSpec, Compression, ImageFormat,
    OutputSpec, SecretSource, SecretSpec,
};
use rbuild_store::variants::LayerCompression;

/// A flag whose value a [`SpecError`] is about, named as docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `-t/--tag`.
    Tag,
    /// `--build-arg`.
    BuildArg,
    /// `--label`.
    Label,
    /// `--secret`.
    Secret,
    /// `-o/--output`.
    Output,
    /// `--platform`.
    Platform,
    /// `--cache-to`.
    CacheTo,
    /// `--cache-from`.
    CacheFrom,
    /// A size (`--keep-storage`, [`parse_size`]).
    KeepStorage,
    /// `--annotation`.
    Annotation,
}

impl Flag {
    /// The flag's long name, `--output`.
    pub fn name(self) -> &'static str {
        match self {
            Flag::Tag => "--tag",
            Flag::BuildArg => "--build-arg",
            Flag::Label => "--label",
            Flag::Secret => "--secret",
            Flag::Output => "--output",
            Flag::Platform => "--platform",
            Flag::CacheTo => "--cache-to",
            Flag::CacheFrom => "--cache-from",
            Flag::KeepStorage => "--keep-storage",
            Flag::Annotation => "--annotation",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A flag value that does not parse. The message is the whole story and
/// ends with a `hint:` line where the fix is not obvious; the flag is
/// [`SpecError::flag`].
///
/// The two variants wrapping another crate's error ([`Csv`](Self::Csv),
/// [`Reference`](Self::Reference)) show it in their message instead of
/// chaining it: front ends (clap among them) show a value parser's
/// error by its `Display` alone, not its source chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A `key=value,…` value that is not valid CSV (a stray quote).
    #[error("invalid {flag} value {value:?}: {reason}")]
    Csv {
        flag: Flag,
        value: String,
        /// What the CSV reader found wrong.
        reason: String,
    },
    /// A field of a `key=value,…` value without `=`.
    #[error("invalid {}field {field:?}: must be a key=value pair", cache_flag_prefix(.flag))]
    NotKeyValue { flag: Flag, field: String },
    /// A name that is not a valid image reference (`-t`, `-o name=`).
    #[error("{error}")]
    Reference { flag: Flag, error: ReferenceError },
    /// A tag with a digest: a build names what it made by tag only.
    #[error("invalid tag {tag:?}: a tag cannot contain a digest\nhint: write NAME[:TAG]")]
    TagDigest { flag: Flag, tag: String },

    /// `--build-arg =VALUE`.
    #[error(
        "invalid build arg {arg:?}: the name is empty\nhint: write NAME=VALUE, or NAME to pass the variable from the environment"
    )]
    BuildArgEmptyName { arg: String },
    /// `--build-arg "A B=1"`.
    #[error("invalid build arg {arg:?}: the name {name:?} contains whitespace")]
    BuildArgWhitespace { arg: String, name: String },
    /// `--label =VALUE`.
    #[error("invalid label {label:?}: the key is empty\nhint: write KEY=VALUE")]
    LabelEmptyKey { label: String },

    /// A secret `type=` other than `file` or `env`.
    #[error("unsupported secret type {value:?}\nhint: type=file or type=env")]
    SecretType { value: String },
    /// A secret key other than `id`, `type`, `src`/`source`, `env`.
    #[error(
        "unexpected key {key:?} in {field:?}\nhint: keys are id, type, src (or source) and env"
    )]
    SecretKey { key: String, field: String },
    /// No `id=` and a `src=` without a file name to take it from.
    #[error("cannot derive a secret id from src={src:?}")]
    SecretIdFromSrc { src: String },
    /// Neither `id=`, `src=` nor `env=`.
    #[error("a secret needs id=ID or src=PATH\nhint: e.g. id=token,src=./token.txt")]
    SecretId,

    /// `-o ""`.
    #[error("empty output\nhint: -o type=local,dest=DIR or -o DIR")]
    OutputEmpty,
    /// `push=` that is not a boolean.
    #[error("invalid value {value:?} for push: must be true or false")]
    OutputPush { value: String },
    /// An output attribute rbuild does not know.
    #[error(
        "unsupported output attribute {key:?}\nhint: rbuild's outputs take type=, dest=, name= and push= (type=image), and compression=, compression-level=, force-compression=, oci-mediatypes=, rewrite-timestamp=, attestation-inline= and annotation.KEY= (type=image, registry, oci, docker)"
    )]
    OutputAttribute { key: String },
    /// An output without `type=`.
    #[error("type is required for output")]
    OutputTypeMissing,
    /// An exporter to a file or directory without `dest=`.
    #[error("output type={typ} needs dest=…")]
    OutputDestMissing { typ: String },
    /// `dest=-` for an exporter that writes a directory.
    #[error("output type={typ} cannot write to stdout (dest=-)\nhint: give a directory")]
    OutputDestStdout { typ: String },
    /// `dest=` with nothing after it.
    #[error("output type={typ}: dest is empty")]
    OutputDestEmpty { typ: String },
    /// `name=` or `push=` (the `attribute`) on an output other than
    /// `type=image`.
    #[error("{attribute}= is only for type=image, not type={typ}")]
    OutputImageOnly {
        attribute: &'static str,
        typ: String,
    },
    /// `type=image,dest=…`.
    #[error("output type=image takes no dest=")]
    OutputImageDest,
    /// An exporter rbuild does not have.
    #[error("unsupported output type {typ:?}\nhint: image, registry, oci, docker, tar or local")]
    OutputType { typ: String },

    /// `compression=` other than gzip, zstd or uncompressed.
    #[error(
        "unsupported {flag} compression={value:?}\nhint: compression=gzip (the default), zstd or uncompressed"
    )]
    Compression { flag: Flag, value: String },
    /// `compression-level=` that is not a level of the compression.
    #[error("invalid {flag} compression-level={value:?}: {why}")]
    CompressionLevel {
        flag: Flag,
        value: String,
        why: &'static str,
    },
    /// A boolean exporter attribute (`force-compression=`…) that is not
    /// a boolean.
    #[error("invalid {flag} {key}={value:?}: expected true or false")]
    FormatBool {
        flag: Flag,
        key: String,
        value: String,
    },
    /// An annotation that does not parse, or of a type rbuild cannot
    /// place.
    #[error("invalid {flag} {value:?}: {reason}")]
    Annotation {
        flag: Flag,
        value: String,
        reason: String,
    },

    /// `--platform a,b` where one platform is expected (`pull`, `run`).
    #[error("{value:?}: expected one platform\nhint: name one, e.g. {host}")]
    Platforms { value: String, host: Platform },
    /// Not `os/arch[/variant]` (nor a shorthand).
    #[error("{value:?} is not a platform (os/arch[/variant])")]
    NotPlatform { value: String },
    /// An operating system or architecture no image can have.
    #[error(
        "unknown platform {value:?}: {what} {name:?} is not one containerd knows\nhint: e.g. linux/amd64, linux/arm64, linux/arm/v7"
    )]
    UnknownPlatform {
        value: String,
        what: &'static str,
        name: String,
    },
    /// The same platform twice in `--platform a,b`.
    #[error("platform {platform} is named twice in {value:?}")]
    DuplicatePlatform { value: String, platform: Platform },

    /// Not a size in docker's syntax.
    #[error("invalid size {value:?}\nhint: e.g. 512m, 10gb, 1073741824")]
    Size { value: String },

    /// `--cache-to ""` or `--cache-from ""`.
    #[error("empty {flag}\nhint: {flag} type=local,{}", cache_local_attr(.flag))]
    CacheEmpty { flag: Flag },
    /// A boolean attribute (`mounts=`) that is not a boolean.
    #[error("invalid {flag} {key}={value:?}: expected true or false")]
    CacheBool {
        flag: Flag,
        key: String,
        value: String,
    },
    /// `mode=` other than `min` or `max`.
    #[error("invalid {flag} mode={value:?}\nhint: mode=min or mode=max")]
    CacheMode { flag: Flag, value: String },
    /// A key rbuild does not use (buildx's `compression=`, …), refused
    /// by name rather than ignored.
    #[error("unsupported {flag} key {key:?}\nhint: {}", cache_keys_hint(.flag))]
    CacheKey { flag: Flag, key: String },
    /// A cache spec with `=` but no `type=`.
    #[error("{flag}: type= is required")]
    CacheTypeMissing { flag: Flag },
    /// An attribute the cache `type=` does not take (`ref=` for local).
    #[error("{flag} type={typ} takes no {attribute}=")]
    CacheTakesNo {
        flag: Flag,
        typ: String,
        attribute: &'static str,
    },
    /// The attribute a cache `type=` needs (`dest=DIR` for a local
    /// export), missing or empty.
    #[error("{flag} type={typ} needs {attribute}")]
    CacheNeeds {
        flag: Flag,
        typ: String,
        attribute: &'static str,
    },
    /// `--cache-to type=inline,mode=max`.
    #[error(
        "--cache-to type=inline supports only mode=min (the image carries only its own layers)\nhint: use type=local or type=registry for mode=max"
    )]
    InlineModeMax,
    /// `--cache-to type=inline,mounts=true`.
    #[error(
        "--cache-to type=inline cannot carry cache mounts (mounts=true)\nhint: use type=local or type=registry"
    )]
    InlineMounts,
    /// A cache backend rbuild does not have (`gha`, `s3`, …).
    #[error("unsupported {flag} type {typ:?}\nhint: {}", cache_types_hint(.flag))]
    CacheType { flag: Flag, typ: String },
}

impl SpecError {
    /// The flag whose value this is about.
    pub fn flag(&self) -> Flag {
        match self {
            SpecError::Csv { flag, .. }
            | SpecError::NotKeyValue { flag, .. }
            | SpecError::Reference { flag, .. }
            | SpecError::TagDigest { flag, .. }
            | SpecError::CacheEmpty { flag }
            | SpecError::CacheBool { flag, .. }
            | SpecError::CacheMode { flag, .. }
            | SpecError::CacheKey { flag, .. }
            | SpecError::CacheTypeMissing { flag }
            | SpecError::CacheTakesNo { flag, .. }
            | SpecError::CacheNeeds { flag, .. }
            | SpecError::CacheType { flag, .. }
            | SpecError::Compression { flag, .. }
            | SpecError::CompressionLevel { flag, .. }
            | SpecError::FormatBool { flag, .. }
            | SpecError::Annotation { flag, .. } => *flag,
            SpecError::BuildArgEmptyName { .. } | SpecError::BuildArgWhitespace { .. } => {
                Flag::BuildArg
            }
            SpecError::LabelEmptyKey { .. } => Flag::Label,
            SpecError::SecretType { .. }
            | SpecError::SecretKey { .. }
            | SpecError::SecretIdFromSrc { .. }
            | SpecError::SecretId => Flag::Secret,
            SpecError::OutputEmpty
            | SpecError::OutputPush { .. }
            | SpecError::OutputAttribute { .. }
            | SpecError::OutputTypeMissing
            | SpecError::OutputDestMissing { .. }
            | SpecError::OutputDestStdout { .. }
            | SpecError::OutputDestEmpty { .. }
            | SpecError::OutputImageOnly { .. }
            | SpecError::OutputImageDest
            | SpecError::OutputType { .. } => Flag::Output,
            SpecError::Platforms { .. }
            | SpecError::NotPlatform { .. }
            | SpecError::UnknownPlatform { .. }
            | SpecError::DuplicatePlatform { .. } => Flag::Platform,
            SpecError::Size { .. } => Flag::KeepStorage,
            SpecError::InlineModeMax | SpecError::InlineMounts => Flag::CacheTo,
        }
    }
}

/// The cache flags name themselves in a field error; `-o` and
/// `--secret` leave that to the front end (as they always have).
fn cache_flag_prefix(flag: &Flag) -> &'static str {
    match flag {
        Flag::CacheTo => "--cache-to ",
        Flag::CacheFrom => "--cache-from ",
        _ => "",
    }
}

/// The attribute a local cache takes, for an empty cache flag's hint.
fn cache_local_attr(flag: &Flag) -> &'static str {
    match flag {
        Flag::CacheFrom => "src=DIR",
        _ => "dest=DIR",
    }
}

fn cache_keys_hint(flag: &Flag) -> &'static str {
    match flag {
        Flag::CacheFrom => {
            "rbuild's cache imports take type=, src= (local), ref= (registry) and mounts=true"
        }
        _ => {
            "rbuild's cache exports take type=, dest= (local), ref= (registry), mode=min|max, mounts=true, compression=, compression-level=, force-compression= and oci-mediatypes="
        }
    }
}

fn cache_types_hint(flag: &Flag) -> &'static str {
    match flag {
        Flag::CacheFrom => "local, registry, or a bare IMAGE for its inline cache",
        _ => "local, registry or inline",
    }
}

/// `-t/--tag`: a reference as docker normalizes it; digests are refused
/// because a build names what it made by tag only.
pub fn parse_tag(s: &str) -> Result<ImageRef, SpecError> {
    tag(Flag::Tag, s)
}

/// A tag given to `flag` (`-t`, or `-o`'s `name=`).
fn tag(flag: Flag, s: &str) -> Result<ImageRef, SpecError> {
    let r = ImageRef::parse(s).map_err(|error| SpecError::Reference { flag, error })?;
    if r.digest().is_some() {
        return Err(SpecError::TagDigest {
            flag,
            tag: s.to_string(),
        });
    }
    Ok(r)
}

/// `--build-arg NAME[=VALUE]`: `NAME` alone takes the value from the
/// environment when the args are resolved ([`resolve_build_args`]).
pub fn parse_build_arg(s: &str) -> Result<BuildArg, SpecError> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(SpecError::BuildArgEmptyName { arg: s.to_string() });
    }
    if name.chars().any(char::is_whitespace) {
        return Err(SpecError::BuildArgWhitespace {
            arg: s.to_string(),
            name: name.to_string(),
        });
    }
    Ok(BuildArg {
        name: name.to_string(),
        value,
    })
}

/// Resolves build args in order (a later one wins): `NAME` alone reads
/// `env(NAME)` and is skipped when unset, as docker does.
pub fn resolve_build_args(
    args: &[BuildArg],
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in args {
        match &a.value {
            Some(v) => {
                out.insert(a.name.clone(), v.clone());
            }
            None => {
                if let Some(v) = env(&a.name) {
                    out.insert(a.name.clone(), v);
                }
            }
        }
    }
    out
}

/// `--label KEY[=VALUE]` (`KEY` alone is an empty value, as docker's).
pub fn parse_label(s: &str) -> Result<(String, String), SpecError> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(SpecError::LabelEmptyKey {
            label: s.to_string(),
        });
    }
    Ok((k.to_string(), v.to_string()))
}

/// `--secret id=X,src=FILE|env=VAR[,type=file|env]` with buildx's
/// parsing: comma-separated `key=value` fields (`source` = `src`); with
/// `type=env` and no `env=`, `src` names the variable; `id` defaults to
/// the base name of `src` (or the variable); with neither source given the
/// variable named `id` is used when `has_env(id)`, else the file named
/// `id`. A relative file is made absolute against the current directory.
pub fn parse_secret(s: &str, has_env: impl Fn(&str) -> bool) -> Result<SecretSpec, SpecError> {
    const FLAG: Flag = Flag::Secret;
    let mut typ: Option<&str> = None;
    let (mut id, mut src, mut env) = (None, None, None);
    for field in split_csv(FLAG, s)? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(SpecError::NotKeyValue { flag: FLAG, field });
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => match value {
                "file" => typ = Some("file"),
                "env" => typ = Some("env"),
                _ => {
                    return Err(SpecError::SecretType {
                        value: value.to_string(),
                    });
                }
            },
            "id" => id = Some(value.to_string()),
            "source" | "src" => src = Some(value.to_string()),
            "env" => env = Some(value.to_string()),
            _ => {
                return Err(SpecError::SecretKey {
                    key: key.to_string(),
                    field: field.clone(),
                });
            }
        }
    }
    if typ == Some("env") && env.is_none() {
        env = src.take();
    }
    let id = match id.filter(|i| !i.is_empty()) {
        Some(id) => id,
        None => match (&src, &env) {
            (Some(p), _) => Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| SpecError::SecretIdFromSrc { src: p.clone() })?,
            (None, Some(e)) => e.clone(),
            (None, None) => return Err(SpecError::SecretId),
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
fn split_csv(flag: Flag, s: &str) -> Result<Vec<String>, SpecError> {
    rbuild_parser::split_csv(s).map_err(|reason| SpecError::Csv {
        flag,
        value: s.to_string(),
        reason,
    })
}

/// `-o type=image|registry|oci|docker|local|tar[,dest=…][,name=…][,push=…]`
/// with BuildKit's image attributes on `image`, `registry`, `oci` and
/// `docker` ([`ImageFormat`]: `compression=gzip|zstd|uncompressed`,
/// `compression-level=N`, `force-compression=`, `oci-mediatypes=`,
/// `rewrite-timestamp=`, `annotation[-TYPE][PLATFORM].KEY=VALUE`), or
/// buildx's shorthands: `-o DIR` is `type=local,dest=DIR` and `-o -` is
/// `type=tar,dest=-`. `type=registry` is `type=image,push=true`.
pub fn parse_output(s: &str) -> Result<OutputSpec, SpecError> {
    const FLAG: Flag = Flag::Output;
    let fields = split_csv(FLAG, s)?;
    if fields.len() == 1 && !s.contains('=') {
        if s.is_empty() {
            return Err(SpecError::OutputEmpty);
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
    let mut format = ImageFormat::default();
    let mut format_attr: Option<String> = None;
    let mut level = None;
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(SpecError::NotKeyValue { flag: FLAG, field });
        };
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "type" => typ = Some(value.to_string()),
            "dest" => dest = Some(value.into()),
            "name" => {
                for n in value.split(',').filter(|n| !n.is_empty()) {
                    names.push(tag(FLAG, n)?);
                }
            }
            "push" => {
                push =
                    Some(
                        rbuild_parser::parse_bool(value).ok_or_else(|| SpecError::OutputPush {
                            value: value.to_string(),
                        })?,
                    )
            }
            _ => {
                if lower == "compression-level" {
                    level = Some(value.to_string());
                } else if !format_attribute(FLAG, key, value, &mut format)? {
                    return Err(SpecError::OutputAttribute {
                        key: key.to_string(),
                    });
                }
                format_attr.get_or_insert(lower);
            }
        }
    }
    let Some(typ) = typ else {
        return Err(SpecError::OutputTypeMissing);
    };
    if let Some(level) = level {
        format.compression_level = Some(parse_level(FLAG, &level, format.compression)?);
    }
    let need_dest = |dest: Option<PathBuf>, stdout_ok: bool| -> Result<PathBuf, SpecError> {
        let typ = typ.clone();
        match dest {
            None => Err(SpecError::OutputDestMissing { typ }),
            Some(d) if d.as_os_str() == "-" && !stdout_ok => {
                Err(SpecError::OutputDestStdout { typ })
            }
            Some(d) if d.as_os_str().is_empty() => Err(SpecError::OutputDestEmpty { typ }),
            Some(d) => Ok(d),
        }
    };
    let image_like = typ == "image" || typ == "registry";
    if !names.is_empty() && !image_like {
        return Err(SpecError::OutputImageOnly {
            attribute: "name",
            typ,
        });
    }
    if push.is_some() && !image_like {
        return Err(SpecError::OutputImageOnly {
            attribute: "push",
            typ,
        });
    }
    if let Some(key) = format_attr
        && (typ == "tar" || typ == "local")
    {
        return Err(SpecError::OutputAttribute { key });
    }
    Ok(match typ.as_str() {
        "image" | "registry" => {
            if dest.is_some() {
                return Err(SpecError::OutputImageDest);
            }
            OutputSpec::Image {
                names,
                push: typ == "registry" || push.unwrap_or(false),
                format,
            }
        }
        "oci" => OutputSpec::Oci {
            dest: need_dest(dest, true)?,
            format,
        },
        "docker" => OutputSpec::Docker {
            dest: need_dest(dest, true)?,
            format,
        },
        "tar" => OutputSpec::Tar {
            dest: need_dest(dest, true)?,
        },
        "local" => OutputSpec::Local {
            dest: need_dest(dest, false)?,
        },
        _ => return Err(SpecError::OutputType { typ }),
    })
}

/// `compression=` of `flag`.
fn parse_compression(flag: Flag, value: &str) -> Result<Compression, SpecError> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" => Ok(Compression::None),
        _ => Err(SpecError::Compression {
            flag,
            value: value.to_string(),
        }),
    }
}

/// `compression-level=` of `flag` for `compression` (gzip 0–9, zstd
/// 0–22 where 0 is zstd's default level).
fn parse_level(flag: Flag, value: &str, compression: Compression) -> Result<i32, SpecError> {
    let err = |why| SpecError::CompressionLevel {
        flag,
        value: value.to_string(),
        why,
    };
    let n: i32 = value.trim().parse().map_err(|_| err("expected a number"))?;
    match compression {
        Compression::Gzip if !(0..=9).contains(&n) => Err(err("gzip levels are 0 to 9")),
        Compression::Zstd if !(0..=22).contains(&n) => Err(err("zstd levels are 0 to 22")),
        Compression::Zstd if n == 0 => Ok(3),
        _ => Ok(n),
    }
}

/// A boolean exporter attribute; an empty value is true, as BuildKit.
fn parse_format_bool(flag: Flag, key: &str, value: &str) -> Result<bool, SpecError> {
    if value.is_empty() {
        return Ok(true);
    }
    rbuild_parser::parse_bool(value).ok_or_else(|| SpecError::FormatBool {
        flag,
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Applies one image attribute `key=value` of `flag` to `format`; false
/// when `key` is not one (`compression-level=` is left to the caller,
/// which knows the compression only once every field is read).
fn format_attribute(
    flag: Flag,
    key: &str,
    value: &str,
    format: &mut ImageFormat,
) -> Result<bool, SpecError> {
    let lower = key.to_ascii_lowercase();
    match lower.as_str() {
        "compression" => format.compression = parse_compression(flag, value)?,
        "force-compression" => format.force_compression = parse_format_bool(flag, key, value)?,
        "oci-mediatypes" => format.oci_media_types = Some(parse_format_bool(flag, key, value)?),
        "attestation-inline" => {
            format.attestation_inline = Some(parse_format_bool(flag, key, value)?)
        }
        "rewrite-timestamp" => format.rewrite_timestamp = parse_format_bool(flag, key, value)?,
        _ if lower.starts_with("annotation") => {
            format
                .annotations
                .push(parse_annotation_attribute(flag, key, value)?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// An annotation type name and optional `[platform]` (`manifest`,
/// `manifest-descriptor[linux/amd64]`, `index`, `index-descriptor`); an
/// index type takes no platform (an index is about all of them).
fn annotation_kind(
    flag: Flag,
    whole: &str,
    typ: &str,
    platform: Option<&str>,
) -> Result<(AnnotationKind, Option<Platform>), SpecError> {
    let err = |reason: String| SpecError::Annotation {
        flag,
        value: whole.to_string(),
        reason,
    };
    let kind = match typ {
        "" | "manifest" => AnnotationKind::Manifest,
        "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
        "index" | "index-descriptor" if platform.is_some() => {
            return Err(err(format!(
                "annotation type {typ} takes no platform: an index is about every platform\nhint: {typ}:KEY=VALUE"
            )));
        }
        "index" => AnnotationKind::Index,
        "index-descriptor" => AnnotationKind::IndexDescriptor,
        other => {
            return Err(err(format!(
                "unknown annotation type {other:?}\nhint: manifest, manifest-descriptor, index or index-descriptor"
            )));
        }
    };
    let platform = match platform {
        None => None,
        Some(p) => Some(
            Platform::parse(p)
                .ok_or_else(|| err(format!("{p:?} is not a platform (os/arch[/variant])")))?,
        ),
    };
    Ok((kind, platform))
}

/// An exporter attribute `annotation[-TYPE][[PLATFORM]].KEY=VALUE`.
fn parse_annotation_attribute(flag: Flag, key: &str, value: &str) -> Result<Annotation, SpecError> {
    let whole = format!("{key}={value}");
    let err = |reason: &str| SpecError::Annotation {
        flag,
        value: whole.clone(),
        reason: reason.to_string(),
    };
    let rest = &key["annotation".len()..];
    let (head, name) = match rest.find('.') {
        // A `.` inside `[…]` does not end the type.
        Some(_) => {
            let after_platform = rest.find(']').map_or(0, |i| i + 1);
            let dot = rest[after_platform..]
                .find('.')
                .map(|i| i + after_platform)
                .ok_or_else(|| err("expected annotation[-TYPE][PLATFORM].KEY=VALUE"))?;
            (&rest[..dot], &rest[dot + 1..])
        }
        None => return Err(err("expected annotation[-TYPE][PLATFORM].KEY=VALUE")),
    };
    if name.is_empty() {
        return Err(err("the annotation key is empty"));
    }
    let (typ, platform) = match head.split_once('[') {
        Some((t, p)) => (
            t,
            Some(
                p.strip_suffix(']')
                    .ok_or_else(|| err("unclosed [platform]"))?,
            ),
        ),
        None => (head, None),
    };
    let typ = match typ {
        "" => "",
        t => t
            .strip_prefix('-')
            .ok_or_else(|| err("expected annotation[-TYPE][PLATFORM].KEY=VALUE"))?,
    };
    let (kind, platform) = annotation_kind(flag, &whole, typ, platform)?;
    Ok(Annotation {
        kind,
        platform,
        key: name.to_string(),
        value: value.to_string(),
    })
}

/// `--annotation [TYPE[,TYPE…][[PLATFORM,…]]:]KEY=VALUE`, as buildx: no
/// type means `manifest`; one value can name several types and
/// platforms, giving one [`Annotation`] each.
pub fn parse_annotation(s: &str) -> Result<Vec<Annotation>, SpecError> {
    const FLAG: Flag = Flag::Annotation;
    let err = |reason: &str| SpecError::Annotation {
        flag: FLAG,
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let Some((left, value)) = s.split_once('=') else {
        return Err(err("expected [TYPE:]KEY=VALUE"));
    };
    // `TYPE[PLATFORM]:KEY`: the type part ends at the first `:` that
    // follows only type characters and a bracketed platform list.
    let (types, platforms, key) = match left.split_once(':') {
        Some((head, key))
            if head
                .chars()
                .all(|c| c.is_ascii_lowercase() || "-,[]/_".contains(c) || c.is_ascii_digit()) =>
        {
            match head.split_once('[') {
                Some((t, p)) => (
                    t,
                    Some(
                        p.strip_suffix(']')
                            .ok_or_else(|| err("unclosed [platform]"))?,
                    ),
                    key,
                ),
                None => (head, None, key),
            }
        }
        _ => ("", None, left),
    };
    if key.is_empty() {
        return Err(err("the annotation key is empty"));
    }
    let platforms: Vec<Option<&str>> = match platforms {
        None => vec![None],
        Some(list) => list.split(',').map(Some).collect(),
    };
    let mut out = Vec::new();
    for typ in types.split(',') {
        for p in &platforms {
            let (kind, platform) = annotation_kind(FLAG, s, typ, *p)?;
            out.push(Annotation {
                kind,
                platform,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
    }
    Ok(out)
}

/// One `--platform` (`pull`, `run`, `inspect`…): any platform, in any of
/// containerd's spellings (`linux/amd64`, `amd64`, `linux`, `x86_64`,
/// `aarch64`, `local`), normalized (`linux/arm64/v8` is `linux/arm64`).
pub fn parse_platform(s: &str) -> Result<Platform, SpecError> {
    parse_platform_for(s, &Platform::host())
}

/// `rbuild build --platform a,b,…`: the platforms to build, each once,
/// in the order given.
pub fn parse_platforms(s: &str) -> Result<Vec<Platform>, SpecError> {
    let host = Platform::host();
    let mut out: Vec<Platform> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = normalize_platform(part, &host, s)?;
        if out.contains(&p) {
            return Err(SpecError::DuplicatePlatform {
                value: s.to_string(),
                platform: p,
            });
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(SpecError::NotPlatform {
            value: s.to_string(),
        });
    }
    Ok(out)
}

/// [`parse_platform`] against a given host (what `local`, `linux` and a
/// bare architecture's OS mean).
pub fn parse_platform_for(s: &str, host: &Platform) -> Result<Platform, SpecError> {
    if s.contains(',') {
        return Err(SpecError::Platforms {
            value: s.to_string(),
            host: host.clone(),
        });
    }
    normalize_platform(s, host, s)
}

const KNOWN_OS: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "aix",
    "android",
    "ios",
    "plan9",
    "js",
    "wasip1",
    "dragonfly",
];

/// containerd's `platforms.Parse` + `Normalize` for one platform;
/// `whole` is the flag value errors quote.
fn normalize_platform(s: &str, host: &Platform, whole: &str) -> Result<Platform, SpecError> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "local" {
        return Ok(host.clone());
    }
    let parts: Vec<&str> = lower.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(SpecError::NotPlatform {
            value: whole.to_string(),
        });
    }
    let (os, arch, variant) = match parts.as_slice() {
        [one] if KNOWN_OS.contains(one) => (one.to_string(), host.architecture.clone(), None),
        [one] => (host.os.clone(), one.to_string(), None),
        [os, arch] => (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => (os.to_string(), arch.to_string(), Some(variant.to_string())),
        _ => {
            return Err(SpecError::NotPlatform {
                value: whole.to_string(),
            });
        }
    };
    if !KNOWN_OS.contains(&os.as_str()) {
        return Err(SpecError::UnknownPlatform {
            value: whole.to_string(),
            what: "operating system",
            name: os,
        });
    }
    // containerd's normalized architecture and variant names.
    let (arch, variant) = match (arch.as_str(), variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", None | Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", Some(v @ ("v2" | "v3" | "v4"))) => ("amd64", Some(v)),
        ("aarch64" | "arm64", None | Some("v8") | Some("8")) => ("arm64", None),
        ("aarch64" | "arm64", Some(v @ ("v9" | "v8.1" | "v8.2" | "v9.0"))) => ("arm64", Some(v)),
        ("armhf", None) => ("arm", Some("v7")),
        ("armel", None) => ("arm", Some("v6")),
        ("arm", None) => ("arm", Some("v7")),
        ("arm", Some(v @ ("v5" | "v6" | "v7" | "v8"))) => ("arm", Some(v)),
        ("arm", Some("5" | "6" | "7" | "8")) => (
            "arm",
            Some(match variant.as_deref() {
                Some("5") => "v5",
                Some("6") => "v6",
                Some("8") => "v8",
                _ => "v7",
            }),
        ),
        ("i386" | "i686" | "386" | "x86", None) => ("386", None),
        (
            a @ ("ppc64le" | "ppc64" | "s390x" | "riscv64" | "mips64le" | "mips64" | "mipsle"
            | "mips" | "loong64" | "wasm"),
            v,
        ) => (a, v),
        (a, None) => {
            return Err(SpecError::UnknownPlatform {
                value: whole.to_string(),
                what: "architecture",
                name: a.to_string(),
            });
        }
        (_, Some(v)) => {
            return Err(SpecError::UnknownPlatform {
                value: whole.to_string(),
                what: "variant",
                name: v.to_string(),
            });
        }
    };
    Ok(Platform {
        os,
        architecture: arch.to_string(),
        variant: variant.map(str::to_string),
    })
}

/// A size as docker's `--keep-storage` (`units.RAMInBytes`): bytes, or a
/// number with a binary unit `k`, `m`, `g`, `t`, `p` (optionally followed
/// by `b` or `ib`), case-insensitive; decimals allowed (`1.5g`).
pub fn parse_size(s: &str) -> Result<u64, SpecError> {
    rbuild_parser::ram_in_bytes(s.trim()).ok_or_else(|| SpecError::Size {
        value: s.to_string(),
    })
}

/// The `type=…,key=value` fields of a cache flag, keys lowercased.
fn cache_fields(flag: Flag, s: &str) -> Result<Vec<(String, String)>, SpecError> {
    split_csv(flag, s)?
        .into_iter()
        .map(|field| match field.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
            None => Err(SpecError::NotKeyValue { flag, field }),
        })
        .collect()
}

fn parse_bool_attr(flag: Flag, key: &str, v: &str) -> Result<bool, SpecError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(SpecError::CacheBool {
            flag,
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

fn parse_mode_attr(flag: Flag, v: &str) -> Result<ExportMode, SpecError> {
    match v.to_ascii_lowercase().as_str() {
        "min" => Ok(ExportMode::Min),
        "max" => Ok(ExportMode::Max),
        _ => Err(SpecError::CacheMode {
            flag,
            value: v.to_string(),
        }),
    }
}

/// `--cache-to type=local,dest=DIR[,mode=min|max][,mounts=true]`,
/// `type=registry,ref=REF[,…]` (a bare `REF` is that, as in buildx) or
/// `type=inline`. Keys buildx knows but rbuild does not use (compression,
/// oci-mediatypes, …) are refused by name rather than ignored.
pub fn parse_cache_to(s: &str) -> Result<CacheToSpec, SpecError> {
    const FLAG: Flag = Flag::CacheTo;
    if !s.contains('=') {
        if s.is_empty() {
            return Err(SpecError::CacheEmpty { flag: FLAG });
        }
        return Ok(CacheToSpec::Registry {
            reference: s.to_string(),
            mode: ExportMode::Min,
            mounts: false,
            layers: LayerCompression::default(),
            oci_media_types: true,
        });
    }
    let (mut typ, mut dest, mut reference, mut mode, mut mounts) = (None, None, None, None, false);
    let mut layers = LayerCompression::default();
    let (mut level, mut oci_media_types, mut format_key) = (None, true, None);
    for (key, value) in cache_fields(FLAG, s)? {
        match key.as_str() {
            "type" => typ = Some(value.to_ascii_lowercase()),
            "dest" => dest = Some(value),
            "ref" => reference = Some(value),
            "mode" => mode = Some(parse_mode_attr(FLAG, &value)?),
            "mounts" => mounts = parse_bool_attr(FLAG, &key, &value)?,
            "compression" => layers.compression = parse_compression(FLAG, &value)?,
            "compression-level" => level = Some(value),
            "force-compression" => layers.force = parse_format_bool(FLAG, &key, &value)?,
            "oci-mediatypes" => oci_media_types = parse_format_bool(FLAG, &key, &value)?,
            _ => return Err(SpecError::CacheKey { flag: FLAG, key }),
        }
        if matches!(
            key.as_str(),
            "compression" | "compression-level" | "force-compression" | "oci-mediatypes"
        ) {
            format_key.get_or_insert(key);
        }
    }
    if let Some(level) = level {
        layers.level = Some(parse_level(FLAG, &level, layers.compression)?);
    }
    let typ = typ.ok_or(SpecError::CacheTypeMissing { flag: FLAG })?;
    let refuse = |attribute: &'static str, present: bool| {
        if present {
            Err(SpecError::CacheTakesNo {
                flag: FLAG,
                typ: typ.clone(),
                attribute,
            })
        } else {
            Ok(())
        }
    };
    let needs = |attribute: &'static str| SpecError::CacheNeeds {
        flag: FLAG,
        typ: typ.clone(),
        attribute,
    };
    let mode = mode.unwrap_or_default();
    match typ.as_str() {
        "local" => {
            refuse("ref", reference.is_some())?;
            let dest = dest
                .filter(|d| !d.is_empty())
                .ok_or_else(|| needs("dest=DIR"))?;
            Ok(CacheToSpec::Local {
                dest: dest.into(),
                mode,
                mounts,
                layers,
                oci_media_types,
            })
        }
        "registry" => {
            refuse("dest", dest.is_some())?;
            let reference = reference
                .filter(|r| !r.is_empty())
                .ok_or_else(|| needs("ref=REF"))?;
            Ok(CacheToSpec::Registry {
                reference,
                mode,
                mounts,
                layers,
                oci_media_types,
            })
        }
        "inline" => {
            refuse("dest", dest.is_some())?;
            refuse("ref", reference.is_some())?;
            if let Some(key) = format_key {
                // The image's own layers carry an inline cache: the
                // image output's compression is theirs.
                return Err(SpecError::CacheKey { flag: FLAG, key });
            }
            if mode == ExportMode::Max {
                return Err(SpecError::InlineModeMax);
            }
            if mounts {
                return Err(SpecError::InlineMounts);
            }
            Ok(CacheToSpec::Inline)
        }
        _ => Err(SpecError::CacheType { flag: FLAG, typ }),
    }
}

/// `--cache-from type=local,src=DIR[,mounts=true]`,
/// `type=registry,ref=REF[,mounts=true]`, or a bare `IMAGE` (its inline
/// cache, from the store).
pub fn parse_cache_from(s: &str) -> Result<CacheFromSpec, SpecError> {
    const FLAG: Flag = Flag::CacheFrom;
    if !s.contains('=') {
        if s.is_empty() {
            return Err(SpecError::CacheEmpty { flag: FLAG });
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
            _ => return Err(SpecError::CacheKey { flag: FLAG, key }),
        }
    }
    let typ = typ.ok_or(SpecError::CacheTypeMissing { flag: FLAG })?;
    let takes_no = |attribute: &'static str| SpecError::CacheTakesNo {
        flag: FLAG,
        typ: typ.clone(),
        attribute,
    };
    let needs = |attribute: &'static str| SpecError::CacheNeeds {
        flag: FLAG,
        typ: typ.clone(),
        attribute,
    };
    match typ.as_str() {
        "local" => {
            if reference.is_some() {
                return Err(takes_no("ref"));
            }
            let src = src
                .filter(|d| !d.is_empty())
                .ok_or_else(|| needs("src=DIR"))?;
            Ok(CacheFromSpec::Local {
                src: src.into(),
                mounts,
            })
        }
        "registry" => {
            if src.is_some() {
                return Err(takes_no("src"));
            }
            let reference = reference
                .filter(|r| !r.is_empty())
                .ok_or_else(|| needs("ref=REF"))?;
            Ok(CacheFromSpec::Registry { reference, mounts })
        }
        _ => Err(SpecError::CacheType { flag: FLAG, typ }),
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
        assert!(
            parse_tag("App:1")
                .unwrap_err()
                .to_string()
                .contains("lowercase")
        );
        assert!(parse_tag("app:-x").is_err());
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert!(parse_tag(&d).unwrap_err().to_string().contains("digest"));
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
        let s = parse_secret("id=tok,src=/x/token.txt", no_env).unwrap();
        assert_eq!(s.id, "tok");
        assert_eq!(s.source, SecretSource::File("/x/token.txt".into()));
        // id defaults to the file's base name; source is a synonym of src.
        let s = parse_secret("source=/x/token.txt", no_env).unwrap();
        assert_eq!(s.id, "token.txt");
        // type=env: src names the variable.
        let s = parse_secret("id=a,type=env,src=MY_VAR", no_env).unwrap();
        assert_eq!(s.source, SecretSource::Env("MY_VAR".into()));
        let s = parse_secret("id=a,env=MY_VAR", no_env).unwrap();
        assert_eq!(s.source, SecretSource::Env("MY_VAR".into()));
        let s = parse_secret("env=MY_VAR", no_env).unwrap();
        assert_eq!(s.id, "MY_VAR");
        // Only an id: the variable of that name when set, else the file.
        let s = parse_secret("id=TOKEN", |k| k == "TOKEN").unwrap();
        assert_eq!(s.source, SecretSource::Env("TOKEN".into()));
        let s = parse_secret("id=TOKEN", no_env).unwrap();
        assert!(
            matches!(s.source, SecretSource::File(p) if p.ends_with("TOKEN") && p.is_absolute())
        );
        // Keys are case-insensitive, values are not.
        let s = parse_secret("ID=Tok,SRC=/f", no_env).unwrap();
        assert_eq!(s.id, "Tok");
        assert!(
            parse_secret("id", no_env)
                .unwrap_err()
                .to_string()
                .contains("key=value")
        );
        assert!(
            parse_secret("id=a,type=ssh", no_env)
                .unwrap_err()
                .to_string()
                .contains("\"ssh\"")
        );
        assert!(
            parse_secret("id=a,foo=b", no_env)
                .unwrap_err()
                .to_string()
                .contains("\"foo\"")
        );
        assert!(parse_secret("type=file", no_env).is_err());
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
                dest: "img.tar".into(),
                format: ImageFormat::default(),
            }
        );
        assert_eq!(
            parse_output("type=docker,dest=-").unwrap(),
            OutputSpec::Docker {
                dest: "-".into(),
                format: ImageFormat::default(),
            }
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
                push: false,
                format: ImageFormat::default(),
            }
        );
        match parse_output("type=image,\"name=a:1,b:2\"").unwrap() {
            OutputSpec::Image { names, push, .. } => {
                assert_eq!(
                    names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
                    ["a:1", "b:2"]
                );
                assert!(!push);
            }
            other => panic!("{other:?}"),
        }
        match parse_output("type=image,name=reg.example:5000/x:1,push=true").unwrap() {
            OutputSpec::Image { names, push, .. } => {
                assert_eq!(names[0].familiar(), "reg.example:5000/x:1");
                assert!(push);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_output("type=image,push=false").unwrap(),
            OutputSpec::Image {
                names: vec![],
                push: false,
                format: ImageFormat::default(),
            }
        );
        assert!(
            parse_output("type=image,push=yes")
                .unwrap_err()
                .to_string()
                .contains("push")
        );
        assert!(
            parse_output("dest=x")
                .unwrap_err()
                .to_string()
                .contains("type is required")
        );
        assert!(
            parse_output("type=local")
                .unwrap_err()
                .to_string()
                .contains("dest")
        );
        assert!(
            parse_output("type=local,dest=-")
                .unwrap_err()
                .to_string()
                .contains("stdout")
        );
        assert!(matches!(
            parse_output("type=registry").unwrap(),
            OutputSpec::Image { push: true, .. }
        ));
        assert!(
            parse_output("type=tar,dest=x,push=true")
                .unwrap_err()
                .to_string()
                .contains("push")
        );
        assert!(parse_output("type=image,name=BAD").is_err());
    }

    #[test]
    fn platforms_are_normalized_as_containerd() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let p = |s: &str| parse_platform_for(s, &host).map(|p| p.to_string());
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("LINUX/AMD64", "linux/amd64"),
            ("amd64", "linux/amd64"),
            ("linux", "linux/amd64"),
            ("x86_64", "linux/amd64"),
            ("local", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("aarch64", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/s390x", "linux/s390x"),
        ] {
            assert_eq!(p(input).unwrap(), want, "{input}");
        }
        for bad in [
            "a/b/c/d",
            "linux/foo",
            "plan10/amd64",
            "linux/arm64/v99",
            "linux//",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert!(p("linux/amd64,linux/arm64").is_err());
        let two = parse_platforms("linux/amd64, linux/arm64").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].to_string(), "linux/arm64");
        assert!(
            parse_platforms("linux/arm64,aarch64")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
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
        assert_eq!(
            split_csv(Flag::Output, "a,\"b,c\",d").unwrap(),
            ["a", "b,c", "d"]
        );
        assert_eq!(split_csv(Flag::Output, "\"x\"\"y\"").unwrap(), ["x\"y"]);
        assert!(
            split_csv(Flag::Output, "a\"b")
                .unwrap_err()
                .to_string()
                .contains("bare \"")
        );
    }

    #[test]
    fn image_outputs_take_buildkits_compression_attributes() {
        let OutputSpec::Image { push, format, .. } = parse_output(
            "type=registry,compression=zstd,compression-level=19,force-compression=true,oci-mediatypes=true",
        )
        .unwrap() else {
            panic!("type=registry is an image output")
        };
        assert!(push, "type=registry pushes");
        assert_eq!(format.compression, Compression::Zstd);
        assert_eq!(format.compression_level, Some(19));
        assert!(format.force_compression);
        assert_eq!(format.oci_media_types, Some(true));
        let OutputSpec::Oci { format, .. } =
            parse_output("type=oci,dest=o.tar,compression=uncompressed,rewrite-timestamp=true")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(format.compression, Compression::None);
        assert!(format.rewrite_timestamp);
        // Bad values name the flag and the attribute.
        let e = parse_output("type=image,compression=lz4").unwrap_err();
        assert_eq!(e.flag(), Flag::Output);
        assert!(
            e.to_string()
                .starts_with("unsupported --output compression=\"lz4\""),
            "{e}"
        );
        let e = parse_output("type=image,compression-level=high").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --output compression-level=\"high\": expected a number"
        );
        let e = parse_output("type=image,compression-level=12").unwrap_err();
        assert!(e.to_string().contains("gzip levels are 0 to 9"), "{e}");
        assert!(parse_output("type=image,compression=zstd,compression-level=12").is_ok());
        let e = parse_output("type=oci,dest=x,force-compression=maybe").unwrap_err();
        assert!(e.to_string().contains("force-compression=\"maybe\""), "{e}");
        let e = parse_output("type=local,dest=x,compression=gzip").unwrap_err();
        assert!(e.to_string().contains("\"compression\""), "{e}");
        let e = parse_cache_to("type=local,dest=d,compression=brotli").unwrap_err();
        assert!(
            e.to_string().contains("--cache-to compression=\"brotli\""),
            "{e}"
        );
        let CacheToSpec::Local { layers, .. } =
            parse_cache_to("type=local,dest=d,compression=zstd,compression-level=1").unwrap()
        else {
            panic!()
        };
        assert_eq!(layers.compression, Compression::Zstd);
        assert_eq!(layers.level, Some(1));
        assert!(parse_cache_to("type=inline,compression=zstd").is_err());
    }

    #[test]
    fn annotations_parse_like_buildx() {
        let a = parse_annotation("org.opencontainers.image.title=app").unwrap();
        assert_eq!(
            a,
            [Annotation {
                kind: AnnotationKind::Manifest,
                platform: None,
                key: "org.opencontainers.image.title".into(),
                value: "app".into(),
            }]
        );
        let a = parse_annotation("manifest,manifest-descriptor[linux/amd64]:k=v=w").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].kind, AnnotationKind::ManifestDescriptor);
        assert_eq!(a[1].platform.as_ref().unwrap().architecture, "amd64");
        assert_eq!(a[1].value, "v=w");
        // A key with a colon is a key, not a type.
        let a = parse_annotation("com.example:thing=1").unwrap();
        assert_eq!(a[0].key, "com.example:thing");
        let a = parse_annotation("index,index-descriptor:k=v").unwrap();
        assert_eq!(
            (a[0].kind, a[1].kind),
            (AnnotationKind::Index, AnnotationKind::IndexDescriptor)
        );
        let e = parse_annotation("index[linux/amd64]:k=v")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no platform"), "{e}");
        let e = parse_annotation("novalue").unwrap_err();
        assert_eq!(e.flag(), Flag::Annotation);
        let OutputSpec::Image { format, .. } = parse_output(
            "type=image,annotation.a=1,annotation-manifest-descriptor.b=2,annotation-manifest[linux/arm64].c=3",
        )
        .unwrap() else {
            panic!()
        };
        let kinds: Vec<_> = format
            .annotations
            .iter()
            .map(|a| (a.kind, a.key.as_str(), a.platform.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                (AnnotationKind::Manifest, "a", false),
                (AnnotationKind::ManifestDescriptor, "b", false),
                (AnnotationKind::Manifest, "c", true),
            ]
        );
        let OutputSpec::Image { format, .. } =
            parse_output("type=image,annotation-index.x=1").unwrap()
        else {
            panic!()
        };
        assert_eq!(format.annotations[0].kind, AnnotationKind::Index);
        assert!(parse_output("type=image,annotation-bogus.x=1").is_err());
    }

    #[test]
    fn cache_flags_parse_like_buildx_and_name_the_bad_key() {
        assert_eq!(
            parse_cache_to("type=local,dest=/tmp/c,mode=max,mounts=true").unwrap(),
            CacheToSpec::Local {
                dest: "/tmp/c".into(),
                mode: ExportMode::Max,
                mounts: true,
                layers: LayerCompression::default(),
                oci_media_types: true,
            }
        );
        assert_eq!(
            parse_cache_to("type=local,dest=d").unwrap(),
            CacheToSpec::Local {
                dest: "d".into(),
                mode: ExportMode::Min,
                mounts: false,
                layers: LayerCompression::default(),
                oci_media_types: true,
            }
        );
        assert_eq!(
            parse_cache_to("reg.example/app:cache").unwrap(),
            CacheToSpec::Registry {
                reference: "reg.example/app:cache".into(),
                mode: ExportMode::Min,
                mounts: false,
                layers: LayerCompression::default(),
                oci_media_types: true,
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheToSpec::Inline);
        let e = parse_cache_to("type=local,dest=d,colour=blue")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cache-to") && e.contains("\"colour\""), "{e}");
        let e = parse_cache_to("type=local,dest=d,mode=medium")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode=\"medium\""), "{e}");
        assert!(
            parse_cache_to("type=local")
                .unwrap_err()
                .to_string()
                .contains("dest=")
        );
        assert!(parse_cache_to("type=inline,mode=max").is_err());
        assert!(
            parse_cache_to("type=gha")
                .unwrap_err()
                .to_string()
                .contains("\"gha\"")
        );
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
        let e = parse_cache_from("type=local,src=/c,mode=max")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cache-from") && e.contains("\"mode\""), "{e}");
        assert!(
            parse_cache_from("type=registry")
                .unwrap_err()
                .to_string()
                .contains("ref=")
        );
    }

    /// Every message, byte for byte as `rbuild build` printed them before
    /// the parsers moved into this crate (users and scripts read them),
    /// and the flag each is about.
    #[test]
    fn every_message_is_pinned_and_names_its_flag() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let cases: &[(&str, &str, &str)] = &[
            (
                "tag",
                "App:1",
                "invalid reference \"App:1\": repository name \"App\" must be lowercase\nhint: write \"app\"",
            ),
            (
                "tag",
                "app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "invalid tag \"app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": a tag cannot contain a digest\nhint: write NAME[:TAG]",
            ),
            (
                "build_arg",
                "=x",
                "invalid build arg \"=x\": the name is empty\nhint: write NAME=VALUE, or NAME to pass the variable from the environment",
            ),
            (
                "build_arg",
                "A B=1",
                "invalid build arg \"A B=1\": the name \"A B\" contains whitespace",
            ),
            (
                "label",
                "=x",
                "invalid label \"=x\": the key is empty\nhint: write KEY=VALUE",
            ),
            (
                "secret",
                "id=a,\"b",
                "invalid --secret value \"id=a,\\\"b\": extraneous or missing \" in quoted-field",
            ),
            (
                "secret",
                "id",
                "invalid field \"id\": must be a key=value pair",
            ),
            (
                "secret",
                "id=a,type=ssh",
                "unsupported secret type \"ssh\"\nhint: type=file or type=env",
            ),
            (
                "secret",
                "id=a,foo=b",
                "unexpected key \"foo\" in \"foo=b\"\nhint: keys are id, type, src (or source) and env",
            ),
            (
                "secret",
                "src=/",
                "cannot derive a secret id from src=\"/\"",
            ),
            (
                "secret",
                "type=file",
                "a secret needs id=ID or src=PATH\nhint: e.g. id=token,src=./token.txt",
            ),
            (
                "output",
                "",
                "empty output\nhint: -o type=local,dest=DIR or -o DIR",
            ),
            (
                "output",
                "a\"b",
                "invalid --output value \"a\\\"b\": bare \" in non-quoted-field",
            ),
            (
                "output",
                "type=image,x",
                "invalid field \"x\": must be a key=value pair",
            ),
            (
                "output",
                "type=image,name=App",
                "invalid reference \"App\": repository name \"App\" must be lowercase\nhint: write \"app\"",
            ),
            (
                "output",
                "type=image,name=a@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "invalid tag \"a@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": a tag cannot contain a digest\nhint: write NAME[:TAG]",
            ),
            (
                "output",
                "type=image,push=yes",
                "invalid value \"yes\" for push: must be true or false",
            ),
            (
                "output",
                "type=image,colour=red",
                "unsupported output attribute \"colour\"\nhint: rbuild's outputs take type=, dest=, name= and push= (type=image), and compression=, compression-level=, force-compression=, oci-mediatypes=, rewrite-timestamp=, attestation-inline= and annotation.KEY= (type=image, registry, oci, docker)",
            ),
            ("output", "dest=x", "type is required for output"),
            ("output", "type=oci", "output type=oci needs dest=…"),
            (
                "output",
                "type=local,dest=-",
                "output type=local cannot write to stdout (dest=-)\nhint: give a directory",
            ),
            ("output", "type=tar,dest=", "output type=tar: dest is empty"),
            (
                "output",
                "type=tar,dest=x,name=a",
                "name= is only for type=image, not type=tar",
            ),
            (
                "output",
                "type=tar,dest=x,push=true",
                "push= is only for type=image, not type=tar",
            ),
            (
                "output",
                "type=image,dest=x",
                "output type=image takes no dest=",
            ),
            (
                "output",
                "type=s3",
                "unsupported output type \"s3\"\nhint: image, registry, oci, docker, tar or local",
            ),
            (
                "output",
                "type=image,compression=lz4",
                "unsupported --output compression=\"lz4\"\nhint: compression=gzip (the default), zstd or uncompressed",
            ),
            (
                "output",
                "type=image,compression=zstd,compression-level=23",
                "invalid --output compression-level=\"23\": zstd levels are 0 to 22",
            ),
            (
                "cache_to",
                "type=local,dest=d,compression-level=x",
                "invalid --cache-to compression-level=\"x\": expected a number",
            ),
            (
                "platform",
                "linux/amd64,linux/arm64",
                "\"linux/amd64,linux/arm64\": expected one platform\nhint: name one, e.g. linux/amd64",
            ),
            (
                "platform",
                "a/b/c/d",
                "\"a/b/c/d\" is not a platform (os/arch[/variant])",
            ),
            (
                "platform",
                "linux/foo",
                "unknown platform \"linux/foo\": architecture \"foo\" is not one containerd knows\nhint: e.g. linux/amd64, linux/arm64, linux/arm/v7",
            ),
            (
                "size",
                "ten",
                "invalid size \"ten\"\nhint: e.g. 512m, 10gb, 1073741824",
            ),
            (
                "cache_to",
                "",
                "empty --cache-to\nhint: --cache-to type=local,dest=DIR",
            ),
            (
                "cache_to",
                "type=local,a\"b",
                "invalid --cache-to value \"type=local,a\\\"b\": bare \" in non-quoted-field",
            ),
            (
                "cache_to",
                "type=local,x",
                "invalid --cache-to field \"x\": must be a key=value pair",
            ),
            (
                "cache_to",
                "type=local,dest=d,mounts=maybe",
                "invalid --cache-to mounts=\"maybe\": expected true or false",
            ),
            (
                "cache_to",
                "type=local,dest=d,mode=medium",
                "invalid --cache-to mode=\"medium\"\nhint: mode=min or mode=max",
            ),
            (
                "cache_to",
                "type=local,dest=d,colour=blue",
                "unsupported --cache-to key \"colour\"\nhint: rbuild's cache exports take type=, dest= (local), ref= (registry), mode=min|max, mounts=true, compression=, compression-level=, force-compression= and oci-mediatypes=",
            ),
            ("cache_to", "dest=d", "--cache-to: type= is required"),
            (
                "cache_to",
                "type=local,dest=d,ref=r",
                "--cache-to type=local takes no ref=",
            ),
            (
                "cache_to",
                "type=registry,ref=r,dest=d",
                "--cache-to type=registry takes no dest=",
            ),
            (
                "cache_to",
                "type=inline,ref=r",
                "--cache-to type=inline takes no ref=",
            ),
            (
                "cache_to",
                "type=local",
                "--cache-to type=local needs dest=DIR",
            ),
            (
                "cache_to",
                "type=registry",
                "--cache-to type=registry needs ref=REF",
            ),
            (
                "cache_to",
                "type=inline,mode=max",
                "--cache-to type=inline supports only mode=min (the image carries only its own layers)\nhint: use type=local or type=registry for mode=max",
            ),
            (
                "cache_to",
                "type=inline,mounts=true",
                "--cache-to type=inline cannot carry cache mounts (mounts=true)\nhint: use type=local or type=registry",
            ),
            (
                "cache_to",
                "type=gha",
                "unsupported --cache-to type \"gha\"\nhint: local, registry or inline",
            ),
            (
                "cache_from",
                "",
                "empty --cache-from\nhint: --cache-from type=local,src=DIR",
            ),
            (
                "cache_from",
                "type=local,a\"b",
                "invalid --cache-from value \"type=local,a\\\"b\": bare \" in non-quoted-field",
            ),
            (
                "cache_from",
                "type=local,x",
                "invalid --cache-from field \"x\": must be a key=value pair",
            ),
            (
                "cache_from",
                "type=local,src=/c,mounts=maybe",
                "invalid --cache-from mounts=\"maybe\": expected true or false",
            ),
            (
                "cache_from",
                "type=local,src=/c,mode=max",
                "unsupported --cache-from key \"mode\"\nhint: rbuild's cache imports take type=, src= (local), ref= (registry) and mounts=true",
            ),
            ("cache_from", "src=/c", "--cache-from: type= is required"),
            (
                "cache_from",
                "type=local,src=/c,ref=r",
                "--cache-from type=local takes no ref=",
            ),
            (
                "cache_from",
                "type=registry,ref=r,src=s",
                "--cache-from type=registry takes no src=",
            ),
            (
                "cache_from",
                "type=local",
                "--cache-from type=local needs src=DIR",
            ),
            (
                "cache_from",
                "type=registry",
                "--cache-from type=registry needs ref=REF",
            ),
            (
                "cache_from",
                "type=gha",
                "unsupported --cache-from type \"gha\"\nhint: local, registry, or a bare IMAGE for its inline cache",
            ),
        ];
        for &(syntax, value, want) in cases {
            let (got, flag) = match syntax {
                "tag" => (parse_tag(value).map(drop), Flag::Tag),
                "build_arg" => (parse_build_arg(value).map(drop), Flag::BuildArg),
                "label" => (parse_label(value).map(drop), Flag::Label),
                "secret" => (parse_secret(value, |_| false).map(drop), Flag::Secret),
                "output" => (parse_output(value).map(drop), Flag::Output),
                "platform" => (parse_platform_for(value, &host).map(drop), Flag::Platform),
                "size" => (parse_size(value).map(drop), Flag::KeepStorage),
                "cache_to" => (parse_cache_to(value).map(drop), Flag::CacheTo),
                "cache_from" => (parse_cache_from(value).map(drop), Flag::CacheFrom),
                other => panic!("{other}"),
            };
            let e = got.unwrap_err();
            assert_eq!(e.to_string(), want, "{syntax} {value:?}");
            assert_eq!(e.flag(), flag, "{syntax} {value:?}");
        }
    }
}
