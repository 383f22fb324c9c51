//! Pins rbuild's expander to answers from BuildKit's own lexer.
//!
//! `shell_differential.jsonl` holds 300 random words (biased towards `$`,
//! quotes, escapes, patterns, odd Unicode and every option combination)
//! together with what BuildKit's `shell.Lex` (moby/buildkit 73ed6825,
//! built locally with Go) returned for them: the expanded value or an
//! error, the matched and unmatched names, and the word split. They were
//! sampled from 700,000 generated words on which rbuild and BuildKit agree
//! completely, except for one BuildKit bug: its word splitting loses the
//! text before a `${v<op>…}` in the same word. For those records `ws` comes
//! from BuildKit with that bug fixed and `bk_ws` keeps what BuildKit itself
//! returns.
//!
//! Record fields: `w` word, `x` escape character, `o` options (`q` raw
//! quotes, `e` raw escapes, `s` skip unset, `p` skip quote processing),
//! `env`, `v` value (`null` = error), `m`/`u` matched/unmatched names, `ws`
//! words (`null` = error).

use std::collections::{BTreeMap, BTreeSet};

use rbuild_parser::shell::Lex;
use serde_json::Value;

const RECORDS: &str = include_str!("shell_differential.jsonl");

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn expander_agrees_with_buildkit_on_recorded_words() {
    let mut failures = Vec::new();
    let mut disagreeing = 0;
    let mut total = 0;
    let mut buildkit_split_bug = 0;
    for (n, line) in RECORDS.lines().enumerate() {
        let r: Value = serde_json::from_str(line).expect("valid record");
        total += 1;
        let word = r["w"].as_str().expect("word");
        let opts = r["o"].as_str().expect("options");
        let lex = Lex {
            escape: r["x"]
                .as_str()
                .and_then(|x| x.chars().next())
                .expect("escape"),
            raw_quotes: opts.contains('q'),
            raw_escapes: opts.contains('e'),
            skip_unset_env: opts.contains('s'),
            skip_process_quotes: opts.contains('p'),
        };
        let env: BTreeMap<String, String> = r["env"]
            .as_object()
            .expect("env")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_string()))
            .collect();

        let failures_before = failures.len();
        let got = lex.process_word(word, &env);
        match (&got, r["v"].as_str()) {
            (Ok(e), Some(want)) => {
                let matched: BTreeSet<String> = strings(&r["m"]).into_iter().collect();
                let unmatched: BTreeSet<String> = strings(&r["u"]).into_iter().collect();
                if e.value != want || e.matched != matched || e.unmatched != unmatched {
                    failures.push(format!(
                        "record {}: {word:?}: want {want:?} {matched:?} {unmatched:?}, got {e:?}",
                        n + 1
                    ));
                }
            }
            (Err(_), None) => {}
            (got, want) => failures.push(format!(
                "record {}: {word:?}: want {want:?}, got {got:?}",
                n + 1
            )),
        }

        let words = lex.process_words(word, &env).ok().map(|w| w.words);
        let want_words = (!r["ws"].is_null()).then(|| strings(&r["ws"]));
        if words != want_words {
            failures.push(format!(
                "record {}: {word:?}: want words {want_words:?}, got {words:?}",
                n + 1
            ));
        }
        if failures.len() > failures_before {
            disagreeing += 1;
        }
        if !r["bk_ws"].is_null() {
            buildkit_split_bug += 1;
        }
    }
    println!(
        "shell differential: {}/{total} records agree ({buildkit_split_bug} where BuildKit's own split loses text)",
        total - disagreeing
    );
    for f in &failures {
        println!("  {f}");
    }
    assert_eq!(total, 300);
    assert!(failures.is_empty(), "{disagreeing} records disagree");
}
