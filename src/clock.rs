//! Wall-clock time, in the forms the rest of the server uses: milliseconds since the Unix
//! epoch (the inventory and checkout), seconds (token expiry), RFC 3339 UTC text (the
//! contract's timestamps). The one place that reads the wall clock for them, so an engine can
//! take the time as a plain argument and a test can hand it any time it likes.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in milliseconds since the Unix epoch (0 on a clock set before 1970). Cost: one
/// `clock_gettime` (about 25 ns), no allocation.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, in whole seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    // A clock set before 1970 reads as 0, so no token looks expired; such a machine has bigger
    // problems, and refusing every token would hide them less helpfully than this.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Milliseconds since the Unix epoch, saturating at the ends of `i64`.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Now as RFC 3339 UTC, to the millisecond.
pub fn rfc3339_now() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

/// (year, month) today, UTC.
pub fn today() -> (u32, u32) {
    let now = OffsetDateTime::now_utc();
    (now.year().max(0) as u32, u32::from(u8::from(now.month())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_through_rfc3339() {
        let at = time::macros::datetime!(2014-09-09 17:00:00.250 UTC);
        assert_eq!(unix_ms(at), 1_410_282_000_250);
        assert_eq!(rfc3339_ms(unix_ms(at)), "2014-09-09T17:00:00.25Z");
    }

    #[test]
    fn times_past_the_ends_of_i64_milliseconds_saturate() {
        assert_eq!(unix_ms(OffsetDateTime::UNIX_EPOCH), 0);
        assert_eq!(rfc3339_ms(i64::MAX), "1970-01-01T00:00:00Z");
    }
}
