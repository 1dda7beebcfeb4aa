//! [`RedisInventory`]: stock and holds in Redis, shared by every node. Each operation is one
//! `FCALL` of the library's function, which decides everything atomically against Redis's
//! clock; this side builds the keys and arguments, and reads the reply into the local engine's
//! values and the contract's error codes.
//!
//! All calls share one multiplexed connection (a `ConnectionManager`): concurrent requests are
//! pipelined on it rather than each waiting for a connection, and a dropped connection is
//! re-established in the background. A call that cannot reach Redis, or gets no answer within
//! [`RESPONSE_TIMEOUT`], answers `unavailable`: its outcome may be unknown, so it is never
//! answered as a success, and a retry with the same idempotency key is safe. Reservations are
//! the exception to "one operation, one call": concurrent ones of a product share a call
//! (`reserve_batch`).
//!
//! Cost of a call: one round trip, a few small strings for the keys and arguments, and the
//! function's own work in Redis (a dozen commands; expiry adds a few per due hold).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd};

use super::call::{Caller, decision, fcall, malformed, read};
use super::durability;
use super::error::RedisStoreError;
use super::health::Health;
use super::hold_id::{is_hold_id, new_hold_id};
use super::keys;
use super::library;
use super::reply::{MalformedReply, Reply};
use super::reserve_batch::{ReserveBatches, ReserveRequest};
use super::values::{LiveHold, OrderToStore, Sale, StockLevel};
use crate::clock::unix_ms;
use crate::decorate::catalog_file::check_id;
use crate::error::ApiError;
use crate::inventory::idempotency::fingerprint;
use crate::inventory::service::ReserveReply;
use crate::inventory::{InventoryError, KeyWindow, MAX_QUANTITY};
use crate::model::Product;

/// How long a call waits for Redis's answer before it answers `unavailable`. An fsync on a slow
/// disk takes tens of milliseconds; seconds mean Redis is in trouble.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a (re)connection attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Attempts of one reconnection (after the first), and the longest wait between two: a
/// request that finds the connection down waits for at most this reconnection before it
/// answers `unavailable` (about a second while Redis refuses connections), so clients hear
/// 503 promptly; the next request starts another.
pub(super) const RECONNECT_RETRIES: usize = 2;
pub(super) const RECONNECT_MAX_DELAY_MS: u64 = 500;

/// Most rounds of [`RedisInventory::expire_due`] for one product in one sweep (each ends at most
/// the library's `EXPIRE_MEMBERS` batches of holds, 1,024 holds), so a sweep's time is bounded.
const MAX_EXPIRY_ROUNDS: u32 = 16;

/// Stock and holds in Redis. Share it (`Arc`); every method takes `&self`.
pub struct RedisInventory {
    /// Sends the calls: the multiplexed connection, the connection state, the clock.
    caller: Caller,
    /// Coalesces concurrent reservations of a product into one `buyline_reserve` call.
    reservations: Arc<ReserveBatches>,
}

