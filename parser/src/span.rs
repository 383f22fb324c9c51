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
