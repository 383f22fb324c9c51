//! Container names: docker's rule for given names, and generated
//! `adjective_name` pairs for the rest.

/// docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: [&str; 16] = [
    "admiring", "brave", "clever", "dreamy", "eager", "festive", "gallant", "happy", "jolly",
    "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
];
const SURNAMES: [&str; 16] = [
    "babbage", "curie", "dijkstra", "euler", "feynman", "gauss", "hopper", "knuth", "lamport",
    "lovelace", "noether", "ritchie", "shannon", "thompson", "turing", "wozniak",
];

/// A random `adjective_surname`, with a number appended while `taken`.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let id = crate::new_id();
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        ADJECTIVES[(n % 16) as usize],
        SURNAMES[((n / 16) % 16) as usize]
    );
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken(n))
        .expect("some number is free")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_docker() {
        assert!(super::valid("web-1.a_b"));
        assert!(!super::valid("-web") && !super::valid("a") && !super::valid("a/b"));
        let n = super::generate(|_| false);
        assert!(super::valid(&n) && n.contains('_'));
    }
}
