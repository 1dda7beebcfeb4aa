//! Per-stream ordering: records of one stream are written in `seq` order, whatever order they
//! reach the writer in.
//!
//! The inventory bumps a product's version in memory and then appends the record; two threads can
//! hand over version 7 before version 6. The writer therefore holds a record back until every
//! earlier seq of its stream has been released, then releases the run that became contiguous.
//! Replay order then equals the order in which the changes happened in memory.
//!
//! The hold-back is bounded: by the appends in flight (each held record has an appender waiting
//! on it) and, as a hard cap, by `max_held`; a record that would be held beyond the cap is
//! refused. A gap older than the alarm threshold is reported once: it means an upstream bug
//! (a version was bumped and its record never appended).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use super::error::JournalError;

/// Where a record sits in its stream: `seq` must follow the stream's previous record's seq by
/// one (wrapping at `u32::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamPos {
    /// The stream (for the inventory: a product's index).
    pub stream: u32,
    /// The record's position in the stream (for the inventory: the product's version after the
    /// change).
    pub seq: u32,
}

/// A gap that has lasted past the alarm threshold, for the writer to log.
#[derive(Debug, PartialEq, Eq)]
pub struct OverdueGap {
    /// The stream.
    pub stream: u32,
    /// The seq that has not arrived.
    pub expected: u32,
    /// Records of the stream waiting behind it.
    pub held: usize,
    /// How long the gap has been open.
    pub age: Duration,
}

/// The ordering state of every open stream. `T` is what is held (an append with its
/// acknowledgement sender); generic so the logic is tested without a writer.
#[derive(Debug)]
pub struct StreamOrder<T> {
    /// Every stream opened with [`StreamOrder::open`].
    streams: HashMap<u32, Stream<T>>,
    /// Records held across all streams.
    held: usize,
    /// The most records that may be held at once.
    max_held: usize,
}

#[derive(Debug)]
struct Stream<T> {
    /// The seq the stream needs next.
    next: u32,
    /// Records that arrived early, by seq.
    held: HashMap<u32, T>,
    /// When the current gap opened (the first record was held behind `next`).
    gap_since: Option<Instant>,
    /// Whether the current gap has been reported, so it is reported once.
    alarmed: bool,
}

impl<T> StreamOrder<T> {
    /// No open streams; at most `max_held` records held back at once.
    pub fn new(max_held: usize) -> StreamOrder<T> {
        StreamOrder {
            streams: HashMap::new(),
            held: 0,
            max_held,
        }
    }

    /// Records held back across all streams.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Sets where `stream` stands: its last written seq is `last_seq`, so `last_seq + 1` comes
    /// next. Held records that are now next are pushed to `ready`; held records now at or
    /// before `last_seq` are returned with their error.
    pub fn open(
        &mut self,
        stream: u32,
        last_seq: u32,
        now: Instant,
        ready: &mut Vec<T>,
    ) -> Vec<(T, JournalError)> {
        let state = self.streams.entry(stream).or_insert_with(|| Stream {
            next: 0,
            held: HashMap::new(),
            gap_since: None,
            alarmed: false,
        });
        state.next = last_seq.wrapping_add(1);
        let next = state.next;
        let stale_seqs: Vec<u32> = state
            .held
            .keys()
            .copied()
            .filter(|&seq| (seq.wrapping_sub(next) as i32) < 0)
            .collect();
        let stale = stale_seqs
            .into_iter()
            .filter_map(|seq| {
                let item = state.held.remove(&seq)?;
                Some((
                    item,
                    JournalError::StaleSeq {
                        stream,
                        seq,
                        expected: next,
                    },
                ))
            })
            .collect::<Vec<_>>();
        self.held -= stale.len();
        self.release(stream, now, ready, true);
        stale
    }

