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
    pub start_line: u32,
    pub start_column: u32,
    pub end_line: u32,
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
