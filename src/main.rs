//! The `buyline` command: parses the configuration and serves until SIGINT or SIGTERM, or
//! (`buyline check-config`) checks the configuration and prints it.

use anyhow::Context as _;

/// mimalloc instead of glibc's malloc: requests allocate on one thread and free on another
/// (an order built by a session is dropped by the order store's writer), which sends glibc
/// into `malloc_consolidate` and arena locking on every checkout.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invocation = match buyline::parse_invocation() {
        Ok(invocation) => invocation,
        Err(error) => error.exit_for(buyline::requested_command(&args)),
    };
    match invocation.command {
        buyline::Command::Serve => serve(invocation.config),
        buyline::Command::CheckConfig => check_config(&invocation),
    }
}

/// `buyline check-config`: the checks `serve` makes before binding, and the effective
/// settings with their origins on stdout; exits 78 naming the setting when one fails.
fn check_config(invocation: &buyline::Invocation) -> anyhow::Result<()> {
    let preflight = match buyline::preflight(&invocation.config) {
        Ok(preflight) => preflight,
        Err(error) => {
            // The chain, without a cause that its parent's message already quotes.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            std::process::exit(buyline::EX_CONFIG);
        }
    };
    let mut out = String::from("# buyline check-config: the configuration is valid\n");
    let catalog = &preflight.catalog;
    out.push_str(&format!(
        "# catalog: {} partners, {} products\n",
        catalog.partners.len(),
        catalog.products.len()
    ));
    // The secret's path only: its contents are never printed.
    out.push_str(&match &preflight.secret {
        buyline::SecretCheck::Readable(path) => {
            format!(
                "# token secret: {} (readable, long enough)\n",
                path.display()
            )
        }
        buyline::SecretCheck::WouldCreate(path) => {
            format!("# token secret: {} (serve creates it)\n", path.display())
        }
    });
    if !preflight.data_dir_exists {
        out.push_str("# data_dir does not exist yet (serve creates it)\n");
    }
    let width = invocation
        .settings
        .iter()
        .map(|setting| setting.key.len() + setting.value.as_ref().map_or(0, String::len))
        .max()
        .unwrap_or(0);
    for setting in &invocation.settings {
        let origin = setting.origin.label(&setting.key);
        let line = match &setting.value {
            Some(value) => format!("{} = {value}", setting.key),
            None => format!("# {} unset", setting.key),
        };
        out.push_str(&format!("{line:<pad$}  # {origin}\n", pad = width + 3));
    }
    print!("{out}");
    Ok(())
}

/// `buyline [serve]`: serves until SIGINT or SIGTERM.
fn serve(config: buyline::Config) -> anyhow::Result<()> {
    let thp = disable_transparent_huge_pages();
    buyline::init_logging(&config.log, config.log_format).context("--log is not a valid filter")?;

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
