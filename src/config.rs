//! Flags, TOML file, `BUYLINE_*` variables: one struct, [`Config`].
//!
//! Every setting of `buyline [serve]` comes from the command line, the environment, the file
//! named by `--config` or the embedded default, the first that has it winning; `args` reads
//! those layers and merges them.
//!
//! [`from_args`](args::from_args) and [`parse_cli`] return a validated config; code that builds a [`Config`]
//! itself (tests, embedding) should call [`Config::validate`].
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use args::{Command, Invocation, parse_cli, parse_invocation, requested_command};
pub use bus_url::BusUrl;
pub use origin::{Origin, Setting};
pub use store_url::StoreUrl;

/// How log lines are written (`--log-format`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line an event, as `tracing-subscriber` formats it.
    #[default]
    Text,
    /// One JSON object a line, for log pipelines: `timestamp`, `level`, `target`, `fields`
    /// (with `message`) and the spans the event is in.
    Json,
}

/// Where the server's tweets come from, besides the ingest endpoints, which are always open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirehoseSource {
    /// Generated tweets at `--rate` per second, some of them linking catalog products.
    Synthetic,
    /// No built-in source: only what is posted to `/v1/ingest` arrives.
    None,
    /// An NDJSON file of tweets in any ingest format, played at `--rate` (looping with `--loop`).
    Replay(PathBuf),
}

/// A `--firehose` value that is none of `synthetic`, `none` or `replay:FILE`.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a firehose: expected synthetic, none or replay:FILE")]
pub struct ParseFirehoseError {
    /// The rejected value, echoed so the operator sees what was read (a path, never a secret).
    input: String,
}

impl FromStr for FirehoseSource {
    type Err = ParseFirehoseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "synthetic" => Ok(FirehoseSource::Synthetic),
            "none" => Ok(FirehoseSource::None),
            _ => match input.strip_prefix("replay:") {
                Some(path) if !path.is_empty() => Ok(FirehoseSource::Replay(PathBuf::from(path))),
                _ => Err(ParseFirehoseError {
                    input: input.to_owned(),
                }),
            },
        }
    }
}

impl fmt::Display for FirehoseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirehoseSource::Synthetic => f.write_str("synthetic"),
            FirehoseSource::None => f.write_str("none"),
            FirehoseSource::Replay(path) => write!(f, "replay:{}", path.display()),
        }
    }
}

