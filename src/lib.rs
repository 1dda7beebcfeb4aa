//! buyline: buy buttons on a live tweet timeline, and flash sales that never oversell.
//!
//! # Layout
//!
//! The modules follow a tweet through the server:
//!
//! * [`sources`]: where tweets enter: the synthetic firehose and file replay (the ingest
//!   endpoints, `/v1/ingest` over WebSocket and NDJSON POST, are routes in [`http`]). Each
//!   source decodes its input with [`sources::formats`] and hands batches to the
//!   [`sources::sequencer`], the ingest stage that gives every accepted tweet the next `seq`.
//! * [`decorate`]: the partner index (an immutable snapshot swapped atomically on admin
//!   writes), URL normalisation, and the decorator actor that adds the buy button and
//!   serialises each tweet's frame exactly once.
//! * [`fanout`]: the history ring for `since` replay, each connection's bounded outbox (and
//!   the slow-consumer policy), and one fan-out shard per core. Each shard owns its
//!   connections and its own subscription index and receives every decorated tweet once.
//! * [`sessions`]: one WebSocket client: reading ops, batched writes, keep-alive. This is
//!   where a tweet leaves.
//! * [`protocol`]: the wire protocol those clients speak: ops parsed, replies rendered.
//! * [`http`]: the routes on the one port: REST, ingest, the WebSocket upgrades, `/metrics`.
//! * [`inventory`]: where the stock lives: lock-free reservations, holds that expire, and the
//!   service that makes every change durable in the [`journal`] before answering.
//! * [`checkout`]: where a hold becomes an order: request parsing, the payment gateway (the
//!   sandbox), the order book rebuilt from the journal, and the encrypted wallet.
//! * [`server`]: wires the actors together, accepts connections, and shuts down.
//!
//! Around them: [`model`] (plain data), [`config`], [`auth`] (tokens and roles, checked in one
//! place), [`telemetry`] (every metric name), [`logging`] (the log filter, which keeps
//! payload-dumping libraries quiet), [`codec`] (the only user of bincode), [`clock`] (the wall
//! clock, read in one place), [`durable_file`] (crash-safe file replacement), and [`error`] (the contract's error codes).
//!
//! Which module may use which is in ARCHITECTURE.md ("Architecture invariants") and checked by
//! `tests/layering.rs`.

pub mod auth;
pub mod checkout;
pub mod clock;
pub mod codec;
pub mod config;
pub mod decorate;
pub mod durable_file;
pub mod error;
pub mod fanout;
pub mod http;
pub mod inventory;
pub mod journal;
pub mod logging;
pub mod model;
pub mod protocol;
pub mod server;
pub mod sessions;
pub mod sources;
pub mod telemetry;
