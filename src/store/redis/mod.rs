//! Stock, holds, orders, charging markers, wallets and the payment ledger in Redis, shared by
//! every node: the engine behind `--store redis://...` (`store::Store::Redis`, a
//! [`RedisStore`]).
//!
//! # Layout
//!
//! * `functions.lua`: one Redis Function library (`#!lua name=buyline`), versioned. Each
//!   function (`buyline_reserve`, `_release`, `_confirm`, `_hold_of`, `_expire_due`,
//!   `_restock`, `_product_upsert`, `_product_delete`, `_counts`, `_orders_page`,
//!   `_mark_charging`, `_charges_to_refund`, `_refunded`, `_version`) makes its whole
//!   decision atomically (Redis runs one function at a time) against Redis's own `TIME`: first
//!   the product's due holds expire, then the sale window, the per-customer limit, the
//!   idempotency key (the local engine's fingerprint rule), the stock; every change bumps the
//!   product's version and is published on `bl:stock`. `buyline_reserve` decides a batch of
//!   one product's reservations in one call (each as a call of its own would).
//! * [`keys`]: the key layout, key by key.
//! * [`library`]: loading the library (at connect, and again if Redis lost it).
//! * [`durability`]: the settings checked at connect (`appendonly yes`, `appendfsync
//!   always`, `maxmemory-policy noeviction`).
//! * [`hold_id`]: random 128-bit hold ids, unique across nodes.
//! * [`reply`]: a function's reply, read without a panic.
//! * [`values`]: the plain values where the local engine's do not fit.
//! * [`inventory`]: [`RedisInventory`], the client every node uses.
//! * [`reserve_batch`]: group commit of reservations: a product's concurrent reservations
//!   coalesced into one `buyline_reserve` call, with no timer (batches form while calls are in
//!   flight).
//! * [`call`]: how a call is built, sent ([`call::Caller`]) and how it ends as clients see it
//!   (a failure answered `unavailable` or `internal`, a function's refusal as the local
//!   engine's error).
//! * [`orders`]: orders read back (by id, by checkout key, a page of a buyer's or partner's
//!   orders, with the order book's paging), decoded into `StoredOrder`.
//! * [`charging`]: the "charging" marker written before the gateway is called, cleared by the
//!   sale, claimed by the refund sweep of any node when its hold ended unsold (its life is in
//!   that module's doc).
//! * [`error`]: why the engine could not start.
//! * [`wallet`]: [`RedisWallet`], the buyers' saved cards and addresses, as the same sealed
//!   records as the wallet files; its doc says what the AOF keeps after a delete.
//! * [`ledger`]: [`RedisSandboxGateway`], the sandbox gateway with its idempotency ledger of
//!   charges and refunds in Redis.
//! * [`connection`]: the connection the wallet and the ledger open.
//! * [`catalog`]: the catalog (partners, products) in Redis, its version, and admin writes
//!   made against the version they were checked on; changes published on `bl:catalog`.
//! * [`catalog_sync`]: which catalog version this node serves, and applying a newer one.
//! * [`order_channel`]: confirmed orders published on `bl:order-frames`, so every node pushes
//!   the `order` frame to its own connections of the buyer (one shared channel: why, there).
//! * [`redis_store`]: [`RedisStore`], what a node runs: the parts above, the stock cache, the
//!   catalog's version and the connection state, and the node's tasks (the subscription to
//!   `bl:stock`, `bl:order-frames` and `bl:catalog`, the order publisher, the probe).
//! * [`stock_cache`]: every product's last counts on this node (highest version wins), for
//!   buttons, product reads and `stock` frames without a round trip.
//! * [`health`]: whether the node reaches Redis, and why not (`/readyz`).
//!
//! # Invariants
//!
//! The local engine's, held by Redis running one function at a time instead of by
//! compare-and-swap: `available + held + sold = total` for every product after every function
//! (each function checks it before it writes), a hold ends exactly once (released, expired or
//! sold: whichever function runs first deletes or marks it), a limited product's customer never
//! holds plus buys more than the limit, a sold hold has no charging marker (the sale deletes
//! it, and a hold that is not live cannot get one), and every change is in the append-only file, fsynced,
//! before Redis answers (`appendfsync always`, checked at connect).
//!
//! # One primary, and what a Redis Cluster would need
//!
//! This increment targets one Redis primary. A product's keys share its `{product}` hash tag,
//! so a Cluster could put products on different shards, but three things cross products:
//! * an idempotency key is the customer's, not the product's (the same key with another
//!   product is `idempotency_mismatch`), so `reserve` with a key touches `bl:idem:...` too;
//! * release and checkout name only the hold, so a hold lives under its locator
//!   `bl:hold:ID` (its product and fields in one string, written with the batch's other holds
//!   and idempotency keys in one `MSET`);
//! * checkout's order goes on the buyer's and the partner's lists and the orders stream;
//! * the charging marker (`bl:charging:HOLD`, listed in `bl:charging`) is deleted by the
//!   sale, and the refund sweep reads the marker's hold through its locator;
//! * a page of orders reads each order's key (`buyline_orders_page` names only the list).
//!
//! The catalog's keys share the `{catalog}` tag (one slot), and the channels would work as they
//! do (a Cluster forwards `PUBLISH` to every node), or move to sharded pub/sub.
//!
//! On a Cluster: give the hold's key the product's tag and route by a product hint in the hold
//! id; claim the idempotency key in its own slot before the product's call (and free it if the
//! reserve fails), and forget it from there; keep batching reservations per product (a batch is
//! one product's, so it stays on one shard once the holds and idempotency keys are dealt with);
//! write the order's lists in a second step from the orders stream (an order is first readable
//! by id, with its product's tag, then listed) and read a page's orders with one `GET` each
//! after the list's ids; and give the charging markers the product's tag (one
//! `bl:{P}:charging` set a product, swept product by product like the due holds).

mod call;
mod catalog;
mod catalog_sync;
mod charging;
mod connection;
mod durability;
mod error;
mod health;
mod hold_id;
mod inventory;
mod keys;
mod ledger;
mod library;
mod order_channel;
mod orders;
mod redis_store;
mod reply;
mod reserve_batch;
mod stock_cache;
mod values;
mod wallet;

pub use catalog::CatalogEdit;
pub use charging::{ChargeToMark, ChargeToRefund, MAX_CLAIMS, MAX_GRACE, UnsoldHold};
pub use error::RedisStoreError;
pub use hold_id::{is_hold_id, new_hold_id};
pub use inventory::{RESPONSE_TIMEOUT, RedisInventory};
pub use keys::STOCK_CHANNEL;
pub use ledger::{LedgerError, RedisSandboxGateway};
pub use library::VERSION as LIBRARY_VERSION;
pub use order_channel::OrderPublisher;
pub use orders::MAX_ORDERS_PAGE;
pub use redis_store::{ChannelTargets, RedisStore};
pub use values::{LiveHold, OrderToStore, Sale, StockLevel, StockUpdate};
pub use wallet::{RedisWallet, RedisWalletError};
