//! Runs the built-in source chosen by `--firehose`: synthetic tweets or a replayed file, at
//! `--rate` tweets per second (0: as fast as the pipeline takes them).
//!
//! It runs on its own `Arbiter`, so a replay's file reads never stall an actor. Appends to the
//! tweet log await the sequencer's bounded mailbox: a slow pipeline slows the source down instead of
//! queueing tweets.

use std::time::{Duration, Instant};

use crate::config::FirehoseSource;
use crate::model::{Catalog, Tweet};
use crate::sources::replay::{ReplayProgress, ReplayReader};
use crate::sources::synthetic::SyntheticFirehose;
use crate::sources::tweet_log::{AppendError, TweetLog};

/// Most tweets submitted in one batch.
const MAX_BATCH: usize = 1024;
/// How long a source waits before offering a batch the log could not take again.
const RETRY_UNAVAILABLE: Duration = Duration::from_millis(500);
/// How long to sleep when nothing is due yet.
const TICK: Duration = Duration::from_millis(5);

/// Keeps a source at its rate: how many tweets are due by now.
struct Pacer {
    /// Tweets per second; 0 is unpaced.
    rate: u32,
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Tweets to send now, at most `MAX_BATCH`; 0 means wait a tick.
    fn due(&self) -> usize {
        if self.rate == 0 {
            return MAX_BATCH;
        }
        let target = (self.started.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
        // After a stall, catch up by at most one batch rather than bursting the whole backlog.
        (target.saturating_sub(self.sent) as usize).min(MAX_BATCH)
    }

    fn sent(&mut self, n: usize) {
        self.sent += n as u64;
        if self.rate > 0 {
            let behind = (self.started.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
            if behind > self.sent + MAX_BATCH as u64 {
                self.sent = behind - MAX_BATCH as u64;
            }
        }
    }
}

/// Runs `source` until the arbiter stops (or, for a replay without `--loop`, the file ends).
pub async fn run(
    source: FirehoseSource,
    rate: u32,
    replay_loop: bool,
    partner_share: f64,
    catalog: Catalog,
    tweet_log: TweetLog,
) {
    match source {
        FirehoseSource::None => {}
        FirehoseSource::Synthetic => synthetic(rate, partner_share, &catalog, tweet_log).await,
        FirehoseSource::Replay(path) => {
            let path_shown = path.display().to_string();
            if let Err(error) = replay(&path, rate, replay_loop, tweet_log).await {
                tracing::error!(path = %path_shown, %error, "replay stopped");
            }
        }
    }
}

async fn synthetic(rate: u32, partner_share: f64, catalog: &Catalog, tweet_log: TweetLog) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut firehose = SyntheticFirehose::new(catalog, partner_share, seed);
    let mut pacer = Pacer::new(rate);
    tracing::info!(rate, partner_share, "synthetic firehose started");
    loop {
        let due = pacer.due();
        if due == 0 {
            tokio::time::sleep(TICK).await;
            continue;
        }
        let mut tweets = Vec::with_capacity(due);
        firehose.fill(due, &mut tweets);
        if !submit(&tweet_log, "synthetic", tweets).await {
            return;
        }
        pacer.sent(due);
    }
}

async fn replay(
    path: &std::path::Path,
    rate: u32,
    replay_loop: bool,
    tweet_log: TweetLog,
) -> Result<(), crate::sources::replay::ReplayError> {
    let mut reader = ReplayReader::open(path)?;
    let mut pacer = Pacer::new(rate);
    tracing::info!(path = %path.display(), compression = %reader.compression(), rate, replay_loop, "replay started");
    loop {
        let due = pacer.due();
        if due == 0 {
            tokio::time::sleep(TICK).await;
            continue;
        }
        let mut tweets = Vec::with_capacity(due);
        let progress = reader.next_batch(due, &mut tweets)?;
        let n = tweets.len();
        if n > 0 && !submit(&tweet_log, "replay", tweets).await {
            return Ok(());
        }
        pacer.sent(n);
        if progress == ReplayProgress::EndOfFile {
            let stats = reader.stats().clone();
            tracing::info!(tweets = stats.tweets, lines = stats.lines, rejected = ?stats.rejected, "replay reached the end of the file");
            if !replay_loop {
                return Ok(());
            }
            reader.rewind()?;
            if n == 0 && stats.tweets == 0 {
                tracing::warn!("replay file holds no tweets; not looping over it");
                return Ok(());
            }
        }
    }
}

/// Appends a batch; false once the log has stopped (shutdown). While the log is unavailable
/// (the bus is away) it keeps the batch and tries again every [`RETRY_UNAVAILABLE`]: a
/// built-in source pauses, it does not drop tweets.
async fn submit(tweet_log: &TweetLog, source: &'static str, mut tweets: Vec<Tweet>) -> bool {
    let mut warned = false;
    loop {
        match tweet_log.append(source, tweets).await {
            Ok(_) => return true,
            Err(AppendError::Stopped) => return false,
            Err(AppendError::Unavailable {
                reason,
                tweets: back,
            }) => {
                if !warned {
                    tracing::warn!(source, %reason, "the tweet log is unavailable; the source waits");
                    warned = true;
                }
                tweets = back;
                tokio::time::sleep(RETRY_UNAVAILABLE).await;
            }
        }
    }
}
