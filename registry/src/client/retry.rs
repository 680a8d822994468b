//! Which failures are retried, and how long to wait: bounded exponential backoff, or the
//! registry's `Retry-After` (seconds) when it sends one, capped so a hostile value cannot hang
//! a build.

use std::time::Duration;

/// Attempts per request by default (so at most 4 waits: 0.5 + 1 + 2 + 4 s).
pub const DEFAULT_ATTEMPTS: u32 = 5;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// 408 Request Timeout, 429 Too Many Requests and server errors are worth retrying; other
/// 4xx are final.
pub fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The wait before attempt `attempt + 1`.
pub fn delay(attempt: u32, retry_after: Option<&str>) -> Duration {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(secs).min(MAX_RETRY_AFTER);
    }
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(delay(1, Some("2")), Duration::from_secs(2));
        assert_eq!(delay(1, Some("86400")), MAX_RETRY_AFTER);
        // Hostile values: the largest u64, and one past it (not a number: the backoff).
        assert_eq!(delay(1, Some("18446744073709551615")), MAX_RETRY_AFTER);
        assert_eq!(
            delay(1, Some("18446744073709551616")),
            Duration::from_millis(500)
        );
        assert_eq!(delay(u32::MAX, None), Duration::from_secs(32));
        assert_eq!(delay(1, Some("soon")), Duration::from_millis(500));
        assert_eq!(delay(3, None), Duration::from_secs(2));
    }

    #[test]
    fn only_throttling_and_server_errors_retry() {
        assert!(retryable(408) && retryable(429) && retryable(503) && retryable(500));
        assert!(!retryable(404) && !retryable(400) && !retryable(401));
    }
}
