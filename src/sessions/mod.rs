//! One WebSocket client of `/v1/stream`: where a tweet leaves buyline.
//!
//! [`stream`] runs a connection as two tasks on its shard's thread: a reader that handles the
//! client's ops ([`crate::protocol`]), and a writer that drains the connection's
//! [`outbox`](crate::fanout::outbox) into the socket, flushing once per drain. [`keep_alive`]
//! pings a connection that has gone quiet.

pub mod connection_limit;
pub mod keep_alive;
pub mod stream;
