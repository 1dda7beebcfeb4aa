//! The bus: the firehose on a NATS JetStream stream, shared by every node of a cluster
//! (`--bus nats://HOST:PORT`).
//!
//! Every node publishes the tweets it accepts to one stream ([`TweetPublisher`]) and reads the
//! whole stream back in order ([`StreamReader`]), so every node decorates and fans out the same
//! tweets in the same order, and a tweet's `seq` is its stream sequence: the same on every node.
//!
//! - [`setup`]: connecting, and the stream: created if missing, checked if present.
//! - [`publisher`]: a batch published with every acknowledgement in flight at once.
//! - [`acks`]: the stream's acknowledgements, matched to the batches they answer.
//! - [`reader`]: one ordered consumer per node, made again from the last applied sequence
//!   whenever it is lost; it hands out (stream sequence, message) pairs.
//! - [`catalog`]: the catalog as messages of the stream, written with a check that no other
//!   change came between, kept from being dropped by the stream's limits.
//! - [`catalog_message`]: a catalog message's body.
//! - [`health`]: what readiness and the metrics read: connected, caught up, applied.
//!
//! An engine (L1): it knows NATS, tweets and the codec, and nothing of an actor framework,
//! HTTP or the fan-out. The actor that feeds the decorator from the reader is
//! `sources::bus_feed`.

pub mod acks;
pub mod catalog;
pub mod catalog_message;
pub mod error;
pub mod health;
pub mod publisher;
pub mod reader;
pub mod setup;

pub use catalog::CatalogPublishError;
pub use catalog_message::StreamCatalog;
pub use publisher::{InFlight, Published, TweetPublisher};
pub use reader::{Delivery, DeliveryStopped, StreamReader};
pub use setup::{Bus, BusSettings};
