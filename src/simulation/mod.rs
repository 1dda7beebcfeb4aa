//! The deterministic simulator: the inventory service and its journal on a simulated disk
//! and clock, and the checkout service over them (its charge markers and the wallet on the same
//! disk, the wallet's keys from the seed) against
//! a payment gateway outside the node, driven by one seeded generator, with crashes, disk faults
//! and gateway timeouts injected, and the node checked against what its clients were told after
//! every reply and every restart, and the money at the end.
//!
//! One seed is one run on one thread: the journal's writer is stepped by hand
//! ([`Platform::writer_thread`] false), every future is polled here, and every random choice
//! (the catalog, the workload, which pages a crash keeps) comes from the seed. So a failing
//! seed replays exactly (`--seeds 1 --seed-start S`).
//!
//! What a seed does: a catalog of one to four products (stock, per-customer limits, sale
//! windows, hold times); then `ops` steps, each one of: reserve (keyed or not), an idempotent
//! retry of an earlier key (same or different request), release, checkout (a sandbox card that
//! pays or declines, keyed or not, now and then a keyed one again; some save the card, some pay
//! with a saved one), a buyer listing or deleting saved cards, restock, the upkeep (expiry
//! sweep, then refund sweep), a group commit, the clock moving (across hold expiries and sale
//! windows), an admin's catalog change (rules changed, a product closed, reopened or added), and
//! faults: a power loss (unsynced pages kept, lost, torn or reordered at random), a killed
//! process (the page cache survives), a sync failing with EIO, a full disk, a bit flipped in
//! durable data. At the end, the faults over, every hold expires and the refund sweep runs, and
//! every charge must have its order or its refund.

mod admin;
mod cards;
mod catalog;
mod faults;
mod gateway;
mod ledger;
mod money;
mod replies;
mod saved_cards;
mod seeded_entropy;
mod workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::checkout::charge_markers::{CHARGES_FILE, ChargeMarkers, ChargeMarkersError};
use crate::checkout::fingerprint::FingerprintKey;
use crate::checkout::order_book::OrderBook;
use crate::checkout::service::{CheckoutService, OrderListeners};
use crate::checkout::wallet::{MasterKey, Wallet, WalletError};
use crate::clock::{Clock, SimClock};
use crate::decorate::partner_index::{CatalogStore, PartnerIndex};
use crate::inventory::KeyWindow;
use crate::inventory::service::{InventoryService, Platform, RecoveredOrders, StartError};
use crate::journal::{ArchiveReader, JournalError, JournalOptions};
use crate::model::{Catalog, Order, Partner, PartnerKind, Product};
use crate::storage::{BlockingIo, SimDisk, SimDiskFaults, SplitMix64};
use crate::store::Store;
use gateway::SimGateway;
use ledger::{HoldEnd, Ledger, StockFact};
use saved_cards::{SavedCards, wallet_dir};
use seeded_entropy::SeededEntropy;
use workload::InFlight;

/// Where the simulated clock starts (2023-11-14), plus up to a year from the seed.
const EPOCH_MS: i64 = 1_700_000_000_000;
/// The data dir and the journal's directory in it, on the simulated disk.
const DATA_DIR: &str = "/data";
const JOURNAL_DIR: &str = "/data/journal";
/// How long idempotency keys are remembered in a run.
const KEY_WINDOW_MS: i64 = 600_000;
/// The most operations in flight at once (a batch's worth).
const MAX_IN_FLIGHT: usize = 48;
/// Customers a run draws from.
const CUSTOMERS: [&str; 4] = ["ann", "bo", "cy", "dee"];

/// What a run does.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// Workload steps per seed.
    pub ops: usize,
    /// Inject crashes and disk faults (off: only the workload, as a baseline).
    pub faults: bool,
    /// Print every operation, reply and restart to stderr (for replaying a failing seed).
    pub trace: bool,
    /// A known bug to plant for the run (only with the `planted-bugs` feature).
    pub planted: Option<crate::planted_bugs::PlantedBug>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            ops: 400,
            faults: true,
            trace: false,
            planted: None,
        }
    }
}

