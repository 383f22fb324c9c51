//! Output: BuildKit's text (rule, message, `Dockerfile:LINE`, the source
//! with `>>>` on the lines concerned), its one-line short form for build
//! progress, a JSON array for scripts and SARIF 2.1.0 for code scanning.

use std::fmt::Write as _;

use crate::{Finding, Level, Origin, Report, Rule, rule};

/// BuildKit's `errdefs.Source.Print`: the file name and first line, then
/// the lines around the finding, `>>>` marking the lines it covers.
fn source_excerpt(out: &mut String, file_name: &str, source: &str, first: usize, last: usize) {
    let lines: Vec<&str> = source.split('\n').collect();
    if first < 1 || first > lines.len() {
        return;
    }
    let (mut start, mut end) = (first, last.min(lines.len()));
    let pad = if end == start { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let _ = write!(out, "{file_name}:{first}\n--------------------\n");
    for i in start..=end {
        let mark = if i >= first && i <= last {
            ">>>"
        } else {
            "   "
        };
        let _ = writeln!(out, " {i:>3} | {mark} {}", lines[i - 1]);
    }
    out.push_str("--------------------\n");
}

fn heading(f: &Finding) -> String {
    let level = match f.level {
        Level::Warning => "WARNING",
        Level::Error => "ERROR",
    };
    let mut h = format!("{level}: {}", f.rule.name);
    if let Some(u) = f.rule.url() {
        let _ = write!(h, " - {u}");
    }
    h
}

/// Text as `docker build --check` prints it, with a summary line.
pub fn text(report: &Report, file_name: &str, source: &[u8]) -> String {
    let source = String::from_utf8_lossy(source);
    let mut out = String::new();
    for f in &report.findings {
        let _ = write!(out, "\n{}\n{}\n", heading(f), f.message);
        if f.rule.origin == Origin::Rbuild {
            let _ = writeln!(out, "(why: rbuild check --explain {})", f.rule.name);
        }
        source_excerpt(
            &mut out,
            file_name,
            &source,
            f.span.start_line as usize,
            f.span.end_line as usize,
        );
    }
    out.push_str(&summary(report));
    out
}

/// buildx's closing line.
pub fn summary(report: &Report) -> String {
    let errors = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .count();
    let warnings = report.findings.len() - errors;
    let plural = |n: usize, w: &str| {
        if n == 1 {
            format!("1 {w}")
        } else {
            format!("{n} {w}s")
        }
    };
    match (warnings, errors) {
        (0, 0) => "Check complete, no warnings found.\n".to_string(),
        (w, 0) => format!(
            "Check complete, {} {} been found!\n",
            plural(w, "warning"),
            if w == 1 { "has" } else { "have" }
        ),
        (w, e) => format!(
            "Check complete, {} and {} found!\n",
            plural(e, "error"),
            plural(w, "warning")
        ),
    }
}

/// BuildKit's `LintFormatShort`: `Rule: message (line N)`, one line per
/// finding, as build progress shows warnings.
pub fn short(f: &Finding) -> String {
    format!(
        "{}: {} (line {})",
        f.rule.name, f.message, f.span.start_line
    )
}

#[derive(serde::Serialize)]
struct JsonFinding<'a> {
    rule: &'a str,
    level: Level,
    message: &'a str,
    description: &'a str,
    file: &'a str,
    line: u32,
    column: u32,
    end_line: u32,
    end_column: u32,
    url: Option<String>,
}

/// The findings as a JSON array (one object per finding).
pub fn json(report: &Report, file_name: &str) -> serde_json::Value {
    let items: Vec<JsonFinding<'_>> = report
        .findings
        .iter()
        .map(|f| JsonFinding {
            rule: f.rule.name,
            level: f.level,
            message: &f.message,
            description: f.rule.description,
            file: file_name,
            line: f.span.start_line,
            column: f.span.start_column,
            end_line: f.span.end_line,
            end_column: f.span.end_column,
            url: f.rule.url(),
        })
        .collect();
    serde_json::to_value(items).unwrap_or_default()
}

/// The rule id a Dockerfile that does not parse is reported under in the
/// JSON and SARIF forms (no rule of the table: nothing else ran).
pub const PARSE_ERROR_RULE: &str = "DockerfileParseError";

fn parse_error_message(err: &crate::ParseError) -> String {
    match &err.help {
        Some(h) => format!("{} ({h})", err.message),
        None => err.message.clone(),
    }
}

/// A parse error as the one finding of `--format json`, so CI scripts
/// always get an array.
pub fn json_parse_error(err: &crate::ParseError, file_name: &str) -> serde_json::Value {
    serde_json::json!([{
        "rule": PARSE_ERROR_RULE,
        "level": "error",
        "message": parse_error_message(err),
        "description": "The Dockerfile does not parse; no check ran",
        "file": file_name,
        "line": err.span.start_line,
        "column": err.span.start_column,
        "end_line": err.span.end_line,
        "end_column": err.span.end_column,
        "url": null,
    }])
}

/// A parse error as a SARIF log with one error result, so a code-scanning
/// upload shows it on the line instead of failing on an empty file.
pub fn sarif_parse_error(err: &crate::ParseError, file_name: &str) -> serde_json::Value {
    let mut doc = sarif(
        &Report {
            findings: Vec::new(),
            config: Default::default(),
        },
        file_name,
    );
    doc["runs"][0]["results"] = serde_json::json!([{
        "ruleId": PARSE_ERROR_RULE,
        "level": "error",
        "message": {"text": parse_error_message(err)},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": uri_path(file_name)},
                "region": {
                    "startLine": err.span.start_line.max(1),
                    "startColumn": err.span.start_column.max(1),
                },
            }
        }],
    }]);
    doc
}

/// Percent-encodes what a relative URI reference may not hold as is.
fn uri_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// SARIF 2.1.0, as GitHub code scanning accepts it: one run, every rule
/// in the driver (with its level and help link), one result per finding.
pub fn sarif(report: &Report, file_name: &str) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = rule::ALL
        .iter()
        .map(|r: &Rule| {
            let mut v = serde_json::json!({
                "id": r.name,
                "name": r.name,
                "shortDescription": {"text": r.description},
                "fullDescription": {"text": r.description},
                "defaultConfiguration": {"level": r.level.as_str(), "enabled": !r.experimental},
                "properties": {"tags": [match r.origin { Origin::Buildkit => "buildkit", Origin::Rbuild => "rbuild" }]},
            });
            if let Some(u) = r.url() {
                v["helpUri"] = u.into();
            }
            if let Some(text) = r.rationale {
                v["help"] = serde_json::json!({"text": text, "markdown": text});
            }
            v
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let index = rule::ALL
                .iter()
                .position(|r| r.name == f.rule.name)
                .unwrap_or(0);
            serde_json::json!({
                "ruleId": f.rule.name,
                "ruleIndex": index,
                "level": f.level.as_str(),
                "message": {"text": f.message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri_path(file_name)},
                        "region": {
                            "startLine": f.span.start_line.max(1),
                            "startColumn": f.span.start_column.max(1),
                            "endLine": f.span.end_line.max(f.span.start_line).max(1),
                        }
                    }
                }],
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rbuild",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
