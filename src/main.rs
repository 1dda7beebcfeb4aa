//! The `buyline` command: parses the configuration and serves until SIGINT or SIGTERM.

use anyhow::Context as _;

/// mimalloc instead of glibc's malloc: requests allocate on one thread and free on another
/// (an order built by a session is dropped by the order store's writer), which sends glibc
/// into `malloc_consolidate` and arena locking on every checkout.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = match buyline::parse_cli() {
        Ok(config) => config,
        Err(error) => error.exit(),
    };
    buyline::init_logging(&config.log).context("--log is not a valid filter")?;

    match buyline::raise_open_file_limit() {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
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
