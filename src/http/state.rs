//! The handles every request needs, shared by all shards: one `Arc<AppState>` per server,
//! the router's state.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenSigner;
use crate::bus::Bus;
use crate::checkout::service::CheckoutService;
use crate::config::Config;
use crate::decorate::partner_index::CatalogStore;
use crate::http::peer_limit::PeerLimiter;
use crate::sessions::connection_limit::ConnectionLimiter;
use crate::sources::tweet_log::TweetLog;
use crate::store::Store;

/// Shared server state.
pub struct AppState {
    pub config: Config,
    /// The live partner index; admin writes swap it.
    pub catalog: Arc<CatalogStore>,
    /// Stock, holds, orders and wallets.
    pub store: Store,
    /// Checkout, the order book and the wallet.
    pub checkout: Arc<CheckoutService>,
    /// Where the ingest endpoints append tweets.
    pub tweet_log: TweetLog,
    /// With `--bus`: whether the bus is reachable and this node caught up with its stream
    /// (`/readyz`), and where admin writes publish the catalog.
    pub bus: Option<Arc<Bus>>,
    /// Verifies bearer tokens and, in demo mode, issues them.
    pub signer: TokenSigner,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Caps concurrent WebSocket connections across all shards.
    pub connections: ConnectionLimiter,
    /// Caps the TCP connections (any kind) one client address holds, across all shards.
    pub peers: PeerLimiter,
    /// False until every actor is running, and again once shutdown begins (`/readyz`).
    pub ready: AtomicBool,
}