impl RedisInventory {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`), checks that Redis makes every change
    /// durable and never evicts, and loads the function library unless Redis has it.
    pub async fn connect(url: &str, key_window: KeyWindow) -> Result<Self, RedisStoreError> {
        let client = Client::open(url).map_err(RedisStoreError::BadUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY_MS);
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(RedisStoreError::Unreachable)?;
        durability::check(&mut connection).await?;
        library::ensure_loaded(&mut connection).await?;
        let caller = Caller::new(connection);
        Ok(RedisInventory {
            reservations: Arc::new(ReserveBatches::new(caller.clone(), key_window)),
            caller,
        })
    }

    /// Whether the last call reached Redis, and why not.
    pub fn health(&self) -> &Arc<Health> {
        self.caller.health()
    }

    /// Sends `PING`: whether Redis answers now (the probe that notices it coming back).
    pub async fn ping(&self) -> bool {
        let cmd = redis::cmd("PING");
        self.query::<String>("ping", &cmd).await.is_ok()
    }

    /// Pins the time every function uses to `now_ms` (milliseconds since the Unix epoch), or
    /// back to Redis's own clock with `None`. For tests only (the model test steps time as the
    /// local engine's does); a server never calls it: every node must use Redis's one clock.
    pub fn pin_clock(&self, now_ms: Option<i64>) {
        self.caller.pin_clock(now_ms);
    }

    /// Reserves `quantity` units of `product` for `customer`, durably; with an idempotency
    /// key, exactly once within the key window (the same key with another product or quantity
    /// is `idempotency_mismatch`). Concurrent reservations of a product share one call
    /// (`reserve_batch`); one on an idle product goes at once.
    pub async fn reserve(
        &self,
        customer: &str,
        product: &str,
        quantity: u32,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveReply, ApiError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(InventoryError::InvalidQuantity {
                quantity,
                max: MAX_QUANTITY,
            }
            .into());
        }
        if !is_product_id(product) {
            return Err(InventoryError::NotFound.into());
        }
        let hold = new_hold_id().map_err(|error| {
            tracing::error!(%error, "no hold id could be made");
            ApiError::internal("no reservation id could be made; it did not take effect")
        })?;
        let request = ReserveRequest {
            customer: customer.to_owned(),
            quantity,
            hold,
            fingerprint: format!("{:016x}", fingerprint(product, quantity)),
            idempotency_key: idempotency_key.map(|key| keys::idempotency(customer, key)),
        };
        self.reservations.reserve(product, request).await
    }

    /// Releases `customer`'s live hold, durably; returns the units available after it.
    pub async fn release(&self, customer: &str, reservation: &str) -> Result<u32, ApiError> {
        if !is_hold_id(reservation) {
            return Err(InventoryError::ReservationNotFound.into());
        }
        let mut cmd = fcall("buyline_release");
        cmd.arg(1)
            .arg(keys::hold_locator(reservation))
            .arg(self.now_arg())
            .arg(customer)
            .arg(reservation);
        let reply = self.run("release", &cmd).await?;
        match reply.outcome() {
            "released" => read(reply.count(0)),
            _ => Err(decision(&reply, 0)),
        }
    }

    /// Sells `customer`'s live hold, durably, and with it stores `order` (if any): the order's
    /// bytes, its id on the buyer's and the partner's lists, the buyer's checkout key, and an
    /// entry of the orders stream, all in the same atomic step.
    pub async fn confirm(
        &self,
        customer: &str,
        reservation: &str,
        order: Option<&OrderToStore<'_>>,
    ) -> Result<Sale, ApiError> {
        if !is_hold_id(reservation) {
            return Err(InventoryError::ReservationNotFound.into());
        }
        let mut cmd = fcall("buyline_confirm");
        match order {
            None => cmd.arg(1).arg(keys::hold_locator(reservation)),
            Some(order) => {
                cmd.arg(if order.checkout_key.is_some() { 6 } else { 5 })
                    .arg(keys::hold_locator(reservation))
                    .arg(keys::order(order.id))
                    .arg(keys::buyer_orders(customer))
                    .arg(keys::partner_orders(order.partner))
                    .arg(keys::ORDERS_STREAM);
                if let Some(key) = order.checkout_key {
                    cmd.arg(keys::checkout_key(customer, key));
                }
                &mut cmd
            }
        };
        cmd.arg(self.now_arg()).arg(customer).arg(reservation);
        if let Some(order) = order {
            cmd.arg(order.id).arg(order.bytes);
        }
        let reply = self.run("confirm", &cmd).await?;
        match reply.outcome() {
            "confirmed" => read(Sale::from_reply(&reply)),
            _ => Err(decision(&reply, 0)),
        }
    }

    /// `customer`'s live hold, without ending it (checkout prices the order from it).
    pub async fn hold_of(&self, customer: &str, reservation: &str) -> Result<LiveHold, ApiError> {
        if !is_hold_id(reservation) {
            return Err(InventoryError::ReservationNotFound.into());
        }
        let mut cmd = fcall("buyline_hold_of");
        cmd.arg(1)
            .arg(keys::hold_locator(reservation))
            .arg(self.now_arg())
            .arg(customer)
            .arg(reservation);
        let reply = self.run("hold_of", &cmd).await?;
        match reply.outcome() {
            "held" => read(LiveHold::from_reply(&reply, reservation)),
            _ => Err(decision(&reply, 0)),
        }
    }

    /// Adds units to an open product, durably; returns the units available after it.
    pub async fn restock(&self, product: &str, quantity: u32) -> Result<u32, ApiError> {
        if quantity == 0 {
            return Err(InventoryError::InvalidQuantity {
                quantity,
                max: u32::MAX,
            }
            .into());
        }
        if !is_product_id(product) {
            return Err(InventoryError::NotFound.into());
        }
        let mut cmd = fcall("buyline_restock");
        cmd.arg(1)
            .arg(keys::product(product))
            .arg(self.now_arg())
            .arg(product)
            .arg(quantity);
        let reply = self.run("restock", &cmd).await?;
        match reply.outcome() {
            "restocked" => read(reply.count(0)),
            _ => Err(decision(&reply, quantity)),
        }
    }

    /// Registers a product (a new one opens with its stock, durably) or updates its rules (a
    /// known one, even a deleted one, which this reopens, keeps its counts).
    pub async fn open_product(&self, product: &Product) -> Result<(), ApiError> {
        if !is_product_id(&product.id) {
            return Err(ApiError::bad_request(
                "a product id uses 1 to 128 of A-Z a-z 0-9 _ . : -",
            ));
        }
        let (starts_at, ends_at) = match &product.sale {
            Some(sale) => (
                unix_ms(sale.starts_at).to_string(),
                unix_ms(sale.ends_at).to_string(),
            ),
            None => (String::new(), String::new()),
        };
        let mut cmd = fcall("buyline_product_upsert");
        cmd.arg(1)
            .arg(keys::product(&product.id))
            .arg(&product.id)
            .arg(product.stock)
            .arg(product.per_customer_limit)
            .arg(i64::from(product.hold_seconds.max(1)) * 1000)
            .arg(starts_at)
            .arg(ends_at);
        let reply = self.run("product_upsert", &cmd).await?;
        match reply.outcome() {
            "opened" | "updated" => Ok(()),
            _ => Err(malformed("product_upsert", reply.unexpected())),
        }
    }

    /// Closes a product to reservations and restocks; its holds end normally and its counts
    /// stay. Returns whether there was such a product.
    pub async fn remove_product(&self, product: &str) -> Result<bool, ApiError> {
        if !is_product_id(product) {
            return Ok(false);
        }
        let mut cmd = fcall("buyline_product_delete");
        cmd.arg(1).arg(keys::product(product));
        let reply = self.run("product_delete", &cmd).await?;
        match reply.outcome() {
            "closed" => Ok(true),
            "not_found" => Ok(false),
            _ => Err(malformed("product_delete", reply.unexpected())),
        }
    }

    /// A product's counts (open or deleted), `None` if it was never opened.
    pub async fn counts(&self, product: &str) -> Result<Option<StockLevel>, ApiError> {
        if !is_product_id(product) {
            return Ok(None);
        }
        let mut cmd = fcall("buyline_counts");
        cmd.arg(1).arg(keys::product(product));
        let reply = self.run("counts", &cmd).await?;
        match reply.outcome() {
            "stock" => read(StockLevel::from_reply(&reply)).map(Some),
            "not_found" => Ok(None),
            _ => Err(malformed("counts", reply.unexpected())),
        }
    }

    /// Units `customer` holds or bought of `product`, as counted for its limit.
    pub async fn customer_units(&self, product: &str, customer: &str) -> Result<u32, ApiError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(keys::units(product)).arg(customer);
        let units: Option<u32> = self.query("customer_units", &cmd).await?;
        Ok(units.unwrap_or(0))
    }

    /// Live holds of `product` (for tests and metrics).
    pub async fn live_holds(&self, product: &str) -> Result<u64, ApiError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(keys::product(product)).arg("holds");
        let holds: Option<u64> = self.query("live_holds", &cmd).await?;
        Ok(holds.unwrap_or(0))
    }

    /// Ends the due holds of `product`, durably; returns how many. Safe on any node, any
    /// number of times: a hold ends once.
    pub async fn expire_due_of(&self, product: &str) -> Result<u32, ApiError> {
        let mut expired = 0;
        for _ in 0..MAX_EXPIRY_ROUNDS {
            let mut cmd = fcall("buyline_expire_due");
            cmd.arg(1)
                .arg(keys::product(product))
                .arg(self.now_arg())
                .arg(product);
            let reply = self.run("expire_due", &cmd).await?;
            if reply.outcome() != "expired" {
                return Err(malformed("expire_due", reply.unexpected()));
            }
            expired += read(reply.count(0))?;
            if read(reply.count(1))? == 0 {
                break;
            }
        }
        Ok(expired)
    }

    /// Ends the due holds of every product ever opened; returns how many. The server runs it
    /// on a timer on every node; the products' calls are pipelined on the one connection.
    pub async fn expire_due(&self) -> Result<u64, ApiError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(keys::PRODUCTS);
        let products: Vec<String> = self.query("products", &cmd).await?;
        let sweeps = products.iter().map(|product| self.expire_due_of(product));
        let mut expired = 0;
        for swept in futures_util::future::join_all(sweeps).await {
            expired += u64::from(swept?);
        }
        Ok(expired)
    }
}

impl Sale {
    /// A `confirmed` reply: product, quantity, remaining.
    fn from_reply(reply: &Reply) -> Result<Sale, MalformedReply> {
        Ok(Sale {
            product: reply.text(0)?,
            quantity: reply.count(1)?,
            remaining: reply.count(2)?,
        })
    }
}

impl LiveHold {
    /// A `held` reply: product, quantity, expiry.
    fn from_reply(reply: &Reply, id: &str) -> Result<LiveHold, MalformedReply> {
        Ok(LiveHold {
            id: id.to_owned(),
            product: reply.text(0)?,
            quantity: reply.count(1)?,
            expires_at_ms: reply.int(2)?,
        })
    }
}

impl StockLevel {
    /// A `stock` reply: available, held, sold, total, version.
    fn from_reply(reply: &Reply) -> Result<StockLevel, MalformedReply> {
        Ok(StockLevel {
            available: reply.count(0)?,
            held: reply.count(1)?,
            sold: reply.count(2)?,
            total: reply.unsigned(3)?,
            version: reply.unsigned(4)?,
        })
    }
}

/// Sending the calls (`call.rs` sends them and says how each ends).
impl RedisInventory {
    /// The `now` argument of every function: empty for Redis's clock, or the pinned time.
    pub(super) fn now_arg(&self) -> String {
        self.caller.now_arg()
    }

    /// Runs a function's `FCALL` (see [`Caller::run`]).
    pub(super) async fn run(&self, function: &'static str, cmd: &Cmd) -> Result<Reply, ApiError> {
        self.caller.run(function, cmd).await
    }

    /// A plain command (a read).
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &Cmd,
    ) -> Result<T, ApiError> {
        self.caller.query(what, cmd).await
    }
}

/// Whether `text` can be a product id: the catalog's rule (`catalog_file::check_id`). Anything
/// else is no product, and could break the `{product}` hash tag of its keys.
fn is_product_id(text: &str) -> bool {
    check_id(text).is_ok()
}
