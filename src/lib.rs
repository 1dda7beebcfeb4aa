//! buyline: buy buttons on a live tweet timeline, and flash sales that never oversell.
//!
//! # Layout
//!
//! The modules follow a tweet through the server:
//!
//! * [`sources`]: where tweets enter: the synthetic firehose and file replay (the ingest
//!   endpoints, `/v1/ingest` over WebSocket and NDJSON POST, are routes in [`http`]). Each
//!   source decodes its input with [`sources::formats`] and hands batches to the
//!   [`sources::sequencer`], the ingest stage that gives every accepted tweet the next `seq`.
//!   With `--bus`, sources publish to the [`bus`] instead (a NATS JetStream stream every node
//!   shares) and `sources::bus_feed` hands the stream, in order, to the decorator: the
//!   stream's sequence is the `seq`.
//! * [`decorate`]: the partner index (an immutable snapshot swapped atomically on admin
//!   writes), URL normalisation, and the decorator actor that adds the buy button and
//!   serialises each tweet's frame exactly once.
//! * [`fanout`]: the history ring for `since` replay, each connection's bounded outbox (and
//!   the slow-consumer policy), and one fan-out shard per core. Each shard owns its
//!   connections and its own subscription index and receives every decorated tweet once.
//! * [`sessions`]: one WebSocket client: reading ops, batched writes, keep-alive. This is
//!   where a tweet leaves.
//! * [`protocol`]: the wire protocol those clients speak: ops parsed, replies rendered.
//! * [`http`]: the routes on the one port: REST, ingest, the WebSocket upgrades, `/metrics`.
//! * [`inventory`]: where the stock lives: lock-free reservations, holds that expire, and the
//!   service that makes every change durable in the [`journal`] before answering.
//! * [`checkout`]: where a hold becomes an order: request parsing, the payment gateway (the
//!   sandbox), the order book rebuilt from the journal, and the encrypted wallet.
//! * [`store`]: the one door to stock, holds, orders and wallets (today: the inventory, the
//!   order book and the wallet on this node), through which checkout, the routes and the
//!   sessions reach them.
//! * [`server`]: wires the actors together, accepts connections, and shuts down.
//!
//! Around them: [`model`] (plain data), [`config`], [`auth`] (tokens and roles, checked in one
//! place), [`telemetry`] (every metric name), [`logging`] (the log filter, which keeps
//! payload-dumping libraries quiet), [`codec`] (the only user of bincode), [`clock`] (the wall
//! clock, read in one place), [`storage`] (files, real or simulated, and crash-safe replacement of
//! small ones), [`entropy`] (random bytes, from the OS or, in the simulator, from a seed), and [`error`] (the contract's error codes).
//!
//! Every module is private. The items the binary, the tests, the benches, the examples and the
//! fuzz targets use are re-exported here, by hand, at the crate's root.
//!
//! Which module may use which is in ARCHITECTURE.md ("Architecture invariants") and checked by
//! `tests/layering.rs`.

// The docs name private modules and items on purpose: the crate is read with
// `cargo doc --document-private-items`, where these links resolve.
#![allow(rustdoc::private_intra_doc_links)]

// Every module is private: what the binary, the tests, the benches, the examples, the fuzz
// targets and the load tester use is re-exported below, by hand, one line a module. A `pub`
// item not listed is the crate's own.
mod auth;
mod bus;
mod checkout;
mod clock;
mod codec;
mod config;
mod decorate;
mod entropy;
mod error;
mod fanout;
mod http;
mod inventory;
mod journal;
mod logging;
mod model;
mod planted_bugs;
mod protocol;
mod server;
mod sessions;
mod simulation;
mod sources;
mod storage;
mod store;
mod telemetry;

// The binary (`main.rs`), and the tests that run a whole server.
pub use config::{
    Command, Config, ConfigError, EX_CONFIG, FirehoseSource, Invocation, LogFormat, Origin,
    Setting, StoreUrl, parse_cli, parse_invocation, requested_command,
};
pub use logging::init as init_logging;
pub use server::preflight::{Preflight, check as preflight};
pub use server::{RunningServer, raise_open_file_limit, start as start_server};

// Tokens, for tests that act as a given role.
pub use auth::{Role, SecretCheck, TokenSigner, load_or_create_secret};

// Plain data.
pub use model::{
    Address, Author, CardBrand, CardSummary, Catalog, Money, Order, OrderStatus, Partner,
    PartnerKind, Platform, Product, SaleWindow, Tweet,
};

