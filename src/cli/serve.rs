//! `pipeline serve`: the HTTP server for HPA and KEDA, from its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::args::{GuardrailArgs, ModelArgs, StoreArgs};
use super::exit;
use crate::serving::listener::Limits;
use crate::serving::server::{self, Config};
use crate::serving::tls::Tls;

#[derive(clap::Args, Debug)]
#[command(after_help = "Security: the server binds 127.0.0.1 by default. On any other address it refuses to start without \
a token (--token or PIPELINE_SERVE_TOKEN; generate one with `openssl rand -hex 32`) unless --insecure says the network \
around it is trusted. Give two tokens, comma-separated, while a Secret is rotated: both are accepted.")]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Require `Authorization: Bearer TOKEN` (not on /healthz and /readyz); TOKEN,OLD accepts
    /// either of two while a Secret is rotated. At least 16 characters each.
    #[arg(long, env = "PIPELINE_SERVE_TOKEN", hide_env_values = true, value_name = "TOKEN[,TOKEN]")]
    pub token: Option<String>,
    /// Serve without a token on an address other than loopback (a network you trust, e.g.
    /// behind a NetworkPolicy that admits only KEDA and Prometheus).
    #[arg(long)]
    pub insecure: bool,
    /// Terminate TLS with this PEM certificate chain (with --tls-key); both files are read
    /// again when they change, so a renewed certificate serves without a restart.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub guardrails: GuardrailArgs,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most services kept in memory: a new one past it takes the place of the service whose
    /// last row is oldest (which starts over, counters included, if it comes back).
    #[arg(long, default_value_t = crate::serving::predictor::MAX_SERVICES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_services: usize,
    /// Refuse rows stamped further than this ahead of this machine's clock (5m, 300s; `off` to
    /// accept any), so one row from the future cannot stall its service.
    #[arg(long, value_name = "DURATION|off", default_value = "5m", value_parser = skew)]
    pub max_clock_skew: ClockSkew,
    /// How often to look for a newly promoted version (2, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = super::parse_seconds)]
    pub reload_every: f64,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Take every service's row from this Prometheus each --every seconds, with `pipeline
    /// collect`'s queries, so /scale/{service} and /metrics work with nothing posting rows.
    #[arg(long, value_name = "URL", env = "PIPELINE_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// The queries, services and time zone for --prometheus [default: the built-in
    /// pipelines/collect.yaml].
    #[arg(long, value_name = "FILE", requires = "prometheus")]
    pub collect_config: Option<PathBuf>,
    /// Time between rows taken from --prometheus (30, 30s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::parse_seconds)]
    pub every: f64,
    /// /scale/{service} answers 503 with the current replicas (KEDA's fallback) when the
    /// service's last decision is older than this (120, 2m).
    #[arg(long, value_name = "DURATION", default_value = "120", value_parser = super::parse_seconds)]
    pub max_decision_age: f64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// How long a client may take and how many may be served at once.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Time a client has to send a request's headers (and to finish a TLS handshake); a
    /// keep-alive connection idle this long is closed too.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_seconds)]
    pub header_timeout: f64,
    /// Time to answer one request, reading its body included (408 past it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::parse_seconds)]
    pub request_timeout: f64,
    /// Open connections at once; past it new ones wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Requests answered at once; the others wait within their --request-timeout (503 past it).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_in_flight: usize,
    /// A keep-alive connection is closed after its request in flight once it is this old, so
    /// clients spread over the server's replicas again.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::parse_seconds)]
    pub max_connection_age: f64,
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Limits {
        let d = Duration::from_secs_f64;
        Limits {
            header_timeout: d(a.header_timeout),
            request_timeout: d(a.request_timeout),
            max_connections: a.max_connections,
            max_in_flight: a.max_in_flight,
            max_connection_age: d(a.max_connection_age),
        }
    }
}

/// `--max-clock-skew`: seconds, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSkew(pub Option<f64>);

