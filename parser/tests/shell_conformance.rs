//! Runs BuildKit's shell-expansion tables (`envVarTest`, `wordsTest`) from
//! the shared conformance data through rbuild's expander.

use std::path::{Path, PathBuf};

use rbuild_parser::shell::Lex;

/// The shared data lives next to the project root (`../shared`). A git
/// worktree under `wt/<name>/` sits one level deeper, so that spot is tried
/// second.
fn data_dir() -> PathBuf {
    let candidates = [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/buildkit/shell"
        ),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/conformance/buildkit/shell"
        ),
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from(candidates[0]))
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One failed row, for the report.
struct Failure {
    line: usize,
    input: String,
    expected: String,
    got: String,
}

fn env_var_test(text: &str) -> (usize, usize, Vec<Failure>) {
    let env = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let lex = Lex::new('\\');
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "envVarTest line {}: {line:?}", i + 1);
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("envVarTest line {}: unknown platform {other:?}", i + 1),
        }
        total += 1;
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(e), _) => expected != "error" && e.value == expected,
            (Err(_), _) => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(Failure {
                line: i + 1,
                input: input.to_string(),
                expected: expected.to_string(),
                got: match got {
                    Ok(e) => format!("{:?}", e.value),
                    Err(e) => format!("error: {e}"),
                },
            });
        }
    }
    (passed, total, failures)
}

fn words_test(text: &str) -> (usize, usize, Vec<Failure>) {
    let lex = Lex::new('\\');
    let mut env: Vec<String> = Vec::new();
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            env.push(def.trim_start_matches(' ').to_string());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "wordsTest line {}: {line:?}", i + 1);
        let input = fields[0].trim();
        let expected_text = fields[1].trim_start_matches(' ');
        let expected: Vec<&str> = expected_text.split(',').collect();
        total += 1;
        let got = match lex.process_words(input, &env) {
            Ok(w) => w.words,
            Err(_) => vec!["error".to_string()],
        };
        if got == expected {
            passed += 1;
        } else {
            failures.push(Failure {
                line: i + 1,
                input: input.to_string(),
                expected: format!("{expected:?}"),
                got: format!("{got:?}"),
            });
        }
    }
    (passed, total, failures)
}

#[test]
fn buildkit_shell_tables() {
    let dir = data_dir();
    if !dir.is_dir() {
        skipped(
            "buildkit_shell_tables",
            &format!("no BuildKit conformance data at {}", dir.display()),
        );
        return;
    }
    let (env_passed, env_total, env_failures) = env_var_test(&read(&dir, "envVarTest"));
    let (words_passed, words_total, words_failures) = words_test(&read(&dir, "wordsTest"));
    println!(
        "shell conformance: envVarTest {env_passed}/{env_total}, wordsTest {words_passed}/{words_total}"
    );
    for (table, f) in env_failures
        .iter()
        .map(|f| ("envVarTest", f))
        .chain(words_failures.iter().map(|f| ("wordsTest", f)))
    {
        println!(
            "  {table}:{}: {:?}: expected {}, got {}",
            f.line, f.input, f.expected, f.got
        );
    }
    assert!(
        env_total > 200,
        "envVarTest looks truncated: {env_total} rows"
    );
    assert!(
        words_total > 20,
        "wordsTest looks truncated: {words_total} rows"
    );
    assert!(
        env_failures.is_empty() && words_failures.is_empty(),
        "shell conformance failures, see above"
    );
}

use rbuild_testkit::skipped;
