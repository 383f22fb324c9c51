//! Source positions. Every node the parser produces carries a [`Span`].

/// A region of the source: byte offsets (half-open) plus 1-based line and
/// column (columns count characters, not bytes) of its first and last
/// character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// 1-based line of the first character.
    pub start_line: u32,
    /// 1-based column (in characters) of the first character.
    pub start_column: u32,
    /// 1-based line of the last character.
    pub end_line: u32,
    /// 1-based column (in characters) of the last character.
    pub end_column: u32,
}

impl Span {
    /// The byte range `start..end`, for slicing the source.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        let (first, last) = if self.start <= other.start {
            (self, other)
        } else {
            (other, self)
        };
        let end = if last.end >= first.end { last } else { first };
        Span {
            start: first.start,
            start_line: first.start_line,
            start_column: first.start_column,
            end: end.end,
            end_line: end.end_line,
            end_column: end.end_column,
        }
    }

    /// True when the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

impl Span {
    /// The part `range` (byte offsets into `written`) of a single-line span
    /// whose source text is exactly `written`. Falls back to the whole span
    /// when that cannot be known (multi-line, or the text was unquoted or
    /// unescaped so it no longer matches the source byte for byte).
    pub fn subspan(&self, written: &str, range: std::ops::Range<usize>) -> Span {
        let fits = self.start_line == self.end_line
            && self.end - self.start == written.len()
            && range.start <= range.end
            && range.end <= written.len()
            && written.is_char_boundary(range.start)
            && written.is_char_boundary(range.end);
        if !fits || range.is_empty() {
            return *self;
        }
        let col = |i: usize| self.start_column + written[..i].chars().count() as u32;
        let last = written[..range.end]
            .char_indices()
            .next_back()
            .map_or(range.start, |(i, _)| i);
        Span {
            start: self.start + range.start,
            end: self.start + range.end,
            start_line: self.start_line,
            start_column: col(range.start),
            end_line: self.start_line,
            end_column: col(last.max(range.start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subspan_of_single_line_text() {
        let s = Span {
            start: 10,
            end: 17,
            start_line: 2,
            start_column: 5,
            end_line: 2,
            end_column: 11,
        };
        let sub = s.subspan("--a=bcd", 4..7);
        assert_eq!(
            (sub.start, sub.end, sub.start_column, sub.end_column),
            (14, 17, 9, 11)
        );
        assert_eq!(s.subspan("--a=\"b\"", 0..1).start, 10);
        assert_eq!(s.subspan("short", 0..1), s);
    }
}
