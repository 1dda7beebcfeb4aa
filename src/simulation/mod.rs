//! The deterministic simulator: the inventory service and its journal on a simulated disk
//! and clock, driven by one seeded generator, with crashes and disk faults injected, and the
//! node checked against what its clients were told after every reply and every restart.
//!
//! One seed is one run on one thread: the journal's writer is stepped by hand
//! ([`Platform::writer_thread`] false), every future is polled here, and every random choice
//! (the catalog, the workload, which pages a crash keeps) comes from the seed. So a failing
//! seed replays exactly (`--seeds 1 --seed-start S`).
//!
//! What a seed does: a catalog of one to four products (stock, per-customer limits, sale
//! windows, hold times); then `ops` steps, each one of: reserve (keyed or not), an idempotent
//! retry of an earlier key (same or different request), release, checkout (confirm with an
//! order), restock, an expiry sweep, a group commit, the clock moving (across hold expiries and
//! sale windows), and faults: a power loss (unsynced pages kept, lost, torn or reordered at
//! random), a killed process (the page cache survives), a sync failing with EIO, a full disk, a
//! bit flipped in durable data.

mod ledger;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::{Clock, SimClock};
use crate::error::ApiError;
use crate::inventory::KeyWindow;
use crate::inventory::service::{InventoryService, Platform, ReserveReply, StartError};
use crate::journal::{ArchiveReader, JournalError, JournalOptions};
use crate::model::{Money, Product, SaleWindow};
use crate::storage::{SimDisk, SimDiskFaults, SplitMix64, Storage};
use ledger::{HoldEnd, HoldFact, KeyFact, Ledger, Outcome, StockFact, order_payload, outcome};

/// Where the simulated clock starts (2023-11-14), plus up to a year from the seed.
const EPOCH_MS: i64 = 1_700_000_000_000;
/// The journal's directory on the simulated disk.
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
    pub sync_eio: u64,
    pub enospc: u64,
    pub bit_flips: u64,
    pub clock_jumps: u64,
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
    pub faults: FaultCounts,
    /// Every broken invariant, in the order found; empty when the seed passed.
    pub violations: Vec<String>,
}

/// An operation in flight: what was asked, and the future that answers it.
struct InFlight {
    op: Op,
    /// When the engine decided it (the clock at submission).
    decided_at_ms: i64,
    reply: Pin<Box<dyn Future<Output = Reply>>>,
}

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        customer: String,
        product: String,
        quantity: u32,
        key: Option<String>,
    },
    Release {
        customer: String,
        hold: String,
    },
    Confirm {
        customer: String,
        hold: String,
        order: Vec<u8>,
    },
    Restock {
        product: String,
        quantity: u32,
    },
    Sweep,
}

enum Reply {
    Reserve(Result<ReserveReply, ApiError>),
    Units(Result<u32, ApiError>),
    Confirm(Result<(), ApiError>),
    Swept,
}

