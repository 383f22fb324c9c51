//! Any bytes: the parser returns a Dockerfile or an error, never panics, and
//! both the JSON dump and the error rendering work on what it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match rbuild_parser::parse(data) {
        Ok(dockerfile) => {
            serde_json::to_string(&dockerfile).expect("parse tree serializes");
        }
        Err(err) => {
            let rendered = err.render("Dockerfile", data);
            assert!(rendered.contains("Dockerfile:"), "error rendering names the file: {rendered}");
        }
    }
    if let Ok(ast) = rbuild_parser::ast::parse(data) {
        let _ = ast.to_sexp();
    }
});
