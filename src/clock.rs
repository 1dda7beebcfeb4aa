//! Wall-clock time, in the forms the rest of the server uses: milliseconds since the Unix
//! epoch (the inventory and checkout), seconds (token expiry), RFC 3339 UTC text (the
//! contract's timestamps). The one place that reads the wall clock for them, so an engine can
//! take the time as a plain argument and a test can hand it any time it likes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where an engine tells the time: [`WallClock`] in the server, a [`SimClock`] the simulator
/// moves by hand (across hold expiries and sale windows) in its runs.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock ([`now_ms`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A plain function as a clock (tests hand the engines a `fn` reading a static).
impl Clock for fn() -> i64 {
    fn now_ms(&self) -> i64 {
        self()
    }
}

/// A clock that moves only when told to. Clones share the time.
#[derive(Clone, Debug, Default)]
pub struct SimClock(Arc<AtomicI64>);

impl SimClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> SimClock {
        SimClock(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Moves the clock by `ms` (backwards too: wall clocks are stepped).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

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

/// Milliseconds since the Unix epoch as RFC 3339 UTC, to the millisecond: the text
/// [`Rfc3339Ms`] serialises (the tests hold it to this), and an order's `created_at`.
pub fn rfc3339_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, serialised as [`rfc3339_ms`]'s text without allocating it:
/// a reply's `expires_at` is written straight into the reply's JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339Ms(pub i64);

impl serde::Serialize for Rfc3339Ms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The longest RFC 3339 text `time` writes is 35 bytes (nanoseconds and an offset).
        const ROOM: usize = 64;
        let mut text = [0u8; ROOM];
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut out = &mut text[..];
        // What is left of the buffer says how much was written (`format_into`'s own count
        // leaves out part of the fraction).
        let written = match at.format_into(&mut out, &Rfc3339) {
            Ok(_) => ROOM - out.len(),
            // As `rfc3339_ms`: an unformattable time is the empty string.
            Err(_) => 0,
        };
        serializer.serialize_str(std::str::from_utf8(&text[..written]).unwrap_or_default())
    }
}

/// (year, month) at `ms` milliseconds since the Unix epoch, UTC: what a card's expiry is
/// compared with.
pub fn month_at(ms: i64) -> (u32, u32) {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (at.year().max(0) as u32, u32::from(u8::from(at.month())))
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
    fn a_month_is_read_in_utc() {
        let new_year = unix_ms(time::macros::datetime!(2027-01-01 00:00:00 UTC));
        assert_eq!(month_at(new_year), (2027, 1));
        assert_eq!(month_at(new_year - 1), (2026, 12));
    }

    #[test]
    fn times_past_the_ends_of_i64_milliseconds_saturate() {
        assert_eq!(unix_ms(OffsetDateTime::UNIX_EPOCH), 0);
        assert_eq!(rfc3339_ms(i64::MAX), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_serialised_form_is_the_text_form() {
        for ms in [
            0,
            1_410_282_000_250,
            1_700_000_000_001,
            -1,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(
                serde_json::to_string(&Rfc3339Ms(ms)).expect("json"),
                format!("\"{}\"", rfc3339_ms(ms))
            );
        }
    }
}
