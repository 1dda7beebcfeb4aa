//! A keyed reservation's wait for durability, which settles its idempotency key even if the
//! request is abandoned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::inventory::{Inventory, KeyTicket};
use crate::journal::{self, Durable, JournalError};

/// Waits for a keyed reservation's record to be durable, then completes its key's ticket
/// (which answers the duplicates waiting on the key). The key's outcome must be settled even if
/// the request is abandoned first (a client that hangs up), so dropping this early hands the
/// wait to a task of its own. Before, every keyed reservation spawned that task up front.
pub(super) struct SettleWhenDurable<'a> {
    /// The engine that issued the ticket (borrowed: only an abandoned wait takes a reference
    /// count, so keyed reservations write no shared counter).
    engine: &'a Arc<Inventory>,
    /// Both `Some` until the record is durable or this is dropped.
    waiting: Option<(Durable, KeyTicket)>,
}

impl<'a> SettleWhenDurable<'a> {
    pub(super) fn new(engine: &'a Arc<Inventory>, durable: Durable, ticket: KeyTicket) -> Self {
        SettleWhenDurable {
            engine,
            waiting: Some((durable, ticket)),
        }
    }
}

impl Future for SettleWhenDurable<'_> {
    type Output = Result<journal::Lsn, JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((durable, _)) = self.waiting.as_mut() else {
            return Poll::Ready(Err(JournalError::Closed));
        };
        let written = std::task::ready!(Pin::new(durable).poll(cx));
        if let Some((_, ticket)) = self.waiting.take()
            && written.is_ok()
        {
            ticket.complete(self.engine);
        }
        // A failed write drops the ticket, which settles the key as failed.
        Poll::Ready(written)
    }
}

impl Drop for SettleWhenDurable<'_> {
    fn drop(&mut self) {
        let Some((durable, ticket)) = self.waiting.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let engine = Arc::clone(self.engine);
                runtime.spawn(async move {
                    if durable.await.is_ok() {
                        ticket.complete(&engine);
                    }
                });
            }
            // Outside a runtime nothing would poll a task: wait here, for one group commit.
            Err(_) => {
                if durable.wait().is_ok() {
                    ticket.complete(self.engine);
                }
            }
        }
    }
}
