//! The layers a [`Config`] is merged from: the command line, the environment and the
//! `--config` TOML file.
//!
//! Every setting of `buyline [serve]` can come from four places, and the first that has it wins:
//!
//! 1. the command line (`--rate 50`);
//! 2. the environment (`BUYLINE_RATE=50`: `BUYLINE_` and the flag in upper snake case);
//! 3. the TOML file named by `--config` (`rate = 50`: the flag in snake case);
//! 4. the embedded default ([`Config::default`]).
//!
//! Each of the first three is parsed into the same shape, [`ServeArgs`], a struct of `Option`s, and the
//! layers are merged field by field before the defaults fill the gaps. The environment layer is
//! read through an injectable lookup ([`from_args`]) rather than clap's `env` attribute, because
//! clap snapshots the process environment when the command is built: tests could only exercise
//! it by mutating process-wide state, which races with every other test thread. Each variable is
//! parsed by clap exactly as `--flag=value` would be, so values mean the same everywhere.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use super::origin::{Origin, Setting};
use super::{BusUrl, Config, ConfigError, FirehoseSource, LogFormat, StoreUrl, is_loopback};

/// What the command line asks the binary to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `buyline [serve]`: serve until a signal.
    Serve,
    /// `buyline check-config`: check the configuration as `serve` would, print it, exit.
    CheckConfig,
}

/// A parsed command line: the command, the validated config, and where each setting came from.
#[derive(Debug)]
pub struct Invocation {
    pub command: Command,
    pub config: Config,
    /// Every setting, in `--help`'s order, with its effective value and origin.
    pub settings: Vec<Setting>,
}

/// The configuration from the process's own arguments and environment.
pub fn parse_cli() -> Result<Config, ConfigError> {
    from_args(std::env::args_os(), |name| std::env::var_os(name))
}

/// The command and configuration from the process's own arguments and environment.
pub fn parse_invocation() -> Result<Invocation, ConfigError> {
    invocation_from_args(std::env::args_os(), |name| std::env::var_os(name))
}

/// The command `args` name, read without parsing the rest (so that a bad flag of
/// `check-config` can still be reported as `check-config` reports errors). The command is the
/// first argument or nothing, as `args_conflicts_with_subcommands` makes it.
pub fn requested_command(args: &[OsString]) -> Command {
    match args.get(1).and_then(|arg| arg.to_str()) {
        Some("check-config") => Command::CheckConfig,
        _ => Command::Serve,
    }
}

/// The configuration from `args` (with the program name first, as in `std::env::args_os`) and
/// the environment as seen through `env`, merged with the `--config` file and the defaults,
/// validated.
pub fn from_args<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    invocation_from_args(args, env).map(|invocation| invocation.config)
}

/// [`from_args`], with the command and each setting's origin. A setting that fails validation
/// is reported with where it was set (the variable, or the file and its key).
pub fn invocation_from_args<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (command, command_line) = parse_command_line(args)?;
    let environment = environment_layer(&env)?;
    // RUST_LOG is the ecosystem's variable; ours (and the flag) win over it.
    let rust_log = ServeArgs {
        log: env("RUST_LOG")
            .and_then(|value| value.into_string().ok())
            .filter(|value| !value.is_empty()),
        ..ServeArgs::default()
    };
    let file_path = command_line
        .config
        .clone()
        .or_else(|| environment.config.clone());
    let file = match &file_path {
        Some(path) => file_layer(path)?,
        None => ServeArgs::default(),
    };
    let origins = |key: &str| -> Origin {
        if command_line.has(key) {
            Origin::CommandLine
        } else if environment.has(key) {
            Origin::Environment(env_var_name(&key.replace('_', "-")))
        } else if rust_log.has(key) {
            Origin::RustLog
        } else if let (Some(path), true) = (&file_path, file.has(key)) {
            Origin::File(path.clone())
        } else {
            Origin::Default
        }
    };
    let merged = command_line
        .clone()
        .or(environment.clone())
        .or(rust_log.clone())
        .or(file.clone());
    let config = merged
        .resolve()
        .and_then(|config| config.validate().map(|()| config))
        .map_err(|error| with_origin(error, &origins))?;
    let effective = ServeArgs::effective(&config);
    let settings = setting_keys()
        .into_iter()
        .map(|key| Setting {
            value: effective.value_of(&key),
            origin: origins(&key),
            key,
        })
        .collect();
    Ok(Invocation {
        command,
        config,
        settings,
    })
}

