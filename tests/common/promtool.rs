//! `promtool check metrics` on a server's `/metrics` page: the exposition format Prometheus
//! accepts, the names and help text its linter asks for.
//!
//! Without `promtool` a test prints a loud message and skips the check, except under
//! `CI=true`, where a missing `promtool` fails the test (CI installs the `prometheus` package:
//! `.ci/run`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `promtool` program (on `PATH`, `/usr/bin` or `/usr/local/bin`), or `None` (after a loud
/// message saying that `check` did not run) when it is not installed, outside CI; under
/// `CI=true` a missing `promtool` fails the test.
pub fn installed(check: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "promtool is missing under CI=true: .ci/run must install the prometheus package"
        );
        eprintln!(
            "\n*** SKIPPED: promtool is not installed (apt-get install prometheus); {check} \
             did not run ***\n"
        );
    }
    found
}

/// Fails the test unless `promtool check metrics` accepts `metrics` (a `/metrics` page) and
/// says nothing about it.
pub fn assert_metrics_pass(promtool: &std::path::Path, metrics: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(metrics.as_bytes())
        .expect("the metrics written to promtool");
    let output = check.wait_with_output().expect("promtool's verdict");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test unless `promtool check rules` accepts the rule file at `rules`.
pub fn assert_rules_pass(promtool: &std::path::Path, rules: &std::path::Path) {
    let output = Command::new(promtool)
        .args(["check", "rules"])
        .arg(rules)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check rules {}: {}{}",
        rules.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
