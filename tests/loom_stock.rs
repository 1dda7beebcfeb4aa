//! A loom model of the inventory's lock-free core: the stock word, a hold's state word and a
//! customer's limit count, exactly as the engine uses them (`src/inventory/{stock, hold,
//! customers}.rs`), under every interleaving loom can find.
//!
//! Run: `cargo test --release --features loom --test loom_stock`. Under the `loom` feature the
//! core's atomics are loom's model types, and the stock word is a 64-bit word of four 16-bit
//! fields (loom has no 128-bit atomic): the same algorithm on narrower fields. The maps around
//! the core (product table, hold arena, skip lists) are not modelled; they only find the words
//! modelled here.
#![cfg(feature = "loom")]

use buyline::{
    CustomerUnits, Ending, HoldPhase, HoldState, Refusal, Shortfall, StockCounts, StockWord,
    end_hold,
};
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::sync::atomic::Ordering::Relaxed;
use loom::thread;

fn stock(available: u32, held: u32) -> StockWord {
    StockWord::new(StockCounts {
        available,
        held,
        ..StockCounts::default()
    })
}

#[test]
fn two_reservations_for_the_last_unit_leave_one_hold() {
    loom::model(|| {
        let word = Arc::new(stock(1, 0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let word = Arc::clone(&word);
                thread::spawn(move || word.reserve(1))
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        assert!(outcomes.contains(&Err(Shortfall::SoldOut)));
        let counts = word.load();
        assert_eq!((counts.available, counts.held, counts.version), (0, 1, 1));
    });
}

#[test]
fn release_expiry_and_confirmation_end_a_hold_exactly_once() {
    loom::model(|| {
        let word = Arc::new(stock(0, 2));
        let hold = Arc::new(HoldState::new(1, HoldPhase::Held));
        let threads: Vec<_> = [Ending::Released, Ending::Expired, Ending::Confirmed]
            .into_iter()
            .map(|ending| {
                let (word, hold) = (Arc::clone(&word), Arc::clone(&hold));
                thread::spawn(move || (ending, end_hold(&hold, &word, 1, ending, 2).is_ok()))
            })
            .collect();
        // Every snapshot taken while they race is conserved and never oversold.
        let seen = word.load();
        assert_eq!(seen.total(), 2);
        let winners: Vec<Ending> = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter_map(|(ending, won)| won.then_some(ending))
            .collect();
        assert_eq!(winners.len(), 1, "exactly one ending wins");
        let counts = word.load();
        assert_eq!(counts.held, 0);
        assert_eq!(counts.total(), 2);
        assert_eq!(counts.version, 1, "the units moved once");
        let expected = match winners[0] {
            Ending::Confirmed => (0, 2),
            Ending::Released | Ending::Expired => (2, 0),
        };
        assert_eq!((counts.available, counts.sold), expected);
        assert_eq!(hold.load(), (1, HoldPhase::from(winners[0])));
    });
}

#[test]
fn a_hold_seen_live_is_seen_whole_and_ends_once() {
    loom::model(|| {
        let word = Arc::new(stock(1, 0));
        let hold = Arc::new(HoldState::new(0, HoldPhase::Free));
        // Stands for the hold's data, written before publication.
        let quantity = Arc::new(AtomicU32::new(0));

        let releaser = {
            let (word, hold, quantity) =
                (Arc::clone(&word), Arc::clone(&hold), Arc::clone(&quantity));
            thread::spawn(move || {
                let (generation, phase) = hold.load();
                if phase != HoldPhase::Held {
                    return false;
                }
                // Publication carries the data: a hold seen live is seen whole.
                let quantity = quantity.load(Relaxed);
                assert_eq!(quantity, 1);
                end_hold(&hold, &word, generation, Ending::Released, quantity).is_ok()
            })
        };
        // The reservation, as the engine makes it: stock, then data, then publication.
        word.reserve(1).unwrap();
        let generation = hold.next_generation();
        quantity.store(1, Relaxed);
        hold.publish(generation);
        let released = releaser.join().unwrap();
        // Expiry comes after: it ends the hold only if the release did not.
        let expired = end_hold(&hold, &word, generation, Ending::Expired, 1).is_ok();
        assert!(released != expired, "exactly one ending");
        let counts = word.load();
        assert_eq!((counts.available, counts.held, counts.total()), (1, 0, 1));
    });
}

#[test]
fn parallel_taps_by_one_customer_never_pass_the_limit() {
    loom::model(|| {
        let word = Arc::new(stock(1, 0));
        let units = Arc::new(CustomerUnits::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (word, units) = (Arc::clone(&word), Arc::clone(&units));
                thread::spawn(move || {
                    // The engine's order: the count first, then the stock, rolling back the
                    // count if the stock falls short.
                    match units.take(1, 1) {
                        Err(refusal) => {
                            assert!(matches!(refusal, Refusal::LimitExceeded { .. }));
                            false
                        }
                        Ok(taken) => {
                            assert!(taken <= 1);
                            match word.reserve(1) {
                                Ok(_) => true,
                                Err(_) => {
                                    units.give_back(1);
                                    false
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        assert!(units.units() <= 1);
        let holds = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|held| *held)
            .count() as u32;
        assert_eq!(holds, 1, "one unit, one tap gets it");
        assert_eq!(units.units(), holds);
        assert_eq!(word.load().held, holds);
    });
}

#[test]
fn a_change_to_zero_is_always_reported() {
    loom::model(|| {
        let word = Arc::new(stock(1, 0));
        let buyer = {
            let word = Arc::clone(&word);
            thread::spawn(move || {
                word.reserve(1).unwrap();
                word.restock(1).unwrap();
            })
        };
        let sweeper = {
            let word = Arc::clone(&word);
            thread::spawn(move || word.take_change())
        };
        buyer.join().unwrap();
        let during = sweeper.join().unwrap();
        let after = word.take_change();
        let reported_zero = [during, after]
            .iter()
            .flatten()
            .any(|(_, reached_zero)| *reached_zero);
        assert!(reported_zero, "the sale to zero was never reported");
        // Whatever the sweeper saw, the last report is the final state.
        let last = after.or(during).map(|(counts, _)| counts);
        assert_eq!(last.map(|c| c.available), Some(1));
    });
}
