//! File replay: reading a recorded feed (NDJSON, one ingest object per line) back as tweets.
//!
//! `--firehose replay:FILE` plays a capture through the same decoders as live ingest, so any
//! format the ingest endpoints accept can be replayed, mixed per line. The reader is plain
//! blocking std I/O; the source driver runs it on its own arbiter thread and paces the batches.
//!
//! A capture may be plain, gzip or zstd compressed. The compression is told by the file's first
//! bytes, never its name (captures get renamed, and `.ndjson` files get compressed in place),
//! and decompression streams: memory stays bounded by the read buffers and
//! [`MAX_LINE_BYTES`] however large the file is.
//!
//! A bad line never stops a replay: it is skipped and counted by reason in [`ReplayStats`], and
//! the first line of each reason is logged with its line number, so a huge capture with one
//! recurring problem logs once, not a million times.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::model::Tweet;
use crate::sources::formats::{self, Decoded};

/// Longest line decoded, in bytes. Longer lines are skipped as they stream past, never held
/// whole in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The read buffer: large enough that a typical line (a few hundred bytes) never spans refills.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The reason counted for a line over [`MAX_LINE_BYTES`]; the same label an oversize field
/// gets from the decoders.
pub const LINE_TOO_LONG: &str = "too_large";

/// The gzip magic number (RFC 1952, section 2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The zstd frame magic number, little-endian 0xFD2FB528 (RFC 8878, section 3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How a replay file's bytes are stored, as told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// NDJSON as is.
    Plain,
    /// gzip; concatenated members (`cat a.gz b.gz`, pigz) are read as one stream.
    Gzip,
    /// zstd; concatenated frames are read as one stream.
    Zstd,
}

impl Compression {
    /// Tells the compression from a file's first bytes; anything unrecognised is plain text.
    /// Neither magic number can start an NDJSON file (0x1f is a control byte, 0x28 is `(`),
    /// so a plain capture is never mistaken for a compressed one.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::Plain
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Plain => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// A replay file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open replay file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    /// Also what a corrupt or truncated compressed file gives: the decompressor's error
    /// surfaces as a read error at the line where the damage is.
    #[error("cannot read replay file {} ({compression}) after line {line}: {source}", path.display())]
    Read {
        path: PathBuf,
        compression: Compression,
        /// The last line read whole; the error came while reading the one after it.
        line: u64,
        source: io::Error,
    },
    #[error("cannot rewind replay file {}: {source}", path.display())]
    Rewind { path: PathBuf, source: io::Error },
}

/// What a batch read ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayProgress {
    /// The batch is full; more lines may follow.
    Filled,
    /// The file is exhausted (the batch may hold fewer tweets, or none). Rewind to loop.
    EndOfFile,
}

/// Counts over every pass of the file; [`ReplayReader::rewind`] does not reset them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Lines read, blank and bad ones included.
    pub lines: u64,
    /// Lines that decoded to a tweet.
    pub tweets: u64,
    /// Lines that were a feed notice (`delete`, `limit`, ...), by the notice's label.
    pub notices: BTreeMap<&'static str, u64>,
    /// Empty or whitespace-only lines, skipped silently.
    pub blank: u64,
    /// Lines skipped as unusable, by reason (`malformed_json`, `too_large`, ...: the labels of
    /// [`formats::FormatError::reason`]).
    pub rejected: BTreeMap<&'static str, u64>,
}

/// Reads tweets from an NDJSON file, a batch at a time.
pub struct ReplayReader {
    /// For error messages and logs, and to reopen the file on a rewind.
    path: PathBuf,
    /// What the file's first bytes said; for error messages.
    compression: Compression,
    /// The decompressed bytes, buffered so lines are found without a syscall (or a
    /// decompressor call) per line. Boxed: the three decoders are different types, and one
    /// virtual call per 64 KiB refill costs nothing next to decoding the lines.
    reader: BufReader<Box<dyn Read + Send>>,
    /// The current line's bytes, reused across lines so a steady replay does not allocate
    /// for reading.
    line: Vec<u8>,
    /// The number of the last line read, 1-based; 0 before the first and after a rewind.
    line_number: u64,
    /// Everything counted so far, across rewinds.
    stats: ReplayStats,
}

/// The outcome of reading one line into [`ReplayReader::line`].
enum LineRead {
    /// A whole line (without its end of line) is in the buffer.
    Line,
    /// A line over [`MAX_LINE_BYTES`] went past; the buffer is empty.
    TooLong,
    EndOfFile,
}

