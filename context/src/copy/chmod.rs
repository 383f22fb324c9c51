//! `--chmod`: an octal mode (`755`, up to `7777`) or a symbolic one
//! (`u+x,go-w`, `a=rX`, `g=u`), with BuildKit's semantics: an octal mode
//! replaces the permission bits of every copied file and directory (and is
//! the mode of directories the copy creates); a symbolic one is applied to
//! each copied entry's own mode like chmod(1) with a umask of 0.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated clause: who, then actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Bit mask of the classes named (u = 0o4700 incl. setuid, g = 0o2070
    /// incl. setgid, o = 0o1007 incl. sticky); 0 when none was named.
    who: u32,
    actions: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// `rwxXst` letters.
    Letters(String),
    /// `u`, `g` or `o`: copy that class's current bits.
    Copy(char),
}

const U: u32 = 0o4700;
const G: u32 = 0o2070;
const O: u32 = 0o1007;

/// `value` is not a valid `--chmod` (BuildKit's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777")]
pub struct InvalidChmod {
    pub value: String,
}

impl Chmod {
    pub(crate) fn parse(value: &str) -> Result<Chmod, InvalidChmod> {
        let err = || InvalidChmod {
            value: value.to_string(),
        };
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| err())?;
            if mode > 0o7777 {
                return Err(err());
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for text in value.split(',') {
            let mut chars = text.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => U,
                    'g' => G,
                    'o' => O,
                    'a' => U | G | O,
                    _ => break,
                };
                chars.next();
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(err());
                }
                let perm = match chars.peek() {
                    Some(&c @ ('u' | 'g' | 'o')) => {
                        chars.next();
                        Perm::Copy(c)
                    }
                    _ => {
                        let mut letters = String::new();
                        while let Some(&c) = chars.peek() {
                            if !"rwxXst".contains(c) {
                                break;
                            }
                            letters.push(c);
                            chars.next();
                        }
                        Perm::Letters(letters)
                    }
                };
                actions.push((op, perm));
            }
            if actions.is_empty() {
                return Err(err());
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode (`& 0o7777`) an entry with `mode` gets.
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    // No class named: all of them (the umask is 0).
                    let who = if clause.who == 0 {
                        U | G | O
                    } else {
                        clause.who
                    };
                    for (op, perm) in &clause.actions {
                        let bits = match perm {
                            Perm::Letters(letters) => {
                                let mut b = 0;
                                for l in letters.chars() {
                                    b |= match l {
                                        'r' => 0o444,
                                        'w' => 0o222,
                                        'x' => 0o111,
                                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                                        'X' => 0,
                                        's' => 0o6000,
                                        't' => 0o1000,
                                        _ => unreachable!("parse keeps only rwxXst"),
                                    };
                                }
                                b & who
                            }
                            Perm::Copy(class) => {
                                let src = match class {
                                    'u' => (mode >> 6) & 7,
                                    'g' => (mode >> 3) & 7,
                                    _ => mode & 7,
                                };
                                (src * 0o111) & who & 0o777
                            }
                        };
                        match op {
                            '+' => mode |= bits,
                            '-' => mode &= !bits,
                            _ => {
                                // `=`: the named classes' rwx (and their
                                // setuid/setgid) are replaced.
                                mode &= !(who & 0o6777);
                                mode |= bits;
                            }
                        }
                    }
                }
                mode
            }
        }
    }

    /// The octal mode, for directories the copy creates (BuildKit uses it
    /// there; a symbolic mode leaves them 0755).
    pub(crate) fn octal(&self) -> Option<u32> {
        match self {
            Chmod::Octal(m) => Some(*m),
            Chmod::Symbolic(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_replaces_the_mode() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0640").unwrap().apply(0o777, false), 0o640);
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o644, false), 0o4755);
        assert!(Chmod::parse("17777").is_err());
        assert!(Chmod::parse("789").is_err());
    }

    #[test]
    fn symbolic_modes_follow_chmod() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u+x,go-w", 0o666, false), 0o744);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("a=rX", 0o640, false), 0o444);
        assert_eq!(sym("a=rX", 0o700, false), 0o555);
        assert_eq!(sym("a=rX", 0o700, true), 0o555);
        assert_eq!(sym("a=rX", 0o600, true), 0o555);
        assert_eq!(sym("g=u", 0o740, false), 0o770);
        assert_eq!(sym("o=", 0o777, false), 0o770);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("+t", 0o755, true), 0o1755);
    }

    #[test]
    fn bad_symbolic_modes_are_errors() {
        for bad in ["u", "z+x", "u+x,", "u+q", ""] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?}");
        }
    }
}
