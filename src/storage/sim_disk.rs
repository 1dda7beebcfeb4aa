//! A simulated disk for the deterministic simulator: files in memory, with a volatile cache
//! between what the process wrote and what a crash leaves.
//!
//! What it models (Linux on a journaling file system, pessimistically):
//!
//! * **Data.** A write lands in the cache. `sync_data` makes the file's written pages and its
//!   length durable. On a crash each page written since the last sync is kept whole, lost, or
//!   torn (each 512-byte sector of it kept or lost on its own), independently, so a later page
//!   can survive an earlier one. The length is the old one or the new one; bytes past what
//!   survived read as zeros.
//! * **Names.** Creating, renaming and removing a file are operations in one ordered log;
//!   `sync_dir` makes every operation so far durable. A crash keeps a prefix of the rest.
//! * **Failures.** A sync can fail with EIO: the file's unsynced pages then reach the disk or
//!   not, at random, and are no longer dirty (what Linux does, and why a journal must stop
//!   after one). A directory's sync can fail with EIO too: a prefix of the pending name
//!   operations is then durable, the rest still pending. A write can fail with ENOSPC once the
//!   disk's capacity is reached. A bit can be flipped in durable data.
//!
//! Every random choice comes from the disk's own generator, seeded by the caller, and the
//! simulator calls it from one thread: a seed replays the same crash exactly.
//!
//! Handles opened before a crash are dead after it: every call on them fails, as a killed
//! process makes no more calls.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{LockGuard, OpenMode, Storage, StorageFile};

/// The unit a crash keeps or loses whole (a page of the page cache).
pub const PAGE: usize = 4096;
/// The unit a torn page is made of (a disk sector: written whole or not at all).
pub const SECTOR: usize = 512;

/// Faults the disk injects at random, each as a chance in a million calls (0: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskFaults {
    /// A `sync_data`/`sync_all` fails with EIO.
    pub sync_eio_ppm: u32,
    /// Writes fail with ENOSPC once the files hold this many bytes in all.
    pub capacity_bytes: Option<u64>,
}

/// What a crash did to the unsynced state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced pages that reached the disk whole.
    pub pages_kept: u64,
    /// Unsynced pages that never reached it.
    pub pages_lost: u64,
    /// Unsynced pages of which only some sectors reached it.
    pub pages_torn: u64,
    /// Files whose unsynced length was lost (the old length kept).
    pub lengths_lost: u64,
    /// Unsynced name operations (create, rename, remove) lost.
    pub name_ops_lost: u64,
}

/// The failures the disk returned (not merely armed: a sync that never came fails nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Syncs that failed with EIO.
    pub sync_eio: u64,
    /// Writes that failed with ENOSPC.
    pub enospc: u64,
}

/// A simulated disk. Cheap to clone: clones share the same disk.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

/// A deterministic generator (SplitMix64): the simulator's seeds must replay identically on
/// every build, whatever version of a random-number crate is in use.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// True with a chance of `ppm` in a million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }
}

type Inode = u64;

#[derive(Debug)]
struct DiskState {
    rng: SplitMix64,
    faults: SimDiskFaults,
    /// Bumped by every crash; handles of an older epoch are dead.
    epoch: u64,
    next_inode: Inode,
    /// The names as the process sees them.
    names: BTreeMap<PathBuf, Inode>,
    /// The names as the disk has them.
    durable_names: BTreeMap<PathBuf, Inode>,
    /// Name operations not yet durable, in order.
    pending_names: Vec<NameOp>,
    /// Directories (never lost: the journal syncs its parent when it creates one).
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<Inode, FileState>,
    locks: BTreeSet<PathBuf>,
    stats: SimDiskStats,
    /// Changing calls left before the power goes out in the middle of one (`arm_crash`).
    crash_countdown: Option<u64>,
    /// What that crash did, until the simulator takes it.
    crashed: Option<CrashReport>,
}

#[derive(Clone, Debug)]
enum NameOp {
    Link(PathBuf, Inode),
    Unlink(PathBuf),
}

#[derive(Debug, Default)]
struct FileState {
    /// What the process reads.
    current: Vec<u8>,
    /// What the disk holds.
    durable: Vec<u8>,
    /// Pages written since the last sync.
    dirty: BTreeSet<usize>,
}

