//! File replay: reading a recorded feed (NDJSON, one ingest object per line) back as tweets.
//!
//! `--firehose replay:FILE` plays a capture through the same decoders as live ingest, so any
//! format the ingest endpoints accept can be replayed, mixed per line. The reader is plain
//! blocking std I/O; the source driver runs it on its own arbiter thread and paces the batches.
//!
//! A bad line never stops a replay: it is skipped and counted by reason in [`ReplayStats`], and
//! the first line of each reason is logged with its line number, so a huge capture with one
//! recurring problem logs once, not a million times.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
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

/// A replay file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open replay file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read replay file {} after line {line}: {source}", path.display())]
    Read {
        path: PathBuf,
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
    /// For error messages and logs.
    path: PathBuf,
    /// Buffered so lines are found without a syscall per line; rewound by seeking.
    reader: BufReader<File>,
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
        let file = File::open(path).map_err(|source| ReplayError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(ReplayReader {
            path: path.to_owned(),
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
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
                        line: self.line_number,
                        source,
                    });
                }
            }
        }
        Ok(ReplayProgress::Filled)
    }

    /// Goes back to the first line, for `--loop`. Stats keep counting across passes.
    pub fn rewind(&mut self) -> Result<(), ReplayError> {
        // Seeking a BufReader discards its buffer, so no stale bytes survive.
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| ReplayError::Rewind {
                path: self.path.clone(),
                source,
            })?;
        self.line_number = 0;
        Ok(())
    }

    /// The counts so far.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
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
    fn malformed_and_blank_lines_are_skipped_and_counted() {
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
        assert_eq!(stats.rejected.get("unsupported_format"), Some(&1));
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
}
