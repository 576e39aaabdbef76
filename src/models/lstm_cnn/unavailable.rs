//! The LSTM-CNN in a build without libtorch (no `lstm` feature): the same names, and an error
//! that says how to get a build that has it wherever one would be trained or loaded.

use std::convert::Infallible;
use std::path::Path;

use anyhow::Result;

use super::{NOT_BUILT, Params, Trained, TrainingObserver, Windows};
use crate::models::ModelMeta;
use crate::models::sequences::{ScaledRows, Scaler, Window, WindowSet};
use crate::models::torch_runtime::DeviceChoice;

/// No value of this type exists in this build: every method is unreachable by construction.
pub struct LstmCnn {
    pub params: Params,
    pub scaler: Scaler,
    never: Infallible,
}

pub fn fit(_: &ScaledRows, _: &Windows, _: &Windows, _: Scaler, _: &Params, _: &dyn TrainingObserver) -> Result<Trained> {
    anyhow::bail!("{NOT_BUILT}")
}

impl LstmCnn {
    pub fn load(_dir: &Path, _device: DeviceChoice) -> Result<(ModelMeta, LstmCnn)> {
        anyhow::bail!("{NOT_BUILT}")
    }

    pub fn predict_scaled(&self, _: &[f32]) -> Vec<f64> {
        match self.never {}
    }

    pub fn predict_windows(&self, _: &ScaledRows, _: &[i64]) -> Vec<f64> {
        match self.never {}
    }

    pub fn predict_window_set(&self, _: &ScaledRows, _: &WindowSet, _: &[Window]) -> Vec<f64> {
        match self.never {}
    }

    pub fn predict_raw(&self, _: &[f64]) -> Result<f64> {
        match self.never {}
    }

    pub fn device(&self) -> &'static str {
        match self.never {}
    }

    pub fn save(&self, _: &Path, _: &ModelMeta) -> Result<()> {
        match self.never {}
    }
}
