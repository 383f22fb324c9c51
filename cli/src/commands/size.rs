//! Byte counts as Docker and BuildKit print them, in decimal units:
//! `4.26MB` in tables (Docker's three significant digits), `1.20kB` in
//! build progress (BuildKit's two decimals). Sizes given in flags
//! (`--keep-storage 10gb`) are read by `rbuild_builder::spec::parse::parse_size`.

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g3(v), units[i])
}

/// `%.3g` for values in [0, 1000).
fn format_g3(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    // %.3g rounding can carry to 4 digits (999.6 → "1e+03"): clamp.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A byte count as BuildKit's progress shows it: decimal units, two
/// decimals (`512B`, `1.20kB`, `3.35MB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.2}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_544), "4.26MB");
        assert_eq!(human_size(300_000_000), "300MB");
        assert_eq!(human_size(1_234), "1.23kB");
    }

    #[test]
    fn byte_counts_read_like_buildkits() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(1_200), "1.20kB");
        assert_eq!(human_bytes(3_354_624), "3.35MB");
        assert_eq!(human_bytes(200 << 20), "209.72MB");
        assert_eq!(human_bytes(5_000_000_000), "5.00GB");
    }
}
