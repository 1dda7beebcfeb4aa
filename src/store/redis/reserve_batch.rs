//! [`ReserveBatches`]: group commit of reservations. Concurrent reservations of one product are
//! coalesced into one `buyline_reserve` call, which decides them in order, each exactly as a
//! call of its own would, but reads Redis's clock, loads and saves the product's counts and
//! publishes its stock once a batch: Redis runs one function at a time, and its time per call
//! (not per reservation) is what capped a node with `--store`.
//!
//! How batches form, with no timer: a product has at most [`MAX_IN_FLIGHT`] calls in flight.
//! A reservation that finds fewer starts a batch task, which takes it (and anything waiting)
//! at once: a reservation on an idle product waits for nothing. One that finds them all busy
//! waits in the product's queue, and the next task to finish a call takes the queue (at most
//! [`MAX_BATCH`]) as its next batch. So batches grow with the load and stay one request long
//! when it is light.
//!
//! A batch is per product, so the call touches one product's `{product}`-tagged keys (and the
//! requests' idempotency keys, as a single reservation does): the Cluster story in the module
//! doc holds. A call that fails (Redis unreachable, no answer within `RESPONSE_TIMEOUT`)
//! answers `unavailable` to each of its requests: none of their outcomes is known, and a retry
//! with the same idempotency key is safe.
//!
//! Cost on this side, a reservation: the request's four strings (moved, not copied), a oneshot
//! channel, a queue slot, and its share of one command's arguments; a batch: one task, one
//! `FCALL`, one reply read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use redis::{Cmd, Value};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::call::{Caller, decision, fcall, malformed, read};
use super::keys;
use super::reply::{MalformedReply, Reply};
use crate::error::ApiError;
use crate::inventory::KeyWindow;
use crate::inventory::service::{ReserveReply, ReservedHold};

/// Most reservations one call decides (`MAX_BATCH` in `functions.lua`): bounds the time
/// one function runs in Redis (a few milliseconds at most) and the size of one command.
pub const MAX_BATCH: usize = 128;

/// Most calls of one product in flight at once: while one is in Redis (or its fsync), the
/// next batch is on its way on the same connection, and the one after forms.
pub const MAX_IN_FLIGHT: u32 = 2;

/// Most reservations of one product waiting for a call; past it a reservation answers
/// `unavailable` at once (without taking effect). Far above what the connections' own limits
/// let in at once, so only a Redis that stopped answering fills it.
pub const MAX_WAITING: usize = 65_536;

const _: () = assert!(MAX_BATCH >= 1);
const _: () = assert!(MAX_BATCH <= 1024);
const _: () = assert!(MAX_IN_FLIGHT >= 1);
const _: () = assert!(MAX_WAITING >= MAX_BATCH);

/// One reservation, ready to send (validated, its hold id made).
pub(super) struct ReserveRequest {
    pub customer: String,
    pub quantity: u32,
    /// The new hold's id, made on this node (random, unique across nodes).
    pub hold: String,
    /// The request's fingerprint (product and quantity), as 16 hex digits.
    pub fingerprint: String,
    /// The Redis key of the request's idempotency key, if it has one.
    pub idempotency_key: Option<String>,
}

/// A reservation waiting for its batch's reply.
struct Waiting {
    request: ReserveRequest,
    answer: oneshot::Sender<Result<ReserveReply, ApiError>>,
}

/// One product's reservations: waiting, and the calls in flight.
#[derive(Default)]
struct ProductQueue {
    waiting: VecDeque<Waiting>,
    in_flight: u32,
}

/// The reservation batches of every product on this node.
pub(super) struct ReserveBatches {
    /// Sends the calls.
    caller: Caller,
    /// How long a reservation idempotency key is remembered (`--idempotency-window`).
    key_window: KeyWindow,
    /// Each product with a call in flight or a reservation waiting (a product leaves when its
    /// last call ends with nothing waiting, so the map holds at most the products being
    /// reserved now). A std mutex: held for a push or a drain, never across an await.
    products: Mutex<FxHashMap<String, ProductQueue>>,
}

