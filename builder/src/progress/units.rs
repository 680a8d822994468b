//! Human-readable byte counts and durations, as BuildKit prints them, and RFC 3339 times (the
//! image config's `created`, the raw JSON progress stream's timestamps).
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

/// RFC 3339 in UTC of `secs` since the Unix epoch plus `nanos`, as Go's `time.RFC3339Nano`
/// writes it (what `time.Time` marshals to in JSON): the fraction only when it is not zero,
/// without trailing zeros. Civil-from-days (Howard Hinnant's algorithm), no leap seconds.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let fraction = if nanos == 0 {
        String::new()
    } else {
        let digits = format!("{nanos:09}");
        format!(".{}", digits.trim_end_matches('0'))
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_as_go_writes_it() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(rfc3339(1_700_000_000, 1), "2023-11-14T22:13:20.000000001Z");
    }

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