    /// Admits one record: pushed to `ready` (followed by any held records it unblocks) if it is
    /// next, held if it is early, or returned with its error.
    pub fn admit(
        &mut self,
        pos: StreamPos,
        item: T,
        now: Instant,
        ready: &mut Vec<T>,
    ) -> Result<(), (T, JournalError)> {
        let StreamPos { stream, seq } = pos;
        let Some(state) = self.streams.get_mut(&stream) else {
            return Err((item, JournalError::UnknownStream { stream, seq }));
        };
        // Wrapping distance: seqs within 2^31 ahead of `next` are early, behind are stale.
        let ahead = seq.wrapping_sub(state.next) as i32;
        if ahead == 0 {
            ready.push(item);
            state.next = state.next.wrapping_add(1);
            self.release(stream, now, ready, true);
            return Ok(());
        }
        let expected = state.next;
        if ahead < 0 {
            return Err((
                item,
                JournalError::StaleSeq {
                    stream,
                    seq,
                    expected,
                },
            ));
        }
        if self.held >= self.max_held {
            return Err((
                item,
                JournalError::StreamGap {
                    stream,
                    seq,
                    expected,
                },
            ));
        }
        match state.held.entry(seq) {
            Entry::Occupied(_) => Err((
                item,
                JournalError::StaleSeq {
                    stream,
                    seq,
                    expected,
                },
            )),
            Entry::Vacant(slot) => {
                slot.insert(item);
                state.gap_since.get_or_insert(now);
                self.held += 1;
                Ok(())
            }
        }
    }