/// `error`, with where its setting was given when it names one.
fn with_origin(error: ConfigError, origins: &impl Fn(&str) -> Origin) -> ConfigError {
    match &error {
        ConfigError::Invalid { .. } => match error.key() {
            Some(key) => ConfigError::Setting {
                origin: origins(&key),
                error: Box::new(error),
            },
            None => error,
        },
        _ => error,
    }
}

/// Every setting's file key, in `--help`'s order (`--config` and `--no-demo` are not settings).
fn setting_keys() -> Vec<String> {
    let command = ServeArgs::augment_args(clap::Command::new("buyline"));
    command
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|flag| !matches!(*flag, "config" | "no-demo"))
        .map(|flag| flag.replace('-', "_"))
        .collect()
}

/// `buyline [serve] [FLAGS]`: serving is the only command so far, and the default.
#[derive(Parser, Debug)]
#[command(
    name = "buyline",
    version,
    about = "Buy buttons on a live tweet timeline, pushed to WebSocket clients.",
    args_conflicts_with_subcommands = true,
    after_help = LAYERS_HELP
)]
struct Cli {
    /// The command; none means `serve`.
    #[command(subcommand)]
    command: Option<CliCommand>,
    /// `serve`'s flags, also accepted without the word `serve`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Serve the stream, the REST API and the demo page (the default command).
    #[command(after_help = LAYERS_HELP)]
    Serve(ServeArgs),
    /// Check the configuration as `serve` would (flags, environment, file, catalog, secret),
    /// without binding, creating or connecting anything; print it and exit 0, or name the
    /// setting at fault and exit 78
    #[command(after_help = LAYERS_HELP)]
    CheckConfig(ServeArgs),
}

const LAYERS_HELP: &str = "Each flag can also be set by the environment variable shown, and by a \
snake_case key in the --config TOML file (data_dir = \"/var/lib/buyline\"). The command line wins \
over the environment, which wins over the file. RUST_LOG is honoured when neither --log nor \
BUYLINE_LOG is set.";

