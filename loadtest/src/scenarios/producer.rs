//! The producers the `firehose` and `fanout` scenarios share: tweets pushed over N ingest
//! connections at a paced rate (or flat out), through buyline's WebSocket or NDJSON ingest,
//! or published to NATS for the peer comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use crate::cli::IngestMode;
use crate::open_loop::{self, Schedule};
use crate::peers::nats;
use crate::stats::Latencies;
use crate::target::{self, Target};
use crate::workload::{Counts, Generator};
use crate::ws::{self, Message};

/// Tweets generated per pacing step and connection.
const CHUNK: u64 = 256;
/// The most frames one WebSocket producer writes at once (and so has in flight).
pub const MAX_WRITE: u64 = CHUNK * 8;

/// Where the tweets go.
#[derive(Clone)]
pub enum Sink {
    Buyline {
        target: Target,
        token: String,
        mode: IngestMode,
        batch: usize,
    },
    Nats {
        port: u16,
    },
}

/// The shape of the push.
#[derive(Clone)]
pub struct Push {
    pub rate: u64,
    pub connections: usize,
    pub duration: Duration,
    pub partner_share: f64,
    /// Real tweets to cycle through instead of synthetic ones (no stamps, no expectations).
    pub lines: Option<Arc<Vec<String>>>,
    /// Open loop (`--arrival-rate`, buyline only): replaces `rate`.
    pub open: Option<OpenPush>,
}

/// An open-loop push: `rate` tweets a second over every connection, each connection taking
/// every `connections`-th slot; latency counts from each frame's (or POST's) intended time.
#[derive(Clone)]
pub struct OpenPush {
    pub rate: u64,
    /// WebSocket: intended time to the frame written into the socket (no reply comes per
    /// frame; a server that stops reading shows here as TCP backpressure). HTTP: intended time
    /// of the POST (that of its last tweet) to its reply.
    pub latency: Latencies,
    /// How late each late frame or POST went out.
    pub lateness: Latencies,
}

/// What the producers did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub sent: u64,
    /// Refused by the server (error frames on WS ingest, `rejected` in POST replies).
    pub rejected: u64,
    /// Transport failures (not refusals).
    pub errors: Vec<String>,
    /// Generated tweets by author and tag (synthetic only).
    pub counts: Counts,
    pub elapsed: Duration,
    /// Open loop: frames or POSTs due before the end (whether sent or not).
    pub due: u64,
    /// Open loop: frames or POSTs sent.
    pub requests: u64,
}

