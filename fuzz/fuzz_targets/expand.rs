//! Any text: the shell-word expander returns a value or an error, never
//! panics, with either escape character, as one word or split into words.
//! The first byte picks the escape character; the rest is the word.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_parser::shell::Lex;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(word) = std::str::from_utf8(rest) else { return };
    let lex = Lex::new(if first & 1 == 0 { '\\' } else { '`' });
    let env = [("PWD", "/home"), ("EMPTY", ""), ("LIST", "a  b c"), ("STAR", "*x*"), ("K", "한국어")];
    if let Ok(expanded) = lex.process_word(word, &env) {
        // Each referenced name is reported as matched or unmatched.
        let _ = (expanded.matched, expanded.unmatched);
    }
    let _ = lex.process_words(word, &env);
    let _ = Lex::for_heredoc().process_word(word, &env);
});
