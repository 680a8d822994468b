//! Human-readable byte counts and durations, as BuildKit prints them.
//!
//! BuildKit formats sizes with decimal SI units and two decimals (`37B`, `1.29kB`, `28.23MB`)
//! and log timestamps with precision shrinking as they grow (`0.512`, `12.34`, `123.4`).

use std::time::Duration;

/// `37B`, `1.29kB`, `28.23MB`, `1.00GB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Seconds with one decimal: `0.3s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A log line's offset from its step's start: three decimals under 10 s, two under 100 s,
/// then one, so the column stays narrow (BuildKit's `progressui` does the same).
pub fn log_offset(d: Duration) -> String {
    let s = d.as_secs_f64();
    let precision = if s < 10.0 {
        3
    } else if s < 100.0 {
        2
    } else {
        1
    };
    format!("{s:.precision$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_decimal_units() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(999), "999B");
        assert_eq!(bytes(1290), "1.29kB");
        assert_eq!(bytes(28_230_000), "28.23MB");
        assert_eq!(bytes(1_000_000_000), "1.00GB");
        assert_eq!(bytes(u64::MAX), "18.45EB");
    }

    #[test]
    fn log_offsets_narrow_their_precision() {
        assert_eq!(log_offset(Duration::from_millis(512)), "0.512");
        assert_eq!(log_offset(Duration::from_millis(12_346)), "12.35");
        assert_eq!(log_offset(Duration::from_millis(123_456)), "123.5");
    }

    #[test]
    fn secs_have_one_decimal() {
        assert_eq!(secs(Duration::from_millis(320)), "0.3s");
    }
}
