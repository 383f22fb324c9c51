//! File names are bytes; this is their lossless text form, so code that
//! matches, keys and sorts paths as `str` (globs, `.dockerignore`
//! patterns, the stat cache, cache keys) handles every name a Linux
//! directory can hold, and only the edges that touch the machine (syscalls,
//! tar headers) convert back with [`to_bytes`].
//!
//! The form ([`from_bytes`]): valid UTF-8 stays as it is; each byte of an
//! invalid sequence becomes one character of a reserved range (U+10FF80 +
//! byte − 0x80, at the end of Supplementary Private Use Area-B); a name
//! that itself holds characters of that range has their UTF-8 bytes
//! escaped the same way, so the mapping is a bijection and no two names
//! collide. One invalid byte is one character, as Go decodes it (one
//! `RuneError` of width 1), so `?` and `*` in a COPY glob or an ignore
//! pattern match these names exactly as Docker's `filepath.Match` does.
//!
//! For people, [`quoted`] writes a name as Go's `strconv.Quote` would
//! (`"a\xffb"`), which is how docker and BuildKit print such names, and
//! [`display`] the same without the quotes.

use std::borrow::Cow;
use std::fmt;

/// The first character of the reserved range; byte `b` (0x80..=0xFF) is
/// `ESCAPE_BASE + (b - 0x80)`.
const ESCAPE_BASE: u32 = 0x10_FF80;

fn escape(b: u8) -> char {
    debug_assert!(b >= 0x80);
    char::from_u32(ESCAPE_BASE + u32::from(b - 0x80)).expect("a valid scalar value")
}

fn unescape(c: char) -> Option<u8> {
    let c = u32::from(c);
    (c >= ESCAPE_BASE).then(|| (c - ESCAPE_BASE + 0x80) as u8)
}

/// The text form of the name (or path) `bytes`.
pub fn from_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(|c| unescape(c).is_some())
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if unescape(c).is_some() {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(escape));
    }
    Cow::Owned(out)
}

/// The bytes the text form `text` stands for (the inverse of
/// [`from_bytes`]).
pub fn to_bytes(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(|c| unescape(c).is_some()) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unescape(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Cow::Owned(out)
}

/// The text form `text` as an `OsStr`, for paths handed to the machine.
pub fn to_os(text: &str) -> Cow<'_, std::ffi::OsStr> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match to_bytes(text) {
        Cow::Borrowed(b) => Cow::Borrowed(std::ffi::OsStr::from_bytes(b)),
        Cow::Owned(v) => Cow::Owned(std::ffi::OsString::from_vec(v)),
    }
}

/// The text form of an `OsStr` (a name read from the machine).
pub fn from_os(name: &std::ffi::OsStr) -> Cow<'_, str> {
    from_bytes(std::os::unix::ffi::OsStrExt::as_bytes(name))
}

/// `text` (a text form) quoted as Go's `strconv.Quote` quotes the bytes it
/// stands for: `"`, `\` and control characters escaped, invalid UTF-8
/// bytes as `\xNN`.
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted { text, quotes: true }
}

/// `text` (a text form) as [`quoted`] writes it, without the quotes.
pub fn display(text: &str) -> Quoted<'_> {
    Quoted {
        text,
        quotes: false,
    }
}

/// See [`quoted`] and [`display`].
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a> {
    text: &'a str,
    quotes: bool,
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if self.quotes {
            f.write_char('"')?;
        }
        let bytes = to_bytes(self.text);
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' if self.quotes => f.write_str("\\\"")?,
                    '\\' if self.quotes => f.write_str("\\\\")?,
                    '\x07' => f.write_str("\\a")?,
                    '\x08' => f.write_str("\\b")?,
                    '\x0c' => f.write_str("\\f")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    '\x0b' => f.write_str("\\v")?,
                    c if (c as u32) < 0x20 || c == '\x7f' => write!(f, "\\x{:02x}", c as u32)?,
                    c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.quotes {
            f.write_char('"')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_their_own_text_form() {
        assert!(matches!(
            from_bytes(b"a/b c.txt"),
            Cow::Borrowed("a/b c.txt")
        ));
        assert!(matches!(from_bytes("é/日本".as_bytes()), Cow::Borrowed(_)));
        assert!(matches!(to_bytes("plain"), Cow::Borrowed(b"plain")));
    }

    #[test]
    fn every_byte_string_round_trips_and_no_two_collide() {
        let reserved = "\u{10FF80}\u{10FFFF}".as_bytes().to_vec();
        let cases: Vec<Vec<u8>> = vec![
            b"\xff".to_vec(),
            b"a\xffb\xfe".to_vec(),
            b"\xc3".to_vec(),             // truncated sequence
            b"\xc3\xa9\xe2\x82".to_vec(), // é then a cut one
            b"\xed\xa0\x80".to_vec(),     // an encoded surrogate
            reserved.clone(),
            [reserved.clone(), b"\xff".to_vec()].concat(),
            (0u8..=255).collect(),
        ];
        let mut seen = std::collections::HashSet::new();
        for bytes in &cases {
            let text = from_bytes(bytes);
            assert_eq!(&*to_bytes(&text), &bytes[..], "{bytes:?}");
            assert!(seen.insert(text.into_owned()), "{bytes:?} collides");
        }
        // The reserved characters themselves do not stand for themselves.
        assert_ne!(from_bytes(&reserved), "\u{10FF80}\u{10FFFF}");
    }

    #[test]
    fn one_invalid_byte_is_one_character_as_go_decodes_it() {
        assert_eq!(from_bytes(b"a\xff\xfeb").chars().count(), 4);
    }

    #[test]
    fn quoting_is_gos() {
        let text = from_bytes(b"a\xffb\"c\\\n\x01");
        assert_eq!(quoted(&text).to_string(), r#""a\xffb\"c\\\n\x01""#);
        assert_eq!(display(&from_bytes(b"x\xfe")).to_string(), r"x\xfe");
        assert_eq!(quoted("é").to_string(), "\"é\"");
    }
}
