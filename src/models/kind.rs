//! Which model a trained folder, a train stage or a registry entry holds.

use serde::{Deserialize, Serialize};

/// A model kind, written as the registry, `model.json` and the pipeline file name it
/// (`random_forest`, `lstm_cnn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ModelKind {
    RandomForest,
    LstmCnn,
}

impl ModelKind {
    pub const ALL: [ModelKind; 2] = [ModelKind::RandomForest, ModelKind::LstmCnn];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::RandomForest => "random_forest",
            ModelKind::LstmCnn => "lstm_cnn",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is no model kind, with the ones there are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{0}` (known: random_forest, lstm_cnn)")]
pub struct UnknownModel(pub String);

impl std::str::FromStr for ModelKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<ModelKind, UnknownModel> {
        ModelKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownModel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_and_write_as_the_registry_names_them() {
        for k in ModelKind::ALL {
            assert_eq!(k.to_string().parse::<ModelKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert_eq!("forest".parse::<ModelKind>().unwrap_err().to_string(), "unknown model `forest` (known: random_forest, lstm_cnn)");
    }
}