impl FileState {
    /// Folds the unsynced pages into the durable bytes as a crash or a failed sync leaves
    /// them: each page kept, lost or torn at random, and the length old or new.
    fn settle(&mut self, rng: &mut SplitMix64, report: &mut CrashReport) {
        let old_len = self.durable.len();
        let new_len = self.current.len();
        let mut image = self.durable.clone();
        image.resize(old_len.max(new_len), 0);
        for &page in &self.dirty {
            let start = page * PAGE;
            if start >= new_len {
                continue;
            }
            let end = (start + PAGE).min(new_len);
            match rng.below(4) {
                // Kept whole (half the time).
                0 | 1 => {
                    image[start..end].copy_from_slice(&self.current[start..end]);
                    report.pages_kept += 1;
                }
                2 => report.pages_lost += 1,
                _ => {
                    for sector in (start..end).step_by(SECTOR) {
                        if rng.below(2) == 0 {
                            let sector_end = (sector + SECTOR).min(end);
                            image[sector..sector_end]
                                .copy_from_slice(&self.current[sector..sector_end]);
                        }
                    }
                    report.pages_torn += 1;
                }
            }
        }
        let len = if old_len == new_len || rng.below(2) == 0 {
            new_len
        } else {
            report.lengths_lost += 1;
            old_len
        };
        image.resize(len, 0);
        self.durable = image;
        self.dirty.clear();
    }

    /// A sync that succeeds: the written pages and the length reach the disk. Only the dirty
    /// pages: a page a failed sync left clean stays as the disk has it, as on Linux.
    fn persist(&mut self) {
        let len = self.current.len();
        self.durable.resize(len.max(self.durable.len()), 0);
        for &page in &self.dirty {
            let start = page * PAGE;
            let end = (start + PAGE).min(len);
            if start < end {
                self.durable[start..end].copy_from_slice(&self.current[start..end]);
            }
        }
        self.durable.truncate(len);
        self.dirty.clear();
    }

    fn mark_dirty(&mut self, from: usize, to: usize) {
        if to > from {
            self.dirty.extend(from / PAGE..=(to - 1) / PAGE);
        }
    }
}

impl SimDisk {
    /// An empty disk whose random choices come from `seed`.
    pub fn new(seed: u64, faults: SimDiskFaults) -> SimDisk {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        SimDisk {
            state: Arc::new(Mutex::new(DiskState {
                rng: SplitMix64::new(seed),
                faults,
                epoch: 0,
                next_inode: 1,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending_names: Vec::new(),
                dirs,
                files: BTreeMap::new(),
                locks: BTreeSet::new(),
                stats: SimDiskStats::default(),
                crash_countdown: None,
                crashed: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the faults injected from now on.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        self.lock().faults = faults;
    }

    /// The faults injected now.
    pub fn faults(&self) -> SimDiskFaults {
        self.lock().faults
    }

    /// Bytes the files hold (the larger of what the process sees and what the disk has).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// The process is killed (SIGKILL) but the machine stays up: what it wrote stays in the
    /// page cache, synced or not, and reaches the disk later; its locks and handles die.
    pub fn kill_process(&self) {
        let mut state = self.lock();
        state.locks.clear();
        state.epoch += 1;
    }

    /// The power goes out: every file is left as the disk has it, with a random part of what
    /// was not synced; locks are released and every open handle dies.
    pub fn crash(&self) -> CrashReport {
        self.lock().crash()
    }

    /// Makes the power go out during the `calls`-th changing call from now (a write, a sync, a
    /// create, rename or removal), `calls` >= 1: a write lands in the cache first, so the crash
    /// can tear the very batch being written. The call fails; [`SimDisk::take_crash`] says what
    /// the crash did.
    pub fn arm_crash(&self, calls: u64) {
        self.lock().crash_countdown = Some(calls.max(1));
    }

    /// Whether an armed countdown has caused a crash not yet taken.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed.is_some()
    }

    /// The crash an armed countdown caused, once.
    pub fn take_crash(&self) -> Option<CrashReport> {
        self.lock().crashed.take()
    }

    /// Flips one bit of a file's durable bytes (and of what the process reads), as a disk's
    /// media error would. Returns false if there is no such file or byte.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut state = self.lock();
        let Some(&inode) = state.names.get(path) else {
            return false;
        };
        let Some(file) = state.files.get_mut(&inode) else {
            return false;
        };
        let at = offset as usize;
        if at >= file.durable.len() || at >= file.current.len() {
            return false;
        }
        file.durable[at] ^= 1 << (bit % 8);
        file.current[at] ^= 1 << (bit % 8);
        true
    }

    /// The durable length of a file (what a crash now would leave at least), if it exists.
    pub fn durable_len(&self, path: &Path) -> Option<u64> {
        let state = self.lock();
        let inode = state.names.get(path)?;
        state.files.get(inode).map(|f| f.durable.len() as u64)
    }

    /// A file's durable bytes (what a crash now would keep at least), if it exists.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let inode = state.names.get(path)?;
        state.files.get(inode).map(|f| f.durable.clone())
    }

    /// The files the process sees, with their lengths.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let state = self.lock();
        state
            .names
            .iter()
            .map(|(path, inode)| {
                let len = state.files.get(inode).map_or(0, |f| f.current.len() as u64);
                (path.clone(), len)
            })
            .collect()
    }

    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats
    }

    fn handle(&self, inode: Inode, epoch: u64) -> SimFile {
        SimFile {
            disk: self.clone(),
            inode,
            epoch,
        }
    }
}

