//! One subscriber: joining (buyline's bare WebSocket or a NATS connection), reading frames
//! in place, and the bookkeeping per frame: latency, order, `lagged` notices.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

use crate::peers::nats;
use crate::rawws;
use crate::stats::Latencies;
use crate::workload::{self, Subscription, now_ns};

/// What one subscriber saw.
#[derive(Debug, Default, Clone)]
pub(super) struct Seen {
    pub(super) received: u64,
    /// A frame whose seq (buyline) or per-producer number (NATS) did not increase.
    pub(super) out_of_order: u64,
    pub(super) lagged_events: u64,
    /// The sum of `lagged.dropped`.
    pub(super) lagged_dropped: u64,
    pub(super) errors: Vec<String>,
}

/// Counters every subscriber feeds, read by the progress display and the drain.
#[derive(Default)]
pub(super) struct Live {
    pub(super) delivered: Arc<AtomicU64>,
    /// Latest delivery time (ns since the run epoch).
    pub(super) last_delivery_ns: AtomicU64,
    pub(super) lagged_dropped: AtomicU64,
}

/// A subscriber's per-frame bookkeeping, shared by both transports.
pub(super) struct Tracker<'a> {
    seen: Seen,
    recorder: crate::stats::Recorder,
    last_seq: u64,
    last_n: Vec<Option<u64>>,
    local: u64,
    last_flush: u64,
    /// When the latest tweet arrived (ns since the run epoch).
    last_rx: u64,
    live: &'a Live,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(latencies: &Latencies, producers: usize, live: &'a Live) -> Self {
        Self {
            seen: Seen::default(),
            recorder: latencies.recorder(),
            last_seq: 0,
            last_n: vec![None; producers],
            local: 0,
            last_flush: 0,
            last_rx: 0,
            live,
        }
    }

    /// A tweet: its stamp, and its seq when buyline sent it.
    fn tweet(&mut self, payload: &[u8], seq: Option<u64>) {
        let now = now_ns();
        self.last_rx = now;
        self.seen.received += 1;
        self.local += 1;
        if let Some((producer, n, sent)) = workload::stamp_of(payload) {
            self.recorder.record_micros(now.saturating_sub(sent) / 1000);
            match seq {
                Some(seq) => {
                    if seq <= self.last_seq {
                        self.seen.out_of_order += 1;
                    }
                    self.last_seq = seq;
                }
                None => {
                    if let Some(last) = self.last_n.get_mut(producer as usize) {
                        if last.is_some_and(|l| n <= l) {
                            self.seen.out_of_order += 1;
                        }
                        *last = Some(n);
                    }
                }
            }
        }
        if self.local >= 256 || now - self.last_flush > 20_000_000 {
            self.flush(now);
        }
    }

    fn flush(&mut self, now: u64) {
        self.live.delivered.fetch_add(self.local, Ordering::Relaxed);
        self.live
            .last_delivery_ns
            .fetch_max(self.last_rx, Ordering::Relaxed);
        self.local = 0;
        self.last_flush = now;
    }

    fn finish(mut self) -> Seen {
        self.flush(now_ns());
        self.recorder.flush();
        self.seen
    }
}

/// Joins one buyline subscriber; returns once it is subscribed.
pub(super) async fn join_buyline(
    server: SocketAddr,
    host: &str,
    i: usize,
    sub: &Subscription,
) -> Result<rawws::Connection> {
    let mut socket = rawws::connect(server, host, "/v1/stream").await?;
    socket.send_text(&sub.op(i)).await?;
    loop {
        match socket.next().await? {
            rawws::Frame::Text(text) if text.starts_with(b"{\"type\":\"subscribed\"") => {
                return Ok(socket);
            }
            rawws::Frame::Text(text) if text.starts_with(b"{\"type\":\"error\"") => {
                bail!("subscribe refused: {}", String::from_utf8_lossy(text))
            }
            rawws::Frame::Text(_) => {}
            rawws::Frame::Close => bail!("the server closed the stream before answering subscribe"),
        }
    }
}

pub(super) async fn read_buyline(
    mut socket: rawws::Connection,
    mut tracker: Tracker<'_>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = stop.changed() => break,
        };
        match frame {
            Ok(rawws::Frame::Text(bytes)) => {
                if bytes.starts_with(b"{\"type\":\"tweet\"") {
                    let seq = workload::seq_of(bytes);
                    tracker.tweet(bytes, seq);
                } else if bytes.starts_with(b"{\"type\":\"lagged\"") {
                    let dropped = serde_json::from_slice::<serde_json::Value>(bytes)
                        .ok()
                        .and_then(|v| v["dropped"].as_u64())
                        .unwrap_or(0);
                    tracker.seen.lagged_events += 1;
                    tracker.seen.lagged_dropped += dropped;
                    tracker
                        .live
                        .lagged_dropped
                        .fetch_add(dropped, Ordering::Relaxed);
                } else if bytes.starts_with(b"{\"type\":\"error\"") {
                    tracker
                        .seen
                        .errors
                        .push(String::from_utf8_lossy(bytes).into_owned());
                }
            }
            Ok(rawws::Frame::Close) => {
                tracker.seen.errors.push("closed by the server".into());
                break;
            }
            Err(e) => {
                tracker.seen.errors.push(format!("stream: {e:#}"));
                break;
            }
        }
    }
    tracker.finish()
}

pub(super) async fn read_nats(
    mut conn: nats::Connection,
    mut tracker: Tracker<'_>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let mut line = String::new();
    let mut payload = Vec::new();
    loop {
        let event = tokio::select! {
            e = conn.next(&mut line, &mut payload) => e,
            _ = stop.changed() => break,
        };
        match event {
            Ok(nats::Event::Msg(p)) => tracker.tweet(p, None),
            Ok(nats::Event::Closed(why)) => {
                // NATS has no lagged notice: a slow consumer is disconnected.
                tracker.seen.lagged_events += 1;
                tracker.seen.errors.push(why);
                break;
            }
            Err(e) => {
                tracker.seen.errors.push(format!("nats: {e:#}"));
                break;
            }
        }
    }
    tracker.finish()
}
