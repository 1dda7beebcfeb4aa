//! The command line: one subcommand per scenario, with the options every scenario shares.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Drives a live buyline server over its public interface (docs/PROTOCOL.md) and reports
/// throughput, latency and correctness; optionally runs the same workload through a peer
/// (NATS or Redis) started on loopback, and prints both figures and their ratio.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

/// Options every scenario takes.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// The server under test, `http://HOST:PORT`. Tokens come from `POST /v1/dev/tokens`, so
    /// the server must run in demo mode (the default on loopback). `flash-sale`, the sales
    /// of `soak` and `fanout` take several nodes of one cluster (one `--store`, one
    /// `--secret-file`, and for `fanout` one `--bus`): `--target` again or `--targets
    /// URL,URL,...`; buyers (or subscribers) are spread over them round robin, and the setup,
    /// the stock checks and the firehose go through the first (the store and the bus are
    /// shared).
    #[arg(
        long = "target",
        visible_alias = "targets",
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub targets: Vec<String>,
    /// How long the load phase runs, e.g. `10s`, `500ms`, `2m`.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Write the results (figures, checks, time series) as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write a latency histogram and a throughput-over-time chart (SVG) into this directory.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
    /// Plain progress lines instead of a progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub plain: bool,
    /// A pass/fail bound on the run's headline figures, as k6's (repeatable): `p50<5ms`,
    /// `p99<25ms`, `p999<100ms` (or `p99.9`), `max<1s`, `mean<2ms` (units us, ms, s),
    /// `error_rate<0.01` (or `1%`), `rate>50000` (requests answered a second); comparators
    /// `<`, `<=`, `>`, `>=`. flash-sale, firehose and fanout take them; any that fails makes the
    /// exit status 3.
    #[arg(
        long = "threshold",
        value_name = "EXPR",
        global = true,
        value_parser = crate::threshold::parse
    )]
    pub thresholds: Vec<crate::threshold::Threshold>,
}

impl Common {
    /// The first (often the only) node: where a scenario sets up, reads stock and metrics, and
    /// where every scenario but the sales sends all its load.
    pub fn target(&self) -> &str {
        self.targets.first().map_or("", String::as_str)
    }

    /// The nodes as the report names them.
    pub fn targets_label(&self) -> String {
        self.targets.join(", ")
    }
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Push tweets over N ingest connections at R/s (0: as fast as possible).
    Firehose(FirehoseCmd),
    /// S subscribers over a mix of timelines, plus a firehose; delivery rate and latency.
    Fanout(FanoutArgs),
    /// B buyers rush a product of stock K; reservation rate, latency and oversold (must be 0).
    FlashSale(FlashSaleArgs),
    /// Open and hold C idle WebSocket connections; the server's memory per connection.
    Connections(ConnectionsArgs),
    /// All of the above at once for --duration, with a pass/fail summary.
    Soak(SoakArgs),
}

impl Scenario {
    /// Whether the scenario names a headline (a latency, requests, errors, a rate) that
    /// `--threshold`s are checked against.
    pub fn takes_thresholds(&self) -> bool {
        matches!(
            self,
            Scenario::FlashSale(_) | Scenario::Firehose(_) | Scenario::Fanout(_)
        )
    }

    /// Whether the scenario spreads its load over several `--target`s (the others refuse
    /// more than one, rather than silently use the first).
    pub fn spreads_over_targets(&self) -> bool {
        matches!(
            self,
            Scenario::FlashSale(_) | Scenario::Soak(_) | Scenario::Fanout(_)
        )
    }
}

/// How tweets reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IngestMode {
    /// `GET /v1/ingest` WebSocket, one tweet per text frame.
    Ws,
    /// `POST /v1/ingest`, NDJSON bodies of `--batch` tweets.
    Http,
}

#[derive(Debug, Args, Clone)]
pub struct FirehoseArgs {
    /// Tweets per second over all connections; 0 is as fast as the server takes them.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Ingest connections.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    #[arg(long, value_enum, default_value_t = IngestMode::Ws)]
    pub ingest: IngestMode,
    /// Tweets per POST body (`--ingest http`).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Replay this NDJSON file of real tweets (any ingest format) instead of synthetic ones.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Share (0 to 1) of synthetic tweets that are partner tweets linking the test product.
    #[arg(long, default_value_t = 0.05)]
    pub partner_share: f64,
}