impl serde::Serialize for FirehoseSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FirehoseSource {
    /// The TOML form is the flag's string, `firehose = "replay:tweets.ndjson"`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything the server is configured with, with the layers merged and defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The one port that serves REST, both WebSockets, `/metrics` and the demo page.
    pub listen: SocketAddr,
    /// Where the generated token secret (and, with inventory, the journal) live across restarts.
    pub data_dir: PathBuf,
    /// A JSON or TOML catalog of partners and products; `None` loads the built-in demo catalog.
    pub catalog: Option<PathBuf>,
    /// The built-in tweet source.
    pub firehose: FirehoseSource,
    /// Tweets per second from the synthetic or replay source; 0 means as fast as possible.
    pub rate: u32,
    /// Whether a replay starts over at the end of its file, for long-running demos and soak tests.
    pub replay_loop: bool,
    /// The share (0 to 1) of synthetic tweets that are partner tweets linking a product, so the
    /// demo shows buy buttons without drowning the ordinary traffic.
    pub partner_share: f64,
    /// A file holding the token secret; `None` uses (and first creates) `<data_dir>/secret.key`.
    pub secret_file: Option<PathBuf>,
    /// Whether `POST /v1/dev/tokens` hands tokens to anyone; only ever on a loopback address.
    pub demo: bool,
    /// Whether non-partner tweets linking a product also get a buy button.
    pub decorate_shares: bool,
    /// How many recent tweets the history ring keeps for `since` replay.
    pub history: usize,
    /// How many fan-out shard actors split the connections; one per core keeps each busy.
    pub shards: usize,
    /// Open WebSocket connections beyond this are refused, bounding memory.
    pub max_connections: usize,
    /// Subscriptions one connection may hold, bounding the subscription index per client.
    pub max_subscriptions: usize,
    /// The largest client frame or message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Frames queued per connection before it counts as slow; the bound on per-client memory.
    pub outbox_frames: usize,
    /// How long a connection may stay with a full outbox before it is dropped.
    pub slow_client_timeout: Duration,
    /// How long a client has to send a whole HTTP request head (and how long a kept-alive
    /// connection may sit idle between requests) before it is disconnected.
    pub header_timeout: Duration,
    /// How long a WebSocket may be silent before the server pings it.
    pub ping_interval: Duration,
    /// How long after a ping a silent WebSocket is closed: a dead peer frees its slot.
    pub ping_timeout: Duration,
    /// Open TCP connections one client address may hold (IPv6: one /64), so one client cannot
    /// take every descriptor. Loopback is exempt in demo mode.
    pub max_connections_per_ip: usize,
    /// Screen names one `home` subscription may follow.
    pub max_follows: usize,
    /// The largest `POST /v1/ingest` body accepted, in bytes.
    pub max_ingest_body_bytes: usize,
    /// How long a reservation's idempotency key is remembered after its first use. Keys inside
    /// the window are held in memory (a few hundred bytes each, README "Memory"), so this bounds
    /// the memory of keyed reservations: keys a second times the window.
    pub idempotency_window: Duration,
    /// Where stock, holds, orders and wallets live when several nodes share them
    /// (`--store redis://HOST:PORT[/DB]`); `None` keeps them on this node, in its data dir.
    pub store: Option<StoreUrl>,
    /// The NATS JetStream server every node of a cluster publishes its accepted tweets to and
    /// reads the whole firehose from (`--bus nats://HOST:PORT`); `None`: this node numbers its
    /// own tweets. Needs `store`: a cluster never sells from local inventories.
    pub bus: Option<BusUrl>,
    /// The JetStream stream's name (`--bus-stream`), created if missing.
    pub bus_stream: String,
    /// Most messages the stream keeps when this node creates it; at least `history`, so a
    /// node's ring can always be refilled from it.
    pub bus_max_msgs: u64,
    /// Longest the stream keeps a message when this node creates it.
    pub bus_max_age: Duration,
    /// The stream's duplicate window when this node creates it: a tweet id published again
    /// within it is stored once.
    pub bus_duplicate_window: Duration,
    /// The log filter, in `tracing_subscriber::EnvFilter` syntax (`info,buyline::fanout=debug`).
    pub log: String,
    /// Text for people, JSON lines for log pipelines.
    pub log_format: LogFormat,
}

impl Default for Config {
    /// What `cargo run --release` with no arguments serves: the demo on 127.0.0.1:8080, fed by
    /// the synthetic firehose.
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            catalog: None,
            firehose: FirehoseSource::Synthetic,
            rate: 1000,
            replay_loop: false,
            partner_share: 0.02,
            secret_file: None,
            demo: true,
            decorate_shares: false,
            history: 100_000,
            shards: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            max_connections: 100_000,
            max_subscriptions: 64,
            max_frame_bytes: 128 * 1024,
            outbox_frames: 1024,
            slow_client_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
            max_connections_per_ip: 1000,
            max_follows: 5000,
            max_ingest_body_bytes: 16 * 1024 * 1024,
            idempotency_window: Duration::from_secs(24 * 60 * 60),
            store: None,
            bus: None,
            bus_stream: String::from("BUYLINE"),
            bus_max_msgs: 1_000_000,
            bus_max_age: Duration::from_secs(24 * 60 * 60),
            bus_duplicate_window: Duration::from_secs(120),
            log: String::from("info"),
            log_format: LogFormat::Text,
        }
    }
}

/// sysexits.h's "configuration error": `check-config`'s status for an invalid configuration.
pub const EX_CONFIG: i32 = 78;