/// Faults injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub power_losses: u64,
    pub process_kills: u64,
    pub pages_lost: u64,
    pub pages_torn: u64,
    pub lengths_lost: u64,
    pub name_ops_lost: u64,
    /// Syncs that failed with EIO (counted by the disk: a failure armed for a commit with
    /// nothing to sync fails nothing).
    pub sync_eio: u64,
    /// Writes refused with ENOSPC (counted by the disk).
    pub enospc: u64,
    /// Bits flipped in durable data (each must stop start-up as `Corrupt`).
    pub bit_flips: u64,
    pub clock_jumps: u64,
    /// Charges the gateway answered with a timeout (the card charged or not).
    pub gateway_timeouts: u64,
}

impl FaultCounts {
    pub fn add(&mut self, other: &FaultCounts) {
        self.power_losses += other.power_losses;
        self.process_kills += other.process_kills;
        self.pages_lost += other.pages_lost;
        self.pages_torn += other.pages_torn;
        self.lengths_lost += other.lengths_lost;
        self.name_ops_lost += other.name_ops_lost;
        self.sync_eio += other.sync_eio;
        self.enospc += other.enospc;
        self.bit_flips += other.bit_flips;
        self.clock_jumps += other.clock_jumps;
        self.gateway_timeouts += other.gateway_timeouts;
    }
}

/// What one seed did and found.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    /// Operations the clients sent (reserves, retries, releases, checkouts, restocks).
    pub ops: u64,
    /// Operations acknowledged.
    pub acknowledged: u64,
    /// Restarts (after a crash, a kill or a stopped journal).
    pub restarts: u64,
    /// What the buyers paid: charges made, declined, refunded.
    pub money: MoneyCounts,
    /// What the buyers did with their wallets.
    pub wallets: WalletCounts,
    pub faults: FaultCounts,
    /// Every broken invariant, in the order found; empty when the seed passed.
    pub violations: Vec<String>,
}

/// The payments of a run, as the gateway saw them at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyCounts {
    /// Checkouts that answered with an order, and those a card's decline refused.
    pub orders: u64,
    pub declines: u64,
    /// Cards charged, and charges given back.
    pub charges: u64,
    pub refunds: u64,
}

/// The wallets of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalletCounts {
    /// Saved cards a listing showed (each counted once).
    pub cards_shown: u64,
    /// Deletions acknowledged.
    pub deletions: u64,
    /// Sales charged to a saved card.
    pub saved_card_orders: u64,
}

impl WalletCounts {
    pub fn add(&mut self, other: &WalletCounts) {
        self.cards_shown += other.cards_shown;
        self.deletions += other.deletions;
        self.saved_card_orders += other.saved_card_orders;
    }
}

impl MoneyCounts {
    pub fn add(&mut self, other: &MoneyCounts) {
        self.orders += other.orders;
        self.declines += other.declines;
        self.charges += other.charges;
        self.refunds += other.refunds;
    }
}

/// One seed's world.
struct World {
    rng: SplitMix64,
    disk: SimDisk,
    clock: SimClock,
    /// Every product the admin ever added, with its current rules.
    catalog: Vec<Product>,
    /// Products the admin closed (and has not reopened).
    removed: BTreeSet<String>,
    journal: JournalOptions,
    node: Option<Arc<InventoryService>>,
    /// Checkout on the node: its order book, the catalog store and the gateway.
    checkout: Option<Arc<CheckoutService>>,
    /// The node's store (inventory, orders, wallet), as the routes reach it.
    store: Option<Store>,
    /// Where the wallet's keys, nonces and card ids come from: the seed.
    entropy: Arc<SeededEntropy>,
    /// What the buyers were shown of their wallets, and what they deleted.
    saved: SavedCards,
    /// The catalog as the catalog store holds it (the admin's changes applied).
    catalog_store: Arc<CatalogStore>,
    /// Outside the node: it outlives every crash.
    gateway: Arc<SimGateway>,
    /// The server secret, which checkout's idempotency fingerprints are derived from.
    secret: [u8; 8],
    /// The orders the last start recovered from the journal.
    recovered_orders: Vec<Vec<u8>>,
    in_flight: Vec<InFlight>,
    ledger: Ledger,
    report: SeedReport,
    /// Set after a bit flip: the next start must refuse with `Corrupt`; the flip to undo.
    flipped: Option<(PathBuf, u64, u8)>,
    attempts: u64,
    trace: bool,
}

