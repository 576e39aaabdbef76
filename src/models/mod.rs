//! Models: fitting, scoring, and the files a trained model is kept in.
//!
//! A trained model is a folder: `model.json` (kind, features in order, params, metrics,
//! lineage) and the weights (`forest.bin` for a Random Forest, `weights.safetensors` and
//! `scaler.json` for the LSTM-CNN). Loading checks the features a caller offers against the
//! ones the model was trained on.

pub mod dir;
mod forest_file;
pub mod kind;
pub mod lstm_cnn;
pub mod model;
pub mod pooled;
pub mod random_forest;
pub mod row_keys;
pub mod sample;
pub mod scores;
pub mod sequences;
pub mod table;
pub mod torch_runtime;
pub mod window_stream;

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::io::fs::write_atomic;
pub use dir::ModelDir;
pub use kind::ModelKind;
use random_forest::Forest;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    pub kind: ModelKind,
    pub format: u32,
    pub features: Vec<String>,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
    /// Cache keys of the stages the training data came from.
    pub lineage: serde_json::Value,
    pub trained_at: String,
    pub tool_version: String,
}

/// The one-hot service columns' prefix (the models' input layer's, see [`table::Table`], or a
/// SQL stage's `one_hot: { prefix: service_ }`), which tells a server and a prediction which
/// services a model knows.
pub const SERVICE_PREFIX: &str = "service_";

impl ModelMeta {
    /// Whether the model can forecast for `service` by name: it has that service's one-hot
    /// column, or none at all (then it takes any service).
    pub fn knows_service(&self, service: &str) -> bool {
        let mut one_hot = self.features.iter().filter_map(|f| f.strip_prefix(SERVICE_PREFIX)).peekable();
        one_hot.peek().is_none() || one_hot.any(|s| s == service)
    }

    /// Where each of the model's features is among `offered` (a table's features, in its
    /// column order): the model reads its own by name, so a table may hold more, in any order.
    /// Refused, saying which: features the table lacks, and a one-hot service column the model
    /// has none of (a service it was not trained on; its rows would look like no service).
    pub fn feature_columns(&self, offered: &[String]) -> Result<Vec<usize>> {
        let position = |f: &String| offered.iter().position(|o| o == f);
        let missing: Vec<&str> = self.features.iter().filter(|f| position(f).is_none()).map(String::as_str).collect();
        let knows_services = self.features.iter().any(|f| f.starts_with(SERVICE_PREFIX));
        let unknown: Vec<&str> =
            offered.iter().filter(|f| knows_services && f.starts_with(SERVICE_PREFIX) && !self.features.contains(f)).map(String::as_str).collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing {}", missing.join(", ")));
        }
        if !unknown.is_empty() {
            parts.push(format!("not known to the model {}", unknown.join(", ")));
        }
        if !parts.is_empty() {
            bail!("the input's features do not match the {} model's: {}", self.kind, parts.join("; "));
        }
        Ok(self.features.iter().filter_map(position).collect())
    }
}

pub fn save_forest(dir: &Path, meta: &ModelMeta, forest: &Forest) -> Result<()> {
    let files = ModelDir::new(dir);
    write_atomic(&files.forest(), &forest_file::to_bytes(forest)?)?;
    write_meta(&files, meta)
}

/// `model.json`, written last: a folder with it is a whole model.
pub fn write_meta(files: &ModelDir, meta: &ModelMeta) -> Result<()> {
    write_atomic(&files.meta(), &serde_json::to_vec_pretty(meta)?)
}

/// `model.json` of a model folder, whatever model it holds: the one place a folder's kind is read.
pub fn read_any_meta(dir: &Path) -> Result<ModelMeta> {
    let path = ModelDir::new(dir).meta();
    serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("{} is not a model description", path.display()))
}

/// `model.json` of a model folder, refused unless it holds a model of `kind`.
pub fn read_meta(dir: &Path, kind: ModelKind) -> Result<ModelMeta> {
    let meta = read_any_meta(dir)?;
    if meta.kind != kind {
        bail!("{} holds a {} model, not a {kind}", dir.display(), meta.kind);
    }
    Ok(meta)
}

pub fn load_forest(dir: &Path) -> Result<(ModelMeta, Forest)> {
    let meta = read_meta(dir, ModelKind::RandomForest)?;
    let path = ModelDir::new(dir).forest();
    let forest = forest_file::from_bytes(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
    if forest.n_features != meta.features.len() {
        bail!("{}: forest has {} features, model.json lists {}", dir.display(), forest.n_features, meta.features.len());
    }
    Ok((meta, forest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(features: &[&str]) -> ModelMeta {
        ModelMeta {
            kind: ModelKind::RandomForest,
            format: 1,
            features: features.iter().map(|s| s.to_string()).collect(),
            params: serde_json::json!({}),
            metrics: serde_json::json!({}),
            lineage: serde_json::json!({}),
            trained_at: "now".into(),
            tool_version: "t".into(),
        }
    }

    #[test]
    fn a_model_knows_the_services_of_its_one_hot_columns_or_any_without_them() {
        let per_service = meta(&["request_count_per_second", "service_web", "service_api"]);
        assert!(per_service.knows_service("web") && per_service.knows_service("api"));
        assert!(!per_service.knows_service("checkout") && !per_service.knows_service("we"));
        assert!(meta(&["load_pods", "load_pods_change"]).knows_service("checkout"), "no service column: any service");
    }

    #[test]
    fn saved_forest_loads_back_identical() {
        let (x, y): (Vec<f64>, Vec<f64>) = ((0..200).map(|i| (i % 17) as f64).collect(), (0..100).map(|i| (i % 5) as f64).collect());
        let p = random_forest::Params { n_estimators: 4, max_depth: 4, sub_forests: 2, min_samples_split: 2, min_samples_leaf: 1, ..Default::default() };
        let f = random_forest::fit(&x, &y, 2, &p, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_forest(dir.path(), &meta(&["a", "b"]), &f.forest).unwrap();
        let (m, back) = load_forest(dir.path()).unwrap();
        assert_eq!(back, f.forest);
        assert_eq!(m.features, vec!["a", "b"]);
        assert_eq!(back.predict_batch(&x, 2), f.forest.predict_batch(&x, 1));
        // A damaged weights file is refused, not trusted.
        let bin = dir.path().join("forest.bin");
        let bytes = std::fs::read(&bin).unwrap();
        std::fs::write(&bin, &bytes[..bytes.len() - 3]).unwrap();
        assert!(load_forest(dir.path()).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn feature_mismatch_says_which() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = meta(&["cpu", "ram", "service_order"]);
        assert_eq!(m.feature_columns(&names(&["cpu", "ram", "service_order"])).unwrap(), vec![0, 1, 2]);
        // Read by name: other columns and another order are fine.
        assert_eq!(m.feature_columns(&names(&["rps", "service_order", "ram", "cpu"])).unwrap(), vec![3, 2, 1]);
        let e = m.feature_columns(&names(&["cpu", "ram", "service_payments"])).unwrap_err().to_string();
        assert!(e.contains("missing service_order") && e.contains("not known to the model service_payments"), "{e}");
        // A model without the one-hot columns takes any service.
        assert_eq!(meta(&["cpu"]).feature_columns(&names(&["cpu", "service_payments"])).unwrap(), vec![0]);
    }
}
