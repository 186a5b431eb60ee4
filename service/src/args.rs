//! Value parsers for command-line flags, shared by every binary: durations, byte sizes and
//! counts that must be above zero. A zero ping interval, reap interval or limit would spin a
//! loop, panic a timer or refuse everything; refused at start instead, and clap's message names
//! the flag.

use std::time::Duration;

/// Parses a duration such as `30s` or `5m` that must be above zero: a zero interval or timeout
/// would spin a loop or close every connection at once, so it is refused at start.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (e.g. 30s, 5m): {e}"))?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(d)
}

/// Parses a size or rate that must be above zero (see [`parse_bytes`]).
pub fn parse_size(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("must be above zero".into()),
        n => Ok(n),
    }
}

/// Parses a count that must be above zero (a limit of zero would refuse everything).
pub fn parse_count<T: std::str::FromStr + PartialEq + Default>(s: &str) -> Result<T, String> {
    let n: T = s.trim().parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    if n == T::default() {
        return Err("must be above zero".into());
    }
    Ok(n)
}

/// Parses a byte count such as `20000000`, `20MB`, `64MiB`, `512kB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 20MB, 64MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use B, kB, MB, GB, KiB, MiB or GiB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte counts parse with decimal and binary suffixes and reject nonsense.
    #[test]
    fn parses_byte_counts() {
        assert_eq!(parse_bytes("20MB"), Ok(20_000_000));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512 kB"), Ok(512_000));
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
    }

    /// Zero and negative durations, sizes and counts are refused; the message says why.
    #[test]
    fn refuses_zero_and_negative() {
        assert_eq!(parse_duration("0s"), Err("must be above zero".into()));
        assert!(parse_duration("-5s").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_size("0MB"), Err("must be above zero".into()));
        assert_eq!(parse_count::<usize>("0"), Err("must be above zero".into()));
        assert!(parse_count::<usize>("-1").is_err());
        assert_eq!(parse_count::<u64>("7"), Ok(7));
    }
}
