//! The JSON-array ("exec form") reader: `["a", "b"]` with the positions of
//! each string, following the rules of Go's `encoding/json` that BuildKit
//! relies on. Iterative, so deeply nested input cannot exhaust the stack.

/// Go's `encoding/json` refuses nesting deeper than this.
const MAX_DEPTH: usize = 10_000;

/// A string element of the top-level array: decoded value and the byte
/// range of its literal (quotes included) in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonString {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// Why the text is not a usable exec-form array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArrayError {
    /// Not valid JSON, or not an array: the caller falls back to shell form.
    NotJsonArray,
    /// Valid JSON array holding something other than strings; BuildKit
    /// rejects this. Carries the byte range of the first such element.
    NotStringArray { start: usize, end: usize },
}

#[derive(Clone, Copy, PartialEq)]
enum Container {
    Array,
    Object,
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ()> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), ()> {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(());
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ()> {
        let h = self.s.get(self.pos..self.pos + 4).ok_or(())?;
        let h = std::str::from_utf8(h).map_err(|_| ())?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        self.pos += 4;
        u32::from_str_radix(h, 16).map_err(|_| ())
    }

    /// A string literal starting at the opening quote; decoded when
    /// `decode` (only top-level elements need their value).
    fn string(&mut self, decode: bool) -> Result<String, ()> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            if decode {
                out.push_str(&self.text[start..self.pos]);
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.peek().ok_or(())?;
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                // A surrogate pair, or U+FFFD as Go decodes a lone half.
                                let save = self.pos;
                                if self.s[self.pos..].starts_with(b"\\u") {
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&lo) {
                                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                        char::from_u32(c).unwrap_or('\u{FFFD}')
                                    } else {
                                        self.pos = save;
                                        '\u{FFFD}'
                                    }
                                } else {
                                    '\u{FFFD}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return Err(()),
                    };
                    if decode {
                        out.push(c);
                    }
                }
                _ => return Err(()),
            }
        }
    }
}

