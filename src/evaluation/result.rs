//! What an evaluation finds, as `evaluation.json` holds it: every model's scores on the
//! common hold-out and its replay, for the report and for publish.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::replay;
use super::{HoldoutScores, ServiceReplay};
use crate::models::metrics::Scores;

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
    pub kind: String,
    /// The model's score on its own split, as the old system reported it.
    pub own_split: Option<Scores>,
    pub holdout: HoldoutScores,
    pub training_seconds: Option<f64>,
    pub single_prediction_us: Option<f64>,
    pub replay: replay::Score,
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
    /// Totals per policy: `recorded`, `hpa`, then each model by stage name.
    pub replay: BTreeMap<String, replay::Score>,
    pub replay_services: Vec<ServiceReplay>,
    /// The service with the most load: the one `replay.png` shows.
    pub busy_service: Option<String>,
    /// Per label rule, the model with the best replay (fewest under-provisioned minutes, then
    /// fewest surplus pod-hours).
    pub best_by_label_rule: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

pub const EVALUATION: &str = "evaluation.json";

