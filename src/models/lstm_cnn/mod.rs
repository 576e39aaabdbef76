//! The LSTM-CNN of the old system, in libtorch through tch: a convolutional and a recurrent
//! branch over the same window of standardised rows, joined by two dense layers.
//!
//! Keras defaults are kept where they change results: both convolutions pad `same` (the
//! flattened CNN branch is 128 × 6 = 768 wide for 12 rows), BatchNorm momentum 0.99 and epsilon
//! 1e-3, Adam epsilon 1e-7, Huber delta 1, early stopping that restores the best weights, and
//! ReduceLROnPlateau's 1e-4 improvement threshold. Weights start as Keras starts them, not as
//! libtorch does: Glorot-uniform kernels for the convolutions, the dense layers and the LSTMs'
//! input weights, orthogonal recurrent weights, zero biases but a forget-gate bias of 1 (Keras'
//! `unit_forget_bias`). libtorch's Kaiming-uniform defaults start from other scales, and the
//! old network's training curves and early-stopping epochs are only comparable from the same start.
//!
//! The network, its training and inference need libtorch: they are built with the `lstm` feature
//! (on by default). Without it, the params, history and kind are still known (a pipeline file
//! still parses, a registry still lists its LSTM-CNNs), and training or loading one says how to
//! get a build that can.

#[cfg(feature = "lstm")]
mod inputs;
#[cfg(feature = "lstm")]
mod net;
#[cfg(feature = "lstm")]
mod train;
#[cfg(feature = "lstm")]
mod trained;
#[cfg(not(feature = "lstm"))]
mod unavailable;

use serde::{Deserialize, Serialize};

use super::torch_runtime::DeviceChoice;
#[cfg(feature = "lstm")]
pub use train::fit;
#[cfg(feature = "lstm")]
pub use trained::LstmCnn;
#[cfg(not(feature = "lstm"))]
pub use unavailable::{LstmCnn, fit};

/// What a user reads when a pipeline or a registry asks for an LSTM-CNN in a build without it.
pub const NOT_BUILT: &str = "this `pipeline` was built without the LSTM-CNN (the `lstm` feature, which needs libtorch): \
run ./scripts/setup.sh and build with the default features, or use the random_forest";

/// Everything the YAML may set (`params:` of a `model: lstm_cnn` train stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub sequence_length: usize,
    pub conv_filters: [i64; 2],
    pub kernel_size: i64,
    pub lstm_units: [i64; 2],
    pub dense_units: [i64; 2],
    pub dropout: f64,
    pub final_dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Stop after this many epochs without a better validation loss (and restore the best).
    pub patience: usize,
    /// Halve the learning rate after this many epochs without improvement...
    pub lr_patience: usize,
    pub lr_factor: f64,
    /// ...but not below this.
    pub min_learning_rate: f64,
    /// The last part (in time) of each service's training windows used for validation.
    pub validation_fraction: f64,
    pub huber_delta: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// CPU threads, fixed for the whole training (0: every core). libtorch gives the same
    /// weights for a seed only with the same thread count, so this does not follow the load.
    pub threads: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            sequence_length: 12,
            conv_filters: [64, 128],
            kernel_size: 3,
            lstm_units: [128, 64],
            dense_units: [64, 32],
            dropout: 0.3,
            final_dropout: 0.15,
            epochs: 100,
            batch_size: 64,
            learning_rate: 1e-3,
            patience: 15,
            lr_patience: 5,
            lr_factor: 0.5,
            min_learning_rate: 1e-6,
            validation_fraction: 0.2,
            huber_delta: 1.0,
            seed: 42,
            device: DeviceChoice::Auto,
            threads: 0,
        }
    }
}

impl Params {
    /// Problems a user can fix in the YAML, as (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.sequence_length < 2 {
            return Err(("sequence_length", "must be at least 2".into()));
        }
        if self.kernel_size < 1 || self.kernel_size % 2 == 0 {
            return Err(("kernel_size", "must be odd: `same` padding keeps every step only with an odd kernel".into()));
        }
        if self.batch_size < 2 {
            return Err(("batch_size", "must be at least 2 (batch normalisation needs two rows)".into()));
        }
        if self.epochs == 0 {
            return Err(("epochs", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.final_dropout) {
            return Err(("dropout", "must be in [0, 1)".into()));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return Err(("validation_fraction", "must be between 0 and 1 (exclusive)".into()));
        }
        if self.learning_rate <= 0.0 || self.min_learning_rate < 0.0 || !(self.lr_factor > 0.0 && self.lr_factor < 1.0) {
            return Err(("learning_rate", "learning_rate must be > 0 and lr_factor in (0, 1)".into()));
        }
        Ok(())
    }

    /// Length after the two `same`-padded convolutions and the pooling.
    #[cfg(feature = "lstm")]
    fn pooled_len(&self) -> i64 {
        self.sequence_length as i64 / 2
    }

    /// `same` padding for an odd kernel, on each side.
    #[cfg(feature = "lstm")]
    fn padding(&self) -> i64 {
        self.kernel_size / 2
    }
}

/// One epoch of the training history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub mae: f64,
    pub val_loss: f64,
    pub val_mae: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

/// Windows as indices into a matrix of standardised rows `[rows, features]`: `rows` holds each
/// window's `steps` row indices (`[n, steps]` flattened, see `sequences::index`), `y` its target.
pub struct Windows<'a> {
    pub rows: &'a [i64],
    pub y: &'a [f32],
}

impl Windows<'_> {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

pub struct Trained {
    pub model: LstmCnn,
    pub history: Vec<Epoch>,
    pub best_epoch: usize,
    pub seconds: f64,
}

/// Where a training reports: its threads (fixed for the run) and each epoch.
pub trait TrainingObserver {
    fn threads(&self) -> usize;
    fn epoch(&self, e: &Epoch, best: bool);
}
