//! Fan-out: from one decorated tweet to every connection that wants it.
//!
//! One [`shard::FanoutShard`] actor per core, each on its own actix `Arbiter`, owns its
//! connections and their [`index`]. The decorator sends every shard each batch once, as an
//! `Arc` of already-serialised frames. The [`history`] ring, shared by all shards, serves
//! `since` replay, which a connection's [`replay`] cursor reads as its [`outbox`] drains.
//!
//! Everything here but [`shard`] and [`stock_publisher`] (the actors) is plain code on one
//! thread, testable without actix or a socket.

pub mod backfill;
pub mod history;
pub mod index;
pub mod outbox;
pub mod replay;
pub mod shard;
pub mod shard_core;
pub mod stock_publisher;
pub mod timeline;
