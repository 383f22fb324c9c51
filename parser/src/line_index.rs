//! Byte offset → 1-based line and column, for building [`Span`]s.

use std::cell::Cell;

use crate::span::Span;

/// Line starts of a source text, so offsets can be turned into positions.
///
/// Columns count characters. A small cache makes increasing offsets on the
/// same line cost only the characters in between, which keeps span creation
/// linear even on a single 100 MB line.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    ascii: bool,
    /// (line index, byte offset, 1-based column) of the last lookup.
    cache: Cell<(usize, usize, u32)>,
    /// Line index of the last lookup: spans are mostly requested at
    /// increasing offsets, so the next line is usually this one or just
    /// after it.
    last_line: Cell<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        // A byte-order mark is invisible: the first line starts after it.
        let first = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut line_starts = vec![first];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            text,
            line_starts,
            ascii: text.is_ascii(),
            cache: Cell::new((0, 0, 1)),
            last_line: Cell::new(0),
        }
    }

    /// 1-based line and column of the character starting at `offset`.
    pub(crate) fn position(&self, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        if offset < self.line_starts[0] {
            return (1, 1);
        }
        let line = self.line_of(offset);
        let line_start = self.line_starts[line];
        let col = if self.ascii {
            (offset - line_start + 1) as u32
        } else {
            let (cline, coff, ccol) = self.cache.get();
            // Count only the characters between this offset and the last
            // one looked up on the same line, in either direction.
            let col = if cline == line && coff >= line_start && coff <= offset {
                ccol + self.text[coff..offset].chars().count() as u32
            } else if cline == line && coff >= line_start {
                ccol - self.text[offset..coff].chars().count() as u32
            } else {
                1 + self.text[line_start..offset].chars().count() as u32
            };
            self.cache.set((line, offset, col));
            col
        };
        (line as u32 + 1, col)
    }

    /// Index of the line holding `offset` (at or after the first line
    /// start). Walks a few lines forward from the last answer, which makes a
    /// pass of increasing lookups linear; a binary search otherwise.
    fn line_of(&self, offset: usize) -> usize {
        const WALK: usize = 8;
        let starts = &self.line_starts;
        let mut line = self.last_line.get();
        if starts[line] <= offset {
            for _ in 0..WALK {
                match starts.get(line + 1) {
                    Some(&next) if next <= offset => line += 1,
                    _ => {
                        self.last_line.set(line);
                        return line;
                    }
                }
            }
        }
        let line = match starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        self.last_line.set(line);
        line
    }

    /// Span of the bytes `start..end`; the end position is that of the last
    /// character (or the start for an empty span).
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let end = end.max(start).min(self.text.len());
        let start = start.min(end);
        let (start_line, start_column) = self.position(start);
        let (end_line, end_column) = if end > start {
            let mut last = end - 1;
            while !self.text.is_char_boundary(last) {
                last -= 1;
            }
            self.position(last)
        } else {
            (start_line, start_column)
        };
        Span {
            start,
            end,
            start_line,
            start_column,
            end_line,
            end_column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let idx = LineIndex::new("ab\nhé x\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(7), (2, 4));
        let s = idx.span(3, 7);
        assert_eq!((s.end_line, s.end_column), (2, 3));
        // Lookups out of order, far apart and backwards agree with a
        // fresh index.
        let text = "a\nbb\n\nccc\n".repeat(50);
        let idx = LineIndex::new(&text);
        for off in [0, 5, 400, 3, 399, 7, 150, 151, 152, 0, text.len()] {
            assert_eq!(
                idx.position(off),
                LineIndex::new(&text).position(off),
                "offset {off}"
            );
        }
        let bom = LineIndex::new("\u{feff}FROM a");
        assert_eq!(bom.position(3), (1, 1));
        assert_eq!(bom.position(0), (1, 1));
    }
}
