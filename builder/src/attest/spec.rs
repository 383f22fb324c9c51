//! `--attest type=provenance|sbom,…`, `--provenance[=…]` and
//! `--sbom[=…]` as buildx reads them: `--provenance=VALUE` is
//! `--attest type=provenance,VALUE`, except that a boolean is
//! `disabled=!VALUE`; the same for `--sbom`. A later flag of the same
//! type replaces an earlier one.

use std::fmt;

/// How much provenance to record (BuildKit's `mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProvenanceMode {
    /// Timestamps, the frontend, the materials; no build-arg values,
    /// no secret or ssh ids.
    #[default]
    Min,
    /// Also the build args, secret and ssh ids, the Dockerfile and the
    /// steps.
    Max,
}

/// The SLSA provenance predicate's version (BuildKit's `version=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlsaVersion {
    /// `https://slsa.dev/provenance/v0.2`, BuildKit's long-time default.
    #[default]
    V02,
    /// `https://slsa.dev/provenance/v1`.
    V1,
}

/// `type=provenance`'s attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvenanceSpec {
    pub mode: ProvenanceMode,
    pub version: SlsaVersion,
    /// `builder-id=`: the predicate's builder id.
    pub builder_id: Option<String>,
    /// `reproducible=true`: the build says it is reproducible.
    pub reproducible: bool,
    /// `inline-only=true` (buildx's default provenance): attached only
    /// where attestations go inline — the image exporter and pushes —
    /// not to single-platform `oci`/`docker` archives.
    pub inline_only: bool,
}

/// `type=sbom`'s attributes (none beyond `disabled=` yet: rbuild's own
/// scanner reads the final image).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SbomSpec {}

/// The attestations a build attaches to its image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attestations {
    pub provenance: Option<ProvenanceSpec>,
    pub sbom: Option<SbomSpec>,
    /// A flag said something about provenance (even `false`): buildx then
    /// adds no default provenance.
    pub provenance_given: bool,
}

/// The environment variable that turns buildx's default provenance off.
pub const NO_DEFAULT_ATTESTATIONS_ENV: &str = "BUILDX_NO_DEFAULT_ATTESTATIONS";

/// [`NO_DEFAULT_ATTESTATIONS_ENV`]'s value is not a boolean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {NO_DEFAULT_ATTESTATIONS_ENV} {value:?}: expected a boolean\nhint: {NO_DEFAULT_ATTESTATIONS_ENV}=1 turns the default provenance attestation off"
)]
pub struct BadNoDefaultEnv {
    pub value: String,
}

impl Attestations {
    /// True when no attestation is asked for.
    pub fn is_empty(&self) -> bool {
        self.provenance.is_none() && self.sbom.is_none()
    }

    /// Applies one parsed flag value (a later one of a type replaces an
    /// earlier one).
    pub fn apply(&mut self, attest: Attest) {
        match attest {
            Attest::Provenance(p) => {
                self.provenance = p;
                self.provenance_given = true;
            }
            Attest::Sbom(s) => self.sbom = s,
        }
    }

    /// buildx's default: when no flag said anything about provenance and
    /// `BUILDX_NO_DEFAULT_ATTESTATIONS` (`no_default`, the variable's
    /// value) is unset or false, `mode=min,inline-only=true` provenance
    /// (buildx's `toSolveOpt`, for builders that support attestations).
    pub fn with_buildx_default(
        mut self,
        no_default: Option<&str>,
    ) -> Result<Self, BadNoDefaultEnv> {
        let off = match no_default {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| BadNoDefaultEnv {
                value: v.to_string(),
            })?,
        };
        if !self.provenance_given && !off {
            self.provenance = Some(ProvenanceSpec {
                inline_only: true,
                ..ProvenanceSpec::default()
            });
        }
        Ok(self)
    }
}

/// One flag value: an attestation of a type, or `None` when disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attest {
    Provenance(Option<ProvenanceSpec>),
    Sbom(Option<SbomSpec>),
}

/// Which flag a value came from, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestFlag {
    Attest,
    Provenance,
    Sbom,
}

impl fmt::Display for AttestFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttestFlag::Attest => "--attest",
            AttestFlag::Provenance => "--provenance",
            AttestFlag::Sbom => "--sbom",
        })
    }
}

