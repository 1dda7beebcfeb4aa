//! The node as a whole: which build it runs (`buyline_build_info`) and whether it is ready
//! (`buyline_ready`).

use metrics::{describe_gauge, gauge};

const BUILD_INFO: &str = "buyline_build_info";
const READY: &str = "buyline_ready";

/// This crate's version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from, when the build's environment named it
/// (`BUYLINE_GIT_COMMIT=$(git rev-parse --short HEAD) cargo build`). Read at compile time and
/// not by a build script, so a build outside a git checkout (a crate tarball, a container
/// without `.git`) works the same and simply has no `commit` label.
const COMMIT: Option<&str> = option_env!("BUYLINE_GIT_COMMIT");

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build this node runs (version, and commit when the build named it)."
    );
    describe_gauge!(
        READY,
        "1 while /readyz answers 200, 0 otherwise (starting, shutting down, journal stopped, store or bus unreachable, not caught up with the stream); refreshed every 250 ms."
    );
}

/// Sets the build's info and starts readiness at 0 (not ready until the server says so).
pub(super) fn register() {
    match COMMIT {
        Some(commit) => gauge!(BUILD_INFO, "version" => VERSION, "commit" => commit).set(1.0),
        None => gauge!(BUILD_INFO, "version" => VERSION).set(1.0),
    }
    gauge!(READY).set(0.0);
}

/// Whether the node would answer `/readyz` with 200 now.
pub fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}