/// Why the configuration cannot be used. Messages name the flag, variable or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A bad command line, or `--help`/`--version` (which clap reports as errors).
    #[error("{0}")]
    Cli(clap::Error),
    #[error("{var}: {message}")]
    Env { var: String, message: String },
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {source}", path.display())]
    ParseFile {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error(
        "demo mode hands out tokens to anyone; it refuses to listen on {listen} — pass --no-demo"
    )]
    DemoNotLoopback { listen: SocketAddr },
    #[error("{flag} {requirement}")]
    Invalid {
        flag: &'static str,
        requirement: String,
    },
    /// An [`Invalid`](ConfigError::Invalid) setting, with the layer that set it.
    #[error("{error} ({origin}, key `{key}`)", key = error.key().unwrap_or_default())]
    Setting {
        origin: Origin,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The file key of the setting at fault, when the error names one (`--max-follows`:
    /// `max_follows`).
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { flag, .. } => {
                Some(flag.trim_start_matches('-').replace('-', "_"))
            }
            ConfigError::Setting { error, .. } => error.key(),
            _ => None,
        }
    }

    /// Reports the error as a command-line tool should, and exits: `--help` and `--version`
    /// print to stdout with status 0; everything else prints to stderr with status 2.
    pub fn exit(self) -> ! {
        self.exit_for(Command::Serve)
    }

    /// [`exit`](ConfigError::exit) for `command`: `check-config` exits with
    /// [`EX_CONFIG`] rather than 2 for every error but `--help` and `--version`.
    pub fn exit_for(self, command: Command) -> ! {
        let status = match command {
            Command::Serve => 2,
            Command::CheckConfig => EX_CONFIG,
        };
        match self {
            ConfigError::Cli(err) if !err.use_stderr() => err.exit(),
            ConfigError::Cli(err) => {
                // clap's own rendering, with its usage line; only the status is ours.
                let _ = err.print();
                std::process::exit(status)
            }
            other => {
                eprintln!("error: {other}");
                std::process::exit(status)
            }
        }
    }
}

impl Config {
    /// Checks what the types cannot: demo mode only on loopback, and every bound in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.demo && !is_loopback(self.listen) {
            return Err(ConfigError::DemoNotLoopback {
                listen: self.listen,
            });
        }
        let at_least = |flag: &'static str, value: usize, min: usize| {
            if value >= min {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    flag,
                    requirement: format!("must be at least {min}, got {value}"),
                })
            }
        };
        at_least("--history", self.history, 1)?;
        at_least("--shards", self.shards, 1)?;
        at_least("--max-connections", self.max_connections, 1)?;
        at_least("--max-connections-per-ip", self.max_connections_per_ip, 1)?;
        at_least("--max-subscriptions", self.max_subscriptions, 1)?;
        at_least("--max-frame-bytes", self.max_frame_bytes, 1024)?;
        // One frame in flight and one queued: fewer and every connection is always "slow".
        at_least("--outbox-frames", self.outbox_frames, 2)?;
        at_least("--max-follows", self.max_follows, 1)?;
        at_least("--max-ingest-body-bytes", self.max_ingest_body_bytes, 1024)?;
        if !(0.0..=1.0).contains(&self.partner_share) {
            return Err(ConfigError::Invalid {
                flag: "--partner-share",
                requirement: format!("must be between 0 and 1, got {}", self.partner_share),
            });
        }
        for (flag, timeout) in [
            ("--slow-client-timeout", self.slow_client_timeout),
            ("--header-timeout", self.header_timeout),
            ("--ping-interval", self.ping_interval),
            ("--ping-timeout", self.ping_timeout),
        ] {
            // The upper bound keeps `now + timeout` far from `Instant`'s overflow panic.
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(ConfigError::Invalid {
                    flag,
                    requirement: format!(
                        "must be more than 0 and at most {} seconds",
                        MAX_TIMEOUT.as_secs()
                    ),
                });
            }
        }
        if !(MIN_IDEMPOTENCY_WINDOW..=MAX_IDEMPOTENCY_WINDOW).contains(&self.idempotency_window) {
            return Err(ConfigError::Invalid {
                flag: "--idempotency-window",
                requirement: format!(
                    "must be {} to {} seconds, got {}",
                    MIN_IDEMPOTENCY_WINDOW.as_secs(),
                    MAX_IDEMPOTENCY_WINDOW.as_secs(),
                    self.idempotency_window.as_secs_f64()
                ),
            });
        }
        self.validate_bus()?;
        // Caught here rather than when logging starts, so a typo fails before anything runs.
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::Invalid {
                flag: "--log",
                requirement: format!("must be a tracing filter such as `info`: {err}"),
            });
        }
        Ok(())
    }
}