/// One layer of settings: the command line, the environment or the config file. `None` means
/// this layer leaves the setting to the layers below. The doc comments are `--help`'s text.
#[derive(Args, Deserialize, Serialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct ServeArgs {
    /// TOML file of settings, keyed by flag name in snake_case
    // A config file naming another config file is not a layer we support.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Directory for the generated token secret [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Partners and products, JSON or TOML [default: the built-in demo catalog]
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,

    /// Built-in tweet source: synthetic, none or replay:FILE [default: synthetic]
    #[arg(long, value_name = "SOURCE")]
    firehose: Option<FirehoseSource>,

    /// Synthetic or replay tweets per second, 0 for as fast as possible [default: 1000]
    #[arg(long, value_name = "N")]
    rate: Option<u32>,

    /// Start the replay over when it reaches the end of its file
    #[arg(
        long = "loop",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(rename = "loop")]
    replay_loop: Option<bool>,

    /// Share of synthetic tweets that are partner tweets linking a product, 0 to 1 [default: 0.02]
    #[arg(long, value_name = "F")]
    partner_share: Option<f64>,

    /// File holding the token secret (at least 32 bytes) [default: DIR/secret.key, created]
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,

    /// Hand out tokens at POST /v1/dev/tokens [default: on iff --listen is loopback]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_demo"
    )]
    demo: Option<bool>,

    /// Do not hand out tokens (the same as --demo=false)
    #[arg(long, overrides_with = "demo")]
    #[serde(skip)]
    no_demo: bool,

    /// Also put buy buttons on non-partner tweets that link a product
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    decorate_shares: Option<bool>,

    /// Recent tweets kept for `since` replay [default: 100000]
    #[arg(long, value_name = "N")]
    history: Option<usize>,

    /// Fan-out shards [default: the number of cores]
    #[arg(long, value_name = "N")]
    shards: Option<usize>,

    /// Most open WebSocket connections [default: 100000]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Most subscriptions per connection [default: 64]
    #[arg(long, value_name = "N")]
    max_subscriptions: Option<usize>,

    /// Largest client frame or message, in bytes [default: 131072]
    #[arg(long, value_name = "N")]
    max_frame_bytes: Option<usize>,

    /// Frames queued per connection before it is slow [default: 1024]
    #[arg(long, value_name = "N")]
    outbox_frames: Option<usize>,

    /// Seconds a slow connection may stay full before it is dropped [default: 10]
    #[arg(long, value_name = "SECS")]
    slow_client_timeout: Option<f64>,

    /// Seconds a client has to send its HTTP request head; also the idle limit of a kept-alive
    /// connection [default: 10]
    #[arg(long, value_name = "SECS")]
    header_timeout: Option<f64>,

    /// Seconds a WebSocket may be silent before the server pings it [default: 25]
    #[arg(long, value_name = "SECS")]
    ping_interval: Option<f64>,

    /// Seconds a pinged WebSocket has to answer before it is closed [default: 10]
    #[arg(long, value_name = "SECS")]
    ping_timeout: Option<f64>,

    /// Most open connections from one client address (IPv6: one /64); loopback is exempt in
    /// demo mode [default: 1000]
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,

    /// Most screen names a `home` subscription may follow [default: 5000]
    #[arg(long, value_name = "N")]
    max_follows: Option<usize>,

    /// Largest POST /v1/ingest body, in bytes [default: 16777216]
    #[arg(long, value_name = "N")]
    max_ingest_body_bytes: Option<usize>,

    /// Seconds a reservation's idempotency key is remembered, 60 to 604800; memory holds every
    /// key inside it [default: 86400]
    #[arg(long, value_name = "SECS")]
    idempotency_window: Option<u64>,

    /// Keep stock, holds, orders and wallets in Redis, shared by every node started with the
    /// same URL and --secret-file: redis://HOST:PORT[/DB] [default: none, on this node]
    // A string here, checked in `resolve`: clap's own error would quote a password.
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// Publish accepted tweets to this NATS JetStream server and read the whole firehose from
    /// it, with every node started with the same URL; needs --store: nats://HOST:PORT
    /// [default: none, this node numbers its own tweets]
    // A string here, checked in `resolve`: clap's own error would quote a password.
    #[arg(long, value_name = "URL")]
    bus: Option<String>,

    /// The JetStream stream of the firehose, created if missing [default: BUYLINE]
    #[arg(long, value_name = "NAME")]
    bus_stream: Option<String>,

    /// Most messages the stream keeps, when this node creates it; at least --history
    /// [default: 1000000]
    #[arg(long, value_name = "N")]
    bus_max_msgs: Option<u64>,

    /// Seconds the stream keeps a message, when this node creates it, 120 to 31536000
    /// [default: 86400]
    #[arg(long, value_name = "SECS")]
    bus_max_age: Option<u64>,

    /// Seconds within which a tweet id published again is stored once, when this node
    /// creates the stream; 1 to 86400 and at most --bus-max-age [default: 120]
    #[arg(long, value_name = "SECS")]
    bus_duplicate_window: Option<u64>,

    /// Log filter, in tracing EnvFilter syntax [default: info]
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,

    /// Log lines as text or as JSON objects (timestamp, level, target, fields) [default: text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// Flags with no environment variable: `--no-demo` is `BUYLINE_DEMO=false`.
const FLAGS_WITHOUT_ENV: &[&str] = &["no-demo"];

/// `--data-dir` -> `BUYLINE_DATA_DIR`.
fn env_var_name(flag: &str) -> String {
    format!("BUYLINE_{}", flag.replace('-', "_").to_ascii_uppercase())
}

impl ServeArgs {
    /// Whether this layer sets the setting with file key `key`.
    fn has(&self, key: &str) -> bool {
        if key == "demo" {
            return self.demo_choice().is_some();
        }
        // A layer is a handful of settings, and this runs once a setting at start-up.
        toml::Table::try_from(self).is_ok_and(|table| table.contains_key(key))
    }

    /// The effective value of the setting `key` as TOML, `None` when it is unset.
    fn value_of(&self, key: &str) -> Option<String> {
        let table = toml::Table::try_from(self).ok()?;
        table.get(key).map(ToString::to_string)
    }