/// `firehose`: the push, optionally with `buyable` subscribers attached.
#[derive(Debug, Args, Clone)]
pub struct FirehoseCmd {
    #[command(flatten)]
    pub push: FirehoseArgs,
    /// Open loop: tweets a second at fixed intended send times (a frame each with `--ingest
    /// ws`, a POST of `--batch` with `--ingest http`), spread over `--connections`, whatever
    /// the server does; latency (to the frame written, or to the POST's reply) counts from each
    /// one's intended time, and late sends are reported. Replaces `--rate`.
    #[arg(long, conflicts_with_all = ["rate", "subscribers"], value_parser = parse_arrival_rate)]
    pub arrival_rate: Option<u64>,
    /// Also hold this many `buyable` subscribers (the firehose target is stated with 1,000).
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,
}

/// Which peer runs the same workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FanoutPeer {
    Nats,
}

#[derive(Debug, Args, Clone)]
pub struct FanoutArgs {
    /// Subscribers (one WebSocket connection each).
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Timelines the subscribers are spread over, round robin.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all,buyable,user,tag,home"
    )]
    pub mix: Vec<TimelineKind>,
    #[command(flatten)]
    pub firehose: FirehoseArgs,
    /// Also run the identical workload through a peer started on loopback.
    #[arg(long, value_enum)]
    pub peer: Option<FanoutPeer>,
    /// Skip buyline and run only the peer (for profiling one side).
    #[arg(long)]
    pub peer_only: bool,
    /// Fail the run on any lost or lagged frame, even one the server reported (for unloaded
    /// runs such as CI's smoke).
    #[arg(long)]
    pub expect_no_loss: bool,
}

/// The timeline kinds of the contract that carry tweets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimelineKind {
    All,
    Buyable,
    User,
    Tag,
    Home,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlashPeer {
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Http,
}

