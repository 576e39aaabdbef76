//! Flag groups that more than one command takes, declared once so that `--store`, `--registry`
//! or a duration read and mean the same everywhere.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::dag::{Pipeline, spec};
use crate::invalid::InvalidInput;
use crate::models::ModelKind;
use crate::serving::predictor::Guardrails;
use crate::store::Store;

/// Which pipeline, with which param overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file [default: pipelines/train.yaml].
    #[arg(value_name = "PIPELINE")]
    pub file: Option<PathBuf>,
    /// The pipeline file, as an option.
    #[arg(long = "pipeline", short = 'p', value_name = "PIPELINE", conflicts_with = "file")]
    pub flag: Option<PathBuf>,
    /// Override a pipeline param, e.g. --set date=2024-10 (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = spec::parse_override)]
    pub set: Vec<(String, serde_json::Value)>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run the SQL stages on a Ballista cluster: ballista://HOST:PORT (a `pipeline scheduler`),
    /// ballista:standalone (one inside this process), or local (overrides the file's `engine:`).
    #[arg(long, value_name = "URL", env = "PIPELINE_ENGINE")]
    pub engine: Option<String>,
}

impl PipelineArgs {
    pub fn path(&self) -> PathBuf {
        self.file.clone().or_else(|| self.flag.clone()).unwrap_or_else(|| PathBuf::from("pipelines/train.yaml"))
    }

    pub fn load(&self) -> Result<Arc<Pipeline>> {
        let mut p = spec::load(&self.path(), &self.set)?;
        if let Some(url) = &self.store.url {
            check_store_url(url)?;
            p.store = Some(url.clone());
        }
        if let Some(engine) = &self.engine {
            p.engine = crate::engine::Engine::parse_supported(engine).map_err(|m| InvalidInput::global_flag("--engine", m))?;
        }
        Ok(Arc::new(p))
    }
}

/// The shared store (`s3://bucket/prefix`; credentials and endpoint from the AWS_* variables).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Share through this store (s3://bucket/prefix; credentials and endpoint from the AWS_*
    /// variables): a run's cache and artifacts, the registry `serve` follows and `models`
    /// changes. Overrides a pipeline file's `store:`.
    #[arg(long = "store", value_name = "URL", env = "PIPELINE_STORE", global = true)]
    pub url: Option<String>,
}

impl StoreArgs {
    /// The store, if one is given; a malformed URL is a usage error (exit 2).
    pub fn open(&self) -> Result<Option<Store>> {
        open_store(self.url.as_deref())
    }
}

/// A `--store` URL, if given; a malformed one is a usage error (exit 2).
pub fn open_store(url: Option<&str>) -> Result<Option<Store>> {
    let Some(url) = url else { return Ok(None) };
    check_store_url(url)?;
    Ok(Some(Store::open(url)?))
}

fn check_store_url(url: &str) -> Result<(), InvalidInput> {
    crate::store::check_url(url).map_err(|e| InvalidInput::global_flag("--store", e.to_string()))
}

/// The model registry folder.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// The model registry folder.
    #[arg(long = "registry", default_value = "artifacts/models", value_name = "DIR", global = true)]
    pub dir: PathBuf,
}