    /// `config` as a layer that sets everything it has; the store and bus URLs redacted, as
    /// they may hold a password.
    fn effective(config: &Config) -> ServeArgs {
        // Destructured so that a new field cannot be forgotten here.
        let Config {
            listen,
            data_dir,
            catalog,
            firehose,
            rate,
            replay_loop,
            partner_share,
            secret_file,
            demo,
            decorate_shares,
            history,
            shards,
            max_connections,
            max_subscriptions,
            max_frame_bytes,
            outbox_frames,
            slow_client_timeout,
            header_timeout,
            ping_interval,
            ping_timeout,
            max_connections_per_ip,
            max_follows,
            max_ingest_body_bytes,
            idempotency_window,
            store,
            bus,
            bus_stream,
            bus_max_msgs,
            bus_max_age,
            bus_duplicate_window,
            log,
            log_format,
        } = config.clone();
        ServeArgs {
            config: None,
            listen: Some(listen),
            data_dir: Some(data_dir),
            catalog,
            firehose: Some(firehose),
            rate: Some(rate),
            replay_loop: Some(replay_loop),
            partner_share: Some(partner_share),
            secret_file,
            demo: Some(demo),
            no_demo: false,
            decorate_shares: Some(decorate_shares),
            history: Some(history),
            shards: Some(shards),
            max_connections: Some(max_connections),
            max_subscriptions: Some(max_subscriptions),
            max_frame_bytes: Some(max_frame_bytes),
            outbox_frames: Some(outbox_frames),
            slow_client_timeout: Some(slow_client_timeout.as_secs_f64()),
            header_timeout: Some(header_timeout.as_secs_f64()),
            ping_interval: Some(ping_interval.as_secs_f64()),
            ping_timeout: Some(ping_timeout.as_secs_f64()),
            max_connections_per_ip: Some(max_connections_per_ip),
            max_follows: Some(max_follows),
            max_ingest_body_bytes: Some(max_ingest_body_bytes),
            idempotency_window: Some(idempotency_window.as_secs()),
            store: store.map(|url| url.redacted().to_owned()),
            bus: bus.map(|url| url.redacted().to_owned()),
            bus_stream: Some(bus_stream),
            bus_max_msgs: Some(bus_max_msgs),
            bus_max_age: Some(bus_max_age.as_secs()),
            bus_duplicate_window: Some(bus_duplicate_window.as_secs()),
            log: Some(log),
            log_format: Some(log_format),
        }
    }

    /// `--demo`, `--demo=BOOL` and `--no-demo` folded into one answer.
    fn demo_choice(&self) -> Option<bool> {
        if self.no_demo { Some(false) } else { self.demo }
    }

    /// This layer over `lower`: each setting from `self` if it has one, else from `lower`.
    fn or(self, lower: ServeArgs) -> ServeArgs {
        let demo = self.demo_choice().or(lower.demo_choice());
        // Destructured so that a new field cannot be forgotten here.
        let ServeArgs {
            config,
            listen,
            data_dir,
            catalog,
            firehose,
            rate,
            replay_loop,
            partner_share,
            secret_file,
            demo: _,
            no_demo: _,
            decorate_shares,
            history,
            shards,
            max_connections,
            max_subscriptions,
            max_frame_bytes,
            outbox_frames,
            slow_client_timeout,
            header_timeout,
            ping_interval,
            ping_timeout,
            max_connections_per_ip,
            max_follows,
            max_ingest_body_bytes,
            idempotency_window,
            store,
            bus,
            bus_stream,
            bus_max_msgs,
            bus_max_age,
            bus_duplicate_window,
            log,
            log_format,
        } = self;
        ServeArgs {
            config: config.or(lower.config),
            listen: listen.or(lower.listen),
            data_dir: data_dir.or(lower.data_dir),
            catalog: catalog.or(lower.catalog),
            firehose: firehose.or(lower.firehose),
            rate: rate.or(lower.rate),
            replay_loop: replay_loop.or(lower.replay_loop),
            partner_share: partner_share.or(lower.partner_share),
            secret_file: secret_file.or(lower.secret_file),
            demo,
            no_demo: false,
            decorate_shares: decorate_shares.or(lower.decorate_shares),
            history: history.or(lower.history),
            shards: shards.or(lower.shards),
            max_connections: max_connections.or(lower.max_connections),
            max_subscriptions: max_subscriptions.or(lower.max_subscriptions),
            max_frame_bytes: max_frame_bytes.or(lower.max_frame_bytes),
            outbox_frames: outbox_frames.or(lower.outbox_frames),
            slow_client_timeout: slow_client_timeout.or(lower.slow_client_timeout),
            header_timeout: header_timeout.or(lower.header_timeout),
            ping_interval: ping_interval.or(lower.ping_interval),
            ping_timeout: ping_timeout.or(lower.ping_timeout),
            max_connections_per_ip: max_connections_per_ip.or(lower.max_connections_per_ip),
            max_follows: max_follows.or(lower.max_follows),
            max_ingest_body_bytes: max_ingest_body_bytes.or(lower.max_ingest_body_bytes),
            idempotency_window: idempotency_window.or(lower.idempotency_window),
            store: store.or(lower.store),
            bus: bus.or(lower.bus),
            bus_stream: bus_stream.or(lower.bus_stream),
            bus_max_msgs: bus_max_msgs.or(lower.bus_max_msgs),
            bus_max_age: bus_max_age.or(lower.bus_max_age),
            bus_duplicate_window: bus_duplicate_window.or(lower.bus_duplicate_window),
            log: log.or(lower.log),
            log_format: log_format.or(lower.log_format),
        }
    }

