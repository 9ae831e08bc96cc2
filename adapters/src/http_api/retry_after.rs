//! `Retry-After`, read as what it is: text from a server. Both of RFC 9110's forms (delta-seconds and an
//! HTTP-date) are understood; anything else is ignored, nothing panics, and the wait is clamped so that a
//! hostile or broken value can neither busy-loop the host nor park it for hours.

use std::time::{Duration, SystemTime};

/// The longest wait a `Retry-After` can impose. A longer ask is honoured up to this, then the host asks
/// again (and waits again if the service still says so). Every such wait also ends at shutdown.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The wait a `Retry-After` value asks for, clamped to `0..=MAX_WAIT`; `None` when the value is neither
/// a number of seconds nor an HTTP-date (the caller then uses its own backoff).
///
/// Seconds may carry a fraction; a negative number means "now"; `inf` means "as long as allowed"; NaN
/// and text are not values. A date in the past means "now".
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_nan() {
            return None;
        }
        // Clamping first keeps `from_secs_f64` away from what it panics on (negative, infinite, huge).
        return Some(Duration::from_secs_f64(
            secs.clamp(0.0, MAX_WAIT.as_secs_f64()),
        ));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_WAIT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: &str) -> Option<Duration> {
        // 2015-10-21T07:28:00Z, the RFC's example date.
        parse(
            v,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480),
        )
    }

    #[test]
    fn seconds_are_read_and_clamped() {
        assert_eq!(at("51"), Some(Duration::from_secs(51)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(at("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(at("-1"), Some(Duration::ZERO));
        assert_eq!(at("86400"), Some(MAX_WAIT));
        assert_eq!(at("1e300"), Some(MAX_WAIT));
        assert_eq!(at("99999999999999999999999"), Some(MAX_WAIT));
    }

    #[test]
    fn hostile_values_never_panic() {
        assert_eq!(at("inf"), Some(MAX_WAIT));
        assert_eq!(at("-inf"), Some(Duration::ZERO));
        assert_eq!(at("NaN"), None);
        assert_eq!(at(""), None);
        assert_eq!(at("soon"), None);
        assert_eq!(at("\u{0}\u{7f}"), None);
    }

    #[test]
    fn http_dates_are_read_relative_to_now() {
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Wed, 21 Oct 2015 07:00:00 GMT"),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(
            at("Thu, 22 Oct 2015 07:28:00 GMT"),
            Some(MAX_WAIT),
            "a day ahead"
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:28:10 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(at("Wed Oct 21 07:28:05 2015"), Some(Duration::from_secs(5)));
    }
}