#[derive(Debug, Args, Clone)]
pub struct FlashSaleArgs {
    /// Buyers, one customer token each.
    #[arg(long, default_value_t = 1_000)]
    pub buyers: usize,
    /// Units of the product on sale.
    #[arg(long, default_value_t = 50_000)]
    pub stock: u64,
    /// Closed loop (the default): requests in flight at once, each buyer sending its next as
    /// soon as its last is answered.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Open loop: reservation attempts a second at fixed intended send times (start + i/N),
    /// whatever the replies do; latency counts from each attempt's intended time (correcting
    /// coordinated omission, as wrk2 does), and attempts sent late are reported.
    #[arg(long, conflicts_with_all = ["concurrency", "rate"], value_parser = parse_arrival_rate)]
    pub arrival_rate: Option<u64>,
    /// Open loop: at most this many attempts in flight (also at most one a buyer, as each
    /// buyer's connection carries one request at a time); an attempt due while the cap is
    /// reached waits, is sent as soon as one finishes, and counts as late.
    #[arg(long, default_value_t = 1024, requires = "arrival_rate")]
    pub max_in_flight: usize,
    /// Units a buyer may hold or buy (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Pay for every hold with the sandbox card 4242 4242 4242 4242.
    #[arg(long)]
    pub checkout: bool,
    /// Also run the same sale through Redis and the standard Lua reserve script.
    #[arg(long, value_enum)]
    pub peer: Option<FlashPeer>,
    /// Skip buyline and run only the peer.
    #[arg(long)]
    pub peer_only: bool,
    /// Reserve without idempotency keys (by default every attempt carries a unique one, as a
    /// real client's retry-safe tap does).
    #[arg(long)]
    pub no_idempotency_keys: bool,
    /// buyline's reservation attempts a second across all buyers, spaced evenly (0: as fast
    /// as `--concurrency` allows; the Redis peer always runs unpaced).
    #[arg(long, default_value_t = 0, value_parser = parse_pace)]
    pub rate: u64,
    /// Each attempt on a connection of its own, as a flash-sale crowd taps Buy once: connect
    /// (with `--transport ws`, the `/v1/stream?token=` upgrade), reserve (and pay, with
    /// `--checkout`), close; `--concurrency` attempts at once. Attempts/s, server CPU per
    /// attempt and the reserve latency then count the connects.
    #[arg(long)]
    pub fresh_connections: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ConnectionsArgs {
    /// Idle connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Upgrades in flight at once while opening.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Source addresses 127.0.0.1, 127.0.0.2, ...; 0 picks enough for the ephemeral ports.
    #[arg(long, default_value_t = 0)]
    pub source_addrs: usize,
    /// How long to hold them once open (after the measurement).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct SoakArgs {
    /// Subscribers of the fan-out part.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Firehose rate of the fan-out part.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Buyers of the flash-sale part (sales are repeated with fresh products until the end).
    #[arg(long, default_value_t = 100)]
    pub buyers: usize,
    /// Stock of each sale.
    #[arg(long, default_value_t = 5_000)]
    pub stock: u64,
    /// Idle connections held throughout.
    #[arg(long, default_value_t = 1_000)]
    pub idle: usize,
    /// Pay for holds (needs checkout on the server).
    #[arg(long)]
    pub checkout: bool,
    /// Reservation attempts a second of the sales, spaced evenly (0: back to back, as fast as
    /// they go). A steady rate keeps the server's live state (holds, keys in their window)
    /// steady, so its memory can be judged flat or not.
    #[arg(long, default_value_t = 0, value_parser = parse_pace)]
    pub sale_rate: u64,
}

/// An `--arrival-rate`: requests a second, 1 to [`crate::open_loop::MAX_RATE`].
/// A pace (`--rate`, `--sale-rate`): 0 for none, or an arrival rate.
fn parse_pace(text: &str) -> Result<u64, String> {
    match text.trim() {
        "0" => Ok(0),
        _ => parse_arrival_rate(text),
    }
}

fn parse_arrival_rate(text: &str) -> Result<u64, String> {
    let rate: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of requests a second"))?;
    if rate == 0 || rate > crate::open_loop::MAX_RATE {
        return Err(format!(
            "{rate} requests a second: give 1 to {}",
            crate::open_loop::MAX_RATE
        ));
    }
    Ok(rate)
}

/// `10s`, `250ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 days").is_err());
    }

    fn targets_of(args: &[&str]) -> Vec<String> {
        let mut line = vec!["loadtest"];
        line.extend_from_slice(args);
        Cli::try_parse_from(line).expect("parses").common.targets
    }

    #[test]
    fn one_target_by_default_and_as_given() {
        assert_eq!(targets_of(&["flash-sale"]), ["http://127.0.0.1:8080"]);
        assert_eq!(
            targets_of(&["--target", "http://n1:1", "flash-sale"]),
            ["http://n1:1"]
        );
    }

    #[test]
    fn several_targets_by_repeating_the_flag_or_by_a_comma_list() {
        let three = ["http://n1:1", "http://n2:2", "http://n3:3"];
        assert_eq!(
            targets_of(&[
                "flash-sale",
                "--target",
                "http://n1:1",
                "--target",
                "http://n2:2",
                "--target",
                "http://n3:3"
            ]),
            three
        );
        assert_eq!(
            targets_of(&["--targets", "http://n1:1,http://n2:2,http://n3:3", "soak"]),
            three
        );
        assert_eq!(
            targets_of(&[
                "flash-sale",
                "--target",
                "http://n1:1,http://n2:2",
                "--targets",
                "http://n3:3"
            ]),
            three
        );
    }

    #[test]
    fn the_sales_and_fanout_spread_over_several_targets() {
        let cli = Cli::try_parse_from(["loadtest", "flash-sale"]).expect("parses");
        assert!(cli.scenario.spreads_over_targets());
        let cli = Cli::try_parse_from(["loadtest", "soak"]).expect("parses");
        assert!(cli.scenario.spreads_over_targets());
        let cli = Cli::try_parse_from(["loadtest", "fanout"]).expect("parses");
        assert!(cli.scenario.spreads_over_targets());
        let cli = Cli::try_parse_from(["loadtest", "firehose"]).expect("parses");
        assert!(!cli.scenario.spreads_over_targets());
        let cli = Cli::try_parse_from(["loadtest", "connections"]).expect("parses");
        assert!(!cli.scenario.spreads_over_targets());
    }

    fn flash_sale_of(args: &[&str]) -> FlashSaleArgs {
        let mut line = vec!["loadtest", "flash-sale"];
        line.extend_from_slice(args);
        match Cli::try_parse_from(line).expect("parses").scenario {
            Scenario::FlashSale(args) => args,
            _ => panic!("not the flash-sale scenario"),
        }
    }

    #[test]
    fn flash_sale_keeps_its_connections_unless_told_fresh() {
        let kept = flash_sale_of(&[]);
        assert!(!kept.fresh_connections);
        assert_eq!(kept.transport, Transport::Ws);
        let fresh = flash_sale_of(&["--fresh-connections", "--concurrency", "64"]);
        assert!(fresh.fresh_connections);
        assert_eq!(fresh.transport, Transport::Ws);
        assert_eq!(fresh.concurrency, 64);
        let fresh_http = flash_sale_of(&["--transport", "http", "--fresh-connections"]);
        assert!(fresh_http.fresh_connections);
        assert_eq!(fresh_http.transport, Transport::Http);
        let with_peer = flash_sale_of(&["--fresh-connections", "--peer", "redis"]);
        assert!(with_peer.fresh_connections && with_peer.peer == Some(FlashPeer::Redis));
    }

    #[test]
    fn a_pace_is_zero_or_an_arrival_rate() {
        assert_eq!(flash_sale_of(&[]).rate, 0);
        assert_eq!(flash_sale_of(&["--rate", "0"]).rate, 0);
        assert_eq!(flash_sale_of(&["--rate", "3000"]).rate, 3000);
        // Past the schedule's range the pace is refused at parse time, not by a panic later.
        let too_fast = (crate::open_loop::MAX_RATE + 1).to_string();
        for bad in ["fast", "-1", too_fast.as_str()] {
            let line = ["loadtest", "flash-sale", "--rate", bad];
            assert!(Cli::try_parse_from(line).is_err(), "--rate {bad} accepted");
        }
    }

    #[test]
    fn flash_sale_is_a_closed_loop_unless_given_an_arrival_rate() {
        let closed = flash_sale_of(&[]);
        assert_eq!(closed.arrival_rate, None);
        let open = flash_sale_of(&["--arrival-rate", "5000"]);
        assert_eq!(open.arrival_rate, Some(5000));
        assert_eq!(open.max_in_flight, 1024);
        let capped = flash_sale_of(&["--arrival-rate", "5000", "--max-in-flight", "8"]);
        assert_eq!(capped.max_in_flight, 8);
        for bad in [
            &["--arrival-rate", "0"][..],
            &["--arrival-rate", "fast"],
            &["--arrival-rate", "10", "--concurrency", "4"],
            &["--arrival-rate", "10", "--rate", "4"],
            &["--max-in-flight", "4"],
        ] {
            let mut line = vec!["loadtest", "flash-sale"];
            line.extend_from_slice(bad);
            assert!(Cli::try_parse_from(line).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn firehose_takes_an_arrival_rate_instead_of_a_rate() {
        let cli = Cli::try_parse_from(["loadtest", "firehose", "--arrival-rate", "2000"])
            .expect("parses");
        assert!(matches!(cli.scenario, Scenario::Firehose(ref c) if c.arrival_rate == Some(2000)));
        for bad in [
            &["--arrival-rate", "2000", "--rate", "10"][..],
            &["--arrival-rate", "2000", "--subscribers", "10"],
        ] {
            let mut line = vec!["loadtest", "firehose"];
            line.extend_from_slice(bad);
            assert!(Cli::try_parse_from(line).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn thresholds_repeat_and_bad_ones_are_refused_by_the_parser() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "flash-sale",
            "--threshold",
            "p99<25ms",
            "--threshold",
            "error_rate<0.01",
        ])
        .expect("parses");
        assert_eq!(cli.common.thresholds.len(), 2);
        assert!(
            Cli::try_parse_from(["loadtest", "flash-sale", "--threshold", "p99~25ms"]).is_err()
        );
        let error = Cli::try_parse_from(["loadtest", "firehose", "--threshold", "p99<25min"])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("bad unit"), "{error}");
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "loadtest",
            "fanout",
            "--subscribers",
            "10",
            "--peer",
            "nats",
            "--target",
            "http://127.0.0.1:1",
        ])
        .expect("parses");
        assert!(
            matches!(cli.scenario, Scenario::Fanout(ref a) if a.subscribers == 10 && a.peer.is_some())
        );
    }
}
