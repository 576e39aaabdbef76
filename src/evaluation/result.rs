//! What an evaluation finds, as `evaluation.json` holds it: every model's scores on the
//! common hold-out and its replay, for the report and for publish.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::replay;
use super::replay::frontier::{Frontier, Margin, Saving};
use super::{HoldoutScores, ServiceReplay};
use crate::models::scores::Scores;

/// What the pipeline says about one model's training, worked out when the pipeline is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub stage: String,
    pub split: String,
    pub label_rule: String,
    /// Trained on a temporal split with the hold-out's cut: its hold-out rows are unseen.
    pub honest: bool,
}

/// One model in `evaluation.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEvaluation {
    #[serde(flatten)]
    pub info: ModelInfo,
    pub kind: crate::models::ModelKind,
    /// The model's score on its own split, as the old system reported it.
    pub own_split: Option<Scores>,
    pub holdout: HoldoutScores,
    pub training_seconds: Option<f64>,
    pub single_prediction_us: Option<f64>,
    /// Its predictions used as the replica count, as the old system did.
    pub replay: replay::Score,
    /// Its predictions as a floor under the reactive HPA (the policy `<stage>+hpa`).
    #[serde(default)]
    pub proactive_replay: replay::Score,
}

/// Everything the report needs, written as `evaluation.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub holdout_stage: String,
    pub holdout_label_rule: String,
    pub rows: usize,
    pub services: usize,
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    pub models: Vec<ModelEvaluation>,
    pub replay_params: replay::Params,
    /// Totals per policy: `recorded`, `hpa`, the baselines, then each model by stage name
    /// (as predicted) and `<stage>+hpa` (proactive).
    pub replay: BTreeMap<String, replay::Score>,
    /// The reactive HPA at each target of `replay_params.frontier_targets`.
    #[serde(default)]
    pub frontier: Frontier,
    /// Each policy against the frontier at its own pod-hours.
    #[serde(default)]
    pub margins: BTreeMap<String, Margin>,
    /// Each policy against the frontier at its own under-provisioned minutes (the cost axis).
    #[serde(default)]
    pub savings: BTreeMap<String, Saving>,
    /// The HPA target each forecasting policy ran with (the one furthest below the frontier;
    /// none: the forecast alone).
    #[serde(default)]
    pub hpa_targets: BTreeMap<String, Option<f64>>,
    pub replay_services: Vec<ServiceReplay>,
    /// The service with the most load: the one `replay.png` shows.
    pub busy_service: Option<String>,
    /// Per label rule, the model whose proactive policy lies furthest below the frontier.
    pub best_by_label_rule: BTreeMap<String, String>,
    /// Per model stage: its risk family (`evaluation::risk`), each level's cost, health and
    /// observed exceedance on the hold-out.
    #[serde(default)]
    pub risk: BTreeMap<String, Vec<super::risk::Scored>>,
    pub notes: Vec<String>,
}

pub const EVALUATION: &str = "evaluation.json";
