//! Golden tests for every rule, over Dockerfiles in `tests/rules/RULE/`:
//!
//! - `trigger.Dockerfile` fires the rule; what it prints (text, only that
//!   rule's findings) must equal `trigger.txt` (`UPDATE_GOLDEN=1` rewrites
//!   the golden files; review the diff);
//! - `near_miss.Dockerfile` is almost the same and must not fire it, nor
//!   must any `near_miss_*.Dockerfile` (false positives found on real
//!   Dockerfiles, see `lint/CORPUS.md`, each kept as its own near miss);
//! - the trigger with `# check=skip=RULE` in front does not fire it (an
//!   experimental rule instead stays silent until asked for with
//!   `experimental=RULE`).
//!
//! Every case sees the same fake build context, `tests/rules/context.txt`.

use std::path::{Path, PathBuf};

use rbuild_lint::{ContextView, Options, Report, Rule, render, rule};

struct FakeContext {
    paths: Vec<String>,
    ignore: Vec<String>,
    size: u64,
}

impl FakeContext {
    fn load(with_ignore: bool) -> FakeContext {
        let text = std::fs::read_to_string(dir().join("context.txt")).unwrap();
        let mut ctx = FakeContext {
            paths: Vec::new(),
            ignore: Vec::new(),
            size: 1000,
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(p) = line.strip_prefix("ignore: ") {
                if with_ignore {
                    ctx.ignore.push(p.to_string());
                }
            } else if let Some(s) = line.strip_prefix("size: ") {
                ctx.size = s.parse().unwrap();
            } else {
                ctx.paths.push(line.trim_end_matches('/').to_string());
            }
        }
        ctx
    }
}

