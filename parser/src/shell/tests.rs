//! Behaviour of the expander as a Dockerfile author sees it.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

fn env() -> Vec<(String, String)> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("EMPTY", ""),
        ("SPACE", "a  b"),
        ("FILE", "dir/name.tar.gz"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn expand(word: &str) -> String {
    match Lex::default().process_word(word, &env()) {
        Ok(e) => e.value,
        Err(e) => panic!("expanding {word:?}: {e}"),
    }
}

fn expand_err(word: &str) -> ExpandError {
    match Lex::default().process_word(word, &env()) {
        Ok(e) => panic!("expanding {word:?} should fail, got {:?}", e.value),
        Err(e) => e,
    }
}

fn words(word: &str) -> Vec<String> {
    Lex::default()
        .process_words(word, &env())
        .unwrap_or_else(|e| panic!("splitting {word:?}: {e}"))
        .words
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plain_and_braced_references() {
    assert_eq!(expand("$PWD/x"), "/home/x");
    assert_eq!(expand("${PWD}x"), "/homex");
    assert_eq!(expand("a${NOPE}b$NOPE"), "ab");
    assert_eq!(expand("$EMPTY|"), "|");
}

#[test]
fn dollar_without_a_name_is_literal() {
    assert_eq!(expand("$"), "$");
    assert_eq!(expand("a$.b"), "a$.b");
    assert_eq!(expand("cost: 5$ "), "cost: 5$ ");
    assert_eq!(expand("$/x"), "$/x");
}

#[test]
fn positional_and_special_parameters_are_never_set() {
    assert_eq!(expand("$1x"), "x");
    assert_eq!(expand("$@@"), "@");
    assert_eq!(expand("${#:-n}"), "n");
    assert_eq!(expand("$$"), "");
}

#[test]
fn default_operators() {
    assert_eq!(expand("${NOPE:-d}"), "d");
    assert_eq!(expand("${NOPE-d}"), "d");
    assert_eq!(expand("${EMPTY:-d}"), "d");
    assert_eq!(expand("${EMPTY-d}"), "");
    assert_eq!(expand("${PWD:-d}"), "/home");
    assert_eq!(expand("${NOPE:-$PWD}"), "/home");
    assert_eq!(expand("${NOPE:-${SHELL:-x}}"), "bash");
    assert_eq!(expand("${NOPE:-'a b'}"), "a b");
    assert_eq!(expand("${NOPE:-a\\}b}"), "a}b");
}

#[test]
fn alternative_operators() {
    assert_eq!(expand("${PWD:+alt}"), "alt");
    assert_eq!(expand("${PWD+alt}"), "alt");
    assert_eq!(expand("${EMPTY:+alt}"), "");
    assert_eq!(expand("${EMPTY+alt}"), "alt");
    assert_eq!(expand("${NOPE+alt}"), "");
    assert_eq!(expand("${SHELL:+-${SHELL}}"), "-bash");
}

#[test]
fn required_operators_carry_the_message() {
    assert_eq!(expand("${PWD:?set it}"), "/home");
    assert_eq!(expand("${EMPTY?set it}"), "");
    let err = expand_err("ab${NOPE:?set it with --build-arg}");
    assert_eq!(err.to_string(), "NOPE: set it with --build-arg");
    assert_eq!(err.offset(), 2);
    assert_eq!(
        expand_err("${NOPE?}").to_string(),
        "NOPE: is not allowed to be unset"
    );
    assert_eq!(
        expand_err("${EMPTY:?}").to_string(),
        "EMPTY: is not allowed to be empty"
    );
    // The message is expanded too.
    assert_eq!(expand_err("${NOPE:?in $PWD}").to_string(), "NOPE: in /home");
}

#[test]
fn prefix_and_suffix_removal() {
    assert_eq!(expand("${FILE#*/}"), "name.tar.gz");
    assert_eq!(expand("${FILE#*.}"), "tar.gz");
    assert_eq!(expand("${FILE##*.}"), "gz");
    assert_eq!(expand("${FILE%.*}"), "dir/name.tar");
    assert_eq!(expand("${FILE%%.*}"), "dir/name");
    assert_eq!(expand("${FILE%.t?r.gz}"), "dir/name");
    assert_eq!(expand("${FILE#nomatch}"), "dir/name.tar.gz");
    assert_eq!(expand("${NOPE#x}"), "");
    // Brackets are literal, as in BuildKit.
    assert_eq!(expand("${FILE#[d]}"), "dir/name.tar.gz");
}

#[test]
fn pattern_replacement() {
    assert_eq!(expand("${FILE/./-}"), "dir/name-tar.gz");
    assert_eq!(expand("${FILE//./-}"), "dir/name-tar-gz");
    assert_eq!(expand("${FILE//\\//_}"), "dir_name.tar.gz");
    assert_eq!(expand("${FILE/d*\\//}"), "name.tar.gz");
    assert_eq!(expand("${NOPE/a/b}"), "");
}

#[test]
fn unsupported_operators_are_errors() {
    for word in [
        "${PWD:=x}",
        "${PWD=x}",
        "${PWD:#x}",
        "${PWD:%%x}",
        "${PWD.}",
    ] {
        assert!(
            matches!(
                expand_err(word),
                ExpandError::UnsupportedModifier { offset: 5, .. }
            ),
            "{word}"
        );
    }
    assert_eq!(
        expand_err("x${PWD:=x}").to_string(),
        "unsupported modifier ':=' in substitution at byte 6"
    );
}

#[test]
fn syntax_errors_point_at_the_construct() {
    assert_eq!(
        expand_err("he${PWD").to_string(),
        "missing '}' in ${…} starting at byte 2"
    );
    assert_eq!(
        expand_err("he${NOPE:-${PWD}").to_string(),
        "missing '}' in ${…} starting at byte 2"
    );
    assert_eq!(expand_err("a${}").to_string(), "bad substitution at byte 1");
    assert!(matches!(
        expand_err("${{x}"),
        ExpandError::BadSubstitution { offset: 0 }
    ));
    assert!(matches!(
        expand_err("${:-x}"),
        ExpandError::BadSubstitution { offset: 0 }
    ));
    assert_eq!(
        expand_err("${PWD//x}").to_string(),
        "missing '/' in ${…/…} starting at byte 0"
    );
    assert_eq!(
        expand_err("ab 'cd").to_string(),
        "missing closing ' for the quote at byte 3"
    );
    assert_eq!(
        expand_err("\"cd\\\"").to_string(),
        "missing closing \" for the quote at byte 0"
    );
    let err = expand_err("${PWD#\\x}");
    assert!(matches!(
        err,
        ExpandError::InvalidPattern {
            offset: 0,
            escaped: Some('x'),
            ..
        }
    ));
    assert!(
        err.to_string()
            .starts_with("invalid escape '\\x' in pattern")
    );
}

#[test]
fn single_quotes_are_literal() {
    assert_eq!(expand("'$PWD \\n \"x\"'"), "$PWD \\n \"x\"");
    assert_eq!(expand("a'b'c"), "abc");
    assert_eq!(expand("'${'"), "${");
}

#[test]
fn double_quotes_expand_and_escape_only_some_characters() {
    assert_eq!(expand("\"$PWD '$SHELL'\""), "/home 'bash'");
    assert_eq!(expand(r#""a\"b""#), "a\"b");
    assert_eq!(expand(r#""\$PWD""#), "$PWD");
    assert_eq!(expand(r#""a\\b""#), "a\\b");
    assert_eq!(expand(r#""a\tb""#), "a\\tb");
}

#[test]
fn backslash_escapes_outside_quotes() {
    assert_eq!(expand("\\$PWD"), "$PWD");
    assert_eq!(expand("a\\ b"), "a b");
    assert_eq!(expand("a\\tb"), "atb");
    assert_eq!(expand("a\\\\$PWD"), "a\\/home");
    assert_eq!(expand("trailing\\"), "trailing");
    assert_eq!(expand("\\'x"), "'x");
}

#[test]
fn backtick_escape_character() {
    let lex = Lex::new('`');
    let run = |w: &str| lex.process_word(w, &env()).expect(w).value;
    assert_eq!(run("`$PWD"), "$PWD");
    assert_eq!(run("C:\\dir\\$SHELL"), "C:\\dir\\bash");
    assert_eq!(run("\"a`\"b\""), "a\"b");
    assert_eq!(run("\"a``b\""), "a`b");
    assert_eq!(run("\"a\\$SHELL\""), "a\\bash");
    assert_eq!(run("x``"), "x`");
    assert_eq!(
        lex.process_words("a` b c", &env()).expect("words").words,
        ["a b", "c"]
    );
}

#[test]
fn word_splitting() {
    assert_eq!(words("80 443/tcp"), ["80", "443/tcp"]);
    assert_eq!(words("  x   y  "), ["x", "y"]);
    assert_eq!(words("p${SPACE}q"), ["pa", "bq"]);
    assert_eq!(words("p\"${SPACE}\"q"), ["pa  bq"]);
    assert_eq!(words("'a b' c\\ d"), ["a b", "c d"]);
    assert_eq!(words("\"\" x"), ["x"]);
    assert!(words("").is_empty());
    assert!(words("$NOPE").is_empty());
}

#[test]
fn word_splitting_keeps_text_before_an_operator_expansion() {
    // BuildKit drops the `80` here (a shared-buffer bug); rbuild keeps it.
    assert_eq!(words("80${NOPE:-0}"), ["800"]);
    assert_eq!(words("a ${NOPE:-b c}d"), ["a", "b", "cd"]);
}

#[test]
fn heredoc_markers_stay_one_word() {
    assert_eq!(words("<<  EOF x"), ["<<  EOF", "x"]);
    assert_eq!(words("a < b"), ["a", "<", "b"]);
    assert_eq!(expand("<< EOF"), "<< EOF");
}

#[test]
fn matched_and_unmatched_variables_are_reported() {
    let lex = Lex::default();
    let mut env = HashMap::new();
    env.insert("FOO".to_string(), "xxx".to_string());
    env.insert("BAR".to_string(), String::new());

    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("x", "x", &[], &[]),
        ("x ${UNUSED}", "x ", &[], &["UNUSED"]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            "xxx  ccc",
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            "xxx bbb ccc",
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            "aaa bbb ",
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            "aaa  ",
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        ("${FOO#$BAR}", "xxx", &["BAR", "FOO"], &[]),
        ("${NOPE:-$FOO}", "xxx", &["FOO"], &["NOPE"]),
        ("'$FOO' \\$BAR", "$FOO $BAR", &[], &[]),
        ("${FOO///}", "xxx", &["FOO"], &[]),
    ];
    for &(input, value, matched, unmatched) in cases {
        let got = lex.process_word(input, &env).expect(input);
        assert_eq!(got.value, value, "{input}");
        assert_eq!(got.matched, set(matched), "{input}");
        assert_eq!(got.unmatched, set(unmatched), "{input}");

        let split = lex.process_words(input, &env).expect(input);
        assert_eq!(split.matched, set(matched), "{input}");
        assert_eq!(split.unmatched, set(unmatched), "{input}");
    }
}

#[test]
fn buildkit_pattern_cases() {
    let lex = Lex::default();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            "x",
        ),
        ("${FOO%%\\**}", &[("FOO", "xx**")], "xx"),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
        ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO#?\\?}", &[("FOO", "???y")], "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a"),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
        ),
        (
            "${FOO/$N/$R} - ${FOO//$N/$R}",
            &[("FOO", "/a/foo/b/c.txt"), ("N", "/?/"), ("R", "/")],
            "/foo/b/c.txt - /foo/c.txt",
        ),
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            "\\/tmp\\/foo.txt",
        ),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
        (
            "something-${V}.${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tar.gz",
            &[
                ("V", "v1.2.3"),
                ("OS", "linux"),
                ("ARCH", "arm"),
                ("VARIANT", "v7"),
            ],
            "something-v1.2.3.linux-arm-v7.tar.gz",
        ),
    ];
    for &(input, env, want) in cases {
        let env: Vec<(&str, &str)> = env.to_vec();
        let got = lex.process_word(input, env.as_slice()).expect(input);
        assert_eq!(got.value, want, "{input}");
    }
    for bad in [
        "${FOO//ww}",
        "${FOO//}",
        "${FOO=}",
        "${FOO=:aaa}",
        "${FOO:#}",
        "${FOO:##}",
    ] {
        assert!(lex.process_word(bad, &[("FOO", "xxyy")]).is_err(), "{bad}");
    }
}

#[test]
fn skip_unset_env_keeps_references_to_unset_variables() {
    let lex = Lex {
        skip_unset_env: true,
        raw_quotes: true,
        ..Lex::default()
    };
    let run = |w: &str| lex.process_word(w, &env()).expect(w).value;
    assert_eq!(run("$PWD $NOPE"), "/home $NOPE");
    assert_eq!(run("${NOPE}"), "${NOPE}");
    assert_eq!(run("${NOPE:-x}"), "${NOPE:-x}");
    assert_eq!(run("${NOPE//a/b}"), "${NOPE//a/b}");
    assert_eq!(run("'q' \"$SHELL\""), "'q' \"bash\"");
}

#[test]
fn raw_escapes_keep_the_escape_character() {
    let lex = Lex {
        raw_escapes: true,
        ..Lex::default()
    };
    let got = lex.process_word("a\\$PWD \"\\$x\"", &env()).expect("raw");
    assert_eq!(got.value, "a\\$PWD \"\\$x\"".replace('"', ""));
}

#[test]
fn heredoc_lexer_leaves_quotes_alone() {
    let got = Lex::for_heredoc()
        .process_word("echo '$PWD' \"${SHELL}\"\n", &env())
        .expect("heredoc");
    assert_eq!(got.value, "echo '/home' \"bash\"\n");
}

#[test]
fn one_megabyte_word_expands() {
    let chunk = "abcdefgh $PWD '${x}' \"$SHELL\" \\$ ${NOPE:-d} ";
    let word = chunk.repeat(1_000_000 / chunk.len() + 1);
    assert!(word.len() >= 1_000_000);
    let got = Lex::default()
        .process_word(&word, &env())
        .expect("1 MB word");
    let one = expand(chunk);
    assert_eq!(got.value.len(), one.len() * (1_000_000 / chunk.len() + 1));
    let split = Lex::default()
        .process_words(&word, &env())
        .expect("1 MB words");
    assert_eq!(
        split.words.len(),
        words(chunk).len() * (1_000_000 / chunk.len() + 1)
    );
}

#[test]
fn ten_thousand_nested_constructs_in_a_row() {
    let word = "${NOPE:-${SHELL:-x}}".repeat(10_000);
    let got = Lex::default().process_word(&word, &env()).expect("many");
    assert_eq!(got.value, "bash".repeat(10_000));
}

#[test]
fn nesting_is_limited_with_a_clear_error() {
    let nested = |depth: usize| format!("{}x{}", "${NOPE:-".repeat(depth), "}".repeat(depth));
    let ok = Lex::default().process_word(&nested(MAX_NESTING), &env());
    assert_eq!(ok.expect("at the limit").value, "x");
    let err = Lex::default()
        .process_word(&nested(10_000), &env())
        .expect_err("too deep");
    assert!(matches!(
        err,
        ExpandError::NestingTooDeep {
            limit: MAX_NESTING,
            ..
        }
    ));
    assert_eq!(err.offset(), MAX_NESTING * "${NOPE:-".len());
    assert!(err.to_string().contains("nested more than"));
}

#[test]
fn unicode_names_and_values() {
    let env = [("KOREAN", "한국어"), ("이름", "값")];
    let lex = Lex::default();
    assert_eq!(
        lex.process_word("안녕$KOREAN", &env).expect("k").value,
        "안녕한국어"
    );
    assert_eq!(lex.process_word("${이름}", &env).expect("k").value, "값");
    assert_eq!(
        lex.process_word("${KOREAN%어}", &env).expect("k").value,
        "한국"
    );
}

fn tricky_word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c$@{}:?#%/\\\\'\"`*+= <\\-\n한]{0,48}",
        any::<String>(),
        "(\\$\\{[A-C]?[:]?[-+?#%/]{0,2}){0,6}[a-c}'\"\\\\]{0,12}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_words_never_panic(
        word in tricky_word(),
        backtick in any::<bool>(),
        raw_quotes in any::<bool>(),
        raw_escapes in any::<bool>(),
        skip_unset_env in any::<bool>(),
        skip_process_quotes in any::<bool>(),
    ) {
        let lex = Lex {
            escape: if backtick { '`' } else { '\\' },
            raw_quotes,
            raw_escapes,
            skip_unset_env,
            skip_process_quotes,
        };
        let env = [("A", "x*y"), ("B", ""), ("C", "a b\\")];
        let one = lex.process_word(&word, &env);
        let many = lex.process_words(&word, &env);
        prop_assert_eq!(one.is_ok(), many.is_ok());
        if let Err(e) = one {
            prop_assert!(e.offset() <= word.len());
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// Regressions found by running random words through BuildKit's own
/// lexer (see the report of the shell-expansion work) and comparing.
mod differential_regressions {
    use super::*;

    fn run(word: &str, env: &[(&str, &str)]) -> Result<String, ExpandError> {
        Lex::default().process_word(word, env).map(|e| e.value)
    }

    #[test]
    fn suffix_pattern_escapes_are_read_from_the_reversed_text() {
        // BuildKit reverses `*\` to `\*` before reading escapes.
        assert_eq!(
            run("${V%$P}", &[("V", "a*"), ("P", "*\\")]).as_deref(),
            Ok("a")
        );
        assert_eq!(
            run("${V%$P}", &[("V", "x.y"), ("P", ".*\\")]).as_deref(),
            Ok("x.y")
        );
        // The same pattern is invalid for a prefix.
        assert!(run("${V#$P}", &[("V", "a*"), ("P", "*\\")]).is_err());
    }

    #[test]
    fn names_end_where_go_letters_and_digits_end() {
        let env = [("A", "x"), ("a_1", "y")];
        assert_eq!(run("$A½", &env).as_deref(), Ok("x½"));
        assert_eq!(run("$a_1½", &env).as_deref(), Ok("y½"));
        assert_eq!(run("$AⅫ", &env).as_deref(), Ok("xⅫ"));
        assert_eq!(run("$A٣", &env).as_deref(), Ok(""));
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped() {
        assert_eq!(run("\u{feff}\u{feff}:", &[]).as_deref(), Ok("\u{feff}:"));
        assert_eq!(run("a\u{feff}", &[]).as_deref(), Ok("a\u{feff}"));
    }
}