/// Runs one seed. Never panics on a finding: every broken invariant is in the report.
pub fn run_seed(seed: u64, options: &SimOptions) -> SeedReport {
    #[cfg(feature = "planted-bugs")]
    let _planted = crate::planted_bugs::plant(options.planted);
    let mut rng = SplitMix64::new(seed);
    let disk = SimDisk::new(rng.next_u64(), SimDiskFaults::default());
    let clock = SimClock::new(EPOCH_MS + rng.below(365 * 86_400_000) as i64);
    let catalog = catalog::generate_catalog(&mut rng, clock.now_ms());
    let journal = JournalOptions {
        segment_bytes: 1024 + rng.below(32 * 1024),
        max_batch_records: 1 + rng.below(64) as usize,
        snapshot_after_records: 10 + rng.below(300),
        queue_capacity: 1 << 14,
        ..JournalOptions::default()
    };
    let mut ledger = Ledger {
        trace: options.trace,
        ..Ledger::default()
    };
    for product in &catalog {
        ledger.stock.insert(
            product.id.clone(),
            StockFact {
                opening: product.stock,
                ..StockFact::default()
            },
        );
    }
    let gateway = Arc::new(SimGateway::new(rng.next_u64()));
    let secret = rng.next_u64().to_le_bytes();
    let entropy = Arc::new(SeededEntropy::new(rng.next_u64()));
    let mut world = World {
        rng,
        disk,
        clock,
        catalog,
        removed: BTreeSet::new(),
        journal,
        node: None,
        checkout: None,
        store: None,
        entropy,
        saved: SavedCards::default(),
        catalog_store: Arc::new(CatalogStore::new(PartnerIndex::default())),
        gateway,
        secret,
        recovered_orders: Vec::new(),
        in_flight: Vec::new(),
        ledger,
        report: SeedReport {
            seed,
            ..SeedReport::default()
        },
        flipped: None,
        attempts: 0,
        trace: options.trace,
    };
    world.catalog_changed();
    world.start();
    for _ in 0..options.ops {
        if world.node.is_none() {
            // A start that failed for good (reported): nothing more to drive.
            break;
        }
        world.step(options.faults);
    }
    world.finish();
    let mut report = world.report;
    let disk = world.disk.stats();
    report.faults.sync_eio = disk.sync_eio;
    report.faults.enospc = disk.enospc;
    report.faults.gateway_timeouts = world.gateway.timeouts();
    report.wallets.cards_shown = world.saved.shown_count();
    report.violations = std::mem::take(&mut world.ledger.violations);
    report
}

impl World {
    fn node(&self) -> Option<&Arc<InventoryService>> {
        self.node.as_ref()
    }

    /// Whether the node takes no changes (its journal or its charge markers stopped): the
    /// operator restarts it.
    fn stopped(&self) -> bool {
        self.node()
            .is_some_and(|node| node.unavailable_reason().is_some())
            || self
                .checkout
                .as_ref()
                .is_some_and(|checkout| checkout.unavailable_reason().is_some())
    }