impl ReserveBatches {
    pub(super) fn new(caller: Caller, key_window: KeyWindow) -> ReserveBatches {
        ReserveBatches {
            caller,
            key_window,
            products: Mutex::new(FxHashMap::default()),
        }
    }

    /// Reserves for `request` on `product`, in the product's next batch.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        product: &str,
        request: ReserveRequest,
    ) -> Result<ReserveReply, ApiError> {
        let (answer, answered) = oneshot::channel();
        let start_a_batch = {
            let mut products = self.products.lock().unwrap_or_else(|p| p.into_inner());
            if !products.contains_key(product) {
                products.insert(product.to_owned(), ProductQueue::default());
            }
            let Some(queue) = products.get_mut(product) else {
                return Err(ApiError::internal("the reservation queue lost its product"));
            };
            if queue.waiting.len() >= MAX_WAITING {
                return Err(ApiError::unavailable(
                    "too many reservations are waiting for the store; this one did not take \
                     effect; retry",
                ));
            }
            queue.waiting.push_back(Waiting { request, answer });
            let start = queue.in_flight < MAX_IN_FLIGHT;
            if start {
                queue.in_flight += 1;
            }
            start
        };
        if start_a_batch {
            tokio::spawn(Arc::clone(self).send_batches(product.to_owned()));
        }
        // A dropped sender: the batch's task ended without an answer (the runtime shutting
        // down), so the outcome is unknown.
        answered.await.unwrap_or_else(|_| {
            Err(ApiError::unavailable(
                "the store's answer was lost, so this request may or may not have taken \
                 effect; retry (with the same idempotency key)",
            ))
        })
    }

    /// One of the product's calls in flight: sends what waits, batch after batch, until
    /// nothing does.
    async fn send_batches(self: Arc<Self>, product: String) {
        let mut place = InFlight {
            batches: &self,
            product: &product,
            given_back: false,
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut products = self.products.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = products.get_mut(&product) else {
                    place.given_back = true;
                    return;
                };
                if queue.waiting.is_empty() {
                    debug_assert!(queue.in_flight > 0, "a batch task that was not counted");
                    queue.in_flight = queue.in_flight.saturating_sub(1);
                    if queue.in_flight == 0 {
                        products.remove(&product);
                    }
                    place.given_back = true;
                    return;
                }
                let n = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..n).collect()
            };
            self.send(&product, batch).await;
        }
    }

    /// Sends one batch and answers each of its reservations.
    async fn send(&self, product: &str, batch: Vec<Waiting>) {
        debug_assert!(!batch.is_empty());
        debug_assert!(batch.len() <= MAX_BATCH);
        let cmd = self.command(product, &batch);
        let replies = match self.caller.run("reserve", &cmd).await {
            Ok(reply) => read_batch(reply, batch.len()),
            Err(error) => Err(error),
        };
        match replies {
            Ok((expires_at_ms, replies)) => {
                for (waiting, reply) in batch.into_iter().zip(replies) {
                    let Waiting {
                        request,
                        answer: answer_to,
                    } = waiting;
                    let answer = match reply {
                        Value::Int(remaining) => {
                            read(new_hold(request, product, expires_at_ms, remaining))
                        }
                        other => answer_of(other, product, request.quantity),
                    };
                    // A requester that went away (its client disconnected) is not an error.
                    let _ = answer_to.send(answer);
                }
            }
            Err(error) => {
                for waiting in batch {
                    let _ = waiting.answer.send(Err(error.clone()));
                }
            }
        }
    }

    /// The batch's `FCALL`: the product's key, then each keyed request's idempotency key;
    /// the clock, product and key window, then five arguments a request (see `reserve` in
    /// `functions.lua`).
    fn command(&self, product: &str, batch: &[Waiting]) -> Cmd {
        let keyed = batch
            .iter()
            .filter(|waiting| waiting.request.idempotency_key.is_some())
            .count();
        let mut cmd = fcall("buyline_reserve");
        cmd.arg(1 + keyed).arg(keys::product(product));
        for waiting in batch {
            if let Some(key) = &waiting.request.idempotency_key {
                cmd.arg(key);
            }
        }
        cmd.arg(self.caller.now_arg())
            .arg(product)
            .arg(self.key_window.as_millis());
        // KEYS is 1-based in Lua and KEYS[1] is the product's.
        let mut next_key = 2;
        for waiting in batch {
            let request = &waiting.request;
            cmd.arg(&request.customer)
                .arg(request.quantity)
                .arg(&request.hold)
                .arg(&request.fingerprint);
            match request.idempotency_key {
                Some(_) => {
                    cmd.arg(next_key);
                    next_key += 1;
                }
                None => {
                    cmd.arg(0);
                }
            }
        }
        cmd
    }
}

