//! `--format sarif` is valid SARIF 2.1.0: validated against the OASIS
//! schema (vendored in `tests/data/`, see its README) with Python's
//! `jsonschema`, and shaped as GitHub code scanning reads it.

use std::path::Path;
use std::process::Command;

use rbuild_lint::{Options, render};

const DOCKERFILE: &str = "FROM alpine AS Bad\nRUN apt-get update\nCMD echo hi\nEXPOSE 80/TCP\n";

fn sarif() -> serde_json::Value {
    let report = rbuild_lint::check(DOCKERFILE.as_bytes(), &Options::default()).unwrap();
    assert!(report.findings.len() >= 4);
    render::sarif(&report, "dir with space/Dockerfile")
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let test = "sarif_output_validates_against_the_sarif_2_1_0_schema";
    let have = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        rbuild_testkit::skipped(
            test,
            "needs python3 with jsonschema (apt: python3-jsonschema)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.sarif");
    std::fs::write(&out, serde_json::to_vec_pretty(&sarif()).unwrap()).unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let script = "import json,sys,jsonschema\n\
        schema=json.load(open(sys.argv[1]))\n\
        doc=json.load(open(sys.argv[2]))\n\
        v=jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())\n\
        errs=sorted(v.iter_errors(doc), key=lambda e: list(e.path))\n\
        [print(list(e.path), e.message) for e in errs]\n\
        sys.exit(1 if errs else 0)\n";
    let res = Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "schema errors:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // A document the schema rejects is caught (the check is real).
    std::fs::write(&out, br#"{"version": "2.0.0", "runs": []}"#).unwrap();
    let bad = Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

fn validate(doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.sarif");
    std::fs::write(&out, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let script = "import json,sys,jsonschema\n\
        v=jsonschema.Draft7Validator(json.load(open(sys.argv[1])), format_checker=jsonschema.FormatChecker())\n\
        errs=list(v.iter_errors(json.load(open(sys.argv[2]))))\n\
        [print(list(e.path), e.message) for e in errs]\n\
        sys.exit(1 if errs else 0)\n";
    let res = Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .arg(&out)
        .output()
        .unwrap();
    if res.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&res.stdout).into_owned())
    }
}

#[test]
fn a_parse_error_is_a_valid_sarif_log_with_one_error() {
    let err = match rbuild_lint::check(b"FROM alpine\nCOPPY . /\n", &Options::default()) {
        Err(rbuild_lint::CheckError::Parse(e)) => e,
        other => panic!("{other:?}"),
    };
    let doc = render::sarif_parse_error(&err, "Dockerfile");
    let r = &doc["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "DockerfileParseError");
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    let have = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        rbuild_testkit::skipped(
            "a_parse_error_is_a_valid_sarif_log_with_one_error",
            "needs python3 with jsonschema (apt: python3-jsonschema)",
        );
        return;
    }
    validate(&doc).unwrap();
}

#[test]
fn sarif_results_point_at_lines_and_rules() {
    let doc = sarif();
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), rbuild_lint::rule::ALL.len());
    let results = run["results"].as_array().unwrap();
    let first = &results[0];
    assert_eq!(first["ruleId"], "StageNameCasing");
    let idx = first["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[idx]["id"], "StageNameCasing");
    assert_eq!(first["level"], "warning");
    let loc = &first["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "dir%20with%20space/Dockerfile"
    );
    assert_eq!(loc["region"]["startLine"], 1);
    assert_eq!(loc["region"]["startColumn"], 1);
}
