//! Where tweets enter buyline.
//!
//! Every source decodes its input with [`formats`] and appends batches to the [`tweet_log`]
//! (today the [`sequencer`], the single ingest stage that numbers tweets ([`seq_floor`] keeps the numbers rising across
//! restarts); with `--bus`, the stream, read back by [`bus_feed`], and read from a cursor by
//! [`bus_history`] for a `since` older than the ring). Sources differ only in where bytes come from:
//! [`synthetic`] makes them up, [`replay`] reads a file, and the ingest endpoints
//! (`crate::http::ingest`, `crate::http::ingest_ws`) take them from producers over the
//! network. [`driver`] runs the built-in ones on a timer.

pub mod bus_feed;
pub mod bus_history;
pub mod driver;
pub mod formats;
pub mod replay;
pub mod seq_floor;
pub mod sequencer;
pub mod synthetic;
pub mod tweet_log;