fn apply_name_op(names: &mut BTreeMap<PathBuf, Inode>, op: NameOp) {
    match op {
        NameOp::Link(path, inode) => {
            names.insert(path, inode);
        }
        NameOp::Unlink(path) => {
            names.remove(&path);
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file (simulated disk)", path.display()),
    )
}

fn dead() -> io::Error {
    io::Error::other("the simulated process crashed: this handle is dead")
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

impl DiskState {
    fn crash(&mut self) -> CrashReport {
        let mut report = CrashReport::default();
        let kept = self.rng.below(self.pending_names.len() as u64 + 1) as usize;
        report.name_ops_lost = (self.pending_names.len() - kept) as u64;
        for op in self.pending_names.drain(..kept) {
            apply_name_op(&mut self.durable_names, op);
        }
        self.pending_names.clear();
        for file in self.files.values_mut() {
            file.settle(&mut self.rng, &mut report);
            file.current = file.durable.clone();
        }
        self.names = self.durable_names.clone();
        let linked: BTreeSet<Inode> = self.names.values().copied().collect();
        self.files.retain(|inode, _| linked.contains(inode));
        self.locks.clear();
        self.epoch += 1;
        self.crash_countdown = None;
        report
    }

    /// Counts down an armed crash; true (after crashing) when this call is the one.
    fn crash_now(&mut self) -> bool {
        match self.crash_countdown {
            Some(1) => {
                let report = self.crash();
                self.crashed = Some(report);
                true
            }
            Some(n) => {
                self.crash_countdown = Some(n - 1);
                false
            }
            None => false,
        }
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(&parent(path)) {
            Ok(())
        } else {
            Err(not_found(&parent(path)))
        }
    }

    fn link(&mut self, path: &Path, inode: Inode) {
        self.names.insert(path.to_owned(), inode);
        self.pending_names
            .push(NameOp::Link(path.to_owned(), inode));
    }

    fn unlink(&mut self, path: &Path) {
        self.names.remove(path);
        self.pending_names.push(NameOp::Unlink(path.to_owned()));
    }

    fn used_bytes(&self) -> u64 {
        self.files
            .values()
            .map(|f| f.current.len().max(f.durable.len()) as u64)
            .sum()
    }

    /// Drops files no name refers to, on the disk or in the process's view or in the log.
    fn collect_garbage(&mut self) {
        let mut live: BTreeSet<Inode> = self.names.values().copied().collect();
        live.extend(self.durable_names.values().copied());
        for op in &self.pending_names {
            if let NameOp::Link(_, inode) = op {
                live.insert(*inode);
            }
        }
        self.files.retain(|inode, _| live.contains(inode));
    }
}

impl Storage for SimDisk {
    fn is_dir(&self, dir: &Path) -> bool {
        self.lock().dirs.contains(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_owned());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let inode = state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(state
            .files
            .get(inode)
            .map(|f| f.current.clone())
            .unwrap_or_default())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.lock();
        state.check_parent(path)?;
        let existing = state.names.get(path).copied();
        let inode = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists (simulated disk)", path.display()),
                ));
            }
            (Some(inode), OpenMode::Truncate) => {
                if let Some(file) = state.files.get_mut(&inode) {
                    file.current.clear();
                }
                inode
            }
            (Some(inode), _) => inode,
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, _) if state.crash_now() => return Err(dead()),
            (None, _) => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.files.insert(inode, FileState::default());
                state.link(path, inode);
                inode
            }
        };
        let epoch = state.epoch;
        drop(state);
        Ok(Box::new(self.handle(inode, epoch)))
    }

    fn create_private(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open(path, OpenMode::Truncate)
    }

    fn create_private_dir(&self, dir: &Path) -> io::Result<()> {
        self.create_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_parent(to)?;
        let inode = *state.names.get(from).ok_or_else(|| not_found(from))?;
        if state.crash_now() {
            return Err(dead());
        }
        state.unlink(from);
        state.link(to, inode);
        state.collect_garbage();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.names.contains_key(path) {
            return Err(not_found(path));
        }
        if state.crash_now() {
            return Err(dead());
        }
        state.unlink(path);
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        if state.crash_now() {
            return Err(dead());
        }
        let eio_ppm = state.faults.sync_eio_ppm;
        if state.rng.chance_ppm(eio_ppm) {
            // The commit failed part-way: a prefix of the name operations reached the disk; the
            // rest stay pending, for a later sync to commit or a crash to lose.
            state.stats.sync_eio += 1;
            let pending = state.pending_names.len() as u64;
            let kept = state.rng.below(pending + 1) as usize;
            let ops: Vec<NameOp> = state.pending_names.drain(..kept).collect();
            for op in ops {
                apply_name_op(&mut state.durable_names, op);
            }
            state.collect_garbage();
            return Err(eio());
        }
        // A journaling file system commits every name operation so far, in order.
        let ops: Vec<NameOp> = state.pending_names.drain(..).collect();
        for op in ops {
            apply_name_op(&mut state.durable_names, op);
        }
        state.collect_garbage();
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut state = self.lock();
        state.check_parent(path)?;
        if !state.names.contains_key(path) {
            let inode = state.next_inode;
            state.next_inode += 1;
            state.files.insert(inode, FileState::default());
            state.link(path, inode);
        }
        if !state.locks.insert(path.to_owned()) {
            return Ok(None);
        }
        let epoch = state.epoch;
        Ok(Some(Box::new(SimLock {
            disk: self.clone(),
            path: path.to_owned(),
            epoch,
        })))
    }
}