impl ReplayReader {
    /// Opens `path` for replay from its first line.
    pub fn open(path: &Path) -> Result<Self, ReplayError> {
        let (compression, reader) = open_stream(path).map_err(|source| ReplayError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(ReplayReader {
            path: path.to_owned(),
            compression,
            reader,
            line: Vec::new(),
            line_number: 0,
            stats: ReplayStats::default(),
        })
    }

    /// Appends up to `max` tweets to `out`, skipping blank lines, notices and bad lines (all
    /// counted in [`ReplayReader::stats`]).
    ///
    /// Cost: the decoders' allocations per tweet; reading reuses one line buffer.
    pub fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<Tweet>,
    ) -> Result<ReplayProgress, ReplayError> {
        let mut appended = 0;
        while appended < max {
            match self.read_line() {
                Ok(LineRead::EndOfFile) => return Ok(ReplayProgress::EndOfFile),
                Ok(LineRead::TooLong) => {
                    let message = format!("line is over {MAX_LINE_BYTES} bytes");
                    self.reject(LINE_TOO_LONG, &message);
                }
                Ok(LineRead::Line) => {
                    if self.decode_line(out) {
                        appended += 1;
                    }
                }
                Err(source) => {
                    return Err(ReplayError::Read {
                        path: self.path.clone(),
                        compression: self.compression,
                        line: self.line_number,
                        source,
                    });
                }
            }
        }
        Ok(ReplayProgress::Filled)
    }

    /// Goes back to the first line, for `--loop`. Stats keep counting across passes.
    ///
    /// The file is reopened rather than seeked: a compressed stream cannot seek, and a fresh
    /// decoder from byte 0 is the one way to restart all three kinds alike. Reopening also
    /// picks up a capture that was replaced (rewritten and renamed over) between passes.
    pub fn rewind(&mut self) -> Result<(), ReplayError> {
        let (compression, reader) =
            open_stream(&self.path).map_err(|source| ReplayError::Rewind {
                path: self.path.clone(),
                source,
            })?;
        self.compression = compression;
        self.reader = reader;
        self.line_number = 0;
        Ok(())
    }

    /// The counts so far.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// The compression the file's first bytes announced.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Decodes the line in the buffer; true if it gave a tweet (appended to `out`).
    fn decode_line(&mut self, out: &mut Vec<Tweet>) -> bool {
        let mut line = self.line.as_slice();
        if self.line_number == 1 {
            // Editors on some systems start a UTF-8 file with a byte-order mark.
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            self.stats.blank += 1;
            return false;
        }
        match formats::decode(line) {
            Ok(Decoded::Tweet(tweet)) => {
                self.stats.tweets += 1;
                out.push(tweet);
                true
            }
            Ok(Decoded::Notice(kind)) => {
                *self.stats.notices.entry(kind.label()).or_default() += 1;
                false
            }
            Err(err) => {
                self.reject(err.reason(), &err.to_string());
                false
            }
        }
    }

    fn reject(&mut self, reason: &'static str, message: &str) {
        let count = self.stats.rejected.entry(reason).or_default();
        *count += 1;
        if *count == 1 {
            tracing::warn!(
                path = %self.path.display(),
                line = self.line_number,
                reason,
                "skipping replay line: {message} (further lines skipped for this reason are only counted)"
            );
        }
    }

    /// Reads the next line into `self.line`, without its `\n` or `\r\n`.
    ///
    /// Bytes are copied out of the read buffer only while the line is within
    /// [`MAX_LINE_BYTES`]; past that the rest of the line is consumed and dropped.
    fn read_line(&mut self) -> io::Result<LineRead> {
        self.line.clear();
        let mut too_long = false;
        let mut read_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                if !read_any {
                    return Ok(LineRead::EndOfFile);
                }
                // A last line without a newline.
                break;
            }
            read_any = true;
            let (chunk, consumed, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], end + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if self.line.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if complete {
                break;
            }
        }
        self.line_number += 1;
        self.stats.lines += 1;
        if too_long {
            return Ok(LineRead::TooLong);
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(LineRead::Line)
    }
}

