//! `connections`: opens and holds C idle `/v1/stream` connections and reports the server's
//! resident memory per connection (from `process_resident_memory_bytes` on `/metrics`).
//!
//! The connections are bare upgraded sockets (no client WebSocket state), spread over source
//! addresses 127.0.0.1, 127.0.0.2, ... so the ephemeral ports of one address (about 28,000 per
//! destination) do not cap the count. Whatever stops the opening is reported by name.
//!
//! Bare sockets never read, so they cannot answer the server's keep-alive pings (it closes a
//! WebSocket silent for `--ping-interval` plus `--ping-timeout`, 35 s by default). Instead each
//! held socket sends an unsolicited pong every [`HEARTBEAT`], from the moment it is open: a
//! one-way heartbeat (RFC 6455 5.5.3) the server counts as a sign of life and does not answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::{Common, ConnectionsArgs};
use crate::progress::{Gauge, Progress};
use crate::report::Report;
use crate::target::Target;

/// Ephemeral ports one source address gets toward one destination (Linux default range).
const PORTS_PER_ADDRESS: usize = 28_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a held connection tells the server it is alive: well inside the server's default
/// `--ping-interval` of 25 s.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// An empty, masked (key 0) pong frame.
const HEARTBEAT_FRAME: [u8; 6] = [0x8a, 0x80, 0, 0, 0, 0];

/// Sends each stream a heartbeat, waiting on none: six bytes always fit an idle socket's send
/// buffer, so a write either goes whole or (the socket is gone) fails.
fn heartbeat<'a>(streams: impl Iterator<Item = &'a TcpStream>) {
    for stream in streams {
        let _ = stream.try_write(&HEARTBEAT_FRAME);
    }
}

/// Why opening stopped early.
fn reason_of(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            format!("the tester's open-file limit ({error})")
        }
        Some(libc::EADDRNOTAVAIL) => {
            format!("ephemeral ports of the source addresses ({error}): add --source-addrs")
        }
        Some(libc::ECONNREFUSED) | Some(libc::ECONNRESET) => {
            format!(
                "the server refused or reset the connection ({error}): its accept failed, likely its open-file limit"
            )
        }
        _ => format!("{error}"),
    }
}

/// Opens one idle stream connection from `source`.
async fn open(source: Ipv4Addr, server: SocketAddr, host: &str) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| reason_of(&e))?;
    // Defer the port choice to connect(), so ports are unique per 4-tuple, not per address.
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .map_err(|e| reason_of(&e))?;
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.connect(server))
        .await
        .map_err(|_| {
            "connect timed out: the server's accept queue is full or it stopped accepting"
                .to_string()
        })?
        .map_err(|e| reason_of(&e))?;
    let request = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: bG9hZHRlc3QgaWRsZSBjb25u\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let handshake = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| reason_of(&e))?;
        let mut buf = [0u8; 1024];
        let mut len = 0;
        while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream
                .read(&mut buf[len..])
                .await
                .map_err(|e| reason_of(&e))?;
            if n == 0 {
                return Err("the server closed the connection during the upgrade".to_string());
            }
            len += n;
            if len == buf.len() {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..len]);
        if head.starts_with("HTTP/1.1 101") {
            Ok(())
        } else if head.starts_with("HTTP/1.1 429") {
            Err(
                "the server answered 429 rate_limited: --max-connections, --max-connections-per-ip \
                 (loopback is counted unless the server is in demo mode) or a busy shard"
                    .to_string(),
            )
        } else {
            Err(format!(
                "the upgrade answered {:?}",
                head.lines().next().unwrap_or("")
            ))
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            "the upgrade timed out: the server stopped accepting (its open-file limit? see process_max_fds)".to_string()
        })??;
    Ok(stream)
}

/// Sends a masked `{"op":"ping"}` text frame and waits for the `pong`.
async fn ping(stream: &mut TcpStream) -> Result<bool> {
    let payload = br#"{"op":"ping","id":"p"}"#;
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
    Ok(buf[..n].windows(6).any(|w| w == b"\"pong\""))
}

/// What was opened and why it stopped.
pub struct Held {
    pub streams: Vec<TcpStream>,
    pub stopped_by: Option<String>,
    pub failed: u64,
    pub elapsed: Duration,
}

impl Held {
    /// Keeps every held connection alive for the server's keep-alive; never returns, so run
    /// it beside what else happens while they are held.
    pub async fn keep_alive(&self) {
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            beat.tick().await;
            heartbeat(self.streams.iter());
        }
    }
}

