//! Wires buyline together: loads the catalog and secret, starts the actors on their arbiters,
//! accepts connections, and shuts down.
//!
//! The server runs on its own thread inside an actix `System`, so a test can start one bound
//! to port 0, talk to it over loopback, and stop it, exactly as `main` does with signals.
//!
//! Threads: the system arbiter runs the sequencer; one arbiter runs the decorator; one runs
//! the built-in source; one per shard runs a fan-out shard with its HTTP connections.
//!
//! Where the store and the firehose come from is set up before the pipeline starts: see
//! `store_setup` (this node's data dir, or Redis) and `firehose_setup` (this node's counter,
//! or the bus).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use tokio::sync::{oneshot, watch};

use crate::auth::{self, TokenSigner};
use crate::bus::BusSettings;
use crate::checkout::fingerprint::FingerprintKey;
use crate::checkout::gateway::{PaymentGateway, SandboxGateway};
use crate::checkout::service::{CheckoutService, OrderListeners};
use crate::checkout::wallet::MasterKey;
use crate::config::Config;
use crate::decorate::decorator::Decorator;
use crate::decorate::frame::StockLevels;
use crate::decorate::partner_index::CatalogStore;
use crate::fanout::backfill::OlderTweets;
use crate::fanout::history::HistoryRing;
use crate::fanout::shard::{FanoutShard, ShardOrderPush, Shutdown};
use crate::fanout::shard_core::{SessionLimits, ShardCore};
use crate::fanout::stock_publisher::StockPublisher;
use crate::http::peer_limit::PeerLimiter;
use crate::http::state::AppState;
use crate::http::{self, HttpState, upgrade};
use crate::inventory::service::EXPIRY_SWEEP;
use crate::model::{Order, Product};
use crate::sessions::connection_limit::ConnectionLimiter;
use crate::sessions::stream::StreamSettings;
use crate::sources::bus_history::BusHistory;
use crate::sources::seq_floor::SeqFloor;
use crate::sources::sequencer::Sequencer;
use crate::sources::tweet_log::TweetLog;
use crate::sources::{bus_feed, driver};
use crate::store::Store;
use crate::store::redis::{ChannelTargets, OrderPublisher};
use crate::telemetry;
use firehose_setup::{Firehose, FirehoseSetup, start_on_the_bus_later};
use store_setup::{StoreSetup, open_local_store};

mod firehose_setup;
pub mod preflight;
mod store_setup;

/// Raises this process's open-file soft limit to its hard limit and returns the limit now in
/// force. Every connection is a descriptor, and the usual soft limit (1,024) would refuse
/// connections long before memory runs out; the hard limit is the operator's to set.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// How long shutdown waits for clients to take their close frames.
const DRAIN_BUDGET: Duration = Duration::from_secs(2);

/// A server running on its own thread.
pub struct RunningServer {
    /// The bound address (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, closes every client with 1001, and waits for the server to finish.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// Waits until the server stops by itself (its shutdown future resolved).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts a server for `config`; it runs until `shutdown` resolves or [`RunningServer::stop`].
pub fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = telemetry::install();
    if config.store.is_some() {
        telemetry::store_opened();
    }
    if config.bus.is_some() {
        telemetry::bus_opened();
    }
    let secret = auth::load_or_create_secret(config.secret_file.as_deref(), &config.data_dir)?;
    let signer = TokenSigner::from_secret(&secret)?;
    let (catalog, index) = preflight::load_catalog(&config)?;
    let store = match &config.store {
        None => StoreSetup::Local(open_local_store(&config, &catalog, &secret)?),
        Some(url) => StoreSetup::Redis {
            url: url.clone(),
            master: MasterKey::derive(&secret),
        },
    };
    let fingerprints = FingerprintKey::derive(&secret);
    let catalog_store = Arc::new(CatalogStore::new(index));
    let history = Arc::new(HistoryRing::new(config.history));
    let firehose = match &config.bus {
        None => FirehoseSetup::Local(
            SeqFloor::open(&config.data_dir)
                .context("the firehose sequence numbers could not be resumed")?,
        ),
        Some(url) => FirehoseSetup::Bus(BusSettings {
            url: url.clone(),
            stream: config.bus_stream.clone(),
            max_msgs: config.bus_max_msgs,
            max_age: config.bus_max_age,
            duplicate_window: config.bus_duplicate_window,
        }),
    };

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let thread = std::thread::Builder::new()
        .name("buyline-system".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            // Connected on this thread's runtime, so the connections' tasks live on it.
            let opened = system.block_on(store.open(&config, catalog, &catalog_store));
            let (store, catalog) = match opened {
                Ok(opened) => opened,
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                    return;
                }
            };
            let opened = system.block_on(firehose.open(
                config.history,
                &history,
                catalog,
                &catalog_store,
                &store,
            ));
            let (firehose, catalog) = match opened {
                Ok(opened) => opened,
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                    return;
                }
            };
            let pipeline = Pipeline {
                config,
                listener,
                metrics,
                signer,
                catalog,
                catalog_store,
                history,
                store,
                fingerprints,
                firehose,
            };
            system.block_on(pipeline.run(started_tx, async move {
                tokio::select! {
                    _ = stop_rx => {},
                    () = shutdown => {},
                }
            }));
        })
        .context("cannot start the server thread")?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(RunningServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the server thread exited during start-up")
        }
    }
}