/// An attestation flag value that does not parse; the message names the
/// flag and ends with a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestSpecError {
    #[error("invalid {flag} value {value:?}: {reason}")]
    Csv {
        flag: AttestFlag,
        value: String,
        reason: String,
    },
    #[error("invalid {flag} field {field:?}: must be a key=value pair")]
    NotKeyValue { flag: AttestFlag, field: String },
    #[error("{flag}: type= is required\nhint: --attest type=provenance or --attest type=sbom")]
    TypeMissing { flag: AttestFlag },
    #[error(
        "{flag}: unknown attestation type {typ:?}\nhint: rbuild attaches type=provenance and type=sbom"
    )]
    Type { flag: AttestFlag, typ: String },
    #[error("{flag}: unknown {typ} attestation attribute {key:?}\nhint: {}", attribute_hint(.typ))]
    Attribute {
        flag: AttestFlag,
        typ: &'static str,
        key: String,
    },
    #[error("{flag}: invalid mode={value:?}\nhint: mode=min or mode=max")]
    Mode { flag: AttestFlag, value: String },
    #[error("{flag}: invalid version={value:?}\nhint: version=v0.2 (the default) or version=v1")]
    Version { flag: AttestFlag, value: String },
    #[error("{flag}: invalid {key}={value:?}: expected true or false")]
    Bool {
        flag: AttestFlag,
        key: String,
        value: String,
    },
}

fn attribute_hint(typ: &str) -> &'static str {
    if typ == "provenance" {
        "provenance takes mode=min|max, version=v0.2|v1, builder-id=, reproducible=, inline-only=, filename= and disabled="
    } else {
        "sbom takes disabled= only: rbuild's own scanner reads the final image (no generator=, scan-context=, scan-stage=)"
    }
}

/// `--attest VALUE`.
pub fn parse_attest(value: &str) -> Result<Attest, AttestSpecError> {
    parse_fields(AttestFlag::Attest, value, value)
}

/// `--provenance VALUE` (`true`, `false`, or attributes).
pub fn parse_provenance(value: &str) -> Result<Attest, AttestSpecError> {
    shorthand(AttestFlag::Provenance, "provenance", value)
}

/// `--sbom VALUE` (`true`, `false`, or attributes).
pub fn parse_sbom(value: &str) -> Result<Attest, AttestSpecError> {
    shorthand(AttestFlag::Sbom, "sbom", value)
}

fn shorthand(flag: AttestFlag, typ: &str, value: &str) -> Result<Attest, AttestSpecError> {
    let canonical = match parse_bool(value) {
        Some(b) => format!("type={typ},disabled={}", !b),
        None if value.is_empty() => format!("type={typ}"),
        None => format!("type={typ},{value}"),
    };
    parse_fields(flag, value, &canonical)
}