    /// The merged layers with the defaults filling every gap.
    fn resolve(self) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let demo = self.demo_choice();
        let ServeArgs {
            config: _,
            listen,
            data_dir,
            catalog,
            firehose,
            rate,
            replay_loop,
            partner_share,
            secret_file,
            demo: _,
            no_demo: _,
            decorate_shares,
            history,
            shards,
            max_connections,
            max_subscriptions,
            max_frame_bytes,
            outbox_frames,
            slow_client_timeout,
            header_timeout,
            ping_interval,
            ping_timeout,
            max_connections_per_ip,
            max_follows,
            max_ingest_body_bytes,
            idempotency_window,
            store,
            bus,
            bus_stream,
            bus_max_msgs,
            bus_max_age,
            bus_duplicate_window,
            log,
            log_format,
        } = self;
        let bus = bus
            .map(|text| BusUrl::parse(&text))
            .transpose()
            .map_err(|requirement| ConfigError::Invalid {
                flag: "--bus",
                requirement,
            })?;
        let store = store
            .map(|text| StoreUrl::parse(&text))
            .transpose()
            .map_err(|requirement| ConfigError::Invalid {
                flag: "--store",
                requirement,
            })?;
        let listen = listen.unwrap_or(defaults.listen);
        let slow_client_timeout = seconds(
            "--slow-client-timeout",
            slow_client_timeout,
            defaults.slow_client_timeout,
        )?;
        let header_timeout = seconds("--header-timeout", header_timeout, defaults.header_timeout)?;
        let ping_interval = seconds("--ping-interval", ping_interval, defaults.ping_interval)?;
        let ping_timeout = seconds("--ping-timeout", ping_timeout, defaults.ping_timeout)?;
        Ok(Config {
            listen,
            data_dir: data_dir.unwrap_or(defaults.data_dir),
            catalog: catalog.or(defaults.catalog),
            firehose: firehose.unwrap_or(defaults.firehose),
            rate: rate.unwrap_or(defaults.rate),
            replay_loop: replay_loop.unwrap_or(defaults.replay_loop),
            partner_share: partner_share.unwrap_or(defaults.partner_share),
            secret_file: secret_file.or(defaults.secret_file),
            // The demo hands out tokens, so it is only on by default where only this machine
            // can reach it.
            demo: demo.unwrap_or_else(|| is_loopback(listen)),
            decorate_shares: decorate_shares.unwrap_or(defaults.decorate_shares),
            history: history.unwrap_or(defaults.history),
            shards: shards.unwrap_or(defaults.shards),
            max_connections: max_connections.unwrap_or(defaults.max_connections),
            max_subscriptions: max_subscriptions.unwrap_or(defaults.max_subscriptions),
            max_frame_bytes: max_frame_bytes.unwrap_or(defaults.max_frame_bytes),
            outbox_frames: outbox_frames.unwrap_or(defaults.outbox_frames),
            slow_client_timeout,
            header_timeout,
            ping_interval,
            ping_timeout,
            max_connections_per_ip: max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            max_follows: max_follows.unwrap_or(defaults.max_follows),
            max_ingest_body_bytes: max_ingest_body_bytes.unwrap_or(defaults.max_ingest_body_bytes),
            idempotency_window: idempotency_window
                .map_or(defaults.idempotency_window, Duration::from_secs),
            store: store.or(defaults.store),
            bus: bus.or(defaults.bus),
            bus_stream: bus_stream.unwrap_or(defaults.bus_stream),
            bus_max_msgs: bus_max_msgs.unwrap_or(defaults.bus_max_msgs),
            bus_max_age: bus_max_age.map_or(defaults.bus_max_age, Duration::from_secs),
            bus_duplicate_window: bus_duplicate_window
                .map_or(defaults.bus_duplicate_window, Duration::from_secs),
            log: log.unwrap_or(defaults.log),
            log_format: log_format.unwrap_or(defaults.log_format),
        })
    }
}

