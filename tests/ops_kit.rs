//! The monitoring kit (`ops/`) against the server it watches: the alert rules pass `promtool
//! check rules`, the dashboard is well formed, and every metric the dashboard and the rules
//! name is on a live node's `/metrics`: a default node for the node's metrics, a `--store
//! --bus` node (on a `redis-server` and a `nats-server -js` the test starts) for the cluster's.
//! A name misspelt in either file fails here.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::BuylineProcess;
use common::nats_server::NatsServer;
use common::redis_server::RedisServer;
use serde_json::Value;

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("ops/grafana/buyline.json"))
        .expect("ops/grafana/buyline.json is JSON")
}

/// Every panel of the dashboard, the panels of rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn collect<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            collect(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    collect(&dashboard["panels"], &mut all);
    all
}

/// Every PromQL expression of the dashboard: its panels' targets and its template variables'
/// queries (`label_values(metric, label)` is read as `metric`).
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs: Vec<String> = panels(dashboard)
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("a query variable has a query");
        let query = match query.strip_prefix("label_values(") {
            Some(args) => args.split(',').next().unwrap_or_default().to_owned(),
            None => query.to_owned(),
        };
        exprs.push(query);
    }
    exprs
}

/// Every `expr` of the rule file, folded block scalars (`expr: >-`) joined into one line.
fn rule_expressions(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, value)) = line.split_once("expr:") else {
            continue;
        };
        if !indent.trim_start_matches(['-', ' ']).is_empty() {
            continue;
        }
        let value = value.trim();
        if !value.starts_with(['>', '|']) {
            exprs.push(value.to_owned());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent.len();
            if !deeper && !next.trim().is_empty() {
                break;
            }
            block.push(' ');
            block.push_str(next.trim());
            lines.next();
        }
        exprs.push(block);
    }
    exprs
}

/// The metric names a PromQL expression reads: identifiers that are not functions,
/// aggregations, keywords, label names (in `{...}` or a `by (...)` list) or strings; with
/// `_bucket`, `_count` and `_sum` taken off (a histogram's series).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "inf", "nan"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Past the first `close` from `from`, strings skipped.
    let skip_to = |from: usize, close: char| {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' || chars[j] == '\'' {
                let quote = chars[j];
                j += 1;
                while j < chars.len() && chars[j] != quote {
                    j += 1;
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            '"' | '\'' => i = skip_to(i + 1, c),
            c if c.is_ascii_digit() || c == '.' => {
                // A number (0.99, 1e3): its letters are not a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                // `f(`, or an aggregation with its label list first: `sum by (le) (`.
                let rest: String = chars[next..].iter().take(8).collect();
                let called = chars.get(next) == Some(&'(')
                    || rest.starts_with("by ")
                    || rest.starts_with("by(")
                    || rest.starts_with("without");
                if LABEL_LISTS.contains(&word.as_str()) {
                    if called {
                        i = skip_to(next + 1, ')');
                    }
                } else if !called && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|suffix| word.strip_suffix(suffix))
                        .unwrap_or(&word);
                    names.insert(base.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every metric name the dashboard and the rules read, but `up` (Prometheus's own).
fn names_the_kit_reads() -> BTreeSet<String> {
    dashboard_expressions(&dashboard())
        .iter()
        .chain(rule_expressions(&read("ops/prometheus/alerts.yml")).iter())
        .flat_map(|expr| metric_names(expr))
        .filter(|name| name != "up")
        .collect()
}

/// The metric names a `/metrics` page lists (its `# TYPE` lines).
fn names_on(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The names of `wanted` that none of `pages` lists.
fn missing<'a>(wanted: &'a BTreeSet<String>, pages: &[&str]) -> Vec<&'a str> {
    let listed: BTreeSet<String> = pages.iter().flat_map(|page| names_on(page)).collect();
    wanted
        .iter()
        .filter(|name| !listed.contains(*name))
        .map(String::as_str)
        .collect()
}

async fn metrics_of(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the page")
}

/// Waits (at most 30 s) for the node at `addr` to answer `/readyz` with 200.
async fn ready(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        let status = reqwest::get(format!("http://{addr}/readyz"))
            .await
            .map(|r| r.status().as_u16());
        if status.is_ok_and(|s| s == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let Some(promtool) = common::promtool::installed("promtool check rules") else {
        return;
    };
    common::promtool::assert_rules_pass(&promtool, &repo_file("ops/prometheus/alerts.yml"));
}

#[test]
fn the_dashboard_is_json_whose_panels_all_have_a_datasource_and_a_query() {
    let dashboard = dashboard();
    let panels: Vec<&Value> = panels(&dashboard)
        .into_iter()
        .filter(|panel| panel["type"] != "row")
        .collect();
    assert!(!panels.is_empty(), "the dashboard has no panels");
    for panel in panels {
        let title = &panel["title"];
        assert!(
            panel["datasource"].is_object() || panel["datasource"].is_string(),
            "panel {title} has no datasource"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no target");
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {title} has a target without a query: {target}"
            );
        }
    }
}

#[test]
fn the_name_reader_finds_metrics_and_skips_labels_functions_and_keywords() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(buyline_http_request_seconds_bucket{instance=~"$instance", route!="other"}[$__rate_interval]))) > 0.25 and on (instance) time() - process_start_time_seconds offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["buyline_http_request_seconds", "process_start_time_seconds"]
    );
    let exprs = rule_expressions(
        "      - alert: A\n        expr: >-\n          sum(rate(x_total[5m]))\n            > 1\n        for: 5m\n      - alert: B\n        expr: y == 0\n",
    );
    assert_eq!(exprs, [" sum(rate(x_total[5m])) > 1", "y == 0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_name_is_on_a_live_node() {
    let wanted = names_the_kit_reads();
    assert!(
        wanted.len() > 40,
        "only {} names read from the kit: {wanted:?}",
        wanted.len()
    );
    let node = BuylineProcess::start(&["--listen", "127.0.0.1:0", "--firehose", "none"]);
    let node_page = metrics_of(node.addr).await;
    let (Some(redis), Some(nats)) = (RedisServer::start(), NatsServer::start()) else {
        return;
    };
    let cluster_node = BuylineProcess::start(&[
        "--store",
        &redis.url(),
        "--bus",
        &nats.url(),
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        "none",
    ]);
    ready(cluster_node.addr).await;
    let cluster_page = metrics_of(cluster_node.addr).await;
    let pages = [node_page.as_str(), cluster_page.as_str()];
    assert_eq!(
        missing(&wanted, &pages),
        Vec::<&str>::new(),
        "named in ops/ but on neither node's /metrics"
    );
    // The check can fail: a misspelt name is reported.
    let misspelt = metric_names("buyline_redy == 0 or buyline_journal_healthy == 0");
    assert_eq!(missing(&misspelt, &pages), ["buyline_redy"]);
    if let Some(promtool) = common::promtool::installed("promtool check metrics on both nodes") {
        common::promtool::assert_metrics_pass(&promtool, &node_page);
        common::promtool::assert_metrics_pass(&promtool, &cluster_page);
    }
}
