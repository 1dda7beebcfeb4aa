//! The open-loop mode (`--arrival-rate N`): requests at fixed intended send times
//! (`start + i / N`), whatever the replies do, and latency measured from those times.
//!
//! A closed loop (one request after the previous reply) slows down with the server and so
//! never sees the queue a real crowd would build: a stall of one second delays one sample by a
//! second and hides every request that would have arrived meanwhile (coordinated omission).
//! Here a request that could not go out on time (every connection busy, the in-flight cap
//! reached, the tester's CPU behind) is still sent as soon as it can be, and its latency counts
//! from its intended time, as wrk2 does: the wait shows in the percentiles, not as a lower rate.
//!
//! The tester's timer (tokio's) has a granularity of 1 ms, so a request is woken up to
//! [`EARLY_BY`] before its intended time rather than up to 1 ms after it; a request sent early
//! counts from its actual send time. A request sent more than [`LATE_AFTER`] after its intended
//! time is late: the report gives how many and the p99 and max of their lateness.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::Report;
use crate::stats::{LatencySummary, Recorder};

/// How long before its intended time a request may be woken (the timer's granularity).
pub const EARLY_BY: Duration = Duration::from_millis(1);
/// A request sent later than this after its intended time is counted late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);
/// The largest arrival rate taken (a request every nanosecond would be 1e9).
pub const MAX_RATE: u64 = 100_000_000;

/// The intended send times of one stream of requests: request `i` (counted from 0) is due at
/// `start + (first + i * stride) / rate` seconds. Several producers that share a rate each take
/// every `stride`-th slot of it (producer `c` of `C`: `first = c`, `stride = C`).
pub struct Schedule {
    start: Instant,
    rate: u64,
    first: u64,
    stride: u64,
    /// The next request's index: shared by every task that takes from this schedule.
    next: AtomicU64,
}

impl Schedule {
    /// Every slot of `rate` requests a second from `start`.
    pub fn new(start: Instant, rate: u64) -> Schedule {
        Schedule::every_nth(start, rate, 0, 1)
    }

    /// Slots `first`, `first + stride`, ... of `rate` requests a second from `start`.
    pub fn every_nth(start: Instant, rate: u64, first: u64, stride: u64) -> Schedule {
        assert!(
            rate > 0 && rate <= MAX_RATE,
            "arrival rate {rate} out of range"
        );
        assert!(
            stride > 0 && first < stride,
            "slot {first} of every {stride}"
        );
        Schedule {
            start,
            rate,
            first,
            stride,
            next: AtomicU64::new(0),
        }
    }

    /// Requests a second over every producer that shares the rate.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// When request `i` is due. Exact to the nanosecond, with no drift over a run (each time
    /// is computed from `start`, never by adding intervals).
    pub fn intended(&self, i: u64) -> Instant {
        let slot = u128::from(self.first) + u128::from(i) * u128::from(self.stride);
        let nanos = slot * 1_000_000_000 / u128::from(self.rate);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes the next request: its intended time, or `None` when that falls at or after
    /// `deadline` (the schedule is over).
    pub fn take(&self, deadline: Instant) -> Option<Instant> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let intended = self.intended(i);
        (intended < deadline).then_some(intended)
    }

    /// Takes every request due by `now` (at most `max`, at least the next one, which may not be
    /// due yet): the range of their indices. For one producer that sends what is due in one
    /// write; `None` when the next falls at or after `deadline`.
    pub fn take_due(&self, now: Instant, max: u64, deadline: Instant) -> Option<(u64, u64)> {
        assert!(max > 0);
        let first = self.next.load(Ordering::Relaxed);
        if self.intended(first) >= deadline {
            return None;
        }
        let mut end = first + 1;
        while end - first < max {
            let at = self.intended(end);
            if at > now || at >= deadline {
                break;
            }
            end += 1;
        }
        self.next.store(end, Ordering::Relaxed);
        Some((first, end))
    }

    /// How many requests were due before `end` (those with an intended time before it).
    pub fn due_before(&self, end: Instant) -> u64 {
        let elapsed = end.saturating_duration_since(self.start).as_nanos();
        // Slots s with s * 1e9 / rate < elapsed, i.e. s < ceil(elapsed * rate / 1e9).
        let slots = (elapsed * u128::from(self.rate)).div_ceil(1_000_000_000);
        let first = u128::from(self.first);
        if slots <= first {
            return 0;
        }
        u64::try_from((slots - first).div_ceil(u128::from(self.stride))).unwrap_or(u64::MAX)
    }
}