    /// Starts (or restarts) the node on what the disk holds, and checks what it recovered.
    fn start(&mut self) {
        self.checkout = None;
        self.store = None;
        let platform = Platform {
            storage: Arc::new(self.disk.clone()),
            clock: Arc::new(self.clock.clone()),
            writer_thread: false,
        };
        let started = InventoryService::start_on(
            platform,
            Path::new(JOURNAL_DIR),
            &self.open_catalog(),
            self.journal.clone(),
            KeyWindow::new(Duration::from_millis(KEY_WINDOW_MS as u64)),
        );
        // Then the wallet and checkout's charge markers, as the server opens them after the
        // journal.
        let wallet = started.is_ok().then(|| {
            Wallet::open_on(
                Arc::new(self.disk.clone()),
                Arc::clone(&self.entropy) as _,
                &wallet_dir(),
                MasterKey::derive(&self.secret),
            )
        });
        let charges = matches!(wallet, Some(Ok(_))).then(|| {
            ChargeMarkers::open(
                Arc::new(self.disk.clone()),
                &Path::new(DATA_DIR).join(CHARGES_FILE),
                Arc::new(self.clock.clone()),
                BlockingIo::Inline,
            )
        });
        if let Some(crash) = self.disk.take_crash() {
            // The power went out again, during start-up.
            drop((started, wallet, charges));
            self.count_crash(crash);
            return self.start();
        }
        let disk_full = self.disk.faults().capacity_bytes.is_some();
        let stopped_by_a_full_disk = disk_full
            && (matches!(charges, Some(Err(_)))
                || matches!(wallet, Some(Err(WalletError::Io { .. })))
                || match &started {
                    // A full disk may stop start-up with a clear I/O error (in the journal, or in
                    // opening a product whose `Opened` record was lost), or stop the journal just
                    // after (at the roll to a new segment).
                    Err(StartError::Journal(JournalError::Io { .. }) | StartError::Open { .. }) => {
                        true
                    }
                    Ok(node) => node.unavailable_reason().is_some(),
                    Err(_) => false,
                });
        if stopped_by_a_full_disk {
            // The operator frees space and starts again (a flipped bit is still to be found).
            drop((started, wallet, charges));
            self.disk.set_faults(SimDiskFaults::default());
            return self.start();
        }
        let wallet = match wallet {
            Some(Ok(wallet)) => Some(Arc::new(wallet)),
            Some(Err(WalletError::Corrupt { .. }))
                if self
                    .flipped
                    .as_ref()
                    .is_some_and(|(path, _, _)| path.starts_with(wallet_dir())) =>
            {
                // A bit flipped in the wallet's key check, reported as corruption: restore it.
                drop((started, charges));
                self.undo_flip();
                return self.start();
            }
            Some(Err(error)) => {
                drop((started, charges));
                return self
                    .ledger
                    .violation(format!("the wallet did not open after a crash: {error}"));
            }
            None => None,
        };
        let charges = match charges {
            Some(Ok(charges)) => Some(Arc::new(charges)),
            Some(Err(ChargeMarkersError::Journal(JournalError::Corrupt { .. })))
                if self.flipped.is_some() =>
            {
                // A bit flipped in the markers' file, reported as corruption: restore it.
                drop(started);
                self.undo_flip();
                return self.start();
            }
            Some(Err(error)) => {
                drop(started);
                return self.ledger.violation(format!(
                    "the charge markers did not open after a crash: {error}"
                ));
            }
            None => None,
        };
        if let (Ok(_), Some(wallet), Some((path, _, _))) = (&started, &wallet, &self.flipped)
            && self.check_flipped_wallet(wallet, &path.clone())
        {
            // A buyer's wallet file, which is read when that buyer's wallet is: restored once
            // its read reported the damage.
            self.undo_flip();
        }
        match (started, self.flipped.take()) {
            (Err(StartError::Journal(JournalError::Corrupt { .. })), Some(flip)) => {
                // Reported as corruption, as it must be. Undo the flip (the operator restores
                // the file) and start again.
                self.flipped = Some(flip);
                self.undo_flip();
                self.start();
            }
            (Ok(node), Some((path, offset, _))) => {
                drop(node);
                self.ledger.violation(format!(
                    "a bit flipped at {}:{offset} in durable data was accepted at start-up",
                    path.display()
                ));
            }
            (Err(error), Some(_)) => {
                self.ledger.violation(format!(
                    "a flipped bit was reported as something other than corruption: {error}"
                ));
            }
            (Err(error), None) => {
                self.ledger
                    .violation(format!("the node did not start after a crash: {error}"));
            }
            (Ok(node), None) => {
                self.node = Some(node);
                self.check_recovered(charges, wallet);
                self.gateway.reach(true);
            }
        }
    }