impl ContextView for FakeContext {
    fn list_dir(&self, dir: &str) -> Option<Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Some(
            self.paths
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap().to_string())
                .collect(),
        )
    }
    fn exists(&self, path: &str) -> bool {
        self.paths
            .iter()
            .any(|p| p == path || p.starts_with(&format!("{path}/")))
    }
    fn ignore_file(&self) -> Option<String> {
        (!self.ignore.is_empty()).then(|| ".dockerignore".to_string())
    }
    fn ignore_patterns(&self) -> Vec<String> {
        self.ignore.clone()
    }
    fn is_ignored(&self, path: &str) -> bool {
        self.ignore
            .iter()
            .any(|p| path == p || path.starts_with(&format!("{p}/")))
    }
    fn size_up_to(&self, limit: u64) -> u64 {
        self.size.min(limit)
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn check(rule: &Rule, source: &str) -> Report {
    let ctx = FakeContext::load(rule.name != "MissingDockerignore");
    rbuild_lint::check(
        source.as_bytes(),
        &Options {
            check_arg: None,
            context: Some(&ctx),
            target: None,
            for_build: false,
            images: None,
            platforms: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", rule.name))
}

fn only(rule: &Rule, mut report: Report) -> Report {
    report.findings.retain(|f| f.rule.name == rule.name);
    report
}

/// The rules that cannot fire without a build: InvalidBaseImagePlatform
/// compares the platform of the pulled base image.
const NEEDS_A_BUILD: &[&str] = &["InvalidBaseImagePlatform"];

#[test]
fn every_rule_has_a_trigger_and_a_near_miss() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for rule in rule::ALL
        .iter()
        .filter(|r| !NEEDS_A_BUILD.contains(&r.name))
    {
        let case = dir().join(rule.name);
        let trigger = std::fs::read_to_string(case.join("trigger.Dockerfile"))
            .unwrap_or_else(|e| panic!("{}: no trigger file: {e}", rule.name));
        let mut near_misses: Vec<PathBuf> = std::fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("near_miss") && name.ends_with(".Dockerfile")
            })
            .collect();
        near_misses.sort();
        assert!(
            near_misses
                .iter()
                .any(|p| p.ends_with("near_miss.Dockerfile")),
            "{}: no near-miss file",
            rule.name
        );

        let fired = only(rule, check(rule, &trigger));
        if fired.findings.is_empty() {
            failures.push(format!("{}: the trigger does not fire", rule.name));
            continue;
        }
        let text = render::text(&fired, "Dockerfile", trigger.as_bytes());
        let golden = case.join("trigger.txt");
        if update {
            std::fs::write(&golden, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if want != text {
                failures.push(format!(
                    "{}: output differs from trigger.txt:\n{text}",
                    rule.name
                ));
            }
        }

        for path in &near_misses {
            let near = std::fs::read_to_string(path).unwrap();
            let missed = only(rule, check(rule, &near));
            if !missed.findings.is_empty() {
                failures.push(format!(
                    "{}: {} fires: {:?}",
                    rule.name,
                    path.file_name().unwrap().to_string_lossy(),
                    missed
                        .findings
                        .iter()
                        .map(render::short)
                        .collect::<Vec<_>>()
                ));
            }
        }

        if rule.experimental {
            let without: String = trigger
                .lines()
                .filter(|l| !l.starts_with("# check="))
                .map(|l| format!("{l}\n"))
                .collect();
            if !only(rule, check(rule, &without)).findings.is_empty() {
                failures.push(format!("{}: fires without being asked for", rule.name));
            }
        } else {
            let skipped = format!("# check=skip={}\n{trigger}", rule.name);
            if !only(rule, check(rule, &skipped)).findings.is_empty() {
                failures.push(format!("{}: fires although skipped", rule.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn skip_all_and_the_build_arg_replace_the_directive() {
    let rule = &rule::STAGE_NAME_CASING;
    let src = "FROM alpine AS Bad\n";
    assert!(
        check(rule, &format!("# check=skip=all\n{src}"))
            .findings
            .is_empty()
    );
    // BUILDKIT_DOCKERFILE_CHECK replaces the directive.
    let report = rbuild_lint::check(
        format!("# check=skip=all\n{src}").as_bytes(),
        &Options {
            check_arg: Some("error=true".into()),
            context: None,
            target: None,
            for_build: false,
            images: None,
            platforms: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(report.findings.len(), 1);
    assert!(report.fails());
    assert_eq!(
        report.failure_message().unwrap(),
        "lint violation found for rules: StageNameCasing"
    );
}

#[test]
fn a_check_comment_above_an_instruction_skips_its_rules_there_only() {
    let src =
        "FROM alpine\n# check=skip=JSONArgsRecommended\nCMD echo one\nFROM alpine\nCMD echo two\n";
    let report = check(&rule::JSON_ARGS_RECOMMENDED, src);
    let lines: Vec<u32> = report.findings.iter().map(|f| f.span.start_line).collect();
    assert_eq!(lines, [5]);
}

#[test]
fn error_true_makes_warnings_fail_and_a_bad_directive_is_an_error() {
    let report = check(
        &rule::STAGE_NAME_CASING,
        "# check=error=true\nFROM alpine AS Bad\n",
    );
    assert!(report.fails());
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.level == rbuild_lint::Level::Error)
    );
    let warn = check(&rule::STAGE_NAME_CASING, "FROM alpine AS Bad\n");
    assert!(!warn.fails());
    let err = rbuild_lint::check(b"# check=skip\nFROM alpine\n", &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid check option \"skip\" (in the # check= directive)"
    );
}

#[test]
fn messages_and_lines_match_buildkit_s_tests() {
    // dockerfile_lint_test.go's testStageName and testNoEmptyContinuations.
    let src = "\n# warning: stage name should be lowercase\nFROM scratch AS BadStageName\n\n# warning: 'as' should match 'FROM' cmd casing.\nFROM scratch as base2\n\nFROM scratch AS base3\n";
    let r = rbuild_lint::check(src.as_bytes(), &Options::default()).unwrap();
    let got: Vec<String> = r.findings.iter().map(render::short).collect();
    assert_eq!(
        got,
        [
            "StageNameCasing: Stage name 'BadStageName' should be lowercase (line 3)",
            "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 6)",
        ]
    );
    let src = "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n";
    let r = rbuild_lint::check(src.as_bytes(), &Options::default()).unwrap();
    let got: Vec<String> = r.findings.iter().map(render::short).collect();
    assert_eq!(
        got,
        ["NoEmptyContinuation: Empty continuation line (line 6)"]
    );
}

struct Images;

impl rbuild_lint::BaseImages for Images {
    fn env(&self, image: &str) -> Option<Vec<String>> {
        (image == "example/app:1").then(|| vec!["PATH=/bin".into(), "APP_HOME=/app".into()])
    }
}

#[test]
fn undefined_var_uses_the_base_image_env_when_given() {
    let src = "FROM example/app:1\nENV A=$APP_HOME B=$JAVA_HOME\nFROM alpine\nENV C=$JAVA_HOME D=$APP_HOME\n";
    let run = |images: Option<&dyn rbuild_lint::BaseImages>| -> Vec<String> {
        rbuild_lint::check(
            src.as_bytes(),
            &Options {
                images,
                ..Options::default()
            },
        )
        .unwrap()
        .findings
        .iter()
        .map(render::short)
        .collect()
    };
    // Without image configs: official images' variables are assumed.
    assert_eq!(
        run(None),
        [
            "UndefinedVar: Usage of undefined variable '$APP_HOME' (line 2)",
            "UndefinedVar: Usage of undefined variable '$APP_HOME' (line 4)",
        ]
    );
    // With the image's Env: exact for that image, assumptions elsewhere.
    assert_eq!(
        run(Some(&Images)),
        [
            "UndefinedVar: Usage of undefined variable '$JAVA_HOME' (line 2)",
            "UndefinedVar: Usage of undefined variable '$APP_HOME' (line 4)",
        ]
    );
}

/// Base images of fixed platforms: `arm` is arm64 only, `multi` has
/// amd64 and arm64 (its platform is the one asked for).
struct Platforms;

impl rbuild_lint::BaseImages for Platforms {
    fn env(&self, _image: &str) -> Option<Vec<String>> {
        Some(vec!["PATH=/bin".into()])
    }
    fn platform(&self, image: &str, wanted: &str) -> Option<String> {
        match image {
            "arm" => Some("linux/arm64".into()),
            "multi" if ["linux/amd64", "linux/arm64"].contains(&wanted) => Some(wanted.into()),
            _ => None,
        }
    }
}

fn with_platforms(src: &str, platforms: &[&str]) -> Vec<String> {
    rbuild_lint::check(
        src.as_bytes(),
        &Options {
            check_arg: None,
            context: None,
            target: None,
            for_build: true,
            images: Some(&Platforms),
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
        },
    )
    .unwrap()
    .findings
    .iter()
    .filter(|f| f.rule.name == "InvalidBaseImagePlatform")
    .map(|f| format!("{}: {}", f.span.start_line, f.message))
    .collect()
}

#[test]
fn invalid_base_image_platform_compares_the_resolved_image_with_the_stage() {
    assert_eq!(
        with_platforms("FROM arm\nCOPY a b\n", &["linux/amd64"]),
        [
            "1: Base image arm was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build"
        ]
    );
    // Near misses: the platform asked for, an index with it, a stage
    // whose --platform is the base's, an image not at hand, scratch.
    assert!(with_platforms("FROM arm\n", &["linux/arm64"]).is_empty());
    assert!(with_platforms("FROM multi\n", &["linux/amd64", "linux/arm64"]).is_empty());
    assert!(with_platforms("FROM --platform=linux/arm64 arm\n", &["linux/amd64"]).is_empty());
    assert!(with_platforms("FROM unknown\n", &["linux/amd64"]).is_empty());
    assert!(with_platforms("FROM scratch\n", &["linux/amd64"]).is_empty());
    // Each FROM once, even when several platforms disagree.
    assert_eq!(
        with_platforms("FROM arm\n", &["linux/amd64", "linux/s390x"]).len(),
        1
    );
    // $BUILDPLATFORM expands to the host's platform.
    let host_is_arm = std::env::consts::ARCH == "aarch64";
    assert_eq!(
        with_platforms("FROM --platform=$BUILDPLATFORM arm\n", &["linux/arm64"]).is_empty(),
        host_is_arm
    );
    // Skippable as any rule.
    assert!(
        with_platforms(
            "# check=skip=InvalidBaseImagePlatform\nFROM arm\n",
            &["linux/amd64"]
        )
        .is_empty()
    );
}

#[test]
fn missing_cache_mount_skips_a_build_after_an_uncached_download() {
    // Found on real Dockerfiles (lint/CORPUS.md): `go build` after
    // `go mod download` in an earlier RUN downloads nothing, so only the
    // download is reported; after a download into a cache mount the
    // modules are not in the layer and the build is reported.
    let rule = &rule::MISSING_CACHE_MOUNT;
    let lines = |src: &str| -> Vec<u32> {
        only(rule, check(rule, src))
            .findings
            .iter()
            .map(|f| f.span.start_line)
            .collect()
    };
    let head = "# check=experimental=MissingCacheMount\nFROM golang:1.23\nCOPY go.mod go.sum ./\n";
    assert_eq!(
        lines(&format!(
            "{head}RUN go mod download\nCOPY . .\nRUN go build -o /app .\nRUN go test ./...\n"
        )),
        [4]
    );
    assert_eq!(
        lines(&format!(
            "{head}RUN --mount=type=cache,target=/go/pkg/mod go mod download\nCOPY . .\nRUN go build -o /app .\n"
        )),
        [6]
    );
    assert_eq!(
        lines(
            "# check=experimental=MissingCacheMount\nFROM rust:1\nRUN cargo fetch\nRUN cargo build --release\n"
        ),
        [3]
    );
}

#[test]
fn volatile_arg_counts_only_the_runs_before_its_first_use() {
    // Found on real Dockerfiles (lint/CORPUS.md): an ARG COMMIT_SHA that a
    // later ENV copies is needed from there on; only the RUNs in between
    // re-run for nothing.
    let rule = &rule::VOLATILE_ARG_INVALIDATES_CACHE;
    let src = "FROM alpine\nARG COMMIT_SHA\nRUN apk add curl\nRUN make\nENV GIT_SHA=$COMMIT_SHA\nRUN make install\n";
    let got: Vec<String> = only(rule, check(rule, src))
        .findings
        .iter()
        .map(render::short)
        .collect();
    assert_eq!(
        got,
        [
            "VolatileArgInvalidatesCache: ARG COMMIT_SHA changes on every build and is in the environment of the 2 RUN instructions before its first use (line 5), so they re-run every time; declare it right before line 5 (line 2)"
        ]
    );
}
