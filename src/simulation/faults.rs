//! The faults: power losses (now, or inside a coming write, sync or rename), killed
//! processes, EIO, a full disk, flipped bits; and the restart that follows each.

use std::path::{Path, PathBuf};

use super::{DATA_DIR, JOURNAL_DIR, World};
use crate::checkout::charge_markers::CHARGES_FILE;
use crate::storage::{CrashReport, SimDiskFaults};

impl World {
    pub(super) fn fault(&mut self) {
        match self.rng.below(12) {
            0..=1 => self.restart(true),
            2..=5 => self.disk.arm_crash(1 + self.rng.below(12)),
            6..=7 => self.restart(false),
            8 => {
                if self.rng.below(2) == 0 {
                    // Every sync of one group commit fails.
                    self.fail_syncs(1_000_000);
                    self.commit();
                } else {
                    // Half the syncs (files' and directories') fail for a few operations: a
                    // wallet's temp file may then be synced and renamed, and its directory's
                    // sync fail.
                    self.fail_syncs(500_000);
                    for _ in 0..1 + self.rng.below(4) {
                        match self.rng.below(4) {
                            0 => self.checkout(),
                            1 => self.delete_card(),
                            2 => self.list_cards(),
                            _ => self.commit(),
                        }
                    }
                }
                self.fail_syncs(0);
            }
            9 => {
                let used = self.disk.used_bytes();
                self.disk.set_faults(SimDiskFaults {
                    capacity_bytes: Some(used + self.rng.below(2048)),
                    ..self.disk.faults()
                });
            }
            _ => self.flip_a_bit(),
        }
    }

    /// Makes `ppm` syncs in a million fail with EIO from now on.
    fn fail_syncs(&mut self, ppm: u32) {
        self.disk.set_faults(SimDiskFaults {
            sync_eio_ppm: ppm,
            ..self.disk.faults()
        });
    }

    /// Flips a bit in data that is durable and that recovery reads: the newest snapshot, a
    /// segment before the last (both were synced whole), the last segment up to its last
    /// batch, or the order archive up to the length the newest snapshot recorded as synced.
    /// The last batch is left alone: a crash may tear it, and a flipped bit there looks just
    /// like that; so is the archive past that length (its orders are in the journal too).
    pub(super) fn flip_a_bit(&mut self) {
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
        let archive_synced = snapshot
            .as_ref()
            .and_then(|(path, _)| self.archive_synced_by(path));
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
        // Checkout's charge markers up to their last entry (every entry is synced as it is
        // written, but a torn last one is cut off, so a flip there looks just like that).
        let charges = Path::new(DATA_DIR).join(CHARGES_FILE);
        if let Some(last) = self.last_entry_start(&charges).filter(|&last| last > 0) {
            candidates.push((charges, last));
        }
        // The wallet's files, whole: each was synced before its rename.
        candidates.extend(self.wallet_files_to_flip());
        if let Some(synced) = archive_synced.filter(|&synced| synced > 0) {
            let archive = Path::new(JOURNAL_DIR).join(crate::inventory::compactor::ORDER_ARCHIVE);
            candidates.push((archive, synced));
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

    /// Where the last whole frame of the frame file at `path` begins.
    fn last_entry_start(&self, path: &Path) -> Option<u64> {
        let mut reader = crate::journal::ArchiveReader::open(&self.disk, path, 0, u64::MAX).ok()?;
        let (mut before_last, mut last) = (None, None);
        while let Ok(Some((_, end))) = reader.next_frame() {
            before_last = last;
            last = Some(end);
        }
        last.map(|_| before_last.unwrap_or(0))
    }

    /// The order archive's length the snapshot at `path` recorded as synced.
    fn archive_synced_by(&self, path: &Path) -> Option<u64> {
        let lsn = file_lsn(path)?;
        let bytes =
            crate::journal::read_snapshot(&self.disk, path, crate::journal::Lsn(lsn)).ok()?;
        crate::inventory::compactor::decode_snapshot(&bytes)
            .ok()?
            .archive_synced
    }

    /// Ends the node: after a power loss (`power`) or a killed process, then starts it again.
    pub(super) fn restart(&mut self, power: bool) {
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

    pub(super) fn count_crash(&mut self, crash: CrashReport) {
        self.report.faults.power_losses += 1;
        self.report.faults.pages_lost += crash.pages_lost;
        self.report.faults.pages_torn += crash.pages_torn;
        self.report.faults.lengths_lost += crash.lengths_lost;
        self.report.faults.name_ops_lost += crash.name_ops_lost;
    }

    /// After a crash or a kill: the old node's replies settle, and a new node starts.
    pub(super) fn start_again(&mut self) {
        // Every handle is dead: the writer's next batch fails, the journal stops, and every
        // reply still owed resolves (as acknowledged if its sync had completed before). A
        // dead process calls no gateway.
        self.gateway.reach(false);
        self.answer_everything();
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
}

/// The LSN in a segment's or snapshot's file name (`journal-<lsn>.seg`, `snapshot-<lsn>.snap`).
fn file_lsn(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    stem.rsplit('-').next()?.parse().ok()
}
