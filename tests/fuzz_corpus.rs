//! The committed fuzz corpus as a regression test: every input the fuzzers kept (`fuzz/corpus/`)
//! goes through the same function its fuzz target calls, in an ordinary `cargo test`, so CI
//! replays every case the fuzzers found interesting without cargo-fuzz or a nightly compiler.
//! An input may be rejected; it must not panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The most tweets one binary ingest frame may carry, as the `ingest_batch` target uses.
const MAX_TWEETS: usize = 10_000;

/// The files of one target's corpus, sorted so a failure names the same file on every run.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `check` on every file of `target`'s corpus and fails naming every file that panicked.
fn run_corpus(target: &str, check: impl Fn(&[u8])) {
    let files = corpus(target);
    let panicked: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        panicked.is_empty(),
        "{} of {} {target} corpus inputs panicked (reproduce with \
         `cargo fuzz run {target} FILE` in fuzz/):\n{}",
        panicked.len(),
        files.len(),
        panicked.join("\n")
    );
}

#[test]
fn every_decode_corpus_input_decodes_or_is_rejected_without_panicking() {
    run_corpus("decode", |data| {
        let _ = buyline::decode_ingest_object(data);
    });
}

#[test]
fn every_ingest_batch_corpus_input_decodes_or_is_rejected_without_panicking() {
    run_corpus("ingest_batch", |data| {
        let _ = buyline::decode_tweet_batch(data, MAX_TWEETS);
    });
}

#[test]
fn every_client_input_corpus_input_parses_or_is_rejected_without_panicking() {
    run_corpus("client_input", |data| {
        let _ = buyline::parse_client_input(data);
    });
}
