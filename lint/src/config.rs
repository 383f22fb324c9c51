//! Which rules run and whether findings fail the build: BuildKit's
//! `# check=skip=A,B;error=true;experimental=C|all` syntax, read from the
//! `# check=` parser directive, from the `BUILDKIT_DOCKERFILE_CHECK` build
//! arg (which replaces the directive, as in BuildKit), and from a
//! `# check=` comment directly above one instruction (merged for that
//! instruction only, as BuildKit's `WithMergedConfigFromComments`).

use std::collections::BTreeSet;

/// A check configuration as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=A,B`.
    pub skip: BTreeSet<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=A,B`.
    pub experimental: BTreeSet<String>,
    /// `error=true`: any finding fails the build.
    pub error: bool,
}

/// A `check=` value BuildKit would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid check option {0:?}")]
    InvalidOption(String),
    #[error("failed to parse check option {0:?}: error must be true or false")]
    InvalidBool(String),
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn list(v: &str) -> BTreeSet<String> {
    v.split(',').map(|r| r.trim().to_string()).collect()
}

impl CheckConfig {
    /// Parses a `check=` value (`skip=…;error=…;experimental=…`), as
    /// BuildKit's `ParseLintOptions`: at most three `;`-separated parts
    /// (a fourth stays glued to the third), keys trimmed, `all` special.
    pub fn parse(text: &str) -> Result<CheckConfig, ConfigError> {
        let text = text.trim();
        let mut cfg = CheckConfig::default();
        if text.is_empty() {
            return Ok(cfg);
        }
        for part in text.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(ConfigError::InvalidOption(part.to_string()));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => cfg.skip_all = true,
                "skip" => cfg.skip = list(v),
                "experimental" if v == "all" => cfg.experimental_all = true,
                "experimental" => cfg.experimental = list(v),
                "error" => {
                    cfg.error = parse_go_bool(v)
                        .ok_or_else(|| ConfigError::InvalidBool(part.to_string()))?
                }
                other => return Err(ConfigError::InvalidOption(other.to_string())),
            }
        }
        Ok(cfg)
    }

    /// This configuration with `other`'s settings added (skips and
    /// experimental rules are unions; `error` is not merged, as BuildKit).
    pub fn merged(&self, other: &CheckConfig) -> CheckConfig {
        let mut c = self.clone();
        c.skip_all |= other.skip_all;
        c.experimental_all |= other.experimental_all;
        c.skip.extend(other.skip.iter().cloned());
        c.experimental.extend(other.experimental.iter().cloned());
        c
    }

    /// Whether `rule` runs: an experimental rule only when asked for
    /// (and then even if skipped, as BuildKit), any other unless skipped.
    pub fn enabled(&self, rule: &crate::Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !(self.skip_all || self.skip.contains(rule.name))
        }
    }

    /// Names in `skip=`/`experimental=` that are no rule, for a hint.
    pub fn unknown_rules(&self) -> Vec<String> {
        self.skip
            .iter()
            .chain(&self.experimental)
            .filter(|n| !n.is_empty() && crate::Rule::find(n).is_none())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_syntax() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert!(c.error);
        assert!(c.skip.contains("StageNameCasing"));
        assert!(c.skip.contains("JSONArgsRecommended"));
        let c = CheckConfig::parse(" experimental=all ; skip=all").unwrap();
        assert!(c.experimental_all && c.skip_all);
        assert_eq!(
            CheckConfig::parse("skip"),
            Err(ConfigError::InvalidOption("skip".into()))
        );
        assert_eq!(
            CheckConfig::parse("bogus=1"),
            Err(ConfigError::InvalidOption("bogus".into()))
        );
        assert!(CheckConfig::parse("error=yes").is_err());
        assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
    }

    #[test]
    fn experimental_rules_need_asking_and_ignore_skip() {
        let r = &crate::rule::INVALID_DEFINITION_DESCRIPTION;
        assert!(!CheckConfig::default().enabled(r));
        let c = CheckConfig::parse("experimental=InvalidDefinitionDescription;skip=all").unwrap();
        assert!(c.enabled(r));
        assert!(!c.enabled(&crate::rule::STAGE_NAME_CASING));
    }
}