/// Everything loaded before the actors start.
struct Pipeline {
    config: Config,
    listener: std::net::TcpListener,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    signer: TokenSigner,
    catalog: crate::model::Catalog,
    catalog_store: Arc<CatalogStore>,
    history: Arc<HistoryRing>,
    /// Stock, holds, orders and wallets.
    store: Store,
    /// The key checkout idempotency keys' request fingerprints are made under.
    fingerprints: FingerprintKey,
    /// Where `seq` comes from: this node's counter, or the bus's stream.
    firehose: Firehose,
}

impl Pipeline {
    /// Starts every stage, downstream first (shards, decorator, sequencer, checkout), then the
    /// accept loops and the source; reports on `started`; runs until `stop`; shuts down.
    async fn run(
        self,
        started: std::sync::mpsc::Sender<anyhow::Result<()>>,
        stop: impl Future<Output = ()>,
    ) {
        let mut arbiters = Vec::new();
        let (shards, shard_threads) = self.start_shards(&mut arbiters);
        let decorator = self.start_decorator(&shards, &mut arbiters);
        let Pipeline {
            config,
            listener,
            metrics,
            signer,
            catalog,
            catalog_store,
            history,
            store,
            fingerprints,
            firehose,
        } = self;
        let (tweet_log, bus) = match firehose {
            Firehose::Local(seq_floor) => (
                TweetLog::Local(Sequencer::new(decorator, seq_floor).start()),
                None,
            ),
            Firehose::Bus {
                bus,
                start: Some(start),
            } => {
                bus_feed::spawn(
                    bus.reader(start.from, start.caught_up_at),
                    decorator,
                    Arc::clone(&catalog_store),
                    store.clone(),
                );
                actix_rt::spawn(Arc::clone(&bus).watch_stream());
                (TweetLog::Bus(Arc::new(bus.publisher())), Some(bus))
            }
            Firehose::Bus { bus, start: None } => {
                actix_rt::spawn(start_on_the_bus_later(
                    Arc::clone(&bus),
                    config.history,
                    Arc::clone(&history),
                    catalog.clone(),
                    Arc::clone(&catalog_store),
                    store.clone(),
                    decorator,
                ));
                (TweetLog::Bus(Arc::new(bus.publisher())), Some(bus))
            }
        };
        // With --store, the sandbox's ledger is in Redis: a retry on another node never
        // charges twice.
        let gateway: Arc<dyn PaymentGateway> = match &store {
            Store::Local(_) => Arc::new(SandboxGateway::default()),
            Store::Redis(shared) => Arc::clone(shared.gateway()) as Arc<dyn PaymentGateway>,
        };
        let local_push = Arc::new(ShardOrderPush {
            shards: shards.clone(),
        });
        let listeners: Arc<dyn OrderListeners> = match &store {
            Store::Local(_) => Arc::clone(&local_push) as Arc<dyn OrderListeners>,
            Store::Redis(shared) => Arc::new(EveryNodeOrderPush {
                local: Arc::clone(&local_push),
                publisher: shared.order_publisher().clone(),
            }),
        };
        let checkout = Arc::new(CheckoutService::with_store(
            store.clone(),
            Arc::clone(&catalog_store),
            gateway,
            listeners,
            fingerprints,
        ));
        let app = Arc::new(AppState {
            config: config.clone(),
            catalog: catalog_store,
            store: store.clone(),
            checkout: Arc::clone(&checkout),
            tweet_log: tweet_log.clone(),
            bus: bus.clone(),
            signer,
            metrics: metrics.clone(),
            connections: ConnectionLimiter::new(config.max_connections),
            peers: PeerLimiter::new(config.max_connections_per_ip, config.demo),
            ready: Default::default(),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let serving = serve_on_every_shard(&listener, &app, &shards, &shard_threads, &shutdown_rx);
        if let Err(error) = serving.await {
            let _ = started.send(Err(error));
            return;
        }
        drop(listener);
        arbiters.push(start_source(&config, catalog, tweet_log));
        let targets = ChannelTargets {
            orders: Box::new(move |customer, order| {
                local_push.order_confirmed(customer, order, None);
            }),
            // With --bus the catalog rides the stream; Redis's is not followed.
            catalog: bus.is_none().then(|| Arc::clone(&app.catalog)),
        };
        spawn_upkeep(store, checkout, metrics, targets);
        actix_rt::spawn(crate::http::keep_ready_gauge(Arc::clone(&app)));

        app.ready.store(true, Ordering::Relaxed);
        let _ = started.send(Ok(()));
        stop.await;
        shut_down(&app, &shutdown_tx, &shards, arbiters).await;
    }

    /// One fan-out shard per `--shards`, each on its own arbiter (thread); returns their
    /// addresses and threads, in shard order.
    fn start_shards(
        &self,
        arbiters: &mut Vec<Arbiter>,
    ) -> (Vec<Addr<FanoutShard>>, Vec<ArbiterHandle>) {
        let config = &self.config;
        let limits = SessionLimits {
            max_subscriptions: config.max_subscriptions,
            max_follows: config.max_follows,
            outbox_frames: config.outbox_frames,
            slow_client_timeout: config.slow_client_timeout,
        };
        let settings = StreamSettings {
            websocket: upgrade::ws_config(config),
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
        };
        let mut shards = Vec::new();
        let mut threads = Vec::new();
        for id in 0..config.shards {
            let arbiter = Arbiter::new();
            let first_seq = self.firehose.first_seq();
            let older = match &self.firehose {
                Firehose::Bus { bus, .. } => {
                    let older: Arc<dyn OlderTweets> = Arc::new(BusHistory {
                        bus: Arc::clone(bus),
                        catalog: Arc::clone(&self.catalog_store),
                        stock: Arc::new(self.store.clone()),
                        decorate_shares: config.decorate_shares,
                    });
                    Some(older)
                }
                Firehose::Local(_) => None,
            };
            let (history, catalog, limits) = (
                Arc::clone(&self.history),
                Arc::clone(&self.catalog_store),
                limits.clone(),
            );
            // The core holds `Rc`s, so it is built on the shard's own thread.
            shards.push(FanoutShard::start_in_arbiter(
                &arbiter.handle(),
                move |_| {
                    let core =
                        ShardCore::new(history, catalog, limits, first_seq).with_older(older);
                    FanoutShard::new(id, core, settings)
                },
            ));
            threads.push(arbiter.handle());
            arbiters.push(arbiter);
        }
        (shards, threads)
    }

    /// The decorator and the stock publisher, on one arbiter of their own.
    fn start_decorator(
        &self,
        shards: &[Addr<FanoutShard>],
        arbiters: &mut Vec<Arbiter>,
    ) -> Addr<Decorator> {
        let arbiter = Arbiter::new();
        let decorator = {
            let (catalog, history, shards) = (
                Arc::clone(&self.catalog_store),
                Arc::clone(&self.history),
                shards.to_vec(),
            );
            let shares = self.config.decorate_shares;
            let stock: Arc<dyn StockLevels + Send + Sync> = Arc::new(self.store.clone());
            Decorator::start_in_arbiter(&arbiter.handle(), move |_| {
                Decorator::new(catalog, stock, history, shards, shares)
            })
        };
        {
            let (store, shards) = (self.store.clone(), shards.to_vec());
            StockPublisher::start_in_arbiter(&arbiter.handle(), move |_| {
                StockPublisher::new(store, shards)
            });
        }
        arbiters.push(arbiter);
        decorator
    }
}

/// An HTTP accept loop on every shard's thread, each on its own clone of `listener`.
async fn serve_on_every_shard(
    listener: &std::net::TcpListener,
    app: &Arc<AppState>,
    shards: &[Addr<FanoutShard>],
    threads: &[ArbiterHandle],
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    for (id, (shard, thread)) in shards.iter().zip(threads).enumerate() {
        let listener = listener.try_clone().context("cannot share the listener")?;
        let state = HttpState {
            app: Arc::clone(app),
            shard: Arc::new(shard.clone()),
        };
        if !serve_on(thread, id, listener, state, shutdown.clone()).await {
            anyhow::bail!("a fan-out shard failed to start");
        }
    }
    Ok(())
}

/// The built-in source (synthetic or replay), on an arbiter of its own.
fn start_source(config: &Config, catalog: crate::model::Catalog, tweet_log: TweetLog) -> Arbiter {
    let arbiter = Arbiter::new();
    arbiter.spawn(driver::run(
        config.firehose.clone(),
        config.rate,
        config.replay_loop,
        config.partner_share,
        catalog,
        tweet_log,
    ));
    arbiter
}

/// The timers on the system arbiter: the expiry sweep (and checkout's key prune and refund
/// sweep) every [`EXPIRY_SWEEP`], the metrics upkeep every 5 s; with `--store`, the
/// subscription to Redis's channels, the order publisher and the connection probe.
fn spawn_upkeep(
    store: Store,
    checkout: Arc<CheckoutService>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    targets: ChannelTargets,
) {
    if let Store::Redis(shared) = &store {
        actix_rt::spawn(Arc::clone(shared).follow_channels(targets));
        actix_rt::spawn(Arc::clone(shared).publish_orders());
        actix_rt::spawn(Arc::clone(shared).watch_connection());
    }
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SWEEP);
        let mut records = Vec::new();
        loop {
            tick.tick().await;
            store.sweep(&mut records).await;
            checkout.prune_keys();
            checkout.refund_unsold_charges().await;
        }
    });
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            telemetry::upkeep(&metrics);
        }
    });
}

