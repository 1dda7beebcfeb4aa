//! Post-mortem aid: prints every inventory record of a journal directory after its snapshot.
//!
//! `cargo run --example dump_journal -- data/journal` (on a copy: opening takes the lock and
//! truncates a torn tail, as the server would).

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: dump_journal JOURNAL_DIR")?;
    let (_ready, recovered) = buyline::Journal::open(&dir, Default::default())?;
    println!(
        "snapshot: {} (covers up to LSN {}), {} records after it",
        recovered
            .snapshot
            .as_ref()
            .map_or("none".to_owned(), |s| format!("{} bytes", s.len())),
        recovered.snapshot_lsn.0,
        recovered.records.len()
    );
    for (i, payload) in recovered.records.iter().enumerate() {
        let record: buyline::Record = buyline::decode_bincode(payload, payload.len() as u64)
            .with_context(|| format!("record {i} is not an inventory record"))?;
        println!("{} {record:?}", recovered.snapshot_lsn.0 + 1 + i as u64);
    }
    Ok(())
}