/// A batch task's place among its product's calls in flight. A task that ends without giving
/// it back (a panic, or its runtime dropping it mid-call) gives it back here; if it was the
/// product's last, every reservation still waiting hears `unavailable` (their senders drop
/// with the queue), so none waits for a task that will never come, and the product's next
/// reservation starts afresh.
struct InFlight<'a> {
    batches: &'a ReserveBatches,
    product: &'a str,
    given_back: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.given_back {
            return;
        }
        let mut products = self
            .batches
            .products
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = products.get_mut(self.product) {
            queue.in_flight = queue.in_flight.saturating_sub(1);
            if queue.in_flight == 0 {
                // Their senders drop with the queue: each hears "the answer was lost".
                products.remove(self.product);
            }
        }
    }
}

/// A batch's reply: `decided`, the new holds' expiry, then one reply a request, as many as
/// it had.
fn read_batch(reply: Reply, requests: usize) -> Result<(i64, Vec<Value>), ApiError> {
    if reply.outcome() != "decided" {
        return Err(malformed("reserve", reply.unexpected()));
    }
    let expires_at_ms = read(reply.int(0))?;
    let mut values = reply.into_values();
    if values.len() != requests + 1 {
        return Err(malformed(
            "reserve",
            MalformedReply::new(format!(
                "{} replies to a batch of {requests} reservations",
                values.len().saturating_sub(1)
            )),
        ));
    }
    values.remove(0);
    Ok((expires_at_ms, values))
}

/// A new hold: the request's id and quantity, the batch's expiry, the units available after it.
fn new_hold(
    request: ReserveRequest,
    product: &str,
    expires_at_ms: i64,
    remaining: i64,
) -> Result<ReserveReply, MalformedReply> {
    let remaining = u32::try_from(remaining)
        .map_err(|_| MalformedReply::new(format!("{remaining} units available")))?;
    Ok(ReserveReply {
        reservation: ReservedHold {
            id: request.hold,
            product: product.to_owned(),
            quantity: request.quantity,
            expires_at_ms,
        },
        remaining,
        replayed: false,
    })
}

/// A request's reply other than a new hold: `replayed` (hold id, quantity, expiry, remaining)
/// or a refusal.
fn answer_of(value: Value, product: &str, quantity: u32) -> Result<ReserveReply, ApiError> {
    let reply = Reply::read(value).map_err(|error| malformed("reserve", error))?;
    match reply.outcome() {
        "replayed" => read(replayed(&reply, product)),
        _ => Err(decision(&reply, quantity)),
    }
}

/// A `replayed` reply: hold id, quantity, expiry, remaining.
fn replayed(reply: &Reply, product: &str) -> Result<ReserveReply, MalformedReply> {
    Ok(ReserveReply {
        reservation: ReservedHold {
            id: reply.text(0)?,
            product: product.to_owned(),
            quantity: reply.count(1)?,
            expires_at_ms: reply.int(2)?,
        },
        remaining: reply.count(3)?,
        replayed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_limit_is_the_one_the_library_declares() {
        assert!(
            super::super::library::SOURCE.contains(&format!("\nlocal MAX_BATCH = {MAX_BATCH}\n")),
            "functions.lua declares another MAX_BATCH than reserve_batch::MAX_BATCH"
        );
    }
}
