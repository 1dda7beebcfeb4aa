//! A `since` older than the history ring, served from an older source (with `--bus`, the
//! stream) while that source still has it, then handed to the ring's replay cursor.
//!
//! Never copied whole: a connection's backfill is one task reading the source from a cursor
//! (the stream's own consumer), a bounded queue of at most [`QUEUE`] decorated tweets between
//! it and the connection's writer, and the writer taking from the queue as its outbox drains,
//! exactly as the ring's replay does. While the queue is empty the writer sleeps (the outbox
//! waits for the source) rather than spinning; the task wakes it when tweets come. Once the
//! next seq to hand out is one the ring holds (after its `lost_through`), the ring's cursor
//! takes over from that seq and the task ends.
//!
//! The task runs on the shard's thread (`spawn_local`), holding the queue and the outbox by
//! `Rc`; it ends when the handoff drops the queue, the connection closes, or the source ends.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::Notify;

use crate::decorate::frame::DecoratedTweet;
use crate::fanout::outbox::Outbox;

/// Most decorated tweets read ahead of a connection's writer.
pub const QUEUE: usize = 256;

/// A seq of the older source: a tweet, decorated, or a message that is not one (it takes the
/// seq and nothing else).
pub type OlderItem = (u64, Option<Arc<DecoratedTweet>>);

/// The source's items from some seq on, in seq order; an `Err` ends the backfill.
pub type OlderItems = Pin<Box<dyn Stream<Item = Result<OlderItem, String>>>>;

/// An opened older source.
pub struct OlderOpen {
    /// The oldest seq the source still has.
    pub first: u64,
    /// Its items from the seq asked for (or `first`, if later) on.
    pub items: OlderItems,
}

/// Where tweets older than the ring come from.
pub trait OlderTweets: Send + Sync {
    /// The newest seq the source is known to hold, once it knows (the node is caught up): a
    /// `since` beyond it means the source was reset (a stream deleted and made again).
    fn newest(&self) -> Option<u64>;
    /// The source's epoch, sent in `subscribed` and `gap` frames (`None` until known).
    fn epoch(&self) -> Option<Arc<str>>;
    /// The items from `from` on (or from its oldest, if later).
    fn open(&self, from: u64) -> Pin<Box<dyn Future<Output = Result<OlderOpen, String>>>>;
}

/// Where a connection's backfill has got to; shared by its task and its writer.
pub struct Backfill {
    /// Read ahead, in seq order, not yet handed out.
    queue: RefCell<VecDeque<Arc<DecoratedTweet>>>,
    /// The seq after the newest read from the source (every seq before it is read).
    read_to: Cell<u64>,
    /// Opened, with the source's first seq; `None` while opening.
    first: Cell<Option<u64>>,
    /// The source ended or failed: nothing more will come.
    ended: Cell<bool>,
    /// The writer took from a full queue.
    room: Rc<Notify>,
    /// Told when the backfill is dropped (handed over, or the connection closed), so the task
    /// stops waiting on the source at once.
    stop: Rc<Notify>,
}

impl Drop for Backfill {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// What the writer should do with the backfill now.
#[derive(Debug, PartialEq, Eq)]
pub enum BackfillStep {
    /// Nothing to take yet: wait for the task (the outbox sleeps until woken).
    Waiting,
    /// Took what fitted; more later.
    Reading,
    /// The ring holds everything from this seq on: hand over to its cursor.
    HandOff(u64),
}

impl Backfill {
    /// Starts reading `older` from `from` for `outbox`, on the current thread's local set.
    pub fn start(older: &Arc<dyn OlderTweets>, from: u64, outbox: &Rc<Outbox>) -> Rc<Backfill> {
        let backfill = Rc::new(Backfill {
            queue: RefCell::new(VecDeque::new()),
            read_to: Cell::new(from),
            first: Cell::new(None),
            ended: Cell::new(false),
            room: Rc::new(Notify::new()),
            stop: Rc::new(Notify::new()),
        });
        let opening = older.open(from);
        tokio::task::spawn_local(read(
            opening,
            Rc::downgrade(&backfill),
            Rc::clone(&backfill.stop),
            Rc::downgrade(outbox),
        ));
        backfill
    }