fn skew(text: &str) -> Result<ClockSkew, String> {
    if text.trim().eq_ignore_ascii_case("off") { Ok(ClockSkew(None)) } else { super::parse_seconds(text).map(|s| ClockSkew(Some(s))) }
}

/// Shortest token accepted: a guessable one is no protection, and the manifests' placeholder
/// (`change-me`) must not serve.
const MIN_TOKEN: usize = 16;

/// `--token`: one token, or two comma-separated while a Secret is rotated.
fn tokens(value: Option<&str>) -> Result<Vec<String>> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let tokens: Vec<String> = value.split(',').map(|t| t.trim().to_string()).collect();
    if tokens.iter().any(String::is_empty) || tokens.len() > 2 {
        return Err(super::usage_error(
            "serve",
            "--token",
            "expected TOKEN or NEW,OLD (two at most, none empty); an empty PIPELINE_SERVE_TOKEN is not a token",
        ));
    }
    if let Some(short) = tokens.iter().find(|t| t.chars().count() < MIN_TOKEN) {
        return Err(super::usage_error(
            "serve",
            "--token",
            format!("a token of {} characters is too short (at least {MIN_TOKEN}); generate one with `openssl rand -hex 32`", short.chars().count()),
        ));
    }
    Ok(tokens)
}

pub async fn serve(a: ServeArgs) -> Result<u8> {
    let guardrails = a.guardrails.check("serve")?;
    let tokens = tokens(a.token.as_deref())?;
    if tokens.is_empty() && !a.addr.ip().is_loopback() && !a.insecure {
        return Err(super::usage_error(
            "serve",
            "--addr",
            format!(
                "{} is reachable from other machines and no token is set: give --token (or PIPELINE_SERVE_TOKEN), or --insecure if the network around the server is trusted",
                a.addr
            ),
        ));
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key).map_err(|e| super::usage_error("serve", "--tls-cert", format!("{e:#}")))?),
        _ => None,
    };
    let store = a.store.open()?;
    let cfg = Config {
        addr: a.addr,
        model: a.model.model,
        registry: a.model.registry.dir,
        tokens,
        guardrails,
        max_body_bytes: a.max_body_bytes,
        max_services: a.max_services,
        // Looking more often than every 50 ms would only burn CPU on stat calls.
        reload_every: Duration::from_secs_f64(a.reload_every.max(0.05)),
        store,
        max_decision_age: Duration::from_secs_f64(a.max_decision_age),
        max_clock_skew: a.max_clock_skew.0.map(Duration::from_secs_f64),
        limits: a.limits.into(),
        tls,
    };
    let pull = match &a.prometheus {
        Some(url) => {
            let config = crate::collect::config::Config::load(a.collect_config.as_deref())?;
            let prometheus = crate::collect::prometheus::Prometheus::new(url, Duration::from_secs(10))
                .map_err(|e| super::usage_error("serve", "--prometheus", e.to_string()))?;
            Some(server::Pull { collector: crate::collect::Collector::new(config, prometheus), every: Duration::from_secs_f64(a.every) })
        }
        None => None,
    };
    server::serve(cfg, pull).await.map(|_| exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_or_two_and_long_enough() {
        assert_eq!(tokens(None).unwrap(), Vec::<String>::new());
        assert_eq!(tokens(Some("0123456789abcdef")).unwrap(), ["0123456789abcdef"]);
        assert_eq!(tokens(Some("0123456789abcdef, fedcba9876543210")).unwrap(), ["0123456789abcdef", "fedcba9876543210"]);
        for bad in ["", "change-me", "0123456789abcdef,", "a123456789abcdef,b123456789abcdef,c123456789abcdef"] {
            assert!(tokens(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_clock_skew_can_be_turned_off() {
        assert_eq!(skew("5m"), Ok(ClockSkew(Some(300.0))));
        assert_eq!(skew("off"), Ok(ClockSkew(None)));
        assert!(skew("soon").is_err());
    }
}
