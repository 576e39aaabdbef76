//! A trained model of either kind, loaded from its folder, predicting rows of a table.

use std::path::Path;

use anyhow::Result;

use super::lstm_cnn::LstmCnn;
use super::random_forest::Forest;
use super::sequences;
use super::table::Table;
use super::torch_runtime::DeviceChoice;
use super::{ModelKind, ModelMeta};

#[allow(clippy::large_enum_variant)] // one per loaded model; boxing would only add a pointer chase
pub enum Model {
    RandomForest { meta: ModelMeta, forest: Forest },
    LstmCnn { meta: ModelMeta, net: LstmCnn },
}

impl Model {
    /// Loads whatever kind `model.json` names; the LSTM-CNN goes to `device`.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Model> {
        match super::read_any_meta(dir)?.kind {
            ModelKind::LstmCnn => {
                let (meta, net) = LstmCnn::load(dir, device)?;
                Ok(Model::LstmCnn { meta, net })
            }
            ModelKind::RandomForest => {
                let (meta, forest) = super::load_forest(dir)?;
                Ok(Model::RandomForest { meta, forest })
            }
        }
    }

    pub fn meta(&self) -> &ModelMeta {
        match self {
            Model::RandomForest { meta, .. } | Model::LstmCnn { meta, .. } => meta,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.meta().kind
    }

    /// Raw predictions for `rows` of `table`; `None` where the LSTM-CNN has fewer than a
    /// window of earlier rows of that service in the table.
    pub fn predict_rows(&self, table: &Table, rows: &[usize]) -> Result<Vec<Option<f64>>> {
        let table = table.for_model(self.meta())?;
        match self {
            Model::RandomForest { forest, .. } => {
                let threads = crate::io::threads::available();
                // A row with a feature that is not a number (a load feature without a fitted
                // capacity) gets no prediction, as a row before an LSTM-CNN's window.
                let finite: Vec<bool> = rows.iter().map(|&r| table.finite(r)).collect();
                let kept: Vec<usize> = rows.iter().zip(&finite).filter(|(_, f)| **f).map(|(&r, _)| r).collect();
                let mut predicted = table.map_chunks(&kept, |x| forest.predict_batch(x, threads)).into_iter();
                Ok(finite.iter().map(|&f| if f { predicted.next() } else { None }).collect())
            }
            Model::LstmCnn { net, .. } => {
                let len = net.params.sequence_length;
                // Every row's window: the `len` rows of its service up to it, in time order.
                let all = sequences::windows(&table.service_refs(), &table.timestamps, &vec![false; table.len()], len, 0.0);
                let mut by_last = vec![None; table.len()];
                for (w, window) in all.windows.iter().enumerate() {
                    by_last[all.last(window)] = Some(w);
                }
                let found: Vec<sequences::Window> = rows.iter().filter_map(|&r| by_last[r].map(|w| all.windows[w])).collect();
                let x_scaled = table.scaled(&net.scaler);
                let (found_rows, _) = all.index(&found, &table.y);
                let _torch = super::torch_runtime::exclusive();
                super::torch_runtime::set_threads(crate::io::threads::available());
                let mut predicted = net.predict_windows(&x_scaled, &found_rows).into_iter();
                Ok(rows.iter().map(|&r| by_last[r].and_then(|_| predicted.next())).collect())
            }
        }
    }
}
