//! The Prometheus HTTP API: instant queries (`/api/v1/query`) and range queries
//! (`/api/v1/query_range`), answered as series of labels and values.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// Why a query has no answer. `Unreachable` is the server's state (the row is skipped and the
/// loop goes on); `Rejected` is the query's fault (a mistake in collect.yaml).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {url} did not answer: {message}")]
    Unreachable { url: String, message: String },
    #[error("Prometheus rejected the query ({kind}: {message}): {query}")]
    Rejected { kind: String, message: String, query: String },
}

/// The largest answer read from Prometheus. A column's query returns one series, a backfill
/// a day of them at 30 s (2,880 samples, ~100 KiB); an answer past this is a query selecting
/// thousands of series, and reading it whole would hold them all in memory.
const MAX_ANSWER: usize = 32 << 20;

/// One series: its labels and its samples (seconds since the epoch, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: Url,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl Prometheus {
    /// `http://host:9090` (a path prefix such as `/prometheus` is kept).
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Prometheus> {
        let mut base = Url::parse(url).map_err(|e| anyhow::anyhow!("--prometheus `{url}` is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("--prometheus `{url}` must be an http:// or https:// URL");
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Prometheus { http, base })
    }

    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The query's value at `at` (seconds since the epoch).
    pub async fn query(&self, query: &str, at: f64) -> Result<Vec<Series>, QueryError> {
        self.get("api/v1/query", query, &[("time", format!("{at:.3}"))]).await
    }

    /// The query's values from `start` to `end` (inclusive) every `step` seconds.
    pub async fn query_range(&self, query: &str, start: f64, end: f64, step: f64) -> Result<Vec<Series>, QueryError> {
        self.get("api/v1/query_range", query, &[("start", format!("{start:.3}")), ("end", format!("{end:.3}")), ("step", format!("{step}"))]).await
    }

    async fn get(&self, path: &str, query: &str, params: &[(&str, String)]) -> Result<Vec<Series>, QueryError> {
        let unreachable = |message: String| QueryError::Unreachable { url: self.url().to_string(), message };
        let mut url = self.base.join(path).map_err(|e| unreachable(e.to_string()))?;
        url.query_pairs_mut().append_pair("query", query).extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut response = self.http.get(url).send().await.map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let too_large = || QueryError::Rejected {
            kind: "too_large".into(),
            message: format!(
                "the answer is over {} MiB: the query selects far more series than a column needs (aggregate it with sum or max)",
                MAX_ANSWER >> 20
            ),
            query: query.to_string(),
        };
        if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // Prometheus answers a bad query with 400/422 and a JSON error; anything else that is
        // not JSON (a proxy's 502, a restart's 503) is the server being away.
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(_) => return Err(unreachable(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]).trim()))),
        };
        if answer.status != "success" {
            let kind = answer.error_type.unwrap_or_else(|| "error".into());
            let message = answer.error.unwrap_or_default();
            return Err(if matches!(kind.as_str(), "bad_data" | "execution") {
                QueryError::Rejected { kind, message, query: query.to_string() }
            } else {
                unreachable(format!("{kind}: {message}"))
            });
        }
        let data = answer.data.ok_or_else(|| unreachable("an answer without data".into()))?;
        parse_result(&data.result_type, data.result).map_err(|m| unreachable(format!("unexpected answer: {m}")))
    }
}

fn parse_result(kind: &str, result: serde_json::Value) -> Result<Vec<Series>, String> {
    let value = |(t, v): (f64, String)| -> (f64, f64) { (t, parse_sample(&v)) };
    match kind {
        "vector" | "matrix" => {
            let raw: Vec<RawSeries> = serde_json::from_value(result).map_err(|e| e.to_string())?;
            Ok(raw
                .into_iter()
                .map(|s| {
                    let samples = match s.value {
                        Some(v) => vec![value(v)],
                        None => s.values.into_iter().map(value).collect(),
                    };
                    Series { labels: s.metric, samples }
                })
                .collect())
        }
        "scalar" => {
            let v: (f64, String) = serde_json::from_value(result).map_err(|e| e.to_string())?;
            Ok(vec![Series { labels: BTreeMap::new(), samples: vec![value(v)] }])
        }
        other => Err(format!("result type `{other}`")),
    }
}

/// Prometheus writes values as strings: `"1.5"`, `"NaN"`, `"+Inf"`.
fn parse_sample(v: &str) -> f64 {
    v.parse().unwrap_or(f64::NAN)
}

/// reqwest's Display names only the outer error ("error sending request"); the cause is what
/// tells the user something (connection refused, timed out).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_matrices_and_scalars() {
        let v = parse_result("vector", serde_json::json!([{"metric": {"pod": "a"}, "value": [10.5, "NaN"]}])).unwrap();
        assert_eq!(v[0].labels["pod"], "a");
        assert!(v[0].samples[0].1.is_nan());
        let m = parse_result("matrix", serde_json::json!([{"metric": {}, "values": [[1, "1"], [2, "+Inf"]]}])).unwrap();
        assert_eq!(m[0].samples, vec![(1.0, 1.0), (2.0, f64::INFINITY)]);
        let s = parse_result("scalar", serde_json::json!([3, "4.25"])).unwrap();
        assert_eq!(s[0].samples, vec![(3.0, 4.25)]);
        assert!(parse_result("string", serde_json::json!([3, "x"])).is_err());
    }

    #[tokio::test]
    async fn an_answer_too_large_to_hold_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"status\":", 64 << 20).as_bytes())
                    .await;
            }
        });
        let p = Prometheus::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        let e = p.query("up", 0.0).await.unwrap_err();
        assert!(matches!(&e, QueryError::Rejected { kind, .. } if kind == "too_large"), "{e}");
        assert!(e.to_string().contains("over 32 MiB"), "{e}");
    }

    #[test]
    fn urls_are_checked() {
        assert!(Prometheus::new("localhost:9090", Duration::from_secs(1)).is_err());
        let p = Prometheus::new("http://prom:9090/prometheus", Duration::from_secs(1)).unwrap();
        assert_eq!(p.url(), "http://prom:9090/prometheus");
    }
}
