//! The same sale through Redis: C connections each running the reserve script with one request
//! in flight, at one `appendfsync` setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Sale, Tally};
use crate::cli::{Common, FlashSaleArgs};
use crate::peers::{self, redis};
use crate::progress::{Gauge, Progress};
use crate::stats::Latencies;

/// The same sale through Redis at one `appendfsync` setting.
pub(super) async fn run_redis(
    server: &peers::PeerProcess,
    args: &FlashSaleArgs,
    duration: Duration,
    fsync: &str,
    common: &Common,
) -> Result<(Sale, u64)> {
    let mut admin = redis::Connection::connect(server.port).await?;
    admin.cmd(&["FLUSHALL"]).await?;
    admin.cmd(&["CONFIG", "SET", "appendfsync", fsync]).await?;
    admin
        .cmd(&["SET", "stock:lt", &args.stock.to_string()])
        .await?;
    let sha = match admin
        .cmd(&["SCRIPT", "LOAD", redis::RESERVE_SCRIPT])
        .await?
    {
        redis::Reply::Bulk(Some(sha)) => String::from_utf8_lossy(&sha).into_owned(),
        other => bail!("SCRIPT LOAD answered {other:?}"),
    };
    let tally = Arc::new(Tally::default());
    let latency = Latencies::new();
    let progress = Progress::start(
        &format!("redis {fsync}"),
        duration,
        vec![
            Gauge {
                name: "attempts",
                counter: tally.attempts.clone(),
            },
            Gauge {
                name: "holds",
                counter: tally.holds.clone(),
            },
        ],
        common.plain,
    );
    let cpu_before = server.cpu_seconds();
    let tester_before = peers::proc_cpu(std::process::id());
    let start = Instant::now();
    let deadline = start + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut conn = redis::Connection::connect(server.port).await?;
        let (tally, next, sha) = (tally.clone(), next.clone(), sha.clone());
        let mut rec = latency.recorder();
        let (buyers, limit) = (args.buyers.max(1) as u64, args.limit.to_string());
        tasks.push(tokio::spawn(async move {
            while !tally.over.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let buyer = n % buyers;
                let (cust, hold) = (format!("cust:lt:{buyer}"), format!("hold:lt:{n}"));
                let value = format!("{buyer}:1");
                let t0 = Instant::now();
                let reply = conn
                    .call(&[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"3",
                        b"stock:lt",
                        cust.as_bytes(),
                        hold.as_bytes(),
                        b"1",
                        limit.as_bytes(),
                        b"3600",
                        value.as_bytes(),
                    ])
                    .await;
                rec.record(t0.elapsed());
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                match reply {
                    Ok(redis::Reply::Integer(left)) if left >= 0 => {
                        tally.holds.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(redis::Reply::Integer(-1)) | Ok(redis::Reply::Integer(-2)) => {
                        tally.over.store(true, Ordering::Relaxed);
                    }
                    Ok(redis::Reply::Integer(_)) => {
                        tally.limited.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(other) => tally.error(&tally.errors, format!("redis: {other:?}")),
                    Err(e) => {
                        tally.error(&tally.errors, format!("redis: {e:#}"));
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let tester_cpu = tester_before.and_then(|b| Some(peers::proc_cpu(std::process::id())? - b));
    let samples = progress.finish().await;
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let left = match admin.cmd(&["GET", "stock:lt"]).await? {
        redis::Reply::Bulk(Some(v)) => String::from_utf8_lossy(&v).parse::<i64>().unwrap_or(-1),
        _ => -1,
    };
    let first_error = tally.first_error.lock().ok().and_then(|f| f.clone());
    let holds = tally.holds.load(Ordering::Relaxed);
    Ok((
        Sale {
            connects: 0,
            attempts: tally.attempts.load(Ordering::Relaxed),
            holds,
            orders: 0,
            errors: tally.errors.load(Ordering::Relaxed),
            checkout_errors: 0,
            first_error,
            elapsed,
            reserve_latency: latency,
            checkout_latency: Latencies::new(),
            samples,
            cpu,
            tester_cpu,
            inventory: Some((left.max(0) as u64, holds, 0)),
            open_loop: None,
            sold_out: left <= 0,
        },
        holds.saturating_sub(args.stock) + u64::from(left < 0),
    ))
}