// Ingest: the format decoders (also the fuzz targets'), bincode batches, the built-in sources.
pub use codec::{decode as decode_bincode, decode_tweet_batch, encode_tweet_batch};
pub use sources::formats::{Decoded, FormatError, NoticeKind, decode as decode_ingest_object};
pub use sources::replay::{Compression, ReplayError, ReplayProgress, ReplayReader};
pub use sources::synthetic::SyntheticFirehose;

// Decoration: the catalog as lookup tables, the frame, URL comparison keys (a module of
// functions: its functions are the API).
pub use decorate::demo::demo_catalog;
pub use decorate::frame::{CatalogStock, DecoratedTweet, decorate};
pub use decorate::partner_index::{CatalogStore, PartnerIndex};
pub use decorate::url;

// Fan-out without actors (the fan-out bench and the allocation test).
pub use fanout::history::HistoryRing;
pub use fanout::index::{FanoutCounts, SubscriptionIndex};
pub use fanout::outbox::Outbox;
pub use fanout::timeline::Timeline;

// The flash-sale engine and its journal.
pub use clock::{Clock, SimClock, WallClock};
pub use inventory::idempotency::fingerprint as idempotency_fingerprint;
pub use inventory::service::InventoryService;
pub use inventory::service::{ReserveReply, ReservedHold};
pub use inventory::{
    EXPIRED_RETENTION_MS, HoldId, Inventory, InventoryError, InventoryState, KEY_TTL_MS, KeyWindow,
    MAX_QUANTITY, Record, Reservation, ReserveRequest, Reserved, StockCounts, hold_id_text,
};
pub use journal::{Compactor, Journal, JournalError, JournalOptions, Lsn, Recovered, StreamPos};
pub use planted_bugs::PlantedBug;
pub use simulation::{FaultCounts, MoneyCounts, SeedReport, SimOptions, WalletCounts, run_seed};
pub use storage::{BlockingIo, Files, SimDisk, SimDiskFaults, Storage};

// The reservation path's stages, the functions the server calls, so `benches/reserve_path.rs`
// can time them one by one: the stream op parsed, the token verified and authorized, the REST
// body parsed, the reply encoded.
pub use auth::{Action, Identity, LastToken, authorize, bearer_token};
pub use http::{ReserveBody, reserve_body, reserved_response, route_templates};
// The parsers a client's text reaches first, one entry (the `client_input` fuzz target's).
pub use http::client_input::parse_client_input;
pub use protocol::{
    ClientOp, ReservationView, Reserved as ReservedFrame, parse as parse_stream_op,
    to_text as frame_text,
};

// The lock-free core's words, for the loom model (`tests/loom_stock.rs`).
pub use inventory::customers::{CustomerUnits, Refusal};
pub use inventory::hold::{Ending, HoldPhase, HoldState, end_hold};
pub use inventory::stock::{Shortfall, StockWord};

// Stock and holds in Redis (`tests/redis_store.rs`), and the errors every engine answers.
pub use error::{ApiError, ErrorCode};
pub use store::redis::{
    ChargeToMark, ChargeToRefund, LIBRARY_VERSION, LiveHold, MAX_CLAIMS, MAX_GRACE,
    MAX_ORDERS_PAGE, OrderToStore, RESPONSE_TIMEOUT, RedisInventory, RedisStoreError,
    STOCK_CHANNEL, Sale, StockLevel, StockUpdate, UnsoldHold, is_hold_id, new_hold_id,
};
// Wallets and the sandbox's ledger in Redis (`tests/redis_wallet.rs`).
pub use checkout::card::{CardInput, ValidCard, validate_card};
pub use checkout::gateway::{Charge, ChargeError, Decline, Receipt};
pub use checkout::wallet::{SavedCard, WalletError};
pub use store::Store;
pub use store::redis::{LedgerError, RedisSandboxGateway, RedisWallet, RedisWalletError};

// Checkout (its bench, the order store's example and memory test).
pub use checkout::charge_markers::ChargeMarkers;
pub use checkout::fingerprint::FingerprintKey;
pub use checkout::gateway::SandboxGateway;
pub use checkout::order::{
    EncodedOrder, Page, StoredOrder, order_id_for, order_id_for_reservation,
};
pub use checkout::order_book::OrderBook;
pub use checkout::order_store::{Novelty, OrderStore};
pub use checkout::request::CheckoutRequest;
pub use checkout::service::{CheckoutService, OrderListeners};
pub use checkout::wallet::{MasterKey, Wallet};