/// A lock on the simulated disk; a crash releases it.
#[derive(Debug)]
struct SimLock {
    disk: SimDisk,
    path: PathBuf,
    epoch: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.disk.lock();
        if state.epoch == self.epoch {
            state.locks.remove(&self.path);
        }
    }
}

/// An open file on the simulated disk.
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: Inode,
    epoch: u64,
}

impl SimFile {
    /// The disk, if this handle outlived no crash.
    fn state(&self) -> io::Result<MutexGuard<'_, DiskState>> {
        let state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(dead());
        }
        Ok(state)
    }

    fn sync(&mut self) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state()?;
        let state = &mut *state;
        if state.crash_now() {
            return Err(dead());
        }
        let Some(file) = state.files.get_mut(&inode) else {
            return Ok(());
        };
        if state.rng.chance_ppm(state.faults.sync_eio_ppm) {
            // The write-back failed: some pages made it, some did not, and none is dirty any
            // more, so a retried sync would "succeed" with the data still missing.
            state.stats.sync_eio += 1;
            let mut report = CrashReport::default();
            file.settle(&mut state.rng, &mut report);
            return Err(eio());
        }
        file.persist();
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let state = self.state()?;
        Ok(state
            .files
            .get(&self.inode)
            .map_or(0, |f| f.current.len() as u64))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.state()?;
        let Some(file) = state.files.get(&self.inode) else {
            return Ok(0);
        };
        let at = (offset as usize).min(file.current.len());
        let n = buf.len().min(file.current.len() - at);
        buf[..n].copy_from_slice(&file.current[at..at + n]);
        Ok(n)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state()?;
        let state = &mut *state;
        let at = offset as usize;
        let end = at + bytes.len();
        if let Some(capacity) = state.faults.capacity_bytes {
            let current = state.files.get(&inode).map_or(0, |f| f.current.len());
            let growth = end.saturating_sub(current) as u64;
            if growth > 0 && state.used_bytes() + growth > capacity {
                state.stats.enospc += 1;
                return Err(enospc());
            }
        }
        let Some(file) = state.files.get_mut(&inode) else {
            return Err(dead());
        };
        if file.current.len() < end {
            file.current.resize(end, 0);
        }
        file.current[at..end].copy_from_slice(bytes);
        file.mark_dirty(at, end);
        if state.crash_now() {
            return Err(dead());
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state()?;
        let Some(file) = state.files.get_mut(&inode) else {
            return Err(dead());
        };
        let old = file.current.len();
        file.current.resize(len as usize, 0);
        // Growing writes zeros; shrinking changes only the length (settled on sync).
        file.mark_dirty(
            old.min(len as usize),
            old.max(len as usize).min(len as usize),
        );
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }
}

#[cfg(test)]
mod tests;
