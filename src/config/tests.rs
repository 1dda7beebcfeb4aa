//! Unit tests for `config`.
use super::*;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let vars: HashMap<String, OsString> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), OsString::from(value)))
        .collect();
    move |name| vars.get(name).cloned()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

fn path_arg(file: &tempfile::NamedTempFile) -> String {
    file.path().to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn no_arguments_serve_the_embedded_defaults() {
    let config = from_args(["buyline"], no_env).expect("defaults are valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
    assert!(config.demo);
    assert_eq!(config.firehose, FirehoseSource::Synthetic);
    assert_eq!(config.rate, 1000);
    assert_eq!(config.max_ingest_body_bytes, 16 << 20);
    Config::default().validate().expect("defaults are valid");
}

#[test]
fn serve_subcommand_is_optional() {
    let with = from_args(["buyline", "serve", "--rate", "5"], no_env).expect("valid");
    let without = from_args(["buyline", "--rate", "5"], no_env).expect("valid");
    assert_eq!(with, without);
    assert_eq!(with.rate, 5);
}

#[test]
fn command_line_overrides_config_file() {
    let file = toml_file("rate = 7\nhistory = 10\nloop = true\n");
    let config = from_args(
        ["buyline", "--config", &path_arg(&file), "--rate", "9"],
        no_env,
    )
    .expect("valid");
    assert_eq!(config.rate, 9);
    assert_eq!(config.history, 10);
    assert!(config.replay_loop);
}

#[test]
fn environment_overrides_config_file_and_command_line_overrides_environment() {
    let file = toml_file("rate = 7\nhistory = 10\nslow_client_timeout = 2\n");
    let env = env_of(&[
        ("BUYLINE_CONFIG", &path_arg(&file)),
        ("BUYLINE_RATE", "5"),
        ("BUYLINE_HISTORY", "20"),
        ("BUYLINE_SLOW_CLIENT_TIMEOUT", "0.5"),
    ]);
    let config = from_args(["buyline", "--history", "30"], &env).expect("valid");
    assert_eq!(config.rate, 5);
    assert_eq!(config.history, 30);
    assert_eq!(config.slow_client_timeout, Duration::from_millis(500));
}

#[test]
fn environment_booleans_and_paths_parse_like_flags() {
    let env = env_of(&[
        ("BUYLINE_LOOP", "yes"),
        ("BUYLINE_DECORATE_SHARES", "true"),
        ("BUYLINE_DATA_DIR", "/var/lib/buyline"),
        ("BUYLINE_FIREHOSE", "replay:/tmp/t.ndjson"),
        ("BUYLINE_CATALOG", ""),
    ]);
    let config = from_args(["buyline"], &env).expect("valid");
    assert!(config.replay_loop);
    assert!(config.decorate_shares);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/buyline"));
    assert_eq!(
        config.firehose,
        FirehoseSource::Replay(PathBuf::from("/tmp/t.ndjson"))
    );
    assert_eq!(config.catalog, None);
}

#[test]
fn bad_environment_value_names_the_variable() {
    let err =
        from_args(["buyline"], env_of(&[("BUYLINE_RATE", "fast")])).expect_err("not a number");
    let message = err.to_string();
    assert!(message.starts_with("BUYLINE_RATE: "), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn log_flag_beats_rust_log_which_beats_the_file() {
    let file = toml_file("log = \"warn\"\n");
    let config_arg = path_arg(&file);
    let rust_log = env_of(&[("RUST_LOG", "debug")]);
    let config = from_args(["buyline", "--config", &config_arg], &rust_log).expect("valid");
    assert_eq!(config.log, "debug");
    let config = from_args(
        ["buyline", "--config", &config_arg, "--log", "error"],
        &rust_log,
    )
    .expect("valid");
    assert_eq!(config.log, "error");
    let config = from_args(["buyline", "--config", &config_arg], no_env).expect("valid");
    assert_eq!(config.log, "warn");
}

#[test]
fn unknown_config_file_key_is_rejected_by_name() {
    let file = toml_file("rate = 7\nfirehouse = \"none\"\n");
    let err =
        from_args(["buyline", "--config", &path_arg(&file)], no_env).expect_err("unknown key");
    assert!(matches!(err, ConfigError::ParseFile { .. }));
    assert!(err.to_string().contains("firehouse"), "{err}");
}

#[test]
fn config_file_cannot_name_another_config_file() {
    let file = toml_file("config = \"other.toml\"\n");
    let err = from_args(["buyline", "--config", &path_arg(&file)], no_env)
        .expect_err("config is not a file key");
    assert!(err.to_string().contains("config"), "{err}");
}

#[test]
fn missing_config_file_is_an_error() {
    let err = from_args(["buyline", "--config", "/nonexistent/buyline.toml"], no_env)
        .expect_err("missing");
    assert!(matches!(err, ConfigError::ReadFile { .. }));
}

#[test]
fn bad_firehose_value_is_rejected() {
    let err = from_args(["buyline", "--firehose", "kafka"], no_env).expect_err("unknown");
    assert!(matches!(err, ConfigError::Cli(_)));
    assert!(err.to_string().contains("kafka"), "{err}");
    assert!("replay:".parse::<FirehoseSource>().is_err());
    let file = toml_file("firehose = \"kafka\"\n");
    let err =
        from_args(["buyline", "--config", &path_arg(&file)], no_env).expect_err("unknown in file");
    assert!(err.to_string().contains("not a firehose"), "{err}");
}

#[test]
fn replay_firehose_keeps_its_path_and_round_trips() {
    let source: FirehoseSource = "replay:data/tweets.ndjson".parse().expect("valid");
    assert_eq!(
        source,
        FirehoseSource::Replay(PathBuf::from("data/tweets.ndjson"))
    );
    assert_eq!(source.to_string(), "replay:data/tweets.ndjson");
    for text in ["synthetic", "none"] {
        assert_eq!(
            text.parse::<FirehoseSource>().expect("valid").to_string(),
            text
        );
    }
    let config = from_args(
        ["buyline", "--firehose=replay:/x/y.ndjson", "--loop"],
        no_env,
    )
    .expect("valid");
    assert_eq!(
        config.firehose,
        FirehoseSource::Replay(PathBuf::from("/x/y.ndjson"))
    );
    assert!(config.replay_loop);
}

#[test]
fn demo_refuses_a_non_loopback_address() {
    let err = from_args(["buyline", "--listen", "0.0.0.0:8080", "--demo"], no_env)
        .expect_err("demo on 0.0.0.0");
    assert!(matches!(err, ConfigError::DemoNotLoopback { .. }));
    assert!(err.to_string().contains("--no-demo"), "{err}");
    assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
}

#[test]
fn demo_defaults_off_on_a_non_loopback_address() {
    let config = from_args(["buyline", "--listen", "0.0.0.0:8080"], no_env).expect("valid");
    assert!(!config.demo);
    let config = from_args(["buyline", "--listen", "[::1]:9000"], no_env).expect("valid");
    assert!(config.demo);
}

#[test]
fn no_demo_on_any_address_is_fine() {
    let config =
        from_args(["buyline", "--listen", "0.0.0.0:8080", "--no-demo"], no_env).expect("ok");
    assert!(!config.demo);
    assert_eq!(config.listen, "0.0.0.0:8080".parse().expect("addr"));
}

#[test]
fn demo_flags_the_environment_and_the_file_agree_on_precedence() {
    let demo_off = env_of(&[("BUYLINE_DEMO", "false")]);
    assert!(!from_args(["buyline"], &demo_off).expect("valid").demo);
    assert!(
        from_args(["buyline", "--demo"], &demo_off)
            .expect("valid")
            .demo
    );
    let demo_on = env_of(&[("BUYLINE_DEMO", "true")]);
    assert!(
        !from_args(["buyline", "--no-demo"], &demo_on)
            .expect("valid")
            .demo
    );
    assert!(
        from_args(["buyline", "--no-demo", "--demo"], no_env)
            .expect("valid")
            .demo
    );
    assert!(
        !from_args(["buyline", "--demo", "--no-demo"], no_env)
            .expect("valid")
            .demo
    );
    let file = toml_file("demo = false\n");
    let config = from_args(["buyline", "--config", &path_arg(&file)], no_env).expect("ok");
    assert!(!config.demo);
}

#[test]
fn out_of_range_settings_name_their_flag() {
    for (args, flag) in [
        (vec!["--shards", "0"], "--shards"),
        (vec!["--history", "0"], "--history"),
        (vec!["--outbox-frames", "1"], "--outbox-frames"),
        (vec!["--max-frame-bytes", "100"], "--max-frame-bytes"),
        (vec!["--partner-share", "1.5"], "--partner-share"),
        (vec!["--partner-share", "NaN"], "--partner-share"),
        (vec!["--slow-client-timeout", "0"], "--slow-client-timeout"),
        (vec!["--slow-client-timeout=-1"], "--slow-client-timeout"),
        (vec!["--header-timeout", "0"], "--header-timeout"),
        (vec!["--header-timeout", "1e300"], "--header-timeout"),
        (vec!["--ping-interval", "0"], "--ping-interval"),
        (vec!["--ping-timeout", "86401"], "--ping-timeout"),
        (
            vec!["--max-connections-per-ip", "0"],
            "--max-connections-per-ip",
        ),
        (vec!["--idempotency-window", "59"], "--idempotency-window"),
        (
            vec!["--idempotency-window", "604801"],
            "--idempotency-window",
        ),
        (vec!["--log", "info,=="], "--log"),
    ] {
        let argv = std::iter::once("buyline").chain(args.iter().copied());
        let err = from_args(argv, no_env).expect_err("out of range");
        assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_each_flags_environment_variable() {
    let err = from_args(["buyline", "--help"], no_env).expect_err("help exits");
    let help = err.to_string();
    assert!(help.contains("BUYLINE_DATA_DIR"), "{help}");
    assert!(help.contains("BUYLINE_LOOP"), "{help}");
    assert!(!help.contains("BUYLINE_NO_DEMO"), "{help}");
    let err = from_args(["buyline", "serve", "--help"], no_env).expect_err("help exits");
    assert!(err.to_string().contains("BUYLINE_MAX_FOLLOWS"));
}

#[test]
fn connection_limits_come_from_every_layer_and_take_fractions() {
    let file = toml_file("header_timeout = 3\nping_timeout = 4.5\n");
    let env = env_of(&[
        ("BUYLINE_CONFIG", &path_arg(&file)),
        ("BUYLINE_PING_INTERVAL", "0.25"),
        ("BUYLINE_MAX_CONNECTIONS_PER_IP", "7"),
    ]);
    let config = from_args(["buyline", "--header-timeout", "1.5"], &env).expect("valid");
    assert_eq!(config.header_timeout, Duration::from_millis(1500));
    assert_eq!(config.ping_interval, Duration::from_millis(250));
    assert_eq!(config.ping_timeout, Duration::from_millis(4500));
    assert_eq!(config.max_connections_per_ip, 7);
}

#[test]
fn connection_limits_default_to_the_documented_values() {
    let config = Config::default();
    assert_eq!(config.header_timeout, Duration::from_secs(10));
    assert_eq!(config.ping_interval, Duration::from_secs(25));
    assert_eq!(config.ping_timeout, Duration::from_secs(10));
    assert_eq!(config.max_connections_per_ip, 1000);
}

#[test]
fn idempotency_window_defaults_to_a_day_and_comes_from_every_layer() {
    assert_eq!(
        Config::default().idempotency_window,
        Duration::from_secs(86_400)
    );
    let file = toml_file("idempotency_window = 600\n");
    let config = from_args(["buyline", "--config", &path_arg(&file)], no_env).expect("valid");
    assert_eq!(config.idempotency_window, Duration::from_secs(600));
    let env = env_of(&[
        ("BUYLINE_CONFIG", &path_arg(&file)),
        ("BUYLINE_IDEMPOTENCY_WINDOW", "120"),
    ]);
    let config = from_args(["buyline"], &env).expect("valid");
    assert_eq!(config.idempotency_window, Duration::from_secs(120));
    let config = from_args(["buyline", "--idempotency-window", "60"], &env).expect("valid");
    assert_eq!(config.idempotency_window, Duration::from_secs(60));
    let config =
        from_args(["buyline", "--idempotency-window", "604800"], no_env).expect("a week is valid");
    assert_eq!(config.idempotency_window, Duration::from_secs(604_800));
}

#[test]
fn store_comes_from_every_layer_and_defaults_to_this_node() {
    assert_eq!(Config::default().store, None);
    let file = toml_file("store = \"redis://file-host:6379/1\"\n");
    let config = from_args(["buyline", "--config", &path_arg(&file)], no_env).expect("valid");
    let shown = |config: &Config| config.store.as_ref().map(|url| url.redacted().to_owned());
    assert_eq!(shown(&config).as_deref(), Some("redis://file-host:6379/1"));
    let env = env_of(&[
        ("BUYLINE_CONFIG", &path_arg(&file)),
        ("BUYLINE_STORE", "redis://env-host:6380"),
    ]);
    let config = from_args(["buyline"], &env).expect("valid");
    assert_eq!(shown(&config).as_deref(), Some("redis://env-host:6380"));
    let config = from_args(["buyline", "--store", "redis://cli-host"], &env).expect("valid");
    assert_eq!(shown(&config).as_deref(), Some("redis://cli-host:6379"));
}

#[test]
fn a_bad_store_url_names_the_flag_and_never_echoes_a_password() {
    for bad in [
        "postgres://db:5432",
        "redis://:hunter2@db:notaport",
        "rediss://:hunter2@db:6379",
    ] {
        let err = from_args(["buyline", "--store", bad], no_env).expect_err(bad);
        let message = err.to_string();
        assert!(message.starts_with("--store"), "{bad}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
        let env = env_of(&[("BUYLINE_STORE", bad)]);
        let message = from_args(["buyline"], &env).expect_err(bad).to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }
    let config = from_args(["buyline", "--store", "redis://:hunter2@db:6379"], no_env).expect("ok");
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn bus_comes_from_every_layer_with_its_stream_and_limits() {
    assert_eq!(Config::default().bus, None);
    let file = toml_file(
        "store = \"redis://db\"\nbus = \"nats://file-host:4222\"\nbus_stream = \"FILE\"\nbus_max_msgs = 200000\nbus_max_age = 3600\nbus_duplicate_window = 30\n",
    );
    let config = from_args(["buyline", "--config", &path_arg(&file)], no_env).expect("valid");
    let shown = |config: &Config| config.bus.as_ref().map(|url| url.redacted().to_owned());
    assert_eq!(shown(&config).as_deref(), Some("nats://file-host:4222"));
    assert_eq!(config.bus_stream, "FILE");
    assert_eq!(config.bus_max_msgs, 200_000);
    assert_eq!(config.bus_max_age, Duration::from_secs(3600));
    assert_eq!(config.bus_duplicate_window, Duration::from_secs(30));
    assert_eq!(
        Config::default().bus_duplicate_window,
        Duration::from_secs(120),
        "the issue's two minutes by default"
    );
    let env = env_of(&[
        ("BUYLINE_CONFIG", &path_arg(&file)),
        ("BUYLINE_BUS", "nats://env-host:4223"),
        ("BUYLINE_BUS_STREAM", "ENV"),
    ]);
    let config = from_args(["buyline"], &env).expect("valid");
    assert_eq!(shown(&config).as_deref(), Some("nats://env-host:4223"));
    assert_eq!(config.bus_stream, "ENV");
    let config = from_args(["buyline", "--bus", "nats://cli-host"], &env).expect("valid");
    assert_eq!(shown(&config).as_deref(), Some("nats://cli-host:4222"));
}

#[test]
fn bus_without_store_is_refused_naming_both_flags() {
    let err = from_args(["buyline", "--bus", "nats://127.0.0.1:4222"], no_env)
        .expect_err("--bus needs --store");
    let message = err.to_string();
    assert!(
        message.starts_with("--bus") && message.contains("--store"),
        "{message}"
    );
}

#[test]
fn a_bad_bus_setting_names_its_flag_and_never_echoes_a_password() {
    let store = ["buyline", "--store", "redis://db"];
    for (args, flag) in [
        (vec!["--bus", "nats://:hunter2@bus:notaport"], "--bus"),
        (vec!["--bus", "http://:hunter2@bus:4222"], "--bus"),
        (vec!["--bus-stream", "has.dot"], "--bus-stream"),
        (vec!["--bus-max-msgs", "10"], "--bus-max-msgs"),
        (vec!["--bus-max-age", "5"], "--bus-max-age"),
        (
            vec!["--bus-duplicate-window", "0"],
            "--bus-duplicate-window",
        ),
        (
            vec!["--bus-duplicate-window", "86401"],
            "--bus-duplicate-window",
        ),
        (
            vec!["--bus-duplicate-window", "600", "--bus-max-age", "300"],
            "--bus-max-age",
        ),
    ] {
        let all: Vec<&str> = store.iter().copied().chain(args).collect();
        let message = from_args(all.clone(), no_env)
            .expect_err("refused")
            .to_string();
        assert!(message.starts_with(flag), "{all:?}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    let config = from_args(
        [
            "buyline",
            "--store",
            "redis://db",
            "--bus",
            "nats://u:hunter2@bus:4222",
        ],
        no_env,
    )
    .expect("ok");
    assert!(!format!("{config:?}").contains("hunter2"));
}