    /// Moves the held records that are now contiguous with `next` to `ready`. `advanced` says
    /// the caller has just moved `next`.
    fn release(&mut self, stream: u32, now: Instant, ready: &mut Vec<T>, advanced: bool) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut released = 0;
        while let Some(item) = state.held.remove(&state.next) {
            ready.push(item);
            state.next = state.next.wrapping_add(1);
            released += 1;
        }
        self.held -= released;
        if state.held.is_empty() {
            state.gap_since = None;
            state.alarmed = false;
        } else if advanced || released > 0 || state.gap_since.is_none() {
            // The old gap closed but records still wait behind a new one: its clock starts now.
            state.gap_since = Some(now);
            state.alarmed = false;
        }
    }

    /// Gaps open for longer than `alarm` that have not been reported yet.
    pub fn overdue(&mut self, now: Instant, alarm: Duration) -> Vec<OverdueGap> {
        let mut overdue = Vec::new();
        for (&stream, state) in &mut self.streams {
            let Some(since) = state.gap_since else {
                continue;
            };
            let age = now.saturating_duration_since(since);
            if !state.alarmed && age >= alarm {
                state.alarmed = true;
                overdue.push(OverdueGap {
                    stream,
                    expected: state.next,
                    held: state.held.len(),
                    age,
                });
            }
        }
        overdue
    }

    /// Takes every held record out (at shutdown), each with the error saying which seq it
    /// waited for.
    pub fn drain(&mut self) -> Vec<(T, JournalError)> {
        let mut failed = Vec::with_capacity(self.held);
        for (&stream, state) in &mut self.streams {
            let expected = state.next;
            failed.extend(state.held.drain().map(|(seq, item)| {
                (
                    item,
                    JournalError::StreamGap {
                        stream,
                        seq,
                        expected,
                    },
                )
            }));
            state.gap_since = None;
            state.alarmed = false;
        }
        self.held = 0;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(stream: u32, seq: u32) -> StreamPos {
        StreamPos { stream, seq }
    }

    #[test]
    fn records_handed_over_out_of_order_come_out_in_seq_order() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        assert!(order.open(1, 5, now, &mut ready).is_empty());
        order.admit(pos(1, 8), "v8", now, &mut ready).unwrap();
        order.admit(pos(1, 7), "v7", now, &mut ready).unwrap();
        assert!(ready.is_empty());
        assert_eq!(order.held(), 2);
        order.admit(pos(1, 6), "v6", now, &mut ready).unwrap();
        assert_eq!(ready, ["v6", "v7", "v8"]);
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn streams_are_independent() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(1, 0, now, &mut ready);
        order.open(2, 0, now, &mut ready);
        order.admit(pos(1, 2), "a2", now, &mut ready).unwrap();
        order.admit(pos(2, 1), "b1", now, &mut ready).unwrap();
        assert_eq!(ready, ["b1"]);
    }

    #[test]
    fn seq_wraps_around_u32_max() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(3, u32::MAX - 1, now, &mut ready);
        order.admit(pos(3, 0), "zero", now, &mut ready).unwrap();
        order
            .admit(pos(3, u32::MAX), "max", now, &mut ready)
            .unwrap();
        order.admit(pos(3, 1), "one", now, &mut ready).unwrap();
        assert_eq!(ready, ["max", "zero", "one"]);
    }

    #[test]
    fn stale_duplicate_and_unknown_records_are_refused() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(1, 10, now, &mut ready);
        let (_, err) = order.admit(pos(1, 10), "old", now, &mut ready).unwrap_err();
        assert!(matches!(
            err,
            JournalError::StaleSeq {
                seq: 10,
                expected: 11,
                ..
            }
        ));
        order.admit(pos(1, 13), "early", now, &mut ready).unwrap();
        let (_, err) = order
            .admit(pos(1, 13), "again", now, &mut ready)
            .unwrap_err();
        assert!(matches!(err, JournalError::StaleSeq { seq: 13, .. }));
        let (_, err) = order.admit(pos(9, 1), "who", now, &mut ready).unwrap_err();
        assert!(matches!(
            err,
            JournalError::UnknownStream { stream: 9, seq: 1 }
        ));
        assert!(ready.is_empty());
    }

    #[test]
    fn the_hold_back_is_capped() {
        let now = Instant::now();
        let mut order = StreamOrder::new(2);
        let mut ready = Vec::new();
        order.open(1, 0, now, &mut ready);
        order.admit(pos(1, 3), 3, now, &mut ready).unwrap();
        order.admit(pos(1, 4), 4, now, &mut ready).unwrap();
        let (item, err) = order.admit(pos(1, 5), 5, now, &mut ready).unwrap_err();
        assert_eq!(item, 5);
        assert!(matches!(err, JournalError::StreamGap { expected: 1, .. }));
        // The record that fills the gap is never refused for the cap.
        order.admit(pos(1, 1), 1, now, &mut ready).unwrap();
        order.admit(pos(1, 2), 2, now, &mut ready).unwrap();
        assert_eq!(ready, [1, 2, 3, 4]);
    }

    #[test]
    fn a_gap_is_reported_once_after_the_alarm_threshold() {
        let start = Instant::now();
        let alarm = Duration::from_secs(1);
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(4, 0, start, &mut ready);
        order.admit(pos(4, 3), "v3", start, &mut ready).unwrap();
        assert!(order.overdue(start + alarm / 2, alarm).is_empty());
        let later = start + alarm * 2;
        assert_eq!(
            order.overdue(later, alarm),
            [OverdueGap {
                stream: 4,
                expected: 1,
                held: 1,
                age: alarm * 2
            }]
        );
        assert!(order.overdue(later, alarm).is_empty());
        // Filling part of the gap starts a new one (v2 still missing), reported afresh later.
        order.admit(pos(4, 1), "v1", later, &mut ready).unwrap();
        assert!(order.overdue(later, alarm).is_empty());
        assert_eq!(order.overdue(later + alarm, alarm).len(), 1);
    }

    #[test]
    fn reopening_a_stream_refuses_held_records_it_passed() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(1, 0, now, &mut ready);
        order.admit(pos(1, 3), "v3", now, &mut ready).unwrap();
        order.admit(pos(1, 5), "v5", now, &mut ready).unwrap();
        let stale = order.open(1, 3, now, &mut ready);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, "v3");
        assert!(ready.is_empty());
        order.admit(pos(1, 4), "v4", now, &mut ready).unwrap();
        assert_eq!(ready, ["v4", "v5"]);
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn drain_fails_every_held_record() {
        let now = Instant::now();
        let mut order = StreamOrder::new(100);
        let mut ready = Vec::new();
        order.open(1, 0, now, &mut ready);
        order.admit(pos(1, 2), "v2", now, &mut ready).unwrap();
        let failed = order.drain();
        assert_eq!(failed.len(), 1);
        assert!(matches!(
            failed[0].1,
            JournalError::StreamGap {
                seq: 2,
                expected: 1,
                ..
            }
        ));
        assert_eq!(order.held(), 0);
    }
}
