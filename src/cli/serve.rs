//! `pipeline serve`: the HTTP server for HPA and KEDA, from its flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use super::exit;
use crate::serving::predictor::Guardrails;
use crate::serving::server::{self, Config};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Require `Authorization: Bearer TOKEN` (not on /healthz and /readyz).
    #[arg(long, env = "PIPELINE_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub guardrails: GuardrailArgs,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most distinct services kept in memory.
    #[arg(long, default_value_t = 10_000)]
    pub max_services: usize,
    /// How often to look for a newly promoted version, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub reload_every: f64,
    /// Follow the registry of this shared store (s3://bucket/prefix; credentials from the
    /// AWS_* variables): fetched at start and every 10 s into --registry.
    #[arg(long, value_name = "URL", env = "PIPELINE_STORE")]
    pub store: Option<String>,
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
    /// service's last decision is older than this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub max_decision_age: f64,
}

/// Which promoted model decides, from which registry (`serve` and `predict`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Which promoted model decides.
    #[arg(long, default_value = "random_forest", value_parser = ["random_forest", "lstm_cnn"])]
    pub model: String,
    /// The model registry folder.
    #[arg(long, default_value = "artifacts/models", value_name = "DIR")]
    pub registry: PathBuf,
}

/// The limits every decision is kept within (`serve` and `predict`).
#[derive(clap::Args, Debug, Clone)]
pub struct GuardrailArgs {
    /// Fewest replicas a decision may recommend.
    #[arg(long, default_value_t = 1)]
    pub min_replicas: u32,
    /// Most replicas a decision may recommend.
    #[arg(long, default_value_t = 10)]
    pub max_replicas: u32,
    /// Most replicas one decision may add or remove.
    #[arg(long, default_value_t = 2)]
    pub max_step: u32,
    /// Target CPU % of the reactive HPA that decides when no model does (no promoted version,
    /// an unknown service, a model warming up); a promoted version brings its own.
    #[arg(long, default_value_t = 60.0)]
    pub hpa_target: f64,
    /// Hold each decision this many seconds against a lower one (scale-down stabilisation).
    /// Leave it at 0 when an HPA acts on the decisions (KEDA's does, 300 s by default), as the
    /// replay that chose the policy held once; set it when your client applies decisions as
    /// they come.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub stabilization_seconds: f64,
}

impl From<GuardrailArgs> for Guardrails {
    fn from(g: GuardrailArgs) -> Guardrails {
        Guardrails { min_replicas: g.min_replicas, max_replicas: g.max_replicas, max_step: g.max_step, hpa_target: g.hpa_target, stabilization_seconds: g.stabilization_seconds }
    }
}

pub async fn serve(a: ServeArgs) -> Result<u8> {
    let store = super::open_store(a.store.as_deref())?;
    let cfg = Config {
        addr: a.addr,
        model: a.model.model,
        registry: a.model.registry,
        token: a.token,
        guardrails: a.guardrails.into(),
        max_body_bytes: a.max_body_bytes,
        max_services: a.max_services,
        // Looking more often than every 50 ms would only burn CPU on stat calls.
        reload_every: std::time::Duration::from_secs_f64(a.reload_every.max(0.05)),
        store,
        max_decision_age: std::time::Duration::from_secs_f64(a.max_decision_age.max(0.0)),
    };
    let pull = match &a.prometheus {
        Some(url) => {
            let config = crate::collect::config::Config::load(a.collect_config.as_deref())?;
            let prometheus = crate::collect::prometheus::Prometheus::new(url, std::time::Duration::from_secs(10)).map_err(|e| super::usage_error("serve", "--prometheus", e.to_string()))?;
            Some(server::Pull { collector: crate::collect::Collector::new(config, prometheus), every: std::time::Duration::from_secs_f64(a.every) })
        }
        None => None,
    };
    server::serve(cfg, pull).await.map(|_| exit::SUCCESS)
}
