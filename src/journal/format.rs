//! The journal's on-disk format: file names, file headers, record frames, and the frame reader
//! recovery uses.
//!
//! A journal directory holds:
//!
//! * `journal-<first LSN, 20 digits>.seg`: a segment. A 16-byte header (magic `BLJ1`, format
//!   version `u32` LE, the first LSN `u64` LE) and then records, each framed as
//!   `[u32 LE payload length][u32 LE CRC32C of the payload][payload]`. Records are numbered
//!   consecutively: the n-th record of a segment has LSN `first + n`. In version 2 (written
//!   since issue 18) every write of a group commit ends with a commit marker: a frame whose
//!   length has the top bit set ([`MARKER_FLAG`]) and whose 20-byte payload is the batch's first
//!   LSN (`u64`), its record count, its bytes and their CRC32C (`u32` each). A batch without its
//!   matching marker was never acknowledged, so recovery can tell a torn last batch, whatever
//!   order its pages reached the disk in, from damage to an earlier one. Version 1 segments
//!   (no markers) are still read.
//! * `snapshot-<LSN, 20 digits>.snap`: the compactor's state after every record up to and
//!   including that LSN. A 16-byte header (magic `BLS1`, version, LSN), then
//!   `[u64 LE length][u32 LE CRC32C][payload]`, and nothing after it.
//! * `*.tmp`: a snapshot being written; never read, deleted at start-up.
//! * `LOCK`: held with an exclusive file lock while a process has the journal open.
//!
//! Payloads are never empty, so a length of zero is always invalid: that is what makes a run
//! of zero bytes at the end of a file (a file system that extended the file but had not yet
//! written the data) recognisable as a torn tail instead of a run of valid empty records.

use std::fmt;

/// Log sequence number: a record's position in the journal, from 1, with no gaps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"BLJ1";
/// Magic at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"BLS1";
/// The format version of snapshots (and of segments before commit markers); recovery refuses
/// any other.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of the segments written now: each batch closed by a commit marker.
pub const SEGMENT_VERSION: u32 = 2;
/// The top bit of a frame's length field marks a commit marker (records are at most
/// [`MAX_PAYLOAD_BYTES`], far below it).
pub const MARKER_FLAG: u32 = 1 << 31;
/// A commit marker's payload: first LSN, record count, batch bytes, batch CRC32C.
pub const MARKER_PAYLOAD_LEN: usize = 20;
/// Bytes in a segment or snapshot header: magic, version, LSN.
pub const HEADER_LEN: usize = 16;
/// Bytes in a record frame before its payload: length and CRC.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes in a snapshot's frame before its payload: `u64` length and CRC.
pub const SNAPSHOT_FRAME_LEN: usize = 12;
/// The largest payload a record may have. Part of the format, not an option: recovery calls a
/// larger length "impossible", so changing it between runs must not make old records invalid.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// The name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

// What the readers and writers below index by hand, checked at compile time: a header is the
// magic, the version and the LSN; a record frame, a `u32` length and a CRC; a snapshot frame, a
// `u64` length and a CRC; and the largest payload's length fits a record frame's `u32`.
const _: () = assert!(SEGMENT_MAGIC.len() == SNAPSHOT_MAGIC.len());
const _: () = assert!(HEADER_LEN == SEGMENT_MAGIC.len() + size_of::<u32>() + size_of::<u64>());
const _: () = assert!(FRAME_HEADER_LEN == size_of::<u32>() + size_of::<u32>());
const _: () = assert!(SNAPSHOT_FRAME_LEN == size_of::<u64>() + size_of::<u32>());
const _: () = assert!(MAX_PAYLOAD_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_PAYLOAD_BYTES < MARKER_FLAG as usize);
const _: () = assert!(MARKER_PAYLOAD_LEN == size_of::<u64>() + 3 * size_of::<u32>());

/// The file name of the segment whose first record has LSN `first`.
pub fn segment_name(first: Lsn) -> String {
    format!("journal-{:020}.seg", first.0)
}

/// The file name of the snapshot covering records up to and including `lsn`.
pub fn snapshot_name(lsn: Lsn) -> String {
    format!("snapshot-{:020}.snap", lsn.0)
}

/// The file name a snapshot is written under before it is complete and renamed.
pub fn snapshot_temp_name(lsn: Lsn) -> String {
    format!("snapshot-{:020}.snap.tmp", lsn.0)
}