/// Read `text` (already starting with `[`) as a JSON array of strings.
pub(crate) fn parse_json_array(text: &str) -> Result<Vec<JsonString>, JsonArrayError> {
    let mut r = Reader {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    let mut items = Vec::new();
    let mut not_string: Option<(usize, usize)> = None;
    let mut stack: Vec<Container> = Vec::new();
    let bad = |_| JsonArrayError::NotJsonArray;
    r.ws();
    if r.peek() != Some(b'[') {
        return Err(JsonArrayError::NotJsonArray);
    }
    // `expect_value`: a value must come next; otherwise a separator/closer.
    let mut expect_value = true;
    let mut elem_start = 0;
    loop {
        if expect_value {
            r.ws();
            let top_level_elem = stack.len() == 1 && stack[0] == Container::Array;
            if top_level_elem {
                elem_start = r.pos;
            }
            match r.peek().ok_or(JsonArrayError::NotJsonArray)? {
                b'[' | b'{' => {
                    let c = if r.peek() == Some(b'[') {
                        Container::Array
                    } else {
                        Container::Object
                    };
                    r.pos += 1;
                    if stack.len() >= MAX_DEPTH {
                        return Err(JsonArrayError::NotJsonArray);
                    }
                    stack.push(c);
                    r.ws();
                    let close = if c == Container::Array { b']' } else { b'}' };
                    if r.eat(close) {
                        stack.pop();
                        expect_value = false;
                    } else if c == Container::Object {
                        object_key(&mut r).map_err(bad)?;
                    }
                    if !expect_value {
                        if stack.len() == 1 && not_string.is_none() {
                            not_string = Some((elem_start, r.pos));
                        }
                        if stack.is_empty() {
                            break;
                        }
                    }
                    continue;
                }
                b'"' => {
                    let start = r.pos;
                    let value = r.string(top_level_elem).map_err(bad)?;
                    if top_level_elem {
                        items.push(JsonString {
                            value,
                            start,
                            end: r.pos,
                        });
                    }
                }
                b't' => r.literal(b"true").map_err(bad)?,
                b'f' => r.literal(b"false").map_err(bad)?,
                b'n' => r.literal(b"null").map_err(bad)?,
                b'-' | b'0'..=b'9' => r.number().map_err(bad)?,
                _ => return Err(JsonArrayError::NotJsonArray),
            }
            if top_level_elem && r.s[elem_start] != b'"' && not_string.is_none() {
                not_string = Some((elem_start, r.pos));
            }
            expect_value = false;
            continue;
        }
        // After a value: a comma or the closer of the innermost container.
        r.ws();
        let top = *stack.last().ok_or(JsonArrayError::NotJsonArray)?;
        match (top, r.peek()) {
            (Container::Array, Some(b',')) => {
                r.pos += 1;
                expect_value = true;
            }
            (Container::Object, Some(b',')) => {
                r.pos += 1;
                r.ws();
                object_key(&mut r).map_err(bad)?;
                expect_value = true;
            }
            (Container::Array, Some(b']')) | (Container::Object, Some(b'}')) => {
                r.pos += 1;
                stack.pop();
                if stack.len() == 1 && not_string.is_none() {
                    // A nested container just closed: the element was not a string.
                    not_string = Some((elem_start, r.pos));
                }
                if stack.is_empty() {
                    break;
                }
            }
            _ => return Err(JsonArrayError::NotJsonArray),
        }
    }
    r.ws();
    if r.pos != text.len() {
        return Err(JsonArrayError::NotJsonArray);
    }
    if let Some((start, end)) = not_string {
        return Err(JsonArrayError::NotStringArray { start, end });
    }
    Ok(items)
}

/// `"key" :` inside an object, leaving the reader before the value.
fn object_key(r: &mut Reader<'_>) -> Result<(), ()> {
    if r.peek() != Some(b'"') {
        return Err(());
    }
    r.string(false)?;
    r.ws();
    if !r.eat(b':') {
        return Err(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &str) -> Result<Vec<String>, JsonArrayError> {
        parse_json_array(s).map(|v| v.into_iter().map(|j| j.value).collect())
    }

    #[test]
    fn reads_string_arrays() {
        assert_eq!(values("[]").unwrap(), Vec::<String>::new());
        assert_eq!(values(r#"[ "a", "b" ]"#).unwrap(), ["a", "b"]);
        assert_eq!(
            values(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2665 \ud83d\ude00"]"#).unwrap(),
            ["\" \\ / \u{8} \u{c} \n \r \t \u{0} ♥ 😀"]
        );
    }

    #[test]
    fn rejects_non_strings_but_only_in_valid_json() {
        assert!(matches!(
            values(r#"[ "echo", [ "nested json" ] ]"#),
            Err(JsonArrayError::NotStringArray { .. })
        ));
        assert!(matches!(
            values(r#"["a", 1]"#),
            Err(JsonArrayError::NotStringArray { .. })
        ));
        assert!(matches!(
            values(r#"["a", {"k": [1]}]"#),
            Err(JsonArrayError::NotStringArray { .. })
        ));
        assert_eq!(values(r#"["a", 1"#), Err(JsonArrayError::NotJsonArray));
        assert_eq!(values("['a']"), Err(JsonArrayError::NotJsonArray));
        assert_eq!(values(r#"["a",]"#), Err(JsonArrayError::NotJsonArray));
        assert_eq!(values(r#"["a"] x"#), Err(JsonArrayError::NotJsonArray));
        assert_eq!(values("[\"a\tb\"]"), Err(JsonArrayError::NotJsonArray));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = "[".repeat(200_000) + &"]".repeat(200_000);
        assert_eq!(values(&deep), Err(JsonArrayError::NotJsonArray));
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(matches!(
            values(&ok),
            Err(JsonArrayError::NotStringArray { .. })
        ));
    }
}
