//! With `--bus`: the stream, read in order, feeding this node's decorator. It stands where the
//! sequencer stands on a single node (the stream numbers the tweets), and waits as the
//! sequencer does: `send().await` on the decorator's bounded mailbox, so a busy decorator
//! slows the reading of the stream, never queues it.

use actix::prelude::*;

use crate::bus::{DeliveryStopped, StreamReader};
use crate::decorate::decorator::{Decorate, Decorator};

/// Reads the stream with `reader` on the current arbiter, handing each batch to `decorator`,
/// until the decorator stops.
pub fn spawn(reader: StreamReader, decorator: Addr<Decorator>) {
    actix_rt::spawn(reader.run(move |batch| {
        let decorator = decorator.clone();
        async move {
            decorator.send(Decorate(batch)).await.map_err(|_| {
                tracing::info!("the decorator stopped; no longer reading the bus");
                DeliveryStopped
            })
        }
    }));
}