/// Opens `path` and wraps it in the decoder its first bytes call for, positioned at byte 0 of
/// the decompressed text.
fn open_stream(path: &Path) -> io::Result<(Compression, BufReader<Box<dyn Read + Send>>)> {
    let mut file = File::open(path)?;
    // Read the magic bytes, then put them back in front of the rest of the file, so the
    // decoder sees the whole stream. Reading in a loop rather than peeking a buffer: a pipe
    // (`replay:/dev/stdin`) may hand over fewer bytes than asked for.
    let mut head = [0_u8; ZSTD_MAGIC.len()];
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    let compression = Compression::detect(&head[..len]);
    let raw = io::Cursor::new(head).take(len as u64).chain(file);
    // The decompressors buffer their compressed input themselves.
    let decoded: Box<dyn Read + Send> = match compression {
        Compression::Plain => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    };
    // This buffer holds text, so lines are found in large slices.
    Ok((
        compression,
        BufReader::with_capacity(READ_BUFFER_BYTES, decoded),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tweet_line(id: u32) -> String {
        format!(
            r#"{{"id":"{id}","author":{{"id":"9","screen_name":"acme"}},"text":"tweet {id} #music","created_at":"2025-01-02T03:04:05Z"}}"#
        )
    }

    fn file_with(lines: &[String]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        file.flush().unwrap();
        file
    }

    fn ids(tweets: &[Tweet]) -> Vec<&str> {
        tweets.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn good_lines_come_back_in_batches() {
        let file = file_with(&(1..=5).map(tweet_line).collect::<Vec<_>>());
        let mut reader = ReplayReader::open(file.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            reader.next_batch(3, &mut out).unwrap(),
            ReplayProgress::Filled
        );
        assert_eq!(ids(&out), ["1", "2", "3"]);
        assert_eq!(out[0].hashtags, ["music"]);
        out.clear();
        assert_eq!(
            reader.next_batch(3, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        assert_eq!(ids(&out), ["4", "5"]);
        assert_eq!(reader.stats().tweets, 5);
        assert_eq!(reader.stats().lines, 5);
    }

    #[test]
    fn malformed_blank_and_notice_lines_are_skipped_and_counted() {
        let lines = [
            tweet_line(1),
            String::from("{\"id\":\"2\",\"author\":"),
            String::new(),
            String::from("   \t"),
            String::from(r#"{"id":"3","text":"no author"}"#),
            String::from(r#"{"delete":{"status":{"id_str":"1"}}}"#),
            tweet_line(4),
        ];
        let file = file_with(&lines);
        let mut reader = ReplayReader::open(file.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            reader.next_batch(10, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        assert_eq!(ids(&out), ["1", "4"]);
        let stats = reader.stats();
        assert_eq!(stats.lines, 7);
        assert_eq!(stats.blank, 2);
        assert_eq!(stats.rejected.get("malformed_json"), Some(&1));
        assert_eq!(stats.rejected.get("unknown_format"), Some(&1));
        // A feed notice is not a bad line: counted by kind, never delivered.
        assert_eq!(stats.notices.get("delete"), Some(&1));
        assert_eq!(stats.rejected.values().sum::<u64>(), 2);
    }

    #[test]
    fn an_over_long_line_is_skipped_without_losing_its_neighbours() {
        let long = format!(
            r#"{{"id":"2","author":{{"id":"9","screen_name":"acme"}},"text":"{}"}}"#,
            "a".repeat(3 * MAX_LINE_BYTES)
        );
        let file = file_with(&[tweet_line(1), long, tweet_line(3)]);
        let mut reader = ReplayReader::open(file.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            reader.next_batch(10, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        assert_eq!(ids(&out), ["1", "3"]);
        assert_eq!(reader.stats().rejected.get(LINE_TOO_LONG), Some(&1));
        assert_eq!(reader.stats().lines, 3);
        // The 3 MiB line was never held whole.
        assert!(reader.line.capacity() <= 2 * MAX_LINE_BYTES);
    }

    #[test]
    fn rewind_starts_again_from_the_first_line() {
        let file = file_with(&[tweet_line(1), tweet_line(2)]);
        let mut reader = ReplayReader::open(file.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            reader.next_batch(10, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        assert_eq!(
            reader.next_batch(10, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        reader.rewind().unwrap();
        assert_eq!(
            reader.next_batch(1, &mut out).unwrap(),
            ReplayProgress::Filled
        );
        assert_eq!(ids(&out), ["1", "2", "1"]);
        assert_eq!(reader.stats().tweets, 3);
    }

    #[test]
    fn crlf_endings_a_bom_and_a_missing_final_newline_are_accepted() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "\u{feff}{}\r\n{}", tweet_line(1), tweet_line(2)).unwrap();
        file.flush().unwrap();
        let mut reader = ReplayReader::open(file.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            reader.next_batch(10, &mut out).unwrap(),
            ReplayProgress::EndOfFile
        );
        assert_eq!(ids(&out), ["1", "2"]);
        assert!(reader.stats().rejected.is_empty());
    }

    #[test]
    fn a_missing_file_is_an_open_error_naming_it() {
        let err = ReplayReader::open(Path::new("/nonexistent/capture.ndjson"))
            .err()
            .unwrap();
        assert!(matches!(err, ReplayError::Open { .. }));
        assert!(
            err.to_string().contains("/nonexistent/capture.ndjson"),
            "{err}"
        );
    }

    /// The NDJSON text of `lines`, one per line.
    fn ndjson(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn file_of_bytes(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file.flush().unwrap();
        file
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// zstd with a content checksum, as the `zstd` command line writes by default: without one
    /// a damaged frame can decode to wrong bytes undetected.
    fn zstd(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Every tweet id in the file, read to the end in small batches.
    fn read_all(reader: &mut ReplayReader) -> Result<Vec<String>, ReplayError> {
        let mut out = Vec::new();
        while reader.next_batch(2, &mut out)? == ReplayProgress::Filled {}
        Ok(out.into_iter().map(|t| t.id).collect())
    }

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"{\"id\":1}"), Compression::Plain);
        assert_eq!(Compression::detect(&[0x1f]), Compression::Plain);
        assert_eq!(Compression::detect(b""), Compression::Plain);
    }

    #[test]
    fn gzip_and_zstd_files_replay_the_same_tweets_as_plain() {
        let text = ndjson(&(1..=7).map(tweet_line).collect::<Vec<_>>());
        for (bytes, compression) in [
            (text.clone(), Compression::Plain),
            (gzip(&text), Compression::Gzip),
            (zstd(&text), Compression::Zstd),
        ] {
            // Deliberately named .ndjson whatever the content: the name never decides.
            let file = file_of_bytes(&bytes);
            let mut reader = ReplayReader::open(file.path()).unwrap();
            assert_eq!(reader.compression(), compression);
            assert_eq!(
                read_all(&mut reader).unwrap(),
                ["1", "2", "3", "4", "5", "6", "7"]
            );
        }
    }

    #[test]
    fn concatenated_gzip_members_and_zstd_frames_are_one_stream() {
        let first = ndjson(&[tweet_line(1)]);
        let second = ndjson(&[tweet_line(2)]);
        for bytes in [
            [gzip(&first), gzip(&second)].concat(),
            [zstd(&first), zstd(&second)].concat(),
        ] {
            let file = file_of_bytes(&bytes);
            let mut reader = ReplayReader::open(file.path()).unwrap();
            assert_eq!(read_all(&mut reader).unwrap(), ["1", "2"]);
        }
    }

    #[test]
    fn rewinding_a_compressed_file_starts_its_decoder_again() {
        let text = ndjson(&[tweet_line(1), tweet_line(2), tweet_line(3)]);
        for bytes in [gzip(&text), zstd(&text)] {
            let file = file_of_bytes(&bytes);
            let mut reader = ReplayReader::open(file.path()).unwrap();
            let mut out = Vec::new();
            // Rewind mid-file, then again at the end.
            assert_eq!(
                reader.next_batch(1, &mut out).unwrap(),
                ReplayProgress::Filled
            );
            reader.rewind().unwrap();
            assert_eq!(read_all(&mut reader).unwrap(), ["1", "2", "3"]);
            reader.rewind().unwrap();
            assert_eq!(read_all(&mut reader).unwrap(), ["1", "2", "3"]);
            assert_eq!(reader.stats().tweets, 7);
        }
    }

    #[test]
    fn a_corrupt_compressed_file_is_a_read_error_naming_the_file() {
        let text = ndjson(&(1..=200).map(tweet_line).collect::<Vec<_>>());
        let mut bad_gzip = gzip(&text);
        let middle = bad_gzip.len() / 2;
        bad_gzip[middle..middle + 8].copy_from_slice(&[0xff; 8]);
        let mut bad_zstd = zstd(&text);
        let middle = bad_zstd.len() / 2;
        bad_zstd[middle..middle + 8].copy_from_slice(&[0xff; 8]);
        // Magic bytes and nothing else: a header cut short.
        let cut_gzip = gzip(&text)[..20].to_vec();
        let cut_zstd = zstd(&text)[..12].to_vec();
        for (bytes, compression) in [
            (bad_gzip, "gzip"),
            (bad_zstd, "zstd"),
            (cut_gzip, "gzip"),
            (cut_zstd, "zstd"),
        ] {
            let file = file_of_bytes(&bytes);
            let path = file.path().display().to_string();
            let err = match ReplayReader::open(file.path()) {
                Ok(mut reader) => read_all(&mut reader).unwrap_err(),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(message.contains(&path), "{message}");
            assert!(message.contains(compression), "{message}");
        }
    }

    #[test]
    fn an_over_long_line_in_a_compressed_file_is_skipped_as_it_streams() {
        let long = format!(
            r#"{{"id":"2","author":{{"id":"9","screen_name":"acme"}},"text":"{}"}}"#,
            "a".repeat(3 * MAX_LINE_BYTES)
        );
        let file = file_of_bytes(&zstd(&ndjson(&[tweet_line(1), long, tweet_line(3)])));
        let mut reader = ReplayReader::open(file.path()).unwrap();
        assert_eq!(read_all(&mut reader).unwrap(), ["1", "3"]);
        assert_eq!(reader.stats().rejected.get(LINE_TOO_LONG), Some(&1));
        assert!(reader.line.capacity() <= 2 * MAX_LINE_BYTES);
    }
}
