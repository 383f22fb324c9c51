//! [`EnvLookup`]: where the expander reads variable values from.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// A read-only set of variables the expander resolves `$name` against.
///
/// Names are compared exactly (case-sensitive), as BuildKit does on Unix.
/// The solver implements this for its stage environment (ENV plus ARGs in
/// scope); the impls below cover the common containers. For slices, a name
/// that appears more than once resolves to its *last* value, like a process
/// environment built up by successive `ENV` lines.
pub trait EnvLookup {
    /// The value of `name`, or `None` when it is not set. An empty value
    /// (`NULL=`) is set: `${NULL-x}` gives `""`, `${NULL:-x}` gives `x`.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<T: EnvLookup + ?Sized> EnvLookup for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl EnvLookup for [(&str, &str)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> EnvLookup for [(&str, &str); N] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// `KEY=value` strings, as in a process environment or an image config's
/// `Env`. An entry without `=` is a set variable with an empty value.
impl EnvLookup for [String] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find_map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            (k == name).then_some(v)
        })
    }
}

impl EnvLookup for Vec<String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<S: BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// No variables at all: every reference is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyEnv;

impl EnvLookup for EmptyEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_resolve_to_the_last_definition() {
        let env = vec![
            ("car".to_string(), "hat".to_string()),
            ("car".to_string(), "bike".to_string()),
        ];
        assert_eq!(env.lookup("car"), Some("bike"));
        assert_eq!(env.lookup("CAR"), None);
    }

    #[test]
    fn key_value_strings_without_equals_are_set_and_empty() {
        let env = vec!["foo".to_string(), "bar=a=b".to_string()];
        assert_eq!(env.lookup("foo"), Some(""));
        assert_eq!(env.lookup("bar"), Some("a=b"));
        assert_eq!(env.lookup("baz"), None);
    }

    #[test]
    fn maps_look_up_by_exact_name() {
        let mut env = HashMap::new();
        env.insert("PWD".to_string(), "/home".to_string());
        assert_eq!(env.lookup("PWD"), Some("/home"));
        assert_eq!(env.lookup("pwd"), None);
        let env: BTreeMap<_, _> = env.into_iter().collect();
        assert_eq!(env.lookup("PWD"), Some("/home"));
        assert_eq!(EmptyEnv.lookup("PWD"), None);
    }
}
