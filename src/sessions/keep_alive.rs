//! WebSocket keep-alive: ping a connection the server has not heard from for a while, and
//! close it if it stays silent, so a dead or vanished peer gives its slot back.
//!
//! Anything the client sends is a sign of life: a pong, its own ping, an op. A client that
//! talks or pings on its own is never pinged; one that answers pings is never closed. Used by
//! both WebSockets (on `/v1/stream` the connection's read side hears the client and its write
//! side takes the due ping, hence `Cell`s).
//!
//! Cost per received frame: one clock read. The connection's timer is re-armed only when it fires
//! or a ping is answered, not per frame.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// What the connection should do when its keep-alive deadline passes.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Heard from the client meanwhile: nothing to do until [`KeepAlive::deadline`].
    Wait,
    /// Silent for the ping interval: send a ping now.
    Ping,
    /// A ping went unanswered for the ping timeout: close the connection.
    Silent,
}

/// One connection's keep-alive clock.
#[derive(Debug)]
pub struct KeepAlive {
    /// Silence before a ping (`--ping-interval`).
    interval: Duration,
    /// Silence after a ping before the connection is closed (`--ping-timeout`).
    timeout: Duration,
    /// When the client last sent anything.
    last_heard: Cell<Instant>,
    /// When the ping now unanswered was asked for, if one is.
    pinged_at: Cell<Option<Instant>>,
    /// A ping is waiting for the writer to send it.
    ping_due: Cell<bool>,
}

impl KeepAlive {
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        debug_assert!(!interval.is_zero() && !timeout.is_zero());
        KeepAlive {
            interval,
            timeout,
            last_heard: Cell::new(now),
            pinged_at: Cell::new(None),
            ping_due: Cell::new(false),
        }
    }

    /// The client sent something at `now`. Returns true when that answered a ping: the
    /// deadline then moves other than forward, so a timer set to it must be re-armed.
    pub fn heard(&self, now: Instant) -> bool {
        self.last_heard.set(now);
        self.pinged_at.take().is_some()
    }

    /// When [`KeepAlive::check`] should next be called.
    pub fn deadline(&self) -> Instant {
        match self.pinged_at.get() {
            Some(pinged_at) => pinged_at + self.timeout,
            None => self.last_heard.get() + self.interval,
        }
    }

    /// What to do at `now`; a `Ping` verdict also marks a ping due for the writer.
    pub fn check(&self, now: Instant) -> Verdict {
        if now < self.deadline() {
            return Verdict::Wait;
        }
        if self.pinged_at.get().is_some() {
            return Verdict::Silent;
        }
        self.pinged_at.set(Some(now));
        self.ping_due.set(true);
        Verdict::Ping
    }

    /// Whether the writer should send a ping; clears the request.
    pub fn take_ping_due(&self) -> bool {
        self.ping_due.replace(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn clock() -> (KeepAlive, Instant) {
        let start = Instant::now();
        (KeepAlive::new(10 * SECOND, 5 * SECOND, start), start)
    }

    #[test]
    fn a_silent_connection_is_pinged_then_closed() {
        let (keep_alive, start) = clock();
        assert_eq!(keep_alive.check(start + 9 * SECOND), Verdict::Wait);
        assert_eq!(keep_alive.check(start + 10 * SECOND), Verdict::Ping);
        assert!(keep_alive.take_ping_due());
        assert!(!keep_alive.take_ping_due(), "one ping per verdict");
        assert_eq!(keep_alive.deadline(), start + 15 * SECOND);
        assert_eq!(keep_alive.check(start + 14 * SECOND), Verdict::Wait);
        assert_eq!(keep_alive.check(start + 15 * SECOND), Verdict::Silent);
    }

    #[test]
    fn an_answer_to_the_ping_keeps_the_connection() {
        let (keep_alive, start) = clock();
        assert_eq!(keep_alive.check(start + 10 * SECOND), Verdict::Ping);
        assert!(
            keep_alive.heard(start + 11 * SECOND),
            "the answer re-arms the timer"
        );
        assert!(!keep_alive.heard(start + 11 * SECOND));
        assert_eq!(keep_alive.check(start + 15 * SECOND), Verdict::Wait);
        assert_eq!(keep_alive.deadline(), start + 21 * SECOND);
    }

    #[test]
    fn a_client_that_talks_is_never_pinged() {
        let (keep_alive, start) = clock();
        for second in 1..100 {
            assert!(!keep_alive.heard(start + second * SECOND));
            assert_eq!(keep_alive.check(start + second * SECOND), Verdict::Wait);
        }
        assert!(!keep_alive.take_ping_due());
    }
}
