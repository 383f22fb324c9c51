//! The rule table: every check rbuild knows, BuildKit's Build Checks first
//! (names, descriptions and documentation links as BuildKit's
//! `frontend/dockerfile/linter/ruleset.go` has them), then rbuild's own
//! cache-efficiency rules, whose rationale pages live in `lint/docs/`.

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Reported; the build goes on (unless `error=true`).
    Warning,
    /// The build would fail or the check is configured to fail it.
    Error,
}

impl Level {
    /// `warning` / `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// One of BuildKit's Build Checks, same name and meaning.
    Buildkit,
    /// One of rbuild's own rules (cache efficiency).
    Rbuild,
}

/// One rule: its name (what `# check=skip=` takes), what it is about and
/// where it is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    /// One sentence: what the rule wants.
    pub description: &'static str,
    /// The documentation page; for rbuild's rules see [`Rule::url`].
    docs: Option<&'static str>,
    /// Only runs when asked for (`experimental=NAME|all`).
    pub experimental: bool,
    /// The level of its findings (before `error=true`).
    pub level: Level,
    pub origin: Origin,
    /// rbuild's rules: the rationale page (`rbuild check --explain NAME`).
    pub rationale: Option<&'static str>,
}

/// Where rbuild's own rule pages are published: the `lint/docs/` folder of
/// the repository named in the workspace manifest.
const RBUILD_DOCS: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/lint/docs/");

impl Rule {
    /// The documentation link shown next to each finding.
    pub fn url(&self) -> Option<String> {
        match (self.docs, self.origin) {
            (Some(u), _) => Some(u.to_string()),
            (None, Origin::Rbuild) => Some(format!("{RBUILD_DOCS}{}.md", self.name)),
            (None, Origin::Buildkit) => None,
        }
    }

    /// The rule named `name` (exact, as BuildKit compares them).
    pub fn find(name: &str) -> Option<&'static Rule> {
        ALL.iter().find(|r| r.name == name)
    }

    /// The closest rule name, for "did you mean" in `--explain`.
    pub fn closest(name: &str) -> Option<&'static str> {
        let lower = name.to_ascii_lowercase();
        ALL.iter()
            .map(|r| {
                (
                    r.name,
                    crate::suggest::distance(&lower, &r.name.to_ascii_lowercase()),
                )
            })
            .filter(|(_, d)| *d < 4)
            .min_by_key(|(_, d)| *d)
            .map(|(n, _)| n)
    }
}

const fn bk(
    name: &'static str,
    description: &'static str,
    docs: Option<&'static str>,
    experimental: bool,
) -> Rule {
    Rule {
        name,
        description,
        docs,
        experimental,
        level: Level::Warning,
        origin: Origin::Buildkit,
        rationale: None,
    }
}

const fn ours(
    name: &'static str,
    description: &'static str,
    level: Level,
    rationale: &'static str,
) -> Rule {
    Rule {
        name,
        description,
        docs: None,
        experimental: false,
        level,
        origin: Origin::Rbuild,
        rationale: Some(rationale),
    }
}

macro_rules! rules {
    ($($id:ident = $e:expr;)*) => {
        $(pub const $id: Rule = $e;)*
        /// Every rule, BuildKit's in ruleset order, then rbuild's.
        pub const ALL: &[Rule] = &[$($id),*];
    };
}

macro_rules! d {
    ($p:literal) => {
        concat!("https://docs.docker.com/go/dockerfile/rule/", $p)
    };
}