    /// The operator restores the file a bit was flipped in, once the damage was reported.
    fn undo_flip(&mut self) {
        if let Some((path, offset, bit)) = self.flipped.take() {
            if self.trace {
                eprintln!("FLIP REPORTED {}:{offset}", path.display());
            }
            self.disk.flip_bit(&path, offset, bit);
        }
    }

    /// After a start: every acknowledged hold, release, sale, order and restock is there.
    /// Then checkout starts on the node, with `charges` (opened when the node started).
    fn check_recovered(
        &mut self,
        charges: Option<Arc<ChargeMarkers>>,
        wallet: Option<Arc<Wallet>>,
    ) {
        let (Some(node), Some(charges), Some(wallet)) = (self.node.clone(), charges, wallet) else {
            return;
        };
        self.check_wallets_after_start(&wallet);
        let now = self.clock.now_ms();
        for (id, hold) in &self.ledger.holds.clone() {
            let found = node.hold_of(&hold.customer, id);
            match (&hold.end, found) {
                (HoldEnd::Open, Ok(view))
                    if view.quantity != hold.quantity
                        || view.expires_at_ms != hold.expires_at_ms =>
                {
                    self.ledger.violation(format!(
                        "hold {id} came back as {} units to {} (was {} to {})",
                        view.quantity, view.expires_at_ms, hold.quantity, hold.expires_at_ms
                    ));
                }
                (HoldEnd::Open, Err(error)) if now < hold.expires_at_ms => {
                    self.ledger.violation(format!(
                        "acknowledged hold {id} was lost at a restart ({:?}: {})",
                        error.code, error.message
                    ));
                }
                (HoldEnd::Released | HoldEnd::Confirmed(_), Ok(_)) => {
                    self.ledger.violation(format!(
                        "hold {id} is live again after its {:?} was acknowledged",
                        hold.end
                    ));
                }
                _ => {}
            }
        }
        for product in self.open_catalog() {
            if let Some(counts) = node.counts(&product.id) {
                self.ledger.check_counts(&product.id, counts);
            }
        }
        let recovered = node.take_recovered_orders();
        match read_recovered_orders(recovered.as_ref()) {
            Ok(orders) => {
                self.ledger.check_orders(&orders);
                self.recovered_orders = orders;
            }
            Err(error) => self
                .ledger
                .violation(format!("the recovered orders cannot be read: {error}")),
        }
        match OrderBook::in_memory(recovered) {
            Ok(orders) => {
                let store = Store::simulated(node, Arc::new(orders), wallet, charges);
                self.store = Some(store.clone());
                let checkout = CheckoutService::with_store(
                    store,
                    Arc::clone(&self.catalog_store),
                    Arc::clone(&self.gateway) as _,
                    Arc::new(NoConnections),
                    FingerprintKey::derive(&self.secret),
                )
                .on_clock(Arc::new(self.clock.clone()));
                self.checkout = Some(Arc::new(checkout));
            }
            Err(error) => self.ledger.violation(format!(
                "the order book cannot be filled from the journal: {error}"
            )),
        }
    }

    /// The catalog store takes the catalog as the admin left it (as an admin write does).
    fn catalog_changed(&mut self) {
        let catalog = Catalog {
            partners: vec![Partner {
                id: String::from("sim"),
                name: String::from("Simulated partner"),
                accounts: vec![String::from("sim")],
                platform: crate::model::Platform::Direct,
                kind: PartnerKind::Brand,
            }],
            products: self.open_catalog(),
        };
        match PartnerIndex::build(&catalog) {
            Ok(index) => self.catalog_store.replace(index),
            Err(error) => self
                .ledger
                .violation(format!("the simulated catalog does not validate: {error}")),
        }
    }

