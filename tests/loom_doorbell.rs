//! A loom model of the journal writer's doorbell (`src/journal/doorbell.rs`): appenders queue a
//! command and ring; the writer takes what is queued and sleeps when nothing is. Under every
//! interleaving loom finds, the writer takes every command and never sleeps through one (a lost
//! wake-up would leave it parked forever, which loom reports as a deadlock).
//!
//! Run: `cargo test --release --features loom --test loom_doorbell`. The queue is modelled by a
//! counter of queued commands; the doorbell is the real one, built on loom's atomics, fences
//! and threads under the `loom` feature.
#![cfg(feature = "loom")]

use buyline::Doorbell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use loom::thread;

/// Takes one queued command, if any (the writer's `try_recv`).
fn take(queued: &AtomicUsize) -> Option<()> {
    let mut now = queued.load(Acquire);
    while now > 0 {
        match queued.compare_exchange(now, now - 1, AcqRel, Acquire) {
            Ok(_) => return Some(()),
            Err(seen) => now = seen,
        }
    }
    None
}

/// `appenders` threads queue one command each and ring; the writer must take them all.
fn writer_takes_every_command(appenders: usize) {
    let mut model = loom::model::Builder::new();
    // Every interleaving with up to three preemptions: two appenders and the writer's loop
    // otherwise make the search space too large for CI (a lost wake-up needs one).
    model.preemption_bound = Some(3);
    model.check(move || {
        let bell = Arc::new(Doorbell::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (bell, queued) = (Arc::clone(&bell), Arc::clone(&queued));
            thread::spawn(move || {
                for _ in 0..appenders {
                    assert!(bell.sleep_until(|| take(&queued), None).is_some());
                }
            })
        };
        // As the journal does: the sleeper is known before any appender exists.
        bell.set_sleeper(writer.thread().clone());
        let appenders: Vec<_> = (0..appenders)
            .map(|_| {
                let (bell, queued) = (Arc::clone(&bell), Arc::clone(&queued));
                thread::spawn(move || {
                    queued.fetch_add(1, Release);
                    bell.ring();
                })
            })
            .collect();
        for appender in appenders {
            appender.join().unwrap();
        }
        writer.join().unwrap();
        assert_eq!(queued.load(Acquire), 0);
    });
}

#[test]
fn one_appender_never_goes_unheard() {
    writer_takes_every_command(1);
}

#[test]
fn two_appenders_never_go_unheard() {
    writer_takes_every_command(2);
}