rules! {
    STAGE_NAME_CASING = bk("StageNameCasing", "Stage names should be lowercase", Some(d!("stage-name-casing/")), false);
    FROM_AS_CASING = bk("FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword", Some(d!("from-as-casing/")), false);
    NO_EMPTY_CONTINUATION = bk("NoEmptyContinuation", "Empty continuation lines will become errors in a future release", Some(d!("no-empty-continuation/")), false);
    CONSISTENT_INSTRUCTION_CASING = bk("ConsistentInstructionCasing", "All commands within the Dockerfile should use the same casing (either upper or lower)", Some(d!("consistent-instruction-casing/")), false);
    DUPLICATE_STAGE_NAME = bk("DuplicateStageName", "Stage names should be unique", Some(d!("duplicate-stage-name/")), false);
    RESERVED_STAGE_NAME = bk("ReservedStageName", "Reserved words should not be used as stage names", Some(d!("reserved-stage-name/")), false);
    JSON_ARGS_RECOMMENDED = bk("JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals", Some(d!("json-args-recommended/")), false);
    MAINTAINER_DEPRECATED = bk("MaintainerDeprecated", "The MAINTAINER instruction is deprecated, use a label instead to define an image author", Some(d!("maintainer-deprecated/")), false);
    UNDEFINED_ARG_IN_FROM = bk("UndefinedArgInFrom", "FROM command must use declared ARGs", Some(d!("undefined-arg-in-from/")), false);
    WORKDIR_RELATIVE_PATH = bk("WorkdirRelativePath", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes", Some(d!("workdir-relative-path/")), false);
    UNDEFINED_VAR = bk("UndefinedVar", "Variables should be defined before their use", Some(d!("undefined-var/")), false);
    MULTIPLE_INSTRUCTIONS_DISALLOWED = bk("MultipleInstructionsDisallowed", "Multiple instructions of the same type should not be used in the same stage", Some(d!("multiple-instructions-disallowed/")), false);
    LEGACY_KEY_VALUE_FORMAT = bk("LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used", Some(d!("legacy-key-value-format/")), false);
    INVALID_BASE_IMAGE_PLATFORM = bk("InvalidBaseImagePlatform", "Base image platform does not match expected target platform", None, false);
    REDUNDANT_TARGET_PLATFORM = bk("RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior", Some(d!("redundant-target-platform/")), false);
    SECRETS_USED_IN_ARG_OR_ENV = bk("SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands", Some(d!("secrets-used-in-arg-or-env/")), false);
    INVALID_DEFAULT_ARG_IN_FROM = bk("InvalidDefaultArgInFrom", "Default value for global ARG results in an empty or invalid base image name", Some(d!("invalid-default-arg-in-from/")), false);
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = bk("FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value", Some(d!("from-platform-flag-const-disallowed/")), false);
    COPY_IGNORED_FILE = bk("CopyIgnoredFile", "Attempting to Copy file that is excluded by .dockerignore", Some(d!("copy-ignored-file/")), false);
    INVALID_DEFINITION_DESCRIPTION = bk("InvalidDefinitionDescription", "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.", Some(d!("invalid-definition-description/")), true);
    EXPOSE_PROTO_CASING = bk("ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase", Some(d!("expose-proto-casing/")), false);
    EXPOSE_INVALID_FORMAT = bk("ExposeInvalidFormat", "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release", Some(d!("expose-invalid-format/")), false);

    COPY_ALL_BEFORE_INSTALL = ours("CopyAllBeforeInstall", "Dependencies should be installed from their manifest before the whole context is copied", Level::Warning, include_str!("../docs/CopyAllBeforeInstall.md"));
    APT_UPDATE_WITHOUT_INSTALL = ours("AptUpdateWithoutInstall", "apt-get update should run in the same RUN as the apt-get install that needs it", Level::Warning, include_str!("../docs/AptUpdateWithoutInstall.md"));
    // Experimental: it fired on 4 of 5 real Dockerfiles (see its page).
    MISSING_CACHE_MOUNT = Rule { experimental: true, ..ours("MissingCacheMount", "Package manager downloads should go to a cache mount", Level::Warning, include_str!("../docs/MissingCacheMount.md")) };
    ADD_LOCAL_FILE = ours("AddLocalFile", "ADD of a local file that is not an archive should be a COPY", Level::Warning, include_str!("../docs/AddLocalFile.md"));
    MISSING_DOCKERIGNORE = ours("MissingDockerignore", "A large build context copied whole should have a .dockerignore", Level::Warning, include_str!("../docs/MissingDockerignore.md"));
    COPY_SOURCE_NOT_FOUND = ours("CopySourceNotFound", "COPY and ADD sources should exist in the build context", Level::Error, include_str!("../docs/CopySourceNotFound.md"));
    VOLATILE_ARG_INVALIDATES_CACHE = ours("VolatileArgInvalidatesCache", "A build arg that changes every build should be declared after the last RUN", Level::Warning, include_str!("../docs/VolatileArgInvalidatesCache.md"));
    COPY_MANY_TO_ONE_PATH = ours("CopyManyToOnePath", "COPY and ADD of several sources should name a directory ending with /", Level::Warning, include_str!("../docs/CopyManyToOnePath.md"));
    SECRET_AS_BUILD_ARG = ours("SecretAsBuildArg", "Secrets should reach RUN through a secret mount, not a build arg", Level::Warning, include_str!("../docs/SecretAsBuildArg.md"));
}