/// Which promoted model decides, from which registry (`serve` and `predict`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Which promoted model decides.
    #[arg(long, value_enum, default_value_t = ModelKind::RandomForest)]
    pub model: ModelKind,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Judge each forecast, once its window has passed, against the demand that came (the pods
    /// that would have held the CPU of the pods serving at the HPA's target), weighing the
    /// forecasts of the last this many seconds per service; a service whose forecasts drift
    /// gets the reactive HPA (docs/serving.md). 0: never fall back (the errors are still
    /// judged and exported).
    #[arg(long, default_value_t = 1800.0, value_name = "SECONDS")]
    pub drift_window_seconds: f64,
    /// A service whose judged forecasts fell short by a pod or more more often than this share
    /// (of at least 20) gets the reactive HPA's decisions (`forecast_drift`) instead.
    #[arg(long, default_value_t = 0.75, value_name = "SHARE")]
    pub drift_max_short_share: f64,
    /// The same when they missed by more than this many pods on average, either way.
    #[arg(long, default_value_t = 2.0, value_name = "PODS")]
    pub drift_max_error_pods: f64,
    /// Its forecasts decide again after this many seconds back within both bounds.
    #[arg(long, default_value_t = 900.0, value_name = "SECONDS")]
    pub drift_recover_seconds: f64,
    /// A service the served forest was not trained on gets the version's pooled forest once
    /// the server has fitted what one of its pods serves on this many minutes of its rows (the
    /// reactive HPA decides until then, `warming_up`). 30: on the bundled week the fit after 30
    /// minutes was within 6 % of the whole week's for 9 starting points in 10.
    #[arg(long, default_value_t = crate::serving::capacity::DEFAULT_MIN_MINUTES, value_name = "MINUTES")]
    pub capacity_min_minutes: f64,
}

impl GuardrailArgs {
    /// The guardrails, checked against each other (a usage error of `command` if they clash).
    pub fn check(self, command: &str) -> Result<Guardrails> {
        let g = Guardrails {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            max_step: self.max_step,
            hpa_target: self.hpa_target,
            stabilization_seconds: self.stabilization_seconds,
            drift: crate::serving::drift::DriftBounds {
                window_seconds: self.drift_window_seconds,
                max_short_share: self.drift_max_short_share,
                max_error_pods: self.drift_max_error_pods,
                recover_seconds: self.drift_recover_seconds,
                ..Default::default()
            },
            capacity_min_minutes: self.capacity_min_minutes,
        };
        g.check().map_err(|(flags, why)| usage_error(command, flags, why))?;
        Ok(g)
    }
}

/// How log events are written on stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Short lines for people.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// A flag of `pipeline COMMAND` with a value that cannot work: a usage error (exit 2).
pub fn usage_error(command: &str, flag: &str, message: impl Into<String>) -> anyhow::Error {
    InvalidInput::flag(command, flag, message).into()
}

/// The longest duration a flag takes: past it a value is a typo, and every value up to it
/// is a valid `std::time::Duration` (`Duration::from_secs_f64` panics past u64 seconds).
pub const MAX_SECONDS: f64 = 366.0 * 86_400.0;

/// A duration as people write it on a command line: `30`, `30s`, `2m`, `1h` (seconds out),
/// more than 0 and at most a year.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        _ => (t, 1.0),
    };
    match number.trim().parse::<f64>().map(|v| v * scale) {
        Ok(v) if v > 0.0 && v <= MAX_SECONDS => Ok(v),
        Ok(v) if v > MAX_SECONDS => Err(format!("`{text}` is longer than a year: write e.g. 30, 30s, 5m or 1h")),
        _ => Err(format!("`{text}` is not a duration: write e.g. 30, 30s, 5m or 1h")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(super::parse_seconds("30"), Ok(30.0));
        assert_eq!(super::parse_seconds("30s"), Ok(30.0));
        assert_eq!(super::parse_seconds("0.5"), Ok(0.5));
        assert_eq!(super::parse_seconds("5m"), Ok(300.0));
        assert_eq!(super::parse_seconds("1h"), Ok(3600.0));
        assert!(super::parse_seconds("0").is_err());
        // Nothing that would overflow a Duration gets through.
        for huge in ["1e308h", "inf", "NaN", "1e300", "400d", "9999999999h"] {
            assert!(super::parse_seconds(huge).is_err(), "{huge}");
        }
        assert_eq!(super::parse_seconds("8784h"), Ok(366.0 * 86_400.0));
        assert!(super::parse_seconds("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn a_malformed_store_is_a_usage_error() {
        let e = super::open_store(Some("ftp://nowhere")).unwrap_err();
        assert_eq!(crate::cli::exit::code_for(&e), crate::cli::exit::INVALID, "{e}");
        assert!(e.to_string().starts_with("pipeline --store: "), "{e}");
    }
}