/// One seed's world.
struct World {
    rng: SplitMix64,
    disk: SimDisk,
    clock: SimClock,
    catalog: Vec<Product>,
    journal: JournalOptions,
    node: Option<Arc<InventoryService>>,
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
    let catalog = generate_catalog(&mut rng, clock.now_ms());
    let journal = JournalOptions {
        segment_bytes: 1024 + rng.below(32 * 1024),
        max_batch_records: 1 + rng.below(64) as usize,
        snapshot_after_records: 10 + rng.below(300),
        queue_capacity: 1 << 14,
        ..JournalOptions::default()
    };
    let mut ledger = Ledger::default();
    for product in &catalog {
        ledger.stock.insert(
            product.id.clone(),
            StockFact {
                opening: product.stock,
                per_customer_limit: product.per_customer_limit,
                ..StockFact::default()
            },
        );
    }
    let mut world = World {
        rng,
        disk,
        clock,
        catalog,
        journal,
        node: None,
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
    report.violations = std::mem::take(&mut world.ledger.violations);
    report
}

fn generate_catalog(rng: &mut SplitMix64, now_ms: i64) -> Vec<Product> {
    let count = 1 + rng.below(4);
    (0..count)
        .map(|i| {
            let sale = (rng.below(3) == 0).then(|| {
                let starts = now_ms + rng.below(120_000) as i64 - 30_000;
                let ends = starts + 10_000 + rng.below(600_000) as i64;
                SaleWindow {
                    starts_at: at(starts),
                    ends_at: at(ends),
                }
            });
            let limit = [0, 0, 1, 2, 3][rng.below(5) as usize];
            Product {
                id: format!("p{i}"),
                partner: String::from("sim"),
                title: format!("Product {i}"),
                description: String::new(),
                image: String::new(),
                price: Money {
                    amount: 1000,
                    currency: String::from("usd"),
                },
                urls: vec![format!("https://sim.example/p{i}")],
                limited_edition: limit > 0,
                stock: 1 + rng.below(40) as u32,
                per_customer_limit: limit,
                sale,
                hold_seconds: 1 + rng.below(60) as u32,
            }
        })
        .collect()
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl World {
    fn node(&self) -> Option<&Arc<InventoryService>> {
        self.node.as_ref()
    }

    /// Starts (or restarts) the node on what the disk holds, and checks what it recovered.
    fn start(&mut self) {
        let platform = Platform {
            storage: Arc::new(self.disk.clone()),
            clock: Arc::new(self.clock.clone()),
            writer_thread: false,
        };
        let started = InventoryService::start_on(
            platform,
            Path::new(JOURNAL_DIR),
            &self.catalog,
            self.journal.clone(),
            KeyWindow::new(Duration::from_millis(KEY_WINDOW_MS as u64)),
        );
        if let Some(crash) = self.disk.take_crash() {
            // The power went out again, during start-up.
            if let Ok(node) = started {
                drop(node);
            }
            self.count_crash(crash);
            return self.start();
        }
        match (started, self.flipped.take()) {
            (Err(StartError::Journal(JournalError::Corrupt { .. })), Some((path, offset, bit))) => {
                // Reported as corruption, as it must be. Undo the flip (the operator restores
                // the file) and start again.
                self.disk.flip_bit(&path, offset, bit);
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
            (Err(StartError::Journal(JournalError::Io { .. })), None) if self.disk_full() => {
                // A full disk may stop start-up with a clear I/O error; the operator frees
                // space and starts again.
                self.disk.set_faults(SimDiskFaults::default());
                self.start();
            }
            (Err(error), None) => {
                self.ledger
                    .violation(format!("the node did not start after a crash: {error}"));
            }
            (Ok(node), None) => {
                self.node = Some(node);
                self.check_recovered();
            }
        }
    }

    fn disk_full(&self) -> bool {
        self.disk_faults().capacity_bytes.is_some()
    }

    fn disk_faults(&self) -> SimDiskFaults {
        self.disk.faults()
    }

    /// After a start: every acknowledged hold, release, sale, order and restock is there.
    fn check_recovered(&mut self) {
        let Some(node) = self.node.clone() else {
            return;
        };
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
        for product in self.catalog.clone() {
            if let Some(counts) = node.counts(&product.id) {
                self.ledger.check_counts(&product.id, counts);
            }
        }
        match read_recovered_orders(&node) {
            Ok(orders) => self.ledger.check_orders(&orders),
            Err(error) => self
                .ledger
                .violation(format!("the recovered orders cannot be read: {error}")),
        }
    }

    fn step(&mut self, faults: bool) {
        let roll = self.rng.below(1000);
        match roll {
            0..=299 => self.reserve(),
            300..=379 => self.retry_key(),
            380..=469 => self.release(),
            470..=579 => self.confirm(),
            580..=609 => self.restock(),
            610..=659 => self.sweep(),
            660..=859 => self.commit(),
            860..=939 => self.poll_all(),
            940..=979 => self.advance_clock(),
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
        if self
            .node()
            .is_some_and(|node| node.unavailable_reason().is_some())
        {
            // The journal stopped (EIO, full disk): the operator restarts the node, after a
            // power loss now and then.
            let power = self.rng.below(3) == 0;
            self.restart(power);
        }
    }

    fn submit(&mut self, op: Op) {
        let Some(node) = self.node.clone() else {
            return;
        };
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.commit();
            self.poll_all();
        }
        self.report.ops += u64::from(!matches!(op, Op::Sweep));
        let decided_at_ms = self.clock.now_ms();
        let reply: Pin<Box<dyn Future<Output = Reply>>> = match op.clone() {
            Op::Reserve {
                customer,
                product,
                quantity,
                key,
            } => Box::pin(async move {
                Reply::Reserve(
                    node.reserve(&customer, &product, quantity, key.as_deref())
                        .await,
                )
            }),
            Op::Release { customer, hold } => {
                Box::pin(async move { Reply::Units(node.release(&customer, &hold).await) })
            }
            Op::Confirm {
                customer,
                hold,
                order,
            } => Box::pin(async move {
                Reply::Confirm(
                    node.confirm(&customer, &hold, Some(order))
                        .await
                        .map(|_| ()),
                )
            }),
            Op::Restock { product, quantity } => {
                Box::pin(async move { Reply::Units(node.restock(&product, quantity).await) })
            }
            Op::Sweep => Box::pin(async move {
                let mut records = Vec::new();
                node.sweep(&mut records).await;
                Reply::Swept
            }),
        };
        let mut in_flight = InFlight {
            op,
            decided_at_ms,
            reply,
        };
        // The first poll is where the engine decides: in submission order.
        match poll(&mut in_flight.reply) {
            Some(reply) => self.settle(in_flight.op, decided_at_ms, reply),
            None => self.in_flight.push(in_flight),
        }
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.below(items.len() as u64) as usize]
    }

    fn product(&mut self) -> String {
        let i = self.rng.below(self.catalog.len() as u64) as usize;
        self.catalog[i].id.clone()
    }

    fn reserve(&mut self) {
        let customer = self.pick(&CUSTOMERS).to_owned();
        let product = self.product();
        let quantity = [1, 1, 1, 2, 3, 0][self.rng.below(6) as usize];
        let key = (self.rng.below(2) == 0).then(|| format!("k{}", self.rng.below(1_000_000)));
        self.submit(Op::Reserve {
            customer,
            product,
            quantity,
            key,
        });
    }

    /// Sends a keyed request again: the same one (a client's retry), or now and then a
    /// different one under the same key (which must be refused).
    fn retry_key(&mut self) {
        let keys: Vec<(String, String)> = self.ledger.keys.keys().cloned().collect();
        if keys.is_empty() {
            return self.reserve();
        }
        let (customer, key) = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let Some(fact) = self.ledger.keys.get(&(customer.clone(), key.clone())) else {
            return;
        };
        let (mut product, mut quantity) = (fact.product.clone(), fact.quantity);
        if self.rng.below(5) == 0 {
            quantity += 1;
        }
        if self.rng.below(8) == 0 {
            product = self.product();
        }
        self.submit(Op::Reserve {
            customer,
            product,
            quantity,
            key: Some(key),
        });
    }

    /// A hold a client knows of (or, now and then, a made-up one).
    fn some_hold(&mut self) -> Option<(String, String)> {
        let holds: Vec<(&String, &HoldFact)> = self.ledger.holds.iter().collect();
        if holds.is_empty() {
            return None;
        }
        let (id, hold) = holds[self.rng.below(holds.len() as u64) as usize];
        let customer = if self.rng.below(10) == 0 {
            String::from("mallory")
        } else {
            hold.customer.clone()
        };
        Some((id.clone(), customer))
    }

    fn release(&mut self) {
        if let Some((hold, customer)) = self.some_hold() {
            self.submit(Op::Release { customer, hold });
        }
    }

    fn confirm(&mut self) {
        if let Some((hold, customer)) = self.some_hold() {
            self.attempts += 1;
            let order = order_payload(&hold, &customer, self.attempts);
            self.submit(Op::Confirm {
                customer,
                hold,
                order,
            });
        }
    }

    fn restock(&mut self) {
        let product = self.product();
        let quantity = self.rng.below(5) as u32;
        self.submit(Op::Restock { product, quantity });
    }

    fn sweep(&mut self) {
        self.submit(Op::Sweep);
    }

    /// One group commit, then every reply that became ready.
    fn commit(&mut self) {
        if let Some(node) = self.node() {
            node.step_journal();
        }
        self.poll_all();
    }

    fn poll_all(&mut self) {
        let mut still = Vec::with_capacity(self.in_flight.len());
        for mut in_flight in std::mem::take(&mut self.in_flight) {
            match poll(&mut in_flight.reply) {
                Some(reply) => self.settle(in_flight.op, in_flight.decided_at_ms, reply),
                None => still.push(in_flight),
            }
        }
        // Settling never submits, so nothing was added meanwhile.
        self.in_flight = still;
    }

    fn advance_clock(&mut self) {
        let ms = match self.rng.below(10) {
            0 => 60_000 + self.rng.below(KEY_WINDOW_MS as u64) as i64,
            1..=3 => self.rng.below(30_000) as i64,
            _ => self.rng.below(1_000) as i64,
        };
        self.report.faults.clock_jumps += u64::from(ms >= 1_000);
        self.clock.advance(ms);
    }

    fn fault(&mut self) {
        match self.rng.below(12) {
            0..=1 => self.restart(true),
            2..=5 => self.disk.arm_crash(1 + self.rng.below(12)),
            6..=7 => self.restart(false),
            8 => {
                self.report.faults.sync_eio += 1;
                self.disk.set_faults(SimDiskFaults {
                    sync_eio_ppm: 1_000_000,
                    ..self.disk_faults()
                });
                self.commit();
                self.disk.set_faults(SimDiskFaults {
                    sync_eio_ppm: 0,
                    ..self.disk_faults()
                });
            }
            9 => {
                self.report.faults.enospc += 1;
                let used = self.disk.used_bytes();
                self.disk.set_faults(SimDiskFaults {
                    capacity_bytes: Some(used + self.rng.below(2048)),
                    ..self.disk_faults()
                });
            }
            _ => self.flip_a_bit(),
        }
    }

    /// Flips a bit in data that is durable and that recovery reads: the newest snapshot or a
    /// segment before the last (both were synced whole). The last segment is left alone: its
    /// last batch may be the one a crash tears, and a flipped bit there looks just like that.
    fn flip_a_bit(&mut self) {
        let of_kind = |ext: &str| -> Vec<(PathBuf, u64)> {
            let mut files: Vec<(PathBuf, u64)> = self
                .disk
                .files()
                .into_iter()
                .filter(|(path, len)| {
                    *len > 0
                        && path.parent() == Some(Path::new(JOURNAL_DIR))
                        && path.extension().is_some_and(|e| e == ext)
                })
                .collect();
            // Names carry zero-padded LSNs: sorted by name is sorted by LSN.
            files.sort();
            files
        };
        let segments = of_kind("seg");
        let snapshot = of_kind("snap").pop();
        let covered = snapshot
            .as_ref()
            .and_then(|(p, _)| file_lsn(p))
            .unwrap_or(0);
        // A segment before the last is read at start-up when the next one starts after the
        // snapshot; the newest snapshot is always read.
        let mut candidates: Vec<(PathBuf, u64)> = segments
            .windows(2)
            .filter(|pair| file_lsn(&pair[1].0).is_some_and(|next| next > covered + 1))
            .map(|pair| pair[0].clone())
            .collect();
        candidates.extend(snapshot);
        // The last segment up to its last whole batch (a flip in that batch would look just
        // like a torn write of it).
        if let Some((path, _)) = segments.last()
            && let Some(bytes) = self.disk.durable_bytes(path)
            && let Some(end) = crate::journal::last_batch_start(&bytes)
            && end > 0
        {
            candidates.push((path.clone(), end as u64));
        }
        candidates.retain(|(path, len)| {
            self.disk
                .durable_len(path)
                .is_some_and(|durable| durable >= *len)
        });
        if candidates.is_empty() {
            return;
        }
        let pick = self.rng.below(candidates.len() as u64) as usize;
        let (path, len): (PathBuf, u64) = candidates.swap_remove(pick);
        let offset = self.rng.below(len);
        let bit = self.rng.below(8) as u8;
        if self.disk.flip_bit(&path, offset, bit) {
            self.report.faults.bit_flips += 1;
            self.flipped = Some((path, offset, bit));
            self.restart(false);
        }
    }

    /// Ends the node: after a power loss (`power`) or a killed process, then starts it again.
    fn restart(&mut self, power: bool) {
        if self.trace {
            let files: Vec<String> = self
                .disk
                .files()
                .iter()
                .map(|(path, len)| {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let durable = self.disk.durable_len(path).unwrap_or(0);
                    format!("{} {len}/{durable}", name.unwrap_or_default())
                })
                .collect();
            eprintln!("RESTART power_loss={power} files (length now/durable): {files:?}");
            for (path, _) in self.disk.files() {
                if path.extension().is_some_and(|e| e == "seg") {
                    let durable = self.disk.durable_bytes(&path).unwrap_or_default();
                    let now = self.disk.read(&path).unwrap_or_default();
                    let differ = durable.iter().zip(&now).position(|(a, b)| a != b);
                    eprintln!(
                        "  {}: first difference durable/now at {differ:?}",
                        path.display()
                    );
                }
            }
        }
        if power {
            let crash = self.disk.crash();
            self.count_crash(crash);
        } else {
            self.disk.kill_process();
            self.report.faults.process_kills += 1;
        }
        self.start_again();
    }

    fn count_crash(&mut self, crash: crate::storage::CrashReport) {
        self.report.faults.power_losses += 1;
        self.report.faults.pages_lost += crash.pages_lost;
        self.report.faults.pages_torn += crash.pages_torn;
        self.report.faults.lengths_lost += crash.lengths_lost;
        self.report.faults.name_ops_lost += crash.name_ops_lost;
    }

    /// After a crash or a kill: the old node's replies settle, and a new node starts.
    fn start_again(&mut self) {
        // Every handle is dead: the writer's next batch fails, the journal stops, and every
        // reply still owed resolves (as acknowledged if its sync had completed before).
        if let Some(node) = self.node() {
            while node.step_journal() {}
        }
        self.poll_all();
        if !self.in_flight.is_empty() {
            self.ledger.violation(format!(
                "{} operations never got a reply after the journal stopped",
                self.in_flight.len()
            ));
            self.in_flight.clear();
        }
        self.node = None;
        self.report.restarts += 1;
        self.start();
    }

    /// The end of a run: everything answered, then a power loss and one last check.
    fn finish(&mut self) {
        if let Some(node) = self.node() {
            while node.step_journal() {}
        }
        self.poll_all();
        if self.node.is_some() {
            self.restart(true);
        }
        self.node = None;
    }

    /// Sorts a reply into the ledger and checks it against what was acknowledged before.
    fn settle(&mut self, op: Op, decided_at_ms: i64, reply: Reply) {
        if self.trace {
            let answer = match &reply {
                Reply::Reserve(Ok(r)) => format!("ok {} replayed={}", r.reservation.id, r.replayed),
                Reply::Reserve(Err(e)) | Reply::Units(Err(e)) | Reply::Confirm(Err(e)) => {
                    format!("{:?}", e.code)
                }
                Reply::Units(Ok(n)) => format!("ok {n}"),
                Reply::Confirm(Ok(())) => String::from("ok"),
                Reply::Swept => String::from("swept"),
            };
            eprintln!("[{decided_at_ms}] {op:?} -> {answer}");
        }
        match (op, reply) {
            (
                Op::Reserve {
                    customer,
                    product,
                    quantity,
                    key,
                },
                Reply::Reserve(reply),
            ) => self.settle_reserve(customer, product, quantity, key, decided_at_ms, reply),
            (Op::Release { customer, hold }, Reply::Units(reply)) => {
                self.settle_end(&customer, &hold, outcome(reply).map(|_| HoldEnd::Released))
            }
            (
                Op::Confirm {
                    customer,
                    hold,
                    order,
                },
                Reply::Confirm(reply),
            ) => self.settle_end(
                &customer,
                &hold,
                outcome(reply).map(|()| HoldEnd::Confirmed(order)),
            ),
            (Op::Restock { product, quantity }, Reply::Units(reply)) => {
                let fact = self.ledger.stock.entry(product).or_default();
                match outcome(reply) {
                    Outcome::Acknowledged(_) => fact.restocked += u64::from(quantity),
                    Outcome::Unknown => fact.restocked_maybe += u64::from(quantity),
                    Outcome::Refused(_) => {}
                }
                self.report.acknowledged += 1;
            }
            (Op::Sweep, Reply::Swept) => {}
            (op, _) => self
                .ledger
                .violation(format!("{op:?} got a reply of the wrong kind")),
        }
    }

    fn settle_reserve(
        &mut self,
        customer: String,
        product: String,
        quantity: u32,
        key: Option<String>,
        decided_at_ms: i64,
        reply: Result<ReserveReply, ApiError>,
    ) {
        let known = key
            .as_ref()
            .and_then(|key| self.ledger.keys.get(&(customer.clone(), key.clone())))
            .filter(|fact| decided_at_ms < fact.decided_at_ms + KEY_WINDOW_MS - 1)
            .cloned();
        let same_request = |fact: &KeyFact| fact.product == product && fact.quantity == quantity;
        match outcome(reply) {
            Outcome::Acknowledged(reply) => {
                self.report.acknowledged += 1;
                let hold = &reply.reservation;
                if hold.product != product || hold.quantity != quantity {
                    self.ledger.violation(format!(
                        "{customer} asked for {quantity} of {product} and got {} of {}",
                        hold.quantity, hold.product
                    ));
                }
                if let Some(fact) = &known {
                    if !same_request(fact) {
                        self.ledger.violation(format!(
                            "key {key:?} of {customer} was reused for a different request and \
                             not refused"
                        ));
                    } else if hold.id != fact.hold || hold.expires_at_ms != fact.expires_at_ms {
                        self.ledger.violation(format!(
                            "a retry of key {key:?} of {customer} got hold {} (first answer: {})",
                            hold.id, fact.hold
                        ));
                    }
                    return;
                }
                if reply.replayed {
                    // A replay of a first answer this client never saw (lost at a crash).
                    return;
                }
                if let Some(earlier) = self.ledger.holds.get(&hold.id) {
                    let what = format!(
                        "hold id {} was issued again (to {customer} for {product}; first to {} \
                         for {}, {:?})",
                        hold.id, earlier.customer, earlier.product, earlier.end
                    );
                    self.ledger.violation(what);
                }
                self.ledger.holds.insert(
                    hold.id.clone(),
                    HoldFact {
                        customer: customer.clone(),
                        product: product.clone(),
                        quantity,
                        expires_at_ms: hold.expires_at_ms,
                        end: HoldEnd::Open,
                    },
                );
                if let Some(key) = key {
                    self.ledger.keys.insert(
                        (customer.clone(), key),
                        KeyFact {
                            product: product.clone(),
                            quantity,
                            hold: hold.id.clone(),
                            expires_at_ms: hold.expires_at_ms,
                            decided_at_ms,
                        },
                    );
                }
                let limit = self
                    .ledger
                    .stock
                    .get(&product)
                    .map_or(0, |s| s.per_customer_limit);
                let units = self.ledger.known_units(&customer, &product, decided_at_ms);
                if limit > 0 && units > limit {
                    self.ledger.violation(format!(
                        "{customer} holds or bought {units} units of {product}, over its limit of \
                         {limit}"
                    ));
                }
            }
            Outcome::Refused(code) => {
                if let Some(fact) = &known
                    && same_request(fact)
                {
                    self.ledger.violation(format!(
                        "a retry of key {key:?} of {customer} was refused ({code:?}) after its \
                         first request was acknowledged"
                    ));
                }
            }
            Outcome::Unknown => {}
        }
    }

    fn settle_end(&mut self, customer: &str, hold: &str, outcome: Outcome<HoldEnd>) {
        let Some(fact) = self.ledger.holds.get_mut(hold) else {
            return;
        };
        if fact.customer != customer {
            if let Outcome::Acknowledged(end) = outcome {
                let what = format!("{customer} ended {hold} of {} ({end:?})", fact.customer);
                self.ledger.violation(what);
            }
            return;
        }
        match outcome {
            Outcome::Acknowledged(end) => {
                self.report.acknowledged += 1;
                if matches!(fact.end, HoldEnd::Released | HoldEnd::Confirmed(_)) {
                    let what = format!("hold {hold} ended twice: {:?}, then {end:?}", fact.end);
                    self.ledger.violation(what);
                    return;
                }
                fact.end = end;
            }
            Outcome::Unknown => {
                if fact.end == HoldEnd::Open {
                    fact.end = HoldEnd::Unknown;
                }
            }
            Outcome::Refused(_) => {}
        }
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Acknowledged(value) => Outcome::Acknowledged(f(value)),
            Outcome::Refused(code) => Outcome::Refused(code),
            Outcome::Unknown => Outcome::Unknown,
        }
    }
}

/// The LSN in a segment's or snapshot's file name (`journal-<lsn>.seg`, `snapshot-<lsn>.snap`).
fn file_lsn(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    stem.rsplit('-').next()?.parse().ok()
}

/// Every order payload the node recovered: the archive's, then those in records after the
/// snapshot.
fn read_recovered_orders(node: &InventoryService) -> Result<Vec<Vec<u8>>, JournalError> {
    let Some(recovered) = node.take_recovered_orders() else {
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
    orders.extend(recovered.unarchived);
    Ok(orders)
}

/// Polls a future once, with a waker that does nothing: the simulator polls again after
/// every group commit.
fn poll<T>(future: &mut Pin<Box<dyn Future<Output = T>>>) -> Option<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}
