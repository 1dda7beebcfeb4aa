//! Whether this node reaches Redis now, and why not: what `/readyz` answers and what the
//! connection-state gauge shows. Every call's outcome updates it, and so does the node's probe
//! (`RedisStore::watch_connection`), which is what notices Redis coming back while no request
//! arrives. Each change is logged once, not once per failed request.
//!
//! Cost: a call reads one atomic; only a change of state takes the lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::telemetry;

/// Up or down, with the reason it is down.
#[derive(Debug)]
pub struct Health {
    /// True while the last call or probe reached Redis.
    up: AtomicBool,
    /// Why it is down (the last failure), for `/readyz`; `None` while up.
    reason: Mutex<Option<String>>,
}

impl Health {
    /// Up: the node has just connected.
    pub fn new() -> Health {
        telemetry::redis_connected(true);
        Health {
            up: AtomicBool::new(true),
            reason: Mutex::new(None),
        }
    }

    /// Whether the last call or probe reached Redis.
    pub fn is_up(&self) -> bool {
        // Relaxed: a flag read on its own; the reason is read under its lock.
        self.up.load(Ordering::Relaxed)
    }

    /// Why Redis is unreachable, for `/readyz`; `None` while it is reachable.
    pub fn reason(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        self.lock().clone()
    }

    /// A call or probe reached Redis; logs the recovery once.
    pub fn reached(&self) {
        if self.is_up() {
            return;
        }
        let mut reason = self.lock();
        if !self.up.swap(true, Ordering::Relaxed) {
            *reason = None;
            telemetry::redis_connected(true);
            tracing::info!("Redis is reachable again; this node takes reservations and checkouts");
        }
    }

    /// A call or probe could not reach Redis (`why`, without the URL); logs it once.
    pub fn lost(&self, why: &str) {
        if !self.is_up() {
            return;
        }
        let mut reason = self.lock();
        if self.up.swap(false, Ordering::Relaxed) {
            *reason = Some(format!(
                "the store (Redis) cannot be reached: {why}; reservations, releases and \
                 checkouts answer 503 until it is back"
            ));
            telemetry::redis_connected(false);
            tracing::error!(
                error = why,
                "Redis cannot be reached; this node answers 503 unavailable for stock changes until it is back"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_has_a_reason_and_up_has_none() {
        let health = Health::new();
        assert!(health.is_up() && health.reason().is_none());
        health.lost("connection refused");
        health.lost("a second failure changes nothing");
        let reason = health.reason().expect("a reason while down");
        assert!(reason.contains("connection refused"), "{reason}");
        health.reached();
        assert!(health.is_up() && health.reason().is_none());
    }
}