/// Stops accepting, closes every client with 1001, waits (at most [`DRAIN_BUDGET`]) for the
/// connections to end, then stops the arbiters and the system.
async fn shut_down(
    app: &AppState,
    shutdown: &watch::Sender<bool>,
    shards: &[Addr<FanoutShard>],
    arbiters: Vec<Arbiter>,
) {
    tracing::info!("shutting down: closing clients with 1001");
    app.ready.store(false, Ordering::Relaxed);
    telemetry::ready(false);
    let _ = shutdown.send(true);
    for shard in shards {
        let _ = shard.send(Shutdown).await;
    }
    // Every WebSocket connection holds a drop guard (its permit); this resolves when the last
    // one is dropped.
    if tokio::time::timeout(DRAIN_BUDGET, app.connections.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(budget = ?DRAIN_BUDGET, "connections still open after the drain budget; stopping anyway");
    }
    // Upstream first (source, then decorator, then shards), so no stage sends to a
    // stopped one.
    for arbiter in arbiters.into_iter().rev() {
        arbiter.stop();
        arbiter.join().ok();
    }
    System::current().stop();
}

/// Runs an HTTP accept loop on shard `id`'s thread, on `listener` (a clone of the listening
/// socket), so the connections it accepts, and the `/v1/stream` sessions they become, live on
/// that thread with its shard. Returns once the loop runs; false if the thread has stopped.
async fn serve_on(
    thread: &ArbiterHandle,
    id: usize,
    listener: std::net::TcpListener,
    state: HttpState,
    shutdown: watch::Receiver<bool>,
) -> bool {
    let (running_tx, running_rx) = oneshot::channel();
    let spawned = thread.spawn_fn(move || {
        // The listener must be registered with this thread's runtime, so it is converted here.
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener));
        match listener {
            Ok(listener) => {
                actix_rt::spawn(http::accept_loop(listener, state, shutdown));
            }
            Err(error) => tracing::error!(shard = id, %error, "shard cannot accept connections"),
        }
        let _ = running_tx.send(());
    });
    spawned && running_rx.await.is_ok()
}

/// With `--store`: an order's frame goes to the buyer's connections on this node at once, and
/// on the order channel to every other node's (which deliver it there; this node skips its
/// own publications).
struct EveryNodeOrderPush {
    local: Arc<ShardOrderPush>,
    publisher: OrderPublisher,
}

impl OrderListeners for EveryNodeOrderPush {
    fn order_confirmed(&self, customer: &str, order: &Order, origin: Option<u64>) {
        self.local.order_confirmed(customer, order, origin);
        if !self.publisher.publish(customer, order) {
            telemetry::order_messages("dropped", 1);
            tracing::warn!(order = %order.id,
                "an order's frame could not be queued for the other nodes (Redis unreachable \
                 too long); the order is readable with GET /v1/orders");
        }
    }
}

/// The decorator's buttons show the store's live stock. Here, where the two are wired, so
/// that neither the store nor the decorator knows the other.
impl StockLevels for Store {
    fn remaining(&self, product: &Product) -> u32 {
        Store::remaining(self, &product.id).unwrap_or(0)
    }
}