    fn step(&mut self, faults: bool) {
        let roll = self.rng.below(1000);
        match roll {
            0..=299 => self.reserve(),
            300..=379 => self.retry_key(),
            380..=469 => self.release(),
            470..=579 => self.checkout(),
            580..=609 => self.restock(),
            610..=659 => self.sweep(),
            660..=679 => self.list_cards(),
            680..=689 => self.delete_card(),
            690..=859 => self.commit(),
            860..=939 => self.poll_all(),
            940..=969 => self.advance_clock(),
            970..=979 => self.admin(),
            _ if faults => self.fault(),
            _ => self.commit(),
        }
        if let Some(crash) = self.disk.take_crash() {
            // The power went out in the middle of a write, a sync or a rename.
            if self.trace {
                eprintln!("POWER LOST MID-CALL {crash:?}");
            }
            self.count_crash(crash);
            self.start_again();
        }
        if self.stopped() {
            // The journal or the charge markers stopped (EIO, full disk): the operator restarts
            // the node, after a power loss now and then.
            let power = self.rng.below(3) == 0;
            self.restart(power);
        }
    }

    /// The end of a run: everything answered, then a power loss and one last check.
    fn finish(&mut self) {
        self.answer_everything();
        if self.node.is_some() {
            self.restart(true);
        }
        self.settle_every_charge();
        self.node = None;
        self.checkout = None;
        self.store = None;
        self.check_money();
        self.check_no_card_number_on_disk();
    }

    /// After the last restart, with the faults over (the operator has freed space): every
    /// hold expires and the refund sweep runs until every charge has an order or a refund.
    fn settle_every_charge(&mut self) {
        self.disk.set_faults(SimDiskFaults::default());
        let longest_hold_ms = 60_000;
        let grace_ms = crate::checkout::service::REFUND_GRACE.as_millis() as i64;
        self.clock.advance(longest_hold_ms + grace_ms + 1);
        for _ in 0..100 {
            if self.stopped() {
                // Stopped by a fault of the run itself: start it again.
                self.restart(false);
            }
            if self.node.is_none() || self.checkout.as_ref().is_none_or(|c| c.charges_open() == 0) {
                break;
            }
            self.sweep();
            self.answer_everything();
        }
    }
}

impl World {
    /// Commits and polls until every operation in flight is answered. A reply may take a few
    /// rounds: a checkout waits for another checkout of its hold, then for the gateway, then
    /// for the journal.
    fn answer_everything(&mut self) {
        for _ in 0..4 * MAX_IN_FLIGHT {
            if let Some(node) = self.node() {
                while node.step_journal() {}
            }
            self.poll_all();
            if self.in_flight.is_empty() {
                break;
            }
        }
    }
}

/// The simulator's node has no connections to tell of an order: the buyer's reply is all.
struct NoConnections;

impl OrderListeners for NoConnections {
    fn order_confirmed(&self, _customer: &str, _order: &Order, _origin: Option<u64>) {}
}

/// Every order payload the node recovered: the archive's, then those in records after the
/// snapshot.
fn read_recovered_orders(
    recovered: Option<&RecoveredOrders>,
) -> Result<Vec<Vec<u8>>, JournalError> {
    let Some(recovered) = recovered else {
        return Ok(Vec::new());
    };
    let mut orders = Vec::new();
    let mut reader = ArchiveReader::open(
        &*recovered.storage,
        &recovered.archive,
        0,
        recovered.archive_len,
    )?;
    while let Some((payload, _)) = reader.next_frame()? {
        orders.push(payload.to_vec());
    }
    orders.extend(recovered.unarchived.iter().cloned());
    Ok(orders)
}
