//! `RUN --mount=type=...,key=value,...` specifications, validated as
//! BuildKit validates them. Values containing `$` are left for the solver
//! to expand: such a value is kept as written and, for a typed option
//! (mode, uid, gid, size, type, sharing, ...), listed in
//! [`Mount::deferred`] so [`Mount::parse`] can be run again after expansion.

use crate::error::{ErrorKind, ParseError};
use crate::span::Span;
use crate::suggest::closest;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    /// The name as written in `type=`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("bind", |(n, _)| n)
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: stage or image to mount from.
    pub from: Option<String>,
    /// `id=`: cache or secret id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    /// `mode=` (octal in the Dockerfile).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Read-only; defaults to false for cache and tmpfs, true otherwise.
    pub readonly: bool,
    /// `required` (secret and ssh only).
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `size=` of a tmpfs, in bytes.
    pub size: Option<u64>,
    /// Options whose value holds `$` and could not be checked before
    /// expansion.
    pub deferred: Vec<String>,
    /// The specification as written.
    pub spec: String,
    /// Where the `--mount` flag is.
    pub span: Span,
}

const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Split a CSV record (as Go's CSV readers do for one line): `,` separated,
/// a field may be wrapped in `"` with `""` for a quote.
fn csv_fields(s: &str) -> Result<Vec<(String, std::ops::Range<usize>)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let at = s.len() - rest.len();
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut it = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = it.next() {
                if c == '"' {
                    if q[i + 1..].starts_with('"') {
                        field.push('"');
                        it.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
            let end = end.ok_or_else(|| "extraneous or missing \" in quoted-field".to_string())?;
            out.push((field, at..at + 1 + end));
            rest = &q[end..];
            if rest.is_empty() {
                return Ok(out);
            }
            rest = rest
                .strip_prefix(',')
                .ok_or_else(|| "extraneous or missing \" in quoted-field".to_string())?;
        } else {
            match rest.find(',') {
                Some(i) => {
                    let f = &rest[..i];
                    if f.contains('"') {
                        return Err("bare \" in non-quoted-field".to_string());
                    }
                    out.push((f.to_string(), at..at + i));
                    rest = &rest[i + 1..];
                }
                None => {
                    if rest.contains('"') {
                        return Err("bare \" in non-quoted-field".to_string());
                    }
                    out.push((rest.to_string(), at..s.len()));
                    return Ok(out);
                }
            }
        }
    }
}

/// The fields of a CSV record, as Go's `encoding/csv` reads one line (what
/// BuildKit and buildx read `--mount`, `--secret`, `-o` and `--cache-*`
/// values with); a stray `"` is an error.
pub fn split_csv(s: &str) -> Result<Vec<String>, String> {
    Ok(csv_fields(s)?.into_iter().map(|(f, _)| f).collect())
}

/// `field` as [`split_csv`] reads it back: quoted when it holds `,` or `"`.
pub fn quote_csv_field(field: &str) -> String {
    if field.contains([',', '"']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `512`, `64m`, `1.5GiB`, binary multiples.
pub fn ram_in_bytes(v: &str) -> Option<u64> {
    let num_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(num_end);
    if num.is_empty() || num.starts_with('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mul as f64) as u64)
}

impl Mount {
    /// Parse one `--mount` value. `span` locates it for errors.
    pub fn parse(spec: &str, span: Span) -> Result<Mount, ParseError> {
        // The flag as written is `--mount=<spec>` when nothing was quoted.
        let written = format!("--mount={spec}");
        let field_span = |r: std::ops::Range<usize>| span.subspan(&written, r.start + 8..r.end + 8);
        let err = |msg: String| {
            ParseError::new(ErrorKind::InvalidMount, msg, span)
                .expected("a mount such as type=cache,target=/path")
        };
        let fields =
            csv_fields(spec).map_err(|e| err(format!("failed to parse csv mounts: {e}")))?;
        let mut m = Mount {
            spec: spec.to_string(),
            span,
            ..Mount::default()
        };
        let mut ro_auto = true;
        for (field, range) in fields {
            let fspan = field_span(range);
            let err = |msg: String| {
                ParseError::new(ErrorKind::InvalidMount, msg, fspan)
                    .expected(format!("a valid option for a {} mount", m.kind.as_str()))
            };
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (field.to_ascii_lowercase(), None),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" => {
                        if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                            return Err(err(format!(
                                "unexpected key 'required' for mount type '{}'",
                                m.kind.as_str()
                            )));
                        }
                        m.required = true;
                    }
                    _ => {
                        return Err(err(format!(
                            "invalid field '{field}' must be a key=value pair"
                        )));
                    }
                }
                continue;
            };
            if !ALL_KEYS.contains(&key.as_str()) {
                return Err(err(format!("unexpected key '{key}' in '{field}'"))
                    .maybe_help(closest(&key, &ALL_KEYS).map(|k| format!("did you mean `{k}`?"))));
            }
            if key == "from"
                && let Some(i) = value.find('$')
                && i != value.len() - 1
            {
                return Err(err(
                    "'from' doesn't support variable expansion, define alias stage instead"
                        .to_string(),
                ));
            }
            let typed = !matches!(
                key.as_str(),
                "from" | "source" | "src" | "target" | "dst" | "destination" | "id" | "env"
            );
            if typed && value.contains('$') {
                m.deferred.push(key.clone());
                continue;
            }
            let bad_value = || err(format!("invalid value for {key}: {value}"));
            match key.as_str() {
                "type" => {
                    let v = value.to_ascii_lowercase();
                    let Some((_, t)) = MountType::ALL.iter().find(|(n, _)| *n == v) else {
                        let names: Vec<&str> = MountType::ALL.iter().map(|(n, _)| *n).collect();
                        return Err(err(format!("unsupported mount type {value:?}"))
                            .expected("bind, cache, tmpfs, secret or ssh")
                            .maybe_help(
                                closest(&v, &names).map(|k| format!("did you mean `{k}`?")),
                            ));
                    };
                    m.kind = *t;
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&value).ok_or_else(bad_value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&value).ok_or_else(bad_value)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind.as_str()
                        )));
                    }
                    m.required = parse_bool(&value).ok_or_else(bad_value)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(err(format!(
                            "unexpected key 'size' for mount type '{}'",
                            m.kind.as_str()
                        )));
                    }
                    m.size = Some(ram_in_bytes(&value).ok_or_else(bad_value)?);
                }
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        v => {
                            return Err(err(format!("unsupported sharing value {value:?}"))
                                .expected("shared, private or locked")
                                .maybe_help(
                                    closest(v, &["shared", "private", "locked"])
                                        .map(|k| format!("did you mean `{k}`?")),
                                ));
                        }
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| err(format!("invalid value {value} for mode")))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for uid")))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for gid")))?,
                    )
                }
                "env" => m.env = Some(value),
                _ => unreachable!("key checked against ALL_KEYS"),
            }
        }
        let file_info = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info {
            for (name, set) in [
                ("mode", m.mode.is_some()),
                ("uid", m.uid.is_some()),
                ("gid", m.gid.is_some()),
            ] {
                if set {
                    return Err(err(format!(
                        "{name} not allowed for \"{}\" type mounts",
                        m.kind.as_str()
                    )));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err(err("secret mount should not have a from".to_string()));
            }
            if m.sharing.is_some() {
                return Err(err("secret mount should not define sharing".to_string()));
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err(err(
                    "invalid secret mount. one of source, target required".to_string()
                ));
            }
            if m.source.is_some() && m.id.is_some() {
                return Err(err("both source and id can't be set".to_string()));
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(err(format!(
                "invalid cache sharing set for {} mount",
                m.kind.as_str()
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn csv_fields_round_trip_through_quoting() {
        assert_eq!(
            super::split_csv(r#"type=cache,"target=/a,b""#).unwrap(),
            ["type=cache", "target=/a,b"]
        );
        for field in ["target=/a,b", r#"say "hi""#, "plain"] {
            let quoted = super::quote_csv_field(field);
            assert_eq!(super::split_csv(&quoted).unwrap(), [field]);
        }
    }

    use super::*;

    fn p(s: &str) -> Result<Mount, ParseError> {
        Mount::parse(s, Span::default())
    }

    #[test]
    fn mounts_follow_buildkit_rules() {
        let m = p("type=cache,target=/root/.cache,sharing=locked,mode=0755,uid=1000").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.mode, Some(0o755));
        assert!(!m.readonly);
        let m = p("target=/src").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        assert_eq!(
            p("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert!(p("type=secret,id=a,required").unwrap().required);
        assert!(p("type=bind,target=/a,required").is_err());
        assert!(p("type=bind,mode=0700").is_err());
        assert!(p("type=secret").is_err());
        let e = p("type=cahce").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `cache`?"));
        let e = p("type=cache,targte=/x").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `target`?"));
        assert_eq!(
            p("type=cache,uid=$UID,target=/x").unwrap().deferred,
            ["uid"]
        );
        assert_eq!(
            p(r#""type=cache","target=/a,b""#)
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }
}