/// Sleeps until at most [`EARLY_BY`] before `intended` (not at all if that has passed).
pub async fn wait_for(intended: Instant) {
    let wake = intended.checked_sub(EARLY_BY).unwrap_or(intended);
    if wake > Instant::now() {
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Notes a request written at `sent` that was due at `intended`: records its lateness in
/// `late` when it is late, and returns the moment its latency counts from (the intended time,
/// or the send time when it went out early).
pub fn sent(intended: Instant, sent: Instant, late: &mut Recorder) -> Instant {
    let lateness = sent.saturating_duration_since(intended);
    if lateness > LATE_AFTER {
        late.record(lateness);
    }
    intended.min(sent)
}

/// How an open-loop run kept to its schedule.
pub struct Outcome {
    /// Requests a second asked for (`--arrival-rate`).
    pub rate: u64,
    /// The most requests in flight at once.
    pub in_flight_cap: u64,
    /// Requests whose intended time came before the run ended.
    pub due: u64,
    /// How late each late request went out, in µs.
    pub lateness: Histogram<u64>,
}

impl Outcome {
    /// Adds the mode, the late sends and (when `sent` is given) the requests never sent to the
    /// report; `what` names the requests ("reservation attempts", "tweets").
    pub fn report(&self, report: &mut Report, what: &str, sent: Option<u64>) {
        report.note(format!(
            "mode: open loop, --arrival-rate {} a second at fixed intended times, at most {} \
             {what} in flight; latency counts from each one's intended time (coordinated \
             omission corrected); late: sent over {} ms after it",
            self.rate,
            self.in_flight_cap,
            LATE_AFTER.as_millis()
        ));
        report.buyline("offered rate (--arrival-rate)", "/s", self.rate as f64);
        let late = LatencySummary::of(&self.lateness);
        report.buyline("could not send on time", "requests", late.count as f64);
        report.buyline("lateness p99", "ms", late.p99_ms);
        report.buyline("lateness max", "ms", late.max_ms);
        if let Some(sent) = sent {
            report.buyline(
                "due but not sent when the run ended",
                "requests",
                self.due.saturating_sub(sent) as f64,
            );
        }
        report.lateness(what, &self.lateness);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latencies;

    #[test]
    fn intended_times_are_fixed_by_the_rate_and_do_not_drift() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 3);
        assert_eq!(schedule.intended(0), start);
        assert_eq!(
            schedule.intended(1),
            start + Duration::from_nanos(333_333_333)
        );
        assert_eq!(schedule.intended(3), start + Duration::from_secs(1));
        assert_eq!(
            schedule.intended(3_000_000),
            start + Duration::from_secs(1_000_000)
        );
    }

    #[test]
    fn producers_sharing_a_rate_take_interleaved_slots() {
        let start = Instant::now();
        // 4 a second over two producers: 0, 0.5 s, ... and 0.25 s, 0.75 s, ...
        let a = Schedule::every_nth(start, 4, 0, 2);
        let b = Schedule::every_nth(start, 4, 1, 2);
        assert_eq!(a.intended(1), start + Duration::from_millis(500));
        assert_eq!(b.intended(0), start + Duration::from_millis(250));
        assert_eq!(b.intended(1), start + Duration::from_millis(750));
        let end = start + Duration::from_secs(1);
        assert_eq!(a.due_before(end) + b.due_before(end), 4);
        assert_eq!(a.due_before(start), 0);
    }

    #[test]
    fn the_schedule_ends_at_the_deadline() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 10);
        let deadline = start + Duration::from_millis(250);
        let taken: Vec<Instant> = std::iter::from_fn(|| schedule.take(deadline)).collect();
        assert_eq!(taken.len(), 3, "0, 100 and 200 ms");
        assert_eq!(schedule.due_before(deadline), 3);
    }

    #[test]
    fn a_late_producer_takes_everything_due_in_one_go() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000);
        let deadline = start + Duration::from_secs(10);
        // 5 ms in: requests 0..=5 are due.
        let now = start + Duration::from_millis(5);
        assert_eq!(schedule.take_due(now, 100, deadline), Some((0, 6)));
        // Nothing more is due: the next one alone, to be waited for.
        assert_eq!(schedule.take_due(now, 100, deadline), Some((6, 7)));
        // The cap holds.
        let later = start + Duration::from_secs(1);
        assert_eq!(schedule.take_due(later, 10, deadline), Some((7, 17)));
        assert_eq!(
            schedule
                .take_due(start + Duration::from_secs(20), 10, deadline)
                .map(|(a, _)| a),
            Some(17)
        );
        let ended = Schedule::new(start, 1000);
        assert_eq!(ended.take_due(now, 10, start), None);
    }

    #[test]
    fn latency_counts_from_the_intended_time_when_sent_late() {
        let late = Latencies::new();
        let mut recorder = late.recorder();
        let intended = Instant::now();
        // Sent on time (within the tolerance) or early: not late, counted from the send.
        let early = intended - Duration::from_micros(300);
        assert_eq!(sent(intended, early, &mut recorder), early);
        assert_eq!(
            sent(
                intended,
                intended + Duration::from_micros(500),
                &mut recorder
            ),
            intended
        );
        // Sent 40 ms late: late, and counted from its intended time.
        let from = sent(
            intended,
            intended + Duration::from_millis(40),
            &mut recorder,
        );
        assert_eq!(from, intended);
        drop(recorder);
        let h = late.snapshot();
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), 40_000));
    }
}