fn parse_bool(v: &str) -> Option<bool> {
    // Go's strconv.ParseBool, which buildx uses.
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_fields(flag: AttestFlag, original: &str, value: &str) -> Result<Attest, AttestSpecError> {
    let fields = rbuild_parser::split_csv(value).map_err(|reason| AttestSpecError::Csv {
        flag,
        value: original.to_string(),
        reason,
    })?;
    let mut pairs = Vec::new();
    for field in fields {
        let Some((k, v)) = field.split_once('=') else {
            return Err(AttestSpecError::NotKeyValue { flag, field });
        };
        pairs.push((k.trim().to_ascii_lowercase(), v.to_string()));
    }
    let typ = pairs
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.clone())
        .ok_or(AttestSpecError::TypeMissing { flag })?;
    let boolean = |key: &str, v: &str| {
        parse_bool(v).ok_or_else(|| AttestSpecError::Bool {
            flag,
            key: key.to_string(),
            value: v.to_string(),
        })
    };
    let mut disabled = false;
    match typ.as_str() {
        "provenance" => {
            let mut spec = ProvenanceSpec::default();
            for (k, v) in &pairs {
                match k.as_str() {
                    "type" => {}
                    "disabled" => disabled = boolean(k, v)?,
                    "mode" => {
                        spec.mode = match v.as_str() {
                            "min" => ProvenanceMode::Min,
                            "max" => ProvenanceMode::Max,
                            _ => {
                                return Err(AttestSpecError::Mode {
                                    flag,
                                    value: v.clone(),
                                });
                            }
                        }
                    }
                    "version" => {
                        spec.version = match v.as_str() {
                            "v0.2" => SlsaVersion::V02,
                            "v1" => SlsaVersion::V1,
                            _ => {
                                return Err(AttestSpecError::Version {
                                    flag,
                                    value: v.clone(),
                                });
                            }
                        }
                    }
                    "builder-id" => spec.builder_id = Some(v.clone()).filter(|b| !b.is_empty()),
                    "reproducible" => spec.reproducible = boolean(k, v)?,
                    "inline-only" => spec.inline_only = boolean(k, v)?,
                    "filename" => {}
                    _ => {
                        return Err(AttestSpecError::Attribute {
                            flag,
                            typ: "provenance",
                            key: k.clone(),
                        });
                    }
                }
            }
            Ok(Attest::Provenance((!disabled).then_some(spec)))
        }
        "sbom" => {
            for (k, v) in &pairs {
                match k.as_str() {
                    "type" => {}
                    "disabled" => disabled = boolean(k, v)?,
                    _ => {
                        return Err(AttestSpecError::Attribute {
                            flag,
                            typ: "sbom",
                            key: k.clone(),
                        });
                    }
                }
            }
            Ok(Attest::Sbom((!disabled).then_some(SbomSpec {})))
        }
        _ => Err(AttestSpecError::Type { flag, typ }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_as_buildx() {
        assert_eq!(
            parse_provenance("true").unwrap(),
            Attest::Provenance(Some(ProvenanceSpec::default()))
        );
        assert_eq!(parse_provenance("false").unwrap(), Attest::Provenance(None));
        assert_eq!(
            parse_provenance("mode=max,version=v1").unwrap(),
            Attest::Provenance(Some(ProvenanceSpec {
                mode: ProvenanceMode::Max,
                version: SlsaVersion::V1,
                ..Default::default()
            }))
        );
        assert_eq!(parse_sbom("true").unwrap(), Attest::Sbom(Some(SbomSpec {})));
        assert_eq!(
            parse_attest("type=sbom,disabled=true").unwrap(),
            Attest::Sbom(None)
        );
    }

    #[test]
    fn default_provenance_as_buildx() {
        let min_inline = Some(ProvenanceSpec {
            inline_only: true,
            ..ProvenanceSpec::default()
        });
        let d = Attestations::default().with_buildx_default(None).unwrap();
        assert_eq!(d.provenance, min_inline);
        let d = Attestations::default()
            .with_buildx_default(Some("0"))
            .unwrap();
        assert_eq!(d.provenance, min_inline);
        let d = Attestations::default()
            .with_buildx_default(Some("1"))
            .unwrap();
        assert_eq!(d.provenance, None);
        // `--provenance=false` and `--attest type=provenance,…` leave it alone.
        let mut given = Attestations::default();
        given.apply(parse_provenance("false").unwrap());
        assert_eq!(given.with_buildx_default(None).unwrap().provenance, None);
        let mut given = Attestations::default();
        given.apply(parse_attest("type=provenance,mode=max").unwrap());
        let p = given.with_buildx_default(None).unwrap().provenance.unwrap();
        assert_eq!((p.mode, p.inline_only), (ProvenanceMode::Max, false));
        // `--sbom` alone still gets the default provenance, as in buildx.
        let mut sbom = Attestations::default();
        sbom.apply(parse_sbom("true").unwrap());
        assert_eq!(
            sbom.with_buildx_default(None).unwrap().provenance,
            min_inline
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse_provenance("mode=full").unwrap_err().to_string();
        assert!(e.starts_with("--provenance: invalid mode=\"full\""), "{e}");
        let e = parse_attest("type=vex").unwrap_err().to_string();
        assert!(
            e.contains("--attest: unknown attestation type \"vex\""),
            "{e}"
        );
        let e = parse_attest("type=sbom,generator=docker/scout")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown sbom attestation attribute \"generator\""),
            "{e}"
        );
        let e = parse_attest("mode=max").unwrap_err().to_string();
        assert!(e.contains("type= is required"), "{e}");
        let e = Attestations::default()
            .with_buildx_default(Some("maybe"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid BUILDX_NO_DEFAULT_ATTESTATIONS \"maybe\""),
            "{e}"
        );
        let e = parse_attest("mode=max").unwrap_err().to_string();
        assert!(e.contains("type= is required"), "{e}");
        let e = parse_sbom("maybe").unwrap_err().to_string();
        assert!(
            e.contains("--sbom: invalid field \"maybe\"") || e.contains("--sbom"),
            "{e}"
        );
    }
}
