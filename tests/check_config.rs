//! `buyline check-config` as an operator runs it before a deploy: the real binary, its exit
//! status (0, or 78 = EX_CONFIG) and what it prints; and that it binds, creates and connects
//! nothing.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `buyline check-config ARGS` with only `env` of the `BUYLINE_*` variables.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_buyline"));
    command.arg("check-config").args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("BUYLINE_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("buyline runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An address on loopback that nothing listens on right now.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn valid_defaults_print_every_setting_and_exit_0_without_binding_or_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let listen = free_port();
    let output = check_config(
        &[
            "--listen",
            &listen.to_string(),
            "--data-dir",
            path(&data_dir),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let out = stdout(&output);
    assert!(out.contains("configuration is valid"), "{out}");
    assert!(
        out.contains(&format!("listen = \"{listen}\"")) && out.contains("command line (--listen)"),
        "{out}"
    );
    assert!(out.contains("rate = 1000"), "{out}");
    assert!(out.contains("# default"), "{out}");
    assert!(out.contains("max_ingest_body_bytes = 16777216"), "{out}");
    assert!(!data_dir.exists(), "check-config created the data dir");
    TcpListener::bind(listen).expect("the port is still free");
}

#[test]
fn a_bad_flag_value_exits_78_naming_the_flag() {
    let output = check_config(&["--rate", "fast"], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(stderr(&output).contains("--rate"), "{}", stderr(&output));
    let output = check_config(&["--history", "0"], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    let err = stderr(&output);
    assert!(
        err.contains("--history") && err.contains("command line"),
        "{err}"
    );
}

#[test]
fn a_bad_value_in_the_config_file_is_named_by_its_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buyline.toml");
    std::fs::write(&file, "rate = 5\nmax_follows = 0\n").unwrap();
    let output = check_config(&["--config", path(&file)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    let err = stderr(&output);
    assert!(err.contains("`max_follows`"), "{err}");
    assert!(err.contains(path(&file)), "{err}");

    std::fs::write(&file, "rate = \"fast\"\n").unwrap();
    let output = check_config(&["--config", path(&file)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    let err = stderr(&output);
    assert!(err.contains("rate") && err.contains(path(&file)), "{err}");

    std::fs::write(&file, "ratee = 5\n").unwrap();
    let output = check_config(&["--config", path(&file)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(stderr(&output).contains("`ratee`"), "{}", stderr(&output));
}

#[test]
fn a_bad_environment_variable_is_named_as_the_variable() {
    let output = check_config(&[], &[("BUYLINE_RATE", "fast")]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("BUYLINE_RATE"),
        "{}",
        stderr(&output)
    );
    let output = check_config(&[], &[("BUYLINE_MAX_FOLLOWS", "0")]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("set by BUYLINE_MAX_FOLLOWS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn each_setting_says_which_layer_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buyline.toml");
    std::fs::write(&file, "max_follows = 7\nrate = 1\n").unwrap();
    let output = check_config(
        &["--config", path(&file), "--rate", "3"],
        &[("BUYLINE_HISTORY", "55"), ("BUYLINE_LOG_FORMAT", "json")],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let out = stdout(&output);
    let line = |key: &str| {
        out.lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
            .to_owned()
    };
    assert!(line("rate").contains("3") && line("rate").contains("command line"));
    assert!(line("history").contains("55") && line("history").contains("BUYLINE_HISTORY"));
    assert!(line("max_follows").contains(&format!("config file {}", path(&file))));
    assert!(line("outbox_frames").ends_with("# default"));
    assert!(
        line("log_format").contains("\"json\"")
            && line("log_format").contains("BUYLINE_LOG_FORMAT")
    );
}

#[test]
fn an_unknown_log_format_is_refused_in_every_layer() {
    let output = check_config(&["--log-format", "xml"], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("--log-format"),
        "{}",
        stderr(&output)
    );
    let output = check_config(&[], &[("BUYLINE_LOG_FORMAT", "xml")]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("BUYLINE_LOG_FORMAT"),
        "{}",
        stderr(&output)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buyline.toml");
    std::fs::write(&file, "log_format = \"xml\"\n").unwrap();
    let output = check_config(&["--config", path(&file)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("log_format"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreadable_or_invalid_catalog_exits_78_naming_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let output = check_config(&["--catalog", path(&missing)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    let err = stderr(&output);
    assert!(
        err.contains("--catalog") && err.contains(path(&missing)),
        "{err}"
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"partners\": [").unwrap();
    let output = check_config(&["--catalog", path(&broken)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(stderr(&output).contains("--catalog"), "{}", stderr(&output));
}

#[test]
fn a_short_secret_file_exits_78_without_printing_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.key");
    std::fs::write(&secret, "zq-short-secret-9172").unwrap();
    let output = check_config(&["--secret-file", path(&secret)], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(
        stderr(&output).contains("--secret-file"),
        "{}",
        stderr(&output)
    );

    // A good one is reported by its path, never its contents.
    let contents = "zq-long-secret-0123456789abcdef0123456789abcdef";
    std::fs::write(&secret, contents).unwrap();
    let output = check_config(&["--secret-file", path(&secret)], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout(&output).contains(path(&secret)),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("zq-"), "{}", stdout(&output));
    assert!(!stderr(&output).contains("zq-"), "{}", stderr(&output));
}

#[test]
fn demo_on_a_public_address_and_a_bus_without_a_store_are_refused() {
    let output = check_config(&["--demo", "--listen", "0.0.0.0:8080"], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(stderr(&output).contains("demo"), "{}", stderr(&output));
    let output = check_config(&["--bus", "nats://127.0.0.1:4222"], &[]);
    assert_eq!(output.status.code(), Some(78), "{output:?}");
    assert!(stderr(&output).contains("--store"), "{}", stderr(&output));
}

#[test]
fn the_store_password_is_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: check-config does not connect.
    let url = format!("redis://user:hunter2-pw@{}/0", free_port());
    let output = check_config(&["--store", &url, "--data-dir", path(dir.path())], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let out = stdout(&output);
    assert!(out.contains("store = \"redis://user:***@"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}
