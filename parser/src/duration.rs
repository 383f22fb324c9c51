//! Go `time.ParseDuration` syntax (`1m30s`, `1.5h`, `300ms`), used by the
//! HEALTHCHECK flags and by the CLI's `--filter until=`: one parser for
//! every place Docker takes a Go duration.

use std::time::Duration;

/// What is wrong with a Go duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit, repeated; or out of range (Go's
    /// limit: about 292 years).
    #[error("invalid duration")]
    Invalid,
    /// A number without a unit (`5`; only `0` may go without one).
    #[error("missing unit in duration")]
    MissingUnit,
    /// A unit other than `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`.
    #[error("unknown unit in duration")]
    UnknownUnit,
    /// A duration below zero.
    #[error("negative duration")]
    Negative,
}

/// Parses a Go duration (`time.ParseDuration`: `0`, or numbers with units
/// such as `1h30m`, `1.5h`, `300ms`, optionally signed). Negative
/// durations are refused: none of rbuild's uses has a meaning for them.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid);
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(DurationError::MissingUnit),
            _ => return Err(DurationError::UnknownUnit),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| DurationError::Invalid)?
        };
        let mut v = int.checked_mul(nanos_per).ok_or(DurationError::Invalid)?;
        let mut scale = nanos_per;
        for d in frac_part.bytes().take(30) {
            scale /= 10;
            v += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(v).ok_or(DurationError::Invalid)?;
        if total > i64::MAX as u128 {
            return Err(DurationError::Invalid);
        }
    }
    if neg && total > 0 {
        return Err(DurationError::Negative);
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("+2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("5"), Err(DurationError::MissingUnit));
        assert_eq!(parse_go_duration("5x"), Err(DurationError::UnknownUnit));
        assert_eq!(parse_go_duration(""), Err(DurationError::Invalid));
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(parse_go_duration("s"), Err(DurationError::Invalid));
        assert_eq!(parse_go_duration("3000000h"), Err(DurationError::Invalid));
    }
}