    /// `None` while opening; then the source's first seq, or `None` inside if it could not
    /// be read.
    pub fn opened(&self) -> Option<Option<u64>> {
        match (self.first.get(), self.ended.get()) {
            (Some(first), _) => Some(Some(first)),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }

    /// Hands queued tweets to `take` in seq order until it refuses one (kept for next time),
    /// then says what next: hand over once the next seq to hand out is after `lost_through`
    /// (the ring holds it), or the source ended.
    ///
    /// Cost: one `take` call per queued tweet handed out; no allocation.
    pub fn step(
        &self,
        lost_through: u64,
        mut take: impl FnMut(&Arc<DecoratedTweet>) -> bool,
    ) -> BackfillStep {
        if self.first.get().is_none() && !self.ended.get() {
            return BackfillStep::Waiting;
        }
        let mut queue = self.queue.borrow_mut();
        let was_full = queue.len() >= QUEUE;
        loop {
            let next = queue.front().map_or(self.read_to.get(), |t| t.seq);
            if next > lost_through {
                return BackfillStep::HandOff(next);
            }
            let Some(tweet) = queue.front() else {
                break;
            };
            if !take(tweet) {
                break;
            }
            queue.pop_front();
        }
        if was_full && queue.len() < QUEUE {
            self.room.notify_one();
        }
        if queue.is_empty() {
            if self.ended.get() {
                return BackfillStep::HandOff(self.read_to.get());
            }
            return BackfillStep::Waiting;
        }
        BackfillStep::Reading
    }
}

/// The task: opens the source, then reads it into the queue while there is room, waking the
/// writer whenever something changes.
async fn read(
    opening: impl Future<Output = Result<OlderOpen, String>>,
    backfill: Weak<Backfill>,
    stop: Rc<Notify>,
    outbox: Weak<Outbox>,
) {
    let wake = |outbox: &Weak<Outbox>| {
        if let Some(outbox) = outbox.upgrade() {
            outbox.source_ready();
        }
    };
    let opened = tokio::select! {
        opened = opening => opened,
        () = stop.notified() => return,
    };
    let Some(this) = backfill.upgrade() else {
        return;
    };
    let room = Rc::clone(&this.room);
    let mut items = match opened {
        Ok(opened) => {
            this.first.set(Some(opened.first));
            this.read_to.set(this.read_to.get().max(opened.first));
            opened.items
        }
        Err(reason) => {
            tracing::warn!(%reason, "cannot read the stream for a since replay; the ring serves what it has");
            this.ended.set(true);
            wake(&outbox);
            return;
        }
    };
    drop(this);
    wake(&outbox);
    loop {
        // Wait for room without holding the backfill (the handoff drops it).
        loop {
            let Some(this) = backfill.upgrade() else {
                return;
            };
            if this.queue.borrow().len() < QUEUE {
                break;
            }
            let notified = room.notified();
            drop(this);
            tokio::select! {
                () = notified => {},
                () = stop.notified() => return,
            }
        }
        let item = tokio::select! {
            item = items.next() => item,
            () = stop.notified() => return,
        };
        let Some(this) = backfill.upgrade() else {
            return;
        };
        match item {
            Some(Ok((seq, tweet))) => {
                if seq >= this.read_to.get() {
                    this.read_to.set(seq + 1);
                    if let Some(tweet) = tweet {
                        this.queue.borrow_mut().push_back(tweet);
                    }
                }
            }
            Some(Err(reason)) => {
                tracing::warn!(%reason, "the stream failed during a since replay; the ring serves the rest");
                this.ended.set(true);
                wake(&outbox);
                return;
            }
            None => {
                this.ended.set(true);
                wake(&outbox);
                return;
            }
        }
        wake(&outbox);
    }
}