/// A duration flag given in (possibly fractional) seconds, or its default.
fn seconds(
    flag: &'static str,
    secs: Option<f64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match secs {
        Some(secs) => Duration::try_from_secs_f64(secs).map_err(|_| ConfigError::Invalid {
            flag,
            requirement: format!("must be a number of seconds, got {secs}"),
        }),
        None => Ok(default),
    }
}

/// The command-line layer, and the command.
fn parse_command_line<I, T>(args: I) -> Result<(Command, ServeArgs), ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // `--help` shows each flag's variable, as clap's `env` attribute would.
    let command = Cli::command()
        .mut_args(with_env_in_help)
        .mut_subcommand("serve", |serve| serve.mut_args(with_env_in_help))
        .mut_subcommand("check-config", |check| check.mut_args(with_env_in_help));
    let matches = command
        .try_get_matches_from(args)
        .map_err(ConfigError::Cli)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ConfigError::Cli)?;
    Ok(match cli.command {
        Some(CliCommand::Serve(args)) => (Command::Serve, args),
        Some(CliCommand::CheckConfig(args)) => (Command::CheckConfig, args),
        None => (Command::Serve, cli.serve),
    })
}

fn with_env_in_help(arg: clap::Arg) -> clap::Arg {
    let Some(flag) = arg
        .get_long()
        .filter(|flag| !FLAGS_WITHOUT_ENV.contains(flag))
    else {
        return arg;
    };
    let help = match arg.get_help() {
        Some(help) => format!("{help} [env: {}]", env_var_name(flag)),
        None => format!("[env: {}]", env_var_name(flag)),
    };
    arg.help(help)
}

/// The environment layer: every `BUYLINE_<FLAG>` that `env` has, parsed as `--flag=value` is.
/// Empty variables count as unset, as shells make unsetting awkward.
fn environment_layer(env: &impl Fn(&str) -> Option<OsString>) -> Result<ServeArgs, ConfigError> {
    let command = ServeArgs::augment_args(clap::Command::new("buyline")).no_binary_name(true);
    let mut layer = ServeArgs::default();
    let mut seen = HashSet::new();
    for flag in command.get_arguments().filter_map(clap::Arg::get_long) {
        if FLAGS_WITHOUT_ENV.contains(&flag) || !seen.insert(flag) {
            continue;
        }
        let var = env_var_name(flag);
        let Some(value) = env(&var).filter(|value| !value.is_empty()) else {
            continue;
        };
        let mut assignment = OsString::from(format!("--{flag}="));
        assignment.push(&value);
        // One parse per variable, so an error names the variable rather than the flag.
        let setting = command
            .clone()
            .try_get_matches_from([assignment])
            .and_then(|matches| ServeArgs::from_arg_matches(&matches))
            .map_err(|err| ConfigError::Env {
                var: var.clone(),
                message: clap_message(&err),
            })?;
        layer = setting.or(layer);
    }
    Ok(layer)
}

/// The first line of a clap error without its `error: ` prefix and usage trailer.
fn clap_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let first_line = text.lines().next().unwrap_or_default();
    first_line
        .strip_prefix("error: ")
        .unwrap_or(first_line)
        .to_owned()
}

/// The config-file layer.
fn file_layer(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source,
    })
}