/// What a file in the journal directory is, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Segment(Lsn),
    Snapshot(Lsn),
    /// An unfinished snapshot.
    Temp,
    Lock,
    /// Named like a journal file but not parseable (`journal-abc.seg`): worth a warning.
    Malformed,
    /// Not ours.
    Other,
}

/// Classifies a directory entry by name.
pub fn classify(name: &str) -> FileKind {
    if name == LOCK_FILE {
        return FileKind::Lock;
    }
    if name.ends_with(".tmp") {
        return FileKind::Temp;
    }
    if let Some(rest) = name.strip_prefix("journal-") {
        return match rest.strip_suffix(".seg").and_then(parse_lsn) {
            Some(lsn) => FileKind::Segment(lsn),
            None => FileKind::Malformed,
        };
    }
    if let Some(rest) = name.strip_prefix("snapshot-") {
        return match rest.strip_suffix(".snap").and_then(parse_lsn) {
            Some(lsn) => FileKind::Snapshot(lsn),
            None => FileKind::Malformed,
        };
    }
    FileKind::Other
}

fn parse_lsn(digits: &str) -> Option<Lsn> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The header of a segment (`SEGMENT_MAGIC`, [`SEGMENT_VERSION`]) or snapshot
/// (`SNAPSHOT_MAGIC`, [`FORMAT_VERSION`]).
pub fn file_header(magic: [u8; 4], version: u32, lsn: Lsn) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&magic);
    header[4..8].copy_from_slice(&version.to_le_bytes());
    header[8..].copy_from_slice(&lsn.0.to_le_bytes());
    header
}

/// Checks a file's header against what its name says and the versions this build reads;
/// returns the file's version, or the reason the header is wrong.
pub fn check_header(
    bytes: &[u8],
    magic: [u8; 4],
    versions: &[u32],
    lsn: Lsn,
) -> Result<u32, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "the file is {} bytes long, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if bytes[..4] != magic {
        return Err(format!(
            "bad magic {:02x?} (expected {:?})",
            &bytes[..4],
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = read_u32(bytes, 4);
    if !versions.contains(&version) {
        return Err(format!(
            "format version {version}; this build reads versions {versions:?}"
        ));
    }
    let stored = read_u64(bytes, 8);
    if stored != lsn.0 {
        return Err(format!(
            "the header says LSN {stored} but the file name says {lsn}"
        ));
    }
    Ok(version)
}

/// Closes the batch of `count` records starting at LSN `first`, whose frames are all of `buf`,
/// with a commit marker (version 2 segments).
///
/// Cost: one CRC32C pass over the batch's bytes and 28 bytes written, per write.
pub fn push_marker(buf: &mut Vec<u8>, first: Lsn, count: u32) {
    debug_assert!(count > 0 && !buf.is_empty());
    let mut payload = [0u8; MARKER_PAYLOAD_LEN];
    payload[..8].copy_from_slice(&first.0.to_le_bytes());
    payload[8..12].copy_from_slice(&count.to_le_bytes());
    // A batch is at most `max_batch_bytes` plus one record: far below 4 GiB.
    payload[12..16].copy_from_slice(&(buf.len() as u32).to_le_bytes());
    payload[16..].copy_from_slice(&crc32c::crc32c(buf).to_le_bytes());
    buf.extend_from_slice(&(MARKER_FLAG | MARKER_PAYLOAD_LEN as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
}

/// Bytes a commit marker takes.
pub const MARKER_LEN: usize = FRAME_HEADER_LEN + MARKER_PAYLOAD_LEN;

/// Appends one framed record to `buf`.
///
/// Cost: one CRC32C pass over the payload (hardware-accelerated) and one copy of it.
pub fn push_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_PAYLOAD_BYTES);
    // The length fits: payloads are checked against MAX_PAYLOAD_BYTES (< 4 GiB) on append.
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Bytes a record with a payload of `len` bytes takes in a segment.
pub fn frame_len(len: usize) -> usize {
    FRAME_HEADER_LEN + len
}

/// What [`read_frame`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record whose CRC matches; the next frame starts at `next`.
    Record { payload: &'a [u8], next: usize },
    /// A whole commit marker whose own CRC matches (its batch is not checked here).
    Marker {
        /// The batch's first LSN.
        first: Lsn,
        /// Its records.
        count: u32,
        /// Its bytes, just before the marker.
        bytes: u32,
        /// The CRC32C of those bytes.
        crc: u32,
        /// Where the next frame starts.
        next: usize,
    },
    /// The offset is exactly the end of the bytes.
    End,
    /// Not a valid record: the reason, for the error or the log.
    Bad(String),
}

/// Reads the frame starting at `at`.
pub fn read_frame(bytes: &[u8], at: usize) -> Frame<'_> {
    let left = bytes.len() - at;
    if left == 0 {
        return Frame::End;
    }
    if left < FRAME_HEADER_LEN {
        return Frame::Bad(format!(
            "the file ends {left} bytes into a record's {FRAME_HEADER_LEN}-byte frame header"
        ));
    }
    let len = read_u32(bytes, at) as usize;
    let stored_crc = read_u32(bytes, at + 4);
    if len == (MARKER_FLAG as usize | MARKER_PAYLOAD_LEN) {
        return read_marker(bytes, at, stored_crc);
    }
    if len == 0 {
        return Frame::Bad(String::from(
            "record length 0 (records are never empty: zeroed or overwritten bytes)",
        ));
    }
    if len > MAX_PAYLOAD_BYTES {
        return Frame::Bad(format!(
            "impossible record length {len} (the most a record holds is {MAX_PAYLOAD_BYTES})"
        ));
    }
    let start = at + FRAME_HEADER_LEN;
    if len > bytes.len() - start {
        return Frame::Bad(format!(
            "a record of {len} bytes runs past the end of the file ({} bytes left)",
            bytes.len() - start
        ));
    }
    let payload = &bytes[start..start + len];
    let crc = crc32c::crc32c(payload);
    if crc != stored_crc {
        return Frame::Bad(format!(
            "CRC32C mismatch over a {len}-byte record: stored {stored_crc:#010x}, computed \
             {crc:#010x}"
        ));
    }
    Frame::Record {
        payload,
        next: start + len,
    }
}

fn read_marker(bytes: &[u8], at: usize, stored_crc: u32) -> Frame<'_> {
    let start = at + FRAME_HEADER_LEN;
    if bytes.len() - start < MARKER_PAYLOAD_LEN {
        return Frame::Bad(String::from(
            "a commit marker runs past the end of the file",
        ));
    }
    let payload = &bytes[start..start + MARKER_PAYLOAD_LEN];
    let crc = crc32c::crc32c(payload);
    if crc != stored_crc {
        return Frame::Bad(format!(
            "CRC32C mismatch over a commit marker: stored {stored_crc:#010x}, computed {crc:#010x}"
        ));
    }
    Frame::Marker {
        first: Lsn(read_u64(payload, 0)),
        count: read_u32(payload, 8),
        bytes: read_u32(payload, 12),
        crc: read_u32(payload, 16),
        next: start + MARKER_PAYLOAD_LEN,
    }
}

