//! Who decides the simulated services' replicas: the simulator's own reactive HPA at a target,
//! or a running decision server (`pipeline serve`, or anything answering its batch API), asked
//! once per step with every service's row.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A `--scaler` value: `hpa`, `hpa:TARGET` or `http(s)://HOST:PORT`.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalerSpec {
    /// The internal reactive HPA; `None` keeps each service's own target (60 %).
    Hpa(Option<f64>),
    /// A server's `POST /predict/batch`.
    Server(String),
    /// The forecast that knew the future exactly: the limit of any forecast (`oracle`).
    Oracle,
}

impl Default for ScalerSpec {
    fn default() -> ScalerSpec {
        ScalerSpec::Hpa(None)
    }
}

impl FromStr for ScalerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ScalerSpec, String> {
        if s == "hpa" {
            return Ok(ScalerSpec::Hpa(None));
        }
        if s == "oracle" {
            return Ok(ScalerSpec::Oracle);
        }
        if let Some(t) = s.strip_prefix("hpa:") {
            let target: f64 = t.trim_end_matches('%').parse().map_err(|_| format!("`{s}`: the HPA target is a CPU %, e.g. hpa:60"))?;
            if !(1.0..=100.0).contains(&target) {
                return Err(format!("`{s}`: the HPA target must be within 1..100 (% of the CPU request)"));
            }
            return Ok(ScalerSpec::Hpa(Some(target)));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(ScalerSpec::Server(s.trim_end_matches('/').to_string()));
        }
        Err(format!("`{s}`: expected `hpa`, `hpa:TARGET` (e.g. hpa:60), `oracle` or a server's URL (http://127.0.0.1:8080)"))
    }
}

impl fmt::Display for ScalerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalerSpec::Hpa(None) => write!(f, "hpa"),
            ScalerSpec::Hpa(Some(t)) => write!(f, "hpa:{t}"),
            ScalerSpec::Server(url) => write!(f, "{url}"),
            ScalerSpec::Oracle => write!(f, "oracle"),
        }
    }
}

/// One service's answer for the next step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// Replicas asked for; `None` when the server gave no decision (the replicas stay).
    pub replicas: Option<u32>,
    /// The server fell back (its reasoning says so), or gave no decision at all.
    pub fallback: bool,
}

/// A decision server asked over HTTP. Blocking calls on the caller's tokio runtime: the
/// simulation steps in order, one batch per step, like a controller's sync loop.
pub struct Server {
    url: String,
    ready_url: String,
    token: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Steps whose batch failed as a whole (unreachable, 5xx, not JSON).
    pub failed_batches: u64,
    last_error: Option<String>,
}

impl Server {
    pub fn new(url: &str, token: Option<String>, runtime: tokio::runtime::Handle) -> Result<Server> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().context("building the HTTP client")?;
        Ok(Server { url: format!("{url}/predict/batch"), ready_url: format!("{url}/readyz"), token, client, runtime, failed_batches: 0, last_error: None })
    }

    /// Waits until the server answers its readiness probe, so a simulation started right after
    /// `pipeline serve` does not begin with fallbacks.
    pub fn wait_ready(&self, within: Duration) -> Result<()> {
        let url = &self.ready_url;
        let t0 = std::time::Instant::now();
        loop {
            let ok = self.runtime.block_on(async { self.client.get(url).send().await.is_ok_and(|r| r.status().is_success()) });
            if ok {
                return Ok(());
            }
            if t0.elapsed() > within {
                bail!("{url} did not answer ready within {} s: is `pipeline serve` running there?", within.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's decision for each row, in order.
    pub fn decide(&mut self, rows: &[serde_json::Value]) -> Vec<Answer> {
        match self.post(rows) {
            Ok(answers) => answers,
            Err(e) => {
                let e = format!("{e:#}");
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("the scaler at {} gave no decisions: {e}; replicas stay until it answers", self.url);
                    self.last_error = Some(e);
                }
                self.failed_batches += 1;
                vec![Answer { replicas: None, fallback: true }; rows.len()]
            }
        }
    }

    fn post(&mut self, rows: &[serde_json::Value]) -> Result<Vec<Answer>> {
        let body: serde_json::Value = self.runtime.block_on(async {
            let body = serde_json::to_vec(rows)?;
            let mut req = self.client.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("HTTP {status}: {}", resp.text().await.unwrap_or_default().chars().take(300).collect::<String>());
            }
            Ok(serde_json::from_slice(&resp.bytes().await?)?)
        })?;
        let items = body.as_array().context("the answer is not a JSON array")?;
        if items.len() != rows.len() {
            bail!("{} decisions for {} rows", items.len(), rows.len());
        }
        // A row the server refused comes back as `{"error": ...}`: said once, counted as a fallback.
        if let Some(e) = items.iter().find_map(|d| d["error"].as_str())
            && self.last_error.as_deref() != Some(e)
        {
            tracing::warn!("the scaler at {} refused a row: {e}", self.url);
            self.last_error = Some(e.to_string());
        }
        Ok(items
            .iter()
            .map(|d| {
                // 3 or 3.0: a whole number of replicas either way.
                let replicas = d["predicted_replicas"].as_f64().filter(|r| r.is_finite() && *r >= 0.0).map(|r| r.round().min(u32::MAX as f64) as u32);
                let fallback = replicas.is_none() || d["reasoning"].as_str().is_some_and(|r| r.starts_with("fallback"));
                Answer { replicas, fallback }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_values_parse_or_say_what_is_expected() {
        assert_eq!("hpa".parse(), Ok(ScalerSpec::Hpa(None)));
        assert_eq!("hpa:65".parse(), Ok(ScalerSpec::Hpa(Some(65.0))));
        assert_eq!("hpa:70%".parse(), Ok(ScalerSpec::Hpa(Some(70.0))));
        assert_eq!("http://127.0.0.1:8080/".parse(), Ok(ScalerSpec::Server("http://127.0.0.1:8080".into())));
        assert!("hpa:0".parse::<ScalerSpec>().unwrap_err().contains("within 1..100"));
        assert!("hpa:high".parse::<ScalerSpec>().unwrap_err().contains("e.g. hpa:60"));
        assert!("keda".parse::<ScalerSpec>().unwrap_err().contains("a server's URL"));
        assert_eq!(ScalerSpec::Hpa(Some(65.0)).to_string(), "hpa:65");
    }
}