impl Config {
    /// The bus's rules: it needs the shared store, a stream name NATS takes, and a stream
    /// that keeps at least what a node's history holds.
    fn validate_bus(&self) -> Result<(), ConfigError> {
        if self.bus.is_some() && self.store.is_none() {
            return Err(ConfigError::Invalid {
                flag: "--bus",
                requirement: "needs --store redis://HOST:PORT: a cluster sharing one firehose \
                    must share one inventory, or two nodes could sell the same unit"
                    .to_owned(),
            });
        }
        let name_ok = !self.bus_stream.is_empty()
            && self.bus_stream.len() <= MAX_STREAM_NAME
            && self
                .bus_stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !name_ok {
            return Err(ConfigError::Invalid {
                flag: "--bus-stream",
                requirement: format!(
                    "must be 1 to {MAX_STREAM_NAME} letters, digits, '_' or '-', got {:?}",
                    self.bus_stream
                ),
            });
        }
        if self.bus_max_msgs < self.history as u64 || self.bus_max_msgs > MAX_BUS_MSGS {
            return Err(ConfigError::Invalid {
                flag: "--bus-max-msgs",
                requirement: format!(
                    "must be at least --history ({}) and at most {MAX_BUS_MSGS}, got {}",
                    self.history, self.bus_max_msgs
                ),
            });
        }
        if self.bus_duplicate_window < MIN_BUS_DUPLICATE_WINDOW
            || self.bus_duplicate_window > MAX_BUS_DUPLICATE_WINDOW
        {
            return Err(ConfigError::Invalid {
                flag: "--bus-duplicate-window",
                requirement: format!(
                    "must be {} to {} seconds, got {}",
                    MIN_BUS_DUPLICATE_WINDOW.as_secs(),
                    MAX_BUS_DUPLICATE_WINDOW.as_secs(),
                    self.bus_duplicate_window.as_secs_f64()
                ),
            });
        }
        if self.bus_max_age < self.bus_duplicate_window || self.bus_max_age > MAX_BUS_MAX_AGE {
            return Err(ConfigError::Invalid {
                flag: "--bus-max-age",
                requirement: format!(
                    "must be from --bus-duplicate-window ({} seconds) to {} seconds, got {}",
                    self.bus_duplicate_window.as_secs(),
                    MAX_BUS_MAX_AGE.as_secs(),
                    self.bus_max_age.as_secs_f64()
                ),
            });
        }
        Ok(())
    }
}

/// The longest `--bus-stream` name (NATS allows more; a name is also a subject token).
const MAX_STREAM_NAME: usize = 64;
/// The most `--bus-max-msgs`: a billion tweets, a few hundred gigabytes of stream.
const MAX_BUS_MSGS: u64 = 1_000_000_000;
/// The shortest `--bus-duplicate-window`: NATS counts it in whole nanoseconds, but a window
/// under a second would not cover a producer's retry.
const MIN_BUS_DUPLICATE_WINDOW: Duration = Duration::from_secs(1);
/// The longest `--bus-duplicate-window`: a day. The server keeps every id of the window in
/// memory (about 100 bytes each), so a day at 100,000 tweets/s would be hundreds of GiB.
const MAX_BUS_DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `--bus-max-age`: a year.
const MAX_BUS_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The longest any timeout flag may be: one day.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest `--idempotency-window`: a minute, well past any client's retry of one request.
pub const MIN_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(60);
/// The longest `--idempotency-window`: a week (memory grows with the window).
pub const MAX_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// True for 127.0.0.0/8, `::1`, and `::ffff:127.x.y.z`.
fn is_loopback(listen: SocketAddr) -> bool {
    listen.ip().to_canonical().is_loopback()
}

mod args;
mod bus_url;
mod origin;
mod store_url;

#[cfg(test)]
use args::from_args;
#[cfg(test)]
mod tests;
