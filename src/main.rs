//! The `buyline` command: parses the configuration and serves until SIGINT or SIGTERM.

use anyhow::Context as _;

/// mimalloc instead of glibc's malloc: requests allocate on one thread and free on another
/// (an order built by a session is dropped by the order store's writer), which sends glibc
/// into `malloc_consolidate` and arena locking on every checkout.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let thp = disable_transparent_huge_pages();
    let config = match buyline::parse_cli() {
        Ok(config) => config,
        Err(error) => error.exit(),
    };
    buyline::init_logging(&config.log).context("--log is not a valid filter")?;

    match buyline::raise_open_file_limit() {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    if let Err(error) = thp {
        tracing::warn!(%error, "could not turn transparent huge pages off for this process");
    }
    let demo = config.demo;
    let firehose = config.firehose.to_string();
    let server =
        buyline::start_server(config, shutdown_signal()).context("buyline could not start")?;
    tracing::info!(addr = %server.addr, demo, %firehose, "buyline serving on http://{}/", server.addr);
    server.wait();
    tracing::info!("buyline stopped");
    Ok(())
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`), before the
/// allocator maps much: with them, a 2 MiB page counts as resident once any of its bytes is,
/// and the kernel's khugepaged keeps merging sparse heap into whole huge pages. In the
/// 5-minute soak that was 127 MiB of 341 MiB RSS, and RSS kept rising for minutes after the
/// live heap was flat (BENCHMARKS.md, "Issue 11: RSS and transparent huge pages"). mimalloc
/// is also built without its own `MADV_HUGEPAGE` hint (the `no_thp` feature).
fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}
