//! The server under test, seen only through the contract's HTTP endpoints: dev tokens, the
//! admin catalog, inventory counts and `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The partner every scenario creates, and the account its tweets come from.
pub const PARTNER_ID: &str = "loadtest";
pub const PARTNER_ACCOUNT: &str = "lt_brand";
/// The canonical URL of the fan-out product; partner tweets link it.
pub const FANOUT_PRODUCT_URL: &str = "https://loadtest.example/p/fanout";

/// A buyline server at `http://HOST:PORT`.
#[derive(Clone)]
pub struct Target {
    /// `http://HOST:PORT`, no trailing slash.
    pub base: String,
    /// `HOST:PORT`.
    pub authority: String,
    pub http: reqwest::Client,
}

impl Target {
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        let authority = base
            .strip_prefix("http://")
            .context("--target must be http://HOST:PORT")?
            .to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            authority,
            http,
        })
    }

    /// `ws://HOST:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.authority)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.http.get(format!("{}/readyz", self.base)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(r) => bail!("{} /readyz answered {}", self.base, r.status()),
                Err(e) => bail!("{} is not reachable: {e}", self.base),
            }
        }
    }

    /// A token for `role` (`customer`, `partner`, `admin`, `ingest`) and subject `id`, from the
    /// demo-mode endpoint.
    pub async fn token(&self, role: &str, id: &str) -> Result<String> {
        let reply = self
            .http
            .post(format!("{}/v1/dev/tokens", self.base))
            .body(json!({ role: id }).to_string())
            .header("content-type", "application/json")
            .send()
            .await
            .context("POST /v1/dev/tokens")?;
        let status = reply.status();
        let body: Value = serde_json::from_slice(&reply.bytes().await?).unwrap_or(Value::Null);
        match body.get("token").and_then(Value::as_str) {
            Some(token) if status.is_success() => Ok(token.to_string()),
            _ => bail!(
                "POST /v1/dev/tokens answered {status} {body}: is the server in demo mode (--demo, loopback)?"
            ),
        }
    }

    /// Tokens for `n` customers `{prefix}{i}`, 64 requests at a time.
    pub async fn customer_tokens(&self, prefix: &str, n: usize) -> Result<Vec<String>> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(0..n)
            .map(|i| {
                let target = self.clone();
                let id = format!("{prefix}{i}");
                async move { target.token("customer", &id).await }
            })
            .buffered(64)
            .try_collect()
            .await
    }

    async fn admin(
        &self,
        admin: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(admin);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let reply = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = reply.status();
        let body: Value = serde_json::from_slice(&reply.bytes().await?).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// Creates (or updates) the load-test partner.
    pub async fn put_partner(&self, admin: &str) -> Result<()> {
        let partner = json!({
            "id": PARTNER_ID, "name": "Load test", "accounts": [PARTNER_ACCOUNT],
            "platform": "direct", "kind": "brand"
        });
        self.admin(
            admin,
            reqwest::Method::PUT,
            &format!("/v1/admin/partners/{PARTNER_ID}"),
            Some(partner),
        )
        .await
        .map(|_| ())
    }

    /// Opens product `id` of the load-test partner with `stock` units.
    pub async fn put_product(
        &self,
        admin: &str,
        id: &str,
        url: &str,
        stock: u64,
        limit: u64,
    ) -> Result<()> {
        let product = json!({
            "id": id, "partner": PARTNER_ID, "title": "Load-test limited edition",
            "description": "Made by the load tester.", "image": "https://loadtest.example/p.png",
            "price": {"amount": 3500, "currency": "usd"}, "urls": [url],
            "limited_edition": true, "stock": stock, "per_customer_limit": limit,
            "hold_seconds": 3600
        });
        self.admin(
            admin,
            reqwest::Method::PUT,
            &format!("/v1/admin/products/{id}"),
            Some(product),
        )
        .await
        .map(|_| ())
    }

    /// `(available, held, sold)` of a product, read together.
    pub async fn inventory(&self, admin: &str, id: &str) -> Result<(u64, u64, u64)> {
        let body = self
            .admin(
                admin,
                reqwest::Method::GET,
                &format!("/v1/admin/products/{id}/inventory"),
                None,
            )
            .await?;
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_u64)
                .with_context(|| format!("inventory reply without {name}: {body}"))
        };
        Ok((field("available")?, field("held")?, field("sold")?))
    }

    /// One scrape of `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }
}

/// A scrape of Prometheus text: sample name with labels (as written) to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: HashMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Self { samples }
    }

    /// The value of an exact sample (`name` or `name{label="v"}`).
    pub fn get(&self, sample: &str) -> Option<f64> {
        self.samples.get(sample).copied()
    }

    /// The sum of every sample of `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| *k == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }

    /// CPU seconds used by the server: the precise gauge, else the standard counter.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.get("buyline_process_cpu_seconds")
            .or_else(|| self.get("process_cpu_seconds_total"))
    }

    pub fn rss_bytes(&self) -> Option<f64> {
        self.get("process_resident_memory_bytes")
    }

    /// Several nodes' scrapes as one: each sample summed over the nodes (counters and histogram
    /// buckets add up, so a quantile of the sum is the cluster's).
    pub fn summed(scrapes: impl IntoIterator<Item = Metrics>) -> Metrics {
        let mut samples: HashMap<String, f64> = HashMap::new();
        for scrape in scrapes {
            for (name, value) in scrape.samples {
                *samples.entry(name).or_default() += value;
            }
        }
        Metrics { samples }
    }
}

/// The `q` quantile (upper bucket bound, seconds) of histogram `name` between two scrapes.
pub fn histogram_quantile(before: &Metrics, after: &Metrics, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, v - before.get(k).unwrap_or(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|(bound, _)| *bound)
}

/// Server CPU seconds between two scrapes (None if the server does not export it).
pub fn cpu_between(before: &Metrics, after: &Metrics) -> Option<f64> {
    Some(after.cpu_seconds()? - before.cpu_seconds()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE lat histogram\nlat_bucket{le=\"0.001\"} 10\nlat_bucket{le=\"0.01\"} 10\nlat_bucket{le=\"+Inf\"} 10\nprocess_cpu_seconds_total 3\nbuyline_process_cpu_seconds 3.25\n";
    const AFTER: &str = "lat_bucket{le=\"0.001\"} 60\nlat_bucket{le=\"0.01\"} 108\nlat_bucket{le=\"+Inf\"} 110\nprocess_cpu_seconds_total 5\nbuyline_process_cpu_seconds 5.5\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\n";

    #[test]
    fn quantiles_come_from_the_bucket_deltas() {
        let (before, after) = (Metrics::parse(BEFORE), Metrics::parse(AFTER));
        assert_eq!(histogram_quantile(&before, &after, "lat", 0.5), Some(0.001));
        assert_eq!(histogram_quantile(&before, &after, "lat", 0.9), Some(0.01));
        assert_eq!(
            histogram_quantile(&before, &after, "lat", 0.999),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn cpu_prefers_the_precise_gauge_and_sums_ignore_labels() {
        let (before, after) = (Metrics::parse(BEFORE), Metrics::parse(AFTER));
        assert_eq!(cpu_between(&before, &after), Some(2.25));
        assert_eq!(after.sum("x_total"), 5.0);
    }
}
