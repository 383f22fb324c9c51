//! An error and its sources as one message (`copying files failed:
//! "/x": not found`), for errors that are kept as text (cache records,
//! progress lines, reports) or shown where no `anyhow` chain is at hand.
//!
//! Libraries chain errors with `#[source]` and never repeat the source in
//! their own `Display`, so the whole story is only in the chain: walk it
//! here, once.

use std::error::Error;

/// The sources of `e`, nearest first (not `e` itself).
pub fn sources<'a>(e: &'a (dyn Error + 'a)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(e.source(), |&s| s.source())
}

/// `error: its source: its source's source`.
pub fn error_chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    for inner in sources(e) {
        s.push_str(": ");
        s.push_str(&inner.to_string());
    }
    s
}

/// The first line of [`error_chain`], for messages kept or shown in one
/// line (a hint or a second line of a message is dropped).
pub fn error_chain_line(e: &dyn Error) -> String {
    let chain = error_chain(e);
    chain.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn chains_join_with_colons() {
        let e = Layer(
            "copying files failed",
            Some(Box::new(Layer("\"/x\": not found\nhint: check", None))),
        );
        assert_eq!(sources(&e).count(), 1);
        assert_eq!(
            error_chain(&e),
            "copying files failed: \"/x\": not found\nhint: check"
        );
        assert_eq!(
            error_chain_line(&e),
            "copying files failed: \"/x\": not found"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