/// Opens up to `args.connections` idle connections.
pub async fn open_all(
    target: &Target,
    args: &ConnectionsArgs,
    common: &Common,
    opened: Arc<AtomicU64>,
) -> Result<Held> {
    let server: SocketAddr = tokio::net::lookup_host(&target.authority)
        .await?
        .next()
        .context("the target's address does not resolve")?;
    let addresses = if args.source_addrs > 0 {
        args.source_addrs
    } else {
        args.connections.div_ceil(PORTS_PER_ADDRESS).max(1)
    };
    let sources: Vec<Ipv4Addr> = if server.ip().is_loopback() {
        (1..=addresses as u8)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect()
    } else {
        vec![Ipv4Addr::UNSPECIFIED]
    };
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(
        "connect",
        common.duration,
        vec![Gauge {
            name: "open",
            counter: opened.clone(),
        }],
        common.plain,
    );
    let start = std::time::Instant::now();
    let host = target.authority.clone();
    let mut opening = futures_util::stream::iter(0..args.connections)
        .map(|i| {
            let (stop, opened, host) = (stop.clone(), opened.clone(), host.clone());
            let source = sources[i % sources.len()];
            async move {
                if stop.load(Ordering::Relaxed) {
                    return Err(String::new());
                }
                let r = open(source, server, &host).await;
                match &r {
                    Ok(_) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => stop.store(true, Ordering::Relaxed),
                }
                r
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    // Opening many thousands takes longer than the server's keep-alive: beat meanwhile too.
    let mut results: Vec<Result<TcpStream, String>> = Vec::with_capacity(args.connections);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            result = opening.next() => match result {
                Some(result) => results.push(result),
                None => break,
            },
            _ = beat.tick() => heartbeat(results.iter().filter_map(|r| r.as_ref().ok())),
        }
    }
    let elapsed = start.elapsed();
    progress.finish().await;
    let mut held = Held {
        streams: Vec::new(),
        stopped_by: None,
        failed: 0,
        elapsed,
    };
    for r in results {
        match r {
            Ok(s) => held.streams.push(s),
            Err(e) if e.is_empty() => {}
            Err(e) => {
                held.failed += 1;
                held.stopped_by.get_or_insert(e);
            }
        }
    }
    Ok(held)
}

/// The `connections` scenario.
pub async fn run(common: &Common, args: &ConnectionsArgs) -> Result<Report> {
    let target = Target::new(common.target())?;
    target.wait_ready(Duration::from_secs(10)).await?;
    let limit = crate::rlimit::raise_nofile(args.connections as u64 + 1024);
    let mut report = Report::new(
        "connections",
        common.target(),
        json!({"connections": args.connections, "concurrency": args.concurrency, "source_addrs": args.source_addrs, "tester_nofile": limit}),
    );
    let before = target.metrics().await?;
    let opened = Arc::new(AtomicU64::new(0));
    let mut held = open_all(&target, args, common, opened).await?;
    heartbeat(held.streams.iter());
    // Let the server's process sampler (every 250 ms) see the settled state.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = target.metrics().await?;
    let n = held.streams.len();
    report.buyline("connections opened", "connections", n as f64);
    report.buyline(
        "opened per second",
        "connections/s",
        n as f64 / held.elapsed.as_secs_f64(),
    );
    let open_gauge = after
        .get("buyline_connections_open{endpoint=\"stream\"}")
        .unwrap_or(0.0)
        - before
            .get("buyline_connections_open{endpoint=\"stream\"}")
            .unwrap_or(0.0);
    report.buyline(
        "server's open stream connections (delta)",
        "connections",
        open_gauge,
    );
    match (before.rss_bytes(), after.rss_bytes()) {
        (Some(b), Some(a)) => {
            report.buyline("server RSS before", "MiB", b / 1048576.0);
            report.buyline("server RSS after", "MiB", a / 1048576.0);
            if n > 0 {
                let per = (a - b) / n as f64 / 1024.0;
                report.buyline("server memory per connection", "KiB", per);
                report.note(format!(
                    "target: at most 8 KiB per idle connection: {}",
                    if per <= 8.0 { "met" } else { "missed" }
                ));
            }
        }
        _ => report.check(
            "server exports process_resident_memory_bytes",
            false,
            "absent from /metrics",
        ),
    }
    if let Some(fds) = after.get("process_max_fds") {
        report.buyline("server open-file limit", "fds", fds);
    }
    report.buyline("tester open-file limit", "fds", limit as f64);
    // A sample of the connections must still answer.
    let sample = n.min(100);
    let mut alive = 0;
    for s in held
        .streams
        .iter_mut()
        .step_by((n / sample.max(1)).max(1))
        .take(sample)
    {
        if ping(s).await.unwrap_or(false) {
            alive += 1;
        }
    }
    report.check(
        "sampled connections answer ping",
        alive == sample,
        format!("{alive} of {sample}"),
    );
    match &held.stopped_by {
        None => report.check(
            "all connections opened",
            n == args.connections,
            format!("{n} of {}", args.connections),
        ),
        Some(why) => {
            report.note(format!("STOPPED at {n} connections by: {why}"));
            if let (Some(open), Some(max)) =
                (after.get("process_open_fds"), after.get("process_max_fds"))
            {
                report.note(format!(
                    "server file descriptors: {open} open at the last 5 s sample (unreadable once the limit is hit) of a limit of {max}"
                ));
            }
            report.check(
                "all connections opened",
                false,
                format!("{n} of {}: stopped by {why}", args.connections),
            );
        }
    }
    report.check(
        "the server counts them",
        (open_gauge - n as f64).abs() < 1.0 + n as f64 * 0.001,
        format!("{open_gauge} counted, {n} opened"),
    );
    tokio::select! {
        () = tokio::time::sleep(args.hold) => {}
        () = held.keep_alive() => {}
    }
    drop(held);
    Ok(report)
}

/// Whether an idle connection still answers a ping.
pub async fn ping_alive(stream: &mut TcpStream) -> bool {
    ping(stream).await.unwrap_or(false)
}
