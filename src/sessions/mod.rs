//! One WebSocket client of `/v1/stream`: where a tweet leaves buyline.
//!
//! [`stream`] runs a connection as one task on its shard's thread, the sole owner of the
//! socket: it reads the client's ops and drains the connection's
//! [`outbox`](crate::fanout::outbox) into the socket, flushing once per drain.
//! [`stream_ops`] is what each op does ([`crate::protocol`] parses it).
//! [`commerce_slots`] bounds the reserve/release/checkout ops a connection runs at once.
//! [`keep_alive`] pings a connection that has gone quiet.

pub mod commerce_slots;
pub mod connection_limit;
pub mod keep_alive;
pub mod stream;
pub mod stream_ops;
