//! docker's json-file log driver: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, rotated at
//! `max-size` into `ctr.log.1` … `ctr.log.N-1` (`max-file` N).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i128 {
    let (s, n) = rbuild_oci::time::now();
    s as i128 * 1_000_000_000 + n as i128
}

/// `nanos` as RFC 3339 with nine fraction digits (docker's log time).
pub fn format_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let mut s = rbuild_oci::time::rfc3339(secs);
    s.pop();
    format!("{s}.{frac:09}Z")
}

/// Appends entries, rotating by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
        })
    }

    /// Writes one entry for `text` (a line with its `\n`, or a partial
    /// line) from `stream`.
    pub fn write(&mut self, stream: &str, text: &[u8]) -> std::io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_string(),
            time: format_nanos(now_nanos()),
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let n = self.max_file;
        if n <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = fs::remove_file(name(n - 1));
        for i in (1..n - 1).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Splits a pipe's output into lines: complete lines go out with their
/// `\n`; a partial line waits for more, or goes out at 16 KiB or EOF.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], mut out: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            out(&line);
        }
        if self.pending.len() >= 16 * 1024 {
            out(&self.pending);
            self.pending.clear();
        }
    }

    pub fn finish(&mut self, mut out: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            out(&self.pending);
            self.pending.clear();
        }
    }
}

/// The log files of `path`, oldest first (rotated ones, then the current).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = (1..100)
        .map(|i| (i, PathBuf::from(format!("{}.{i}", path.display()))))
        .take_while(|(_, p)| p.exists())
        .collect();
    rotated.reverse();
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(path.to_path_buf()))
        .collect()
}

/// Every entry, oldest first.
pub fn read_all(path: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in files(path) {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                out.push(e);
            }
        }
    }
    out
}

/// Reads entries appended to the current log file after `offset`,
/// returning them and the new offset (complete lines only). A file that
/// shrank (rotated) is read from its start.
pub fn read_from(path: &Path, offset: u64) -> (Vec<Entry>, u64) {
    let Ok(mut file) = File::open(path) else {
        return (Vec::new(), offset);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut offset = if len < offset { 0 } else { offset };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) if line.ends_with('\n') => {
                offset += n as u64;
                if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                    out.push(e);
                }
            }
            Ok(_) => break,
        }
    }
    (out, offset)
}

/// Size of the current log file (where a follower starts).
pub fn current_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Parses docker's `--since`/`--until`: RFC 3339, a Unix timestamp
/// (`1700000000[.5]`) or a duration before now (`10m`, `1h30m`, `45s`).
pub fn parse_time(s: &str, now: i128) -> Option<i128> {
    if let Some(n) = rbuild_oci::time::parse_rfc3339_nanos(s) {
        return Some(n);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1e9) as i128);
    }
    Some(now - parse_duration(s)?)
}

/// Go's duration syntax (`1h30m`, `45s`, `100ms`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let mut total: i128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, len) = [
            ("ns", 1e0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .filter(|(u, _)| rest.starts_with(u))
        .max_by_key(|(u, _)| u.len())
        .map(|(u, f)| (*f, u.len()))?;
        rest = &rest[len..];
        total += (v * unit) as i128;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_rotated() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ctr.log");
        let mut w = LogWriter::open(&p, Some(200), 3).unwrap();
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.push(b"one\ntw", |l| lines.push(l.to_vec()));
        s.push(b"o\nthree", |l| lines.push(l.to_vec()));
        s.finish(|l| lines.push(l.to_vec()));
        assert_eq!(
            lines,
            vec![b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
        );
        for i in 0..20 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
        }
        let all = read_all(&p);
        assert!(all.len() < 20 && all.last().unwrap().log == "line 19\n");
        assert!(!PathBuf::from(format!("{}.3", p.display())).exists());
    }

    #[test]
    fn times_parse_like_docker() {
        let now = 1_700_000_000_000_000_000i128;
        assert_eq!(parse_time("10s", now), Some(now - 10_000_000_000));
        assert_eq!(parse_time("1700000000", now), Some(now));
        assert!(parse_time("2023-11-14T22:13:20Z", now).is_some());
        assert_eq!(parse_time("bogus", now), None);
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("100ms"), Some(100_000_000));
        assert_eq!(format_nanos(now + 5), "2023-11-14T22:13:20.000000005Z");
    }
}