/// Whether the marker at `at` closes a whole batch that ends there: its bytes, just before
/// it, match its CRC (and start no earlier than `floor`).
pub fn marker_closes_batch(
    bytes: &[u8],
    at: usize,
    batch_bytes: u32,
    crc: u32,
    floor: usize,
) -> bool {
    let len = batch_bytes as usize;
    len > 0 && at >= floor + len && crc32c::crc32c(&bytes[at - len..at]) == crc
}

/// The offset of a commit marker after `from` that closes a whole batch, if any: proof that a
/// batch was completed after whatever is damaged at `from`, so the damage is not a torn
/// last write. Scans every offset, like [`valid_frame_after`].
pub fn committed_batch_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from + 1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1)).find(|&at| {
        matches!(read_frame(bytes, at), Frame::Marker { bytes: len, crc, .. }
            if marker_closes_batch(bytes, at, len, crc, from))
    })
}

/// Where the last commit marker of a version 2 segment's bytes starts a batch: the offset of
/// the first byte of the segment's last whole batch, read front to back as recovery does
/// (`None` if no batch is whole). The simulator flips bits only before it, where damage is
/// provably not a torn last write.
pub fn last_batch_start(bytes: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    let mut batch_start = HEADER_LEN;
    let mut last = None;
    while at < bytes.len() {
        match read_frame(bytes, at) {
            Frame::Record { next, .. } => at = next,
            Frame::Marker { next, .. } => {
                last = Some(batch_start);
                batch_start = next;
                at = next;
            }
            Frame::End | Frame::Bad(_) => break,
        }
    }
    last
}