/// Runs the producers for `push.duration`; `sent` is updated live for the progress display.
pub async fn push(sink: &Sink, push: &Push, sent: Arc<AtomicU64>) -> Result<Pushed> {
    let connections = push.connections.max(1);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for producer in 0..connections {
        let sink = sink.clone();
        let push = push.clone();
        let sent = sent.clone();
        let per_connection = push.rate as f64 / connections as f64;
        tasks.push(tokio::spawn(async move {
            producer_task(producer as u32, sink, push, per_connection, sent).await
        }));
    }
    let mut total = Pushed::default();
    for task in tasks {
        match task.await {
            Ok(Ok(p)) => {
                total.sent += p.sent;
                total.rejected += p.rejected;
                total.errors.extend(p.errors);
                total.counts.merge(&p.counts);
                total.due += p.due;
                total.requests += p.requests;
            }
            Ok(Err(e)) => total.errors.push(format!("{e:#}")),
            Err(e) => total.errors.push(format!("producer task: {e}")),
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// How many tweets are due by now at `rate` per second (0: one more chunk, always).
fn due(start: Instant, rate: f64, sent: u64) -> u64 {
    if rate <= 0.0 {
        return CHUNK;
    }
    let want = (start.elapsed().as_secs_f64() * rate) as u64;
    want.saturating_sub(sent).min(CHUNK * 8)
}

async fn producer_task(
    producer: u32,
    sink: Sink,
    push: Push,
    rate: f64,
    live: Arc<AtomicU64>,
) -> Result<Pushed> {
    let mut generator = Generator::new(producer, push.partner_share);
    let mut line_at = producer as usize * 7919;
    let mut next_tweet = |out: &mut String| match &push.lines {
        Some(lines) => {
            out.push_str(&lines[line_at % lines.len()]);
            line_at += 1;
        }
        None => {
            generator.next_json(out);
        }
    };
    let mut out = Pushed::default();
    let start = Instant::now();
    if let (Some(open), Sink::Buyline { .. }) = (&push.open, &sink) {
        // Producer `c` of `C` takes slots c, c + C, ... of the shared rate.
        let connections = push.connections.max(1) as u64;
        let schedule = Schedule::every_nth(start, open.rate, u64::from(producer), connections);
        let deadline = start + push.duration;
        push_open(
            &sink,
            open,
            &schedule,
            deadline,
            &mut next_tweet,
            &mut out,
            &live,
        )
        .await?;
        out.counts = generator.counts;
        return Ok(out);
    }
    match sink {
        Sink::Buyline {
            target,
            token,
            mode: IngestMode::Ws,
            ..
        } => {
            let socket = ws::connect(&target.ws_url("/v1/ingest"), Some(&token)).await?;
            let (mut write, read) = socket.split();
            let reader = read_refusals(read);
            let mut text = String::with_capacity(512);
            while start.elapsed() < push.duration {
                let n = due(start, rate, out.sent);
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for _ in 0..n {
                    text.clear();
                    next_tweet(&mut text);
                    write
                        .feed(Message::text(text.as_str()))
                        .await
                        .context("ingest socket")?;
                }
                write.flush().await.context("ingest socket")?;
                out.sent += n;
                live.fetch_add(n, Ordering::Relaxed);
            }
            close_ingest(&mut write, reader, &mut out).await;
        }
        Sink::Buyline {
            target,
            token,
            mode: IngestMode::Http,
            batch,
        } => {
            let url = format!("{}/v1/ingest", target.base);
            let mut body = String::with_capacity(batch * 300);
            while start.elapsed() < push.duration {
                let n = due(start, rate, out.sent).min(batch as u64);
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                body.clear();
                for _ in 0..n {
                    next_tweet(&mut body);
                    body.push('\n');
                }
                post_ingest(&target, &url, &token, &body, &mut out).await?;
                out.sent += n;
                live.fetch_add(n, Ordering::Relaxed);
            }
        }
        Sink::Nats { port } => {
            let mut connection = nats::connect(port, &[]).await?;
            let mut text = String::with_capacity(512);
            while start.elapsed() < push.duration {
                let n = due(start, rate, out.sent);
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for _ in 0..n {
                    text.clear();
                    let shape = generator.next_json(&mut text);
                    connection
                        .publish(&crate::workload::nats_subject(shape), text.as_bytes())
                        .await?;
                }
                connection.flush().await?;
                out.sent += n;
                live.fetch_add(n, Ordering::Relaxed);
            }
            // Every PUB before the PING has been routed when the PONG comes back.
            connection.round_trip().await?;
        }
    }
    out.counts = generator.counts;
    Ok(out)
}

/// One producer's open-loop push into buyline until `deadline`: WebSocket frames as they fall
/// due (every frame due when the producer wakes goes in one write, at most [`MAX_WRITE`]), or
/// POSTs of `batch` tweets, each due at its last tweet's intended time. A producer carries one
/// write or one POST at a time: a slow one falls behind its schedule and its next frames or POST
/// go out late, counted from their intended times.
async fn push_open(
    sink: &Sink,
    open: &OpenPush,
    schedule: &Schedule,
    deadline: Instant,
    next_tweet: &mut impl FnMut(&mut String),
    out: &mut Pushed,
    live: &AtomicU64,
) -> Result<()> {
    let mut latency = open.latency.recorder();
    let mut late = open.lateness.recorder();
    let Sink::Buyline {
        target,
        token,
        mode,
        batch,
    } = sink
    else {
        bail!("the open loop drives buyline only");
    };
    match mode {
        IngestMode::Ws => {
            let socket = ws::connect(&target.ws_url("/v1/ingest"), Some(token)).await?;
            let (mut write, read) = socket.split();
            let reader = read_refusals(read);
            let mut text = String::with_capacity(512);
            while let Some((first, end)) = schedule.take_due(Instant::now(), MAX_WRITE, deadline) {
                open_loop::wait_for(schedule.intended(first)).await;
                let written_from = Instant::now();
                for _ in first..end {
                    text.clear();
                    next_tweet(&mut text);
                    write
                        .feed(Message::text(text.as_str()))
                        .await
                        .context("ingest socket")?;
                }
                write.flush().await.context("ingest socket")?;
                let done = Instant::now();
                for i in first..end {
                    let from = open_loop::sent(schedule.intended(i), written_from, &mut late);
                    latency.record(done - from);
                }
                out.sent += end - first;
                out.requests += end - first;
                live.fetch_add(end - first, Ordering::Relaxed);
            }
            close_ingest(&mut write, reader, out).await;
            out.due = schedule.due_before(deadline);
        }
        IngestMode::Http => {
            let url = format!("{}/v1/ingest", target.base);
            let batch = (*batch).max(1) as u64;
            let mut body = String::with_capacity(batch as usize * 300);
            // POST `k` carries this producer's tweet slots k*batch .. (k+1)*batch.
            let mut k = 0u64;
            loop {
                let intended = schedule.intended(k * batch + batch - 1);
                if intended >= deadline || Instant::now() >= deadline {
                    break;
                }
                k += 1;
                open_loop::wait_for(intended).await;
                body.clear();
                for _ in 0..batch {
                    next_tweet(&mut body);
                    body.push('\n');
                }
                let from = open_loop::sent(intended, Instant::now(), &mut late);
                post_ingest(target, &url, token, &body, out).await?;
                latency.record(from.elapsed());
                out.sent += batch;
                out.requests += 1;
                live.fetch_add(batch, Ordering::Relaxed);
            }
            out.due = schedule.due_before(deadline) / batch;
        }
    }
    Ok(())
}

/// Reads an ingest socket's replies until it closes: how many tweets it refused (one error
/// frame each), and the first refusal.
fn read_refusals(
    mut read: futures_util::stream::SplitStream<ws::Ws>,
) -> tokio::task::JoinHandle<(u64, Option<String>)> {
    tokio::spawn(async move {
        let (mut rejected, mut first) = (0u64, None);
        while let Some(Ok(msg)) = read.next().await {
            if let Message::Text(text) = msg
                && text.contains("\"type\":\"error\"")
            {
                rejected += 1;
                first.get_or_insert_with(|| text.to_string());
            }
        }
        (rejected, first)
    })
}

/// Closes an ingest socket with a handshake (the server has read every frame before it answers
/// the close) and adds what its [`read_refusals`] counted to `out`.
async fn close_ingest(
    write: &mut futures_util::stream::SplitSink<ws::Ws, Message>,
    reader: tokio::task::JoinHandle<(u64, Option<String>)>,
    out: &mut Pushed,
) {
    let _ = write.send(Message::Close(None)).await;
    match tokio::time::timeout(Duration::from_secs(10), reader).await {
        Ok(Ok((rejected, first))) => {
            out.rejected += rejected;
            if let Some(first) = first {
                out.errors.push(format!("ingest refused a tweet: {first}"));
            }
        }
        Ok(Err(e)) => out.errors.push(format!("ingest reader: {e}")),
        Err(_) => out
            .errors
            .push("ingest socket did not close within 10 s".into()),
    }
}

/// POSTs the NDJSON `body` to buyline's ingest and adds the tweets it refused to `out`; a
/// status other than success is an error.
async fn post_ingest(
    target: &Target,
    url: &str,
    token: &str,
    body: &str,
    out: &mut Pushed,
) -> Result<()> {
    let reply = target
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await
        .context("POST /v1/ingest")?;
    let status = reply.status();
    let reply: Value = serde_json::from_slice(&reply.bytes().await?).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST /v1/ingest answered {status}: {reply}");
    }
    let rejected = reply["rejected"].as_u64().unwrap_or(0);
    if rejected > 0 && out.errors.is_empty() {
        out.errors
            .push(format!("ingest refused tweets: {}", reply["errors"]));
    }
    out.rejected += rejected;
    Ok(())
}

/// Sends the closing burst ([`Generator::closing_json`]) as producer `producer`, in one
/// request; returns its counts.
pub async fn push_closing(sink: &Sink, producer: u32) -> Result<Counts> {
    let mut generator = Generator::new(producer, 0.0);
    let tweets = generator.closing_json();
    match sink {
        Sink::Buyline { target, token, .. } => {
            let body: String = tweets.iter().map(|(_, t)| format!("{t}\n")).collect();
            let reply = target
                .http
                .post(format!("{}/v1/ingest", target.base))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .context("POST /v1/ingest (closing burst)")?;
            if !reply.status().is_success() {
                bail!("the closing burst was refused: {}", reply.status());
            }
        }
        Sink::Nats { port } => {
            let mut connection = nats::connect(*port, &[]).await?;
            for (shape, text) in &tweets {
                connection
                    .publish(&crate::workload::nats_subject(*shape), text.as_bytes())
                    .await?;
            }
            connection.round_trip().await?;
        }
    }
    Ok(generator.counts)
}

/// Loads NDJSON lines of real tweets (plain text; compressed files: decompress first).
pub fn load_lines(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        bail!("{} holds no tweets", path.display());
    }
    Ok(lines)
}

/// Creates the load-test partner and the fan-out product, so partner tweets get buy buttons.
pub async fn prepare_catalog(target: &Target) -> Result<String> {
    let admin = target.token("admin", "loadtest-admin").await?;
    target.put_partner(&admin).await?;
    target
        .put_product(
            &admin,
            "lt-fanout",
            target::FANOUT_PRODUCT_URL,
            1_000_000,
            0,
        )
        .await?;
    Ok(admin)
}
