//! A trained model's folder: one name for each of its files, for every writer (the train
//! stages, the registry's copy) and reader (loading, the report, `models show`).
//!
//! | file                                  | what                                               |
//! |---------------------------------------|----------------------------------------------------|
//! | `model.json`                          | kind, features in order, params, metrics, lineage  |
//! | `forest.bin`                          | a Random Forest's trees as one node array          |
//! | `importances.csv`, `importances.json` | a Random Forest's feature importances              |
//! | `weights.safetensors`, `scaler.json`  | an LSTM-CNN's weights and its input scaler         |
//! | `history.json`, `history.csv`         | an LSTM-CNN's training history per epoch           |

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ModelDir(PathBuf);

impl ModelDir {
    pub fn new(path: impl Into<PathBuf>) -> ModelDir {
        ModelDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn meta(&self) -> PathBuf {
        self.0.join("model.json")
    }

    pub fn forest(&self) -> PathBuf {
        self.0.join("forest.bin")
    }

    pub fn importances_csv(&self) -> PathBuf {
        self.0.join("importances.csv")
    }

    pub fn importances_json(&self) -> PathBuf {
        self.0.join("importances.json")
    }

    /// Ends in `.safetensors`: libtorch picks the format by the extension.
    pub fn weights(&self) -> PathBuf {
        self.0.join("weights.safetensors")
    }

    pub fn scaler(&self) -> PathBuf {
        self.0.join("scaler.json")
    }

    pub fn history_json(&self) -> PathBuf {
        self.0.join("history.json")
    }

    pub fn history_csv(&self) -> PathBuf {
        self.0.join("history.csv")
    }
}