/// The offset of the first valid record that starts after `from`, if any.
///
/// Used only when a record is bad, to tell a torn tail (nothing valid follows) from corruption
/// in the middle (valid records follow, so something damaged data that was once whole). Scans
/// every byte offset: a torn tail is at most one group commit long, and most offsets are
/// rejected by their length field without computing a CRC.
pub fn valid_frame_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from + 1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1))
        .find(|&at| matches!(read_frame(bytes, at), Frame::Record { .. }))
}

/// The little-endian `u32` at `at`; the caller has checked the bounds.
pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The little-endian `u64` at `at`; the caller has checked the bounds.
pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for payload in payloads {
            push_frame(&mut buf, payload);
        }
        buf
    }

    #[test]
    fn names_sort_in_lsn_order_and_parse_back() {
        assert_eq!(segment_name(Lsn(42)), "journal-00000000000000000042.seg");
        assert_eq!(snapshot_name(Lsn(7)), "snapshot-00000000000000000007.snap");
        assert!(segment_name(Lsn(9)) < segment_name(Lsn(10)));
        assert_eq!(classify(&segment_name(Lsn(42))), FileKind::Segment(Lsn(42)));
        assert_eq!(classify(&snapshot_name(Lsn(7))), FileKind::Snapshot(Lsn(7)));
        assert_eq!(classify(&snapshot_temp_name(Lsn(7))), FileKind::Temp);
        assert_eq!(classify("LOCK"), FileKind::Lock);
        assert_eq!(classify("journal-12.seg"), FileKind::Malformed);
        assert_eq!(classify("README"), FileKind::Other);
    }

    #[test]
    fn frames_read_back_in_order() {
        let bytes = framed(&[b"one", b"two two"]);
        let Frame::Record { payload, next } = read_frame(&bytes, 0) else {
            panic!("first frame");
        };
        assert_eq!(payload, b"one");
        let Frame::Record { payload, next } = read_frame(&bytes, next) else {
            panic!("second frame");
        };
        assert_eq!(payload, b"two two");
        assert_eq!(read_frame(&bytes, next), Frame::End);
    }

    #[test]
    fn a_flipped_payload_byte_fails_the_crc() {
        let mut bytes = framed(&[b"payload"]);
        bytes[FRAME_HEADER_LEN + 2] ^= 0x40;
        let Frame::Bad(reason) = read_frame(&bytes, 0) else {
            panic!("expected a bad frame");
        };
        assert!(reason.contains("CRC32C mismatch"), "{reason}");
    }

    #[test]
    fn zeros_short_headers_and_overlong_lengths_are_bad() {
        assert!(matches!(read_frame(&[0u8; 32], 0), Frame::Bad(r) if r.contains("length 0")));
        assert!(matches!(read_frame(&[1, 0, 0], 0), Frame::Bad(r) if r.contains("frame header")));
        let mut huge = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        huge.extend_from_slice(b"xx");
        assert!(matches!(read_frame(&huge, 0), Frame::Bad(r) if r.contains("impossible")));
        let cut = framed(&[b"a longer payload"]);
        assert!(
            matches!(read_frame(&cut[..cut.len() - 3], 0), Frame::Bad(r) if r.contains("past the end"))
        );
    }

    #[test]
    fn resync_finds_a_valid_frame_after_damage_but_not_in_garbage() {
        let mut bytes = framed(&[b"first record", b"second record"]);
        bytes[FRAME_HEADER_LEN] ^= 1;
        assert_eq!(
            valid_frame_after(&bytes, 0),
            Some(frame_len(b"first record".len()))
        );
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8 | 0x80).collect();
        assert_eq!(valid_frame_after(&garbage, 0), None);
        assert_eq!(valid_frame_after(&[0u8; 100], 0), None);
    }

    #[test]
    fn headers_are_checked_against_the_name() {
        let header = file_header(SEGMENT_MAGIC, SEGMENT_VERSION, Lsn(5));
        let versions = &[1, SEGMENT_VERSION];
        assert_eq!(
            check_header(&header, SEGMENT_MAGIC, versions, Lsn(5)),
            Ok(SEGMENT_VERSION)
        );
        assert!(check_header(&header, SEGMENT_MAGIC, &[1], Lsn(5)).is_err());
        assert!(check_header(&header, SEGMENT_MAGIC, versions, Lsn(6)).is_err());
        assert!(check_header(&header, SNAPSHOT_MAGIC, versions, Lsn(5)).is_err());
        assert!(check_header(&header[..10], SEGMENT_MAGIC, versions, Lsn(5)).is_err());
    }
}
