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

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::sequences::{ScaledRows, Scaler, Window, WindowSet};
use super::torch_runtime::{self, DeviceChoice};
use super::{ModelDir, ModelMeta};
use crate::io::fs::write_atomic;

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
    fn pooled_len(&self) -> i64 {
        self.sequence_length as i64 / 2
    }

    /// `same` padding for an odd kernel, on each side.
    fn padding(&self) -> i64 {
        self.kernel_size / 2
    }
}

/// Keras' BatchNormalization epsilon.
const BN_EPS: f64 = 1e-3;

/// Keras' BatchNormalization, in libtorch's terms.
fn batch_norm(vs: nn::Path, n: i64) -> nn::BatchNorm {
    nn::batch_norm1d(vs, n, nn::BatchNormConfig { momentum: 0.01, eps: BN_EPS, ..Default::default() })
}

/// One LSTM layer on tch's weights, called with the real training flag: tch's own LSTM fixes
/// it at construction (to `true`), which makes inference keep the training workspace and run
/// slower.
#[derive(Debug)]
struct Lstm {
    weights: Vec<Tensor>,
    hidden: i64,
}

impl Lstm {
    /// With Keras' initialisation (see the module's docs). libtorch's gates are ordered
    /// input, forget, cell, output, and it adds two biases where Keras has one: the forget
    /// gate's input bias is 1, every other bias 0.
    fn new(vs: nn::Path, input: i64, hidden: i64) -> Lstm {
        let _ = nn::lstm(&vs, input, hidden, nn::RNNConfig { batch_first: true, ..Default::default() });
        let mut weights: Vec<Tensor> = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].iter().map(|n| vs.get(n).expect("nn::lstm registers its weights")).collect();
        tch::no_grad(|| {
            weights[0].init(glorot(input, 4 * hidden));
            weights[1].init(nn::Init::Orthogonal { gain: 1.0 });
            let _ = weights[2].fill_(0.0);
            let _ = weights[2].narrow(0, hidden, hidden).fill_(1.0);
            let _ = weights[3].fill_(0.0);
        });
        Lstm { weights, hidden }
    }

    fn run(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        run_lstm(xs, &self.weights, self.hidden, train)
    }
}

/// One batch-first LSTM layer from zero state: `[batch, steps, in]` → (all steps
/// `[batch, steps, hidden]`, last hidden `[batch, hidden]`).
fn run_lstm(xs: &Tensor, weights: &[Tensor], hidden: i64, train: bool) -> (Tensor, Tensor) {
    let zeros = Tensor::zeros([1, xs.size()[0], hidden], (xs.kind(), xs.device()));
    let w: Vec<&Tensor> = weights.iter().collect();
    let (out, h, _) = xs.lstm(&[&zeros, &zeros], &w, true, 1, 0.0, train, false, true);
    (out, h.squeeze_dim(0))
}

/// Keras' `glorot_uniform`: U(±√(6 / (fan_in + fan_out))).
fn glorot(fan_in: i64, fan_out: i64) -> nn::Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -limit, up: limit }
}

/// A Keras `Conv1D(padding='same')`: Glorot-uniform kernel (fans count the kernel's width), zero bias.
fn conv1d(vs: nn::Path, input: i64, output: i64, p: &Params) -> nn::Conv1D {
    let k = p.kernel_size;
    let config = nn::ConvConfig { padding: p.padding(), ws_init: glorot(input * k, output * k), bs_init: nn::Init::Const(0.0), ..Default::default() };
    nn::conv1d(vs, input, output, k, config)
}

/// A Keras `Dense`: Glorot-uniform kernel, zero bias.
fn dense(vs: nn::Path, input: i64, output: i64) -> nn::Linear {
    nn::linear(vs, input, output, nn::LinearConfig { ws_init: glorot(input, output), bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

#[derive(Debug)]
struct Net {
    conv1: nn::Conv1D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv1D,
    bn2: nn::BatchNorm,
    lstm1: Lstm,
    bn3: nn::BatchNorm,
    lstm2: Lstm,
    bn4: nn::BatchNorm,
    fc1: nn::Linear,
    bn5: nn::BatchNorm,
    fc2: nn::Linear,
    out: nn::Linear,
    dropout: f64,
    final_dropout: f64,
}

impl Net {
    fn new(vs: &nn::Path, n_features: i64, p: &Params) -> Net {
        let [c1, c2] = p.conv_filters;
        let [l1, l2] = p.lstm_units;
        let [d1, d2] = p.dense_units;
        Net {
            conv1: conv1d(vs / "conv1", n_features, c1, p),
            bn1: batch_norm(vs / "bn1", c1),
            conv2: conv1d(vs / "conv2", c1, c2, p),
            bn2: batch_norm(vs / "bn2", c2),
            lstm1: Lstm::new(vs / "lstm1", n_features, l1),
            bn3: batch_norm(vs / "bn3", l1),
            lstm2: Lstm::new(vs / "lstm2", l1, l2),
            bn4: batch_norm(vs / "bn4", l2),
            fc1: dense(vs / "fc1", c2 * p.pooled_len() + l2, d1),
            bn5: batch_norm(vs / "bn5", d1),
            fc2: dense(vs / "fc2", d1, d2),
            out: dense(vs / "out", d2, 1),
            dropout: p.dropout,
            final_dropout: p.final_dropout,
        }
    }
}

/// Dropout that is not even called in inference (each libtorch call costs a little, and a
/// single decision makes dozens).
#[derive(Debug)]
struct Dropout(f64);

impl ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train && self.0 > 0.0 { xs.dropout(self.0, true) } else { xs.shallow_clone() }
    }
}

impl Net {
    /// The convolutional branch: `[batch, steps, features]` → `[batch, filters × steps / 2]`.
    /// Convolutions run over time with features as channels.
    fn cnn(&self, xs: &Tensor, train: bool) -> Tensor {
        let p = self.dropout;
        xs.transpose(1, 2)
            .apply(&self.conv1)
            .relu()
            .apply_t(&self.bn1, train)
            .apply_t(&Dropout(p), train)
            .apply(&self.conv2)
            .relu()
            .apply_t(&self.bn2, train)
            .max_pool1d(2, 2, 0, 1, false)
            .apply_t(&Dropout(p), train)
            .flatten(1, -1)
    }
}

impl ModuleT for Net {
    /// `[batch, steps, features]` → `[batch]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let p = self.dropout;
        let cnn = self.cnn(xs, train);
        let (all_steps, _) = self.lstm1.run(xs, train);
        // BatchNorm1d normalises dim 1; the LSTM's units are dim 2.
        let h = all_steps.transpose(1, 2).apply_t(&self.bn3, train).transpose(1, 2).apply_t(&Dropout(p), train);
        let (_, last) = self.lstm2.run(&h, train);
        let rnn = last.apply_t(&self.bn4, train).apply_t(&Dropout(p), train);
        Tensor::cat(&[cnn, rnn], 1)
            .apply(&self.fc1)
            .relu()
            .apply_t(&self.bn5, train)
            .apply_t(&Dropout(p), train)
            .apply(&self.fc2)
            .relu()
            .apply_t(&Dropout(self.final_dropout), train)
            .apply(&self.out)
            .squeeze_dim(1)
    }
}

/// The network for inference, with every BatchNorm that can be folded into the layer after it
/// folded in (`a·x + b` in eval mode is a per-channel affine map): the same outputs up to float
/// rounding, with fewer libtorch calls per decision. Built once from the trained weights.
struct Folded {
    conv1: (Tensor, Tensor),
    padding: i64,
    /// The weights scaled by bn1, and a bias per output channel *and step* `[1, filters, steps]`:
    /// bn1's shift reaches the edge steps through fewer taps, since the padding is zeros
    /// after the batch norm, not its shifted zeros.
    conv2: (Tensor, Tensor),
    /// bn2 sits before the max-pool, which commutes with it only where its scale is positive.
    bn2: Option<(Tensor, Tensor)>,
    lstm1: Vec<Tensor>,
    lstm2: Vec<Tensor>,
    hidden: (i64, i64),
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
    out: (Tensor, Tensor),
}

/// A BatchNorm in eval mode as `(scale, shift)`.
fn affine(bn: &nn::BatchNorm) -> (Tensor, Tensor) {
    let ws = bn.ws.as_ref().expect("affine batch norm");
    let bs = bn.bs.as_ref().expect("affine batch norm");
    let a = ws / (&bn.running_var + BN_EPS).sqrt();
    let b = bs - &bn.running_mean * &a;
    (a, b)
}

fn bias(t: &Option<Tensor>) -> Tensor {
    t.as_ref().expect("layers have biases").copy()
}

impl Folded {
    fn new(net: &Net, p: &Params) -> Folded {
        tch::no_grad(|| {
            let (a1, b1) = affine(&net.bn1);
            let (a2, b2) = affine(&net.bn2);
            let (a3, b3) = affine(&net.bn3);
            let (a4, b4) = affine(&net.bn4);
            let (a5, b5) = affine(&net.bn5);
            // bn1 → conv2: scale the input channels; the shift, convolved with the same padding,
            // is the bias at each step.
            let w2 = &net.conv2.ws * a1.view([1, -1, 1]);
            let shift = b1.view([1, -1, 1]).expand([1, p.conv_filters[0], p.sequence_length as i64], false);
            let c2 = shift.conv1d(&net.conv2.ws, net.conv2.bs.as_ref(), [1], [p.padding()], [1], 1);
            // bn3 → lstm2's input weights.
            let mut lstm2: Vec<Tensor> = net.lstm2.weights.iter().map(|w| w.copy()).collect();
            lstm2[2] = &lstm2[2] + net.lstm2.weights[0].matmul(&b3);
            lstm2[0] = &net.lstm2.weights[0] * a3.view([1, -1]);
            // fc1 reads [cnn (channels × pooled steps, channel-major) | rnn]; bn4 → the rnn columns,
            // bn2 → the cnn columns when the max-pool lets it through.
            let pooled = p.pooled_len();
            let fold_bn2 = a2.min().double_value(&[]) > 0.0;
            let ones_cnn = Tensor::ones([p.conv_filters[1] * pooled], (Kind::Float, a2.device()));
            let zeros_cnn = Tensor::zeros([p.conv_filters[1] * pooled], (Kind::Float, a2.device()));
            let (scale_cnn, shift_cnn) = if fold_bn2 {
                (a2.repeat_interleave_self_int(pooled, 0, None), b2.repeat_interleave_self_int(pooled, 0, None))
            } else {
                (ones_cnn, zeros_cnn)
            };
            let scale = Tensor::cat(&[scale_cnn, a4], 0);
            let shift = Tensor::cat(&[shift_cnn, b4], 0);
            let w1 = &net.fc1.ws * scale.view([1, -1]);
            let c1 = bias(&net.fc1.bs) + net.fc1.ws.matmul(&shift);
            // bn5 → fc2.
            let wf2 = &net.fc2.ws * a5.view([1, -1]);
            let cf2 = bias(&net.fc2.bs) + net.fc2.ws.matmul(&b5);
            Folded {
                conv1: (net.conv1.ws.copy(), bias(&net.conv1.bs)),
                padding: p.padding(),
                conv2: (w2, c2),
                bn2: if fold_bn2 { None } else { Some((a2.view([1, -1, 1]), b2.view([1, -1, 1]))) },
                lstm1: net.lstm1.weights.iter().map(|w| w.copy()).collect(),
                lstm2,
                hidden: (net.lstm1.hidden, net.lstm2.hidden),
                fc1: (w1, c1),
                fc2: (wf2, cf2),
                out: (net.out.ws.copy(), bias(&net.out.bs)),
            }
        })
    }

    /// `[batch, steps, features]` → `[batch]`, in inference mode.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut cnn = xs
            .transpose(1, 2)
            .conv1d(&self.conv1.0, Some(&self.conv1.1), [1], [self.padding], [1], 1)
            .relu()
            .conv1d(&self.conv2.0, None::<&Tensor>, [1], [self.padding], [1], 1)
            .g_add(&self.conv2.1)
            .relu();
        if let Some((a, b)) = &self.bn2 {
            cnn = cnn * a + b;
        }
        let cnn = cnn.max_pool1d(2, 2, 0, 1, false).flatten(1, -1);
        let (all, _) = run_lstm(xs, &self.lstm1, self.hidden.0, false);
        let (_, last) = run_lstm(&all, &self.lstm2, self.hidden.1, false);
        Tensor::cat(&[cnn, last], 1)
            .linear(&self.fc1.0, Some(&self.fc1.1))
            .relu()
            .linear(&self.fc2.0, Some(&self.fc2.1))
            .relu()
            .linear(&self.out.0, Some(&self.out.1))
            .squeeze_dim(1)
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
    fn len(&self) -> usize {
        self.y.len()
    }

    fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    fn to_device(&self, steps: i64, device: Device) -> (Tensor, Tensor) {
        (Tensor::from_slice(self.rows).view([self.len() as i64, steps]).to(device), Tensor::from_slice(self.y).to(device))
    }
}

/// [`ScaledRows`] on the device: the stored values, and each row's service with the services'
/// standardised one-hot vectors.
struct Inputs {
    values: Tensor,
    one_hot: Option<(Tensor, Tensor)>,
}

impl Inputs {
    fn new(x: &ScaledRows, device: Device) -> Inputs {
        let values = Tensor::from_slice(&x.values).view([x.rows as i64, x.stored as i64]).to(device);
        let one_hot = (x.features > x.stored).then(|| {
            let width = (x.features - x.stored) as i64;
            (Tensor::from_slice(&x.services).to(device), Tensor::from_slice(&x.one_hot).view([-1, width]).to(device))
        });
        Inputs { values, one_hot }
    }

    /// The windows `rows` `[b, steps]` index: `[b, steps, features]`.
    fn gather(&self, rows: &Tensor) -> Tensor {
        let (b, steps) = (rows.size()[0], rows.size()[1]);
        let flat = rows.reshape([-1]);
        let mut x = self.values.index_select(0, &flat);
        if let Some((services, one_hot)) = &self.one_hot {
            x = Tensor::cat(&[x, one_hot.index_select(0, &services.index_select(0, &flat))], 1);
        }
        x.view([b, steps, -1])
    }
}

/// A trained (or loaded) network with what it needs to read raw rows.
pub struct LstmCnn {
    vs: nn::VarStore,
    /// libtorch tensors may be sent between threads but not shared; one forward at a time.
    net: std::sync::Mutex<Folded>,
    pub params: Params,
    pub scaler: Scaler,
    device: Device,
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

/// Trains on `train` and stops early on `val`, both windows over `x`, the table's rows
/// standardised.
pub fn fit(x: &ScaledRows, train: &Windows, val: &Windows, scaler: Scaler, p: &Params, observer: &dyn TrainingObserver) -> Result<Trained> {
    let nf = scaler.features.len() as i64;
    let steps = p.sequence_length as i64;
    if train.len() < 2 || val.is_empty() {
        bail!("the LSTM-CNN needs training and validation windows; got {} and {} (are there at least {} rows per service?)", train.len(), val.len(), p.sequence_length);
    }
    let _torch = torch_runtime::exclusive();
    let device = torch_runtime::resolve(p.device)?;
    torch_runtime::set_threads(observer.threads());
    tch::manual_seed(p.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), nf, p);
    let mut opt = nn::Adam::default().eps(1e-7).build(&vs, p.learning_rate)?;

    let x = Inputs::new(x, device);
    let (rtr, ytr) = train.to_device(steps, device);
    let (rva, yva) = val.to_device(steps, device);
    let mut order: Vec<i64> = (0..train.len() as i64).collect();
    let mut rng = crate::rng::Rng::new(p.seed, 3);

    let (mut lr, mut best, mut best_epoch) = (p.learning_rate, f64::INFINITY, 0);
    let (mut since_best, mut since_lr_best, mut lr_best) = (0, 0, f64::INFINITY);
    let mut best_weights: Option<HashMap<String, Tensor>> = None;
    let mut history = Vec::new();
    let started = Instant::now();
    for epoch in 1..=p.epochs {
        let t0 = Instant::now();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut mae_sum, mut seen) = (0.0, 0.0, 0usize);
        for batch in order.chunks(p.batch_size) {
            // Batch normalisation cannot train on a single row.
            if batch.len() < 2 {
                continue;
            }
            let idx = Tensor::from_slice(batch).to(device);
            let (xb, yb) = (x.gather(&rtr.index_select(0, &idx)), ytr.index_select(0, &idx));
            let pred = net.forward_t(&xb, true);
            let loss = pred.huber_loss(&yb, Reduction::Mean, p.huber_delta);
            opt.backward_step(&loss);
            let n = batch.len();
            loss_sum += loss.double_value(&[]) * n as f64;
            mae_sum += tch::no_grad(|| (&pred - &yb).abs().sum(Kind::Double).double_value(&[]));
            seen += n;
        }
        let (val_loss, val_mae) = evaluate(&net, &x, &rva, &yva, p.huber_delta);
        let e = Epoch {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            mae: mae_sum / seen.max(1) as f64,
            val_loss,
            val_mae,
            learning_rate: lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if !val_loss.is_finite() {
            bail!("training diverged at epoch {epoch} (validation loss {val_loss}); try a lower learning_rate");
        }
        let improved = val_loss < best;
        if improved {
            best = val_loss;
            best_epoch = epoch;
            since_best = 0;
            best_weights = Some(snapshot(&vs));
        } else {
            since_best += 1;
        }
        observer.epoch(&e, improved);
        history.push(e);
        if since_best >= p.patience {
            break;
        }
        if val_loss < lr_best - 1e-4 {
            lr_best = val_loss;
            since_lr_best = 0;
        } else {
            since_lr_best += 1;
            if since_lr_best >= p.lr_patience && lr > p.min_learning_rate {
                lr = (lr * p.lr_factor).max(p.min_learning_rate);
                opt.set_lr(lr);
                since_lr_best = 0;
            }
        }
    }
    if let Some(w) = best_weights {
        restore(&vs, &w);
    }
    let seconds = started.elapsed().as_secs_f64();
    let folded = Folded::new(&net, p);
    Ok(Trained { model: LstmCnn { vs, net: std::sync::Mutex::new(folded), params: p.clone(), scaler, device }, history, best_epoch, seconds })
}

/// Huber loss and MAE over a whole set of windows, in inference mode and in slices that bound
/// memory.
fn evaluate(net: &Net, x: &Inputs, rows: &Tensor, y: &Tensor, delta: f64) -> (f64, f64) {
    tch::no_grad(|| {
        let n = rows.size()[0];
        let (mut loss, mut mae) = (0.0, 0.0);
        let mut start = 0;
        while start < n {
            let len = (n - start).min(4096);
            let pred = net.forward_t(&x.gather(&rows.narrow(0, start, len)), false);
            let yb = y.narrow(0, start, len);
            loss += pred.huber_loss(&yb, Reduction::Sum, delta).double_value(&[]);
            mae += (&pred - &yb).abs().sum(Kind::Double).double_value(&[]);
            start += len;
        }
        (loss / n as f64, mae / n as f64)
    })
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    tch::no_grad(|| vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect())
}

fn restore(vs: &nn::VarStore, saved: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if let Some(s) = saved.get(&name) {
                var.copy_(s);
            }
        }
    });
}

impl LstmCnn {
    /// Predictions for windows already standardised, `[n, steps, features]` flattened.
    pub fn predict_scaled(&self, x: &[f32]) -> Vec<f64> {
        let (steps, nf) = (self.params.sequence_length as i64, self.scaler.features.len() as i64);
        let n = x.len() as i64 / (steps * nf);
        let mut out = Vec::with_capacity(n as usize);
        let net = self.net.lock().unwrap_or_else(|p| p.into_inner());
        tch::no_grad(|| {
            let mut start = 0;
            while start < n {
                let len = (n - start).min(4096);
                let block = &x[(start * steps * nf) as usize..((start + len) * steps * nf) as usize];
                let xb = Tensor::from_slice(block).view([len, steps, nf]).to(self.device);
                let p = net.forward(&xb).to_kind(Kind::Double).to(Device::Cpu);
                out.extend(Vec::<f64>::try_from(&p).expect("a 1-d double tensor"));
                start += len;
            }
        });
        out
    }

    /// Predictions for windows over standardised rows: `rows` `[n, steps]` (flattened) indexes
    /// `x_scaled`'s rows, gathered a block at a time.
    pub fn predict_windows(&self, x_scaled: &ScaledRows, rows: &[i64]) -> Vec<f64> {
        let steps = self.params.sequence_length as i64;
        let n = rows.len() as i64 / steps;
        let mut out = Vec::with_capacity(n as usize);
        let net = self.net.lock().unwrap_or_else(|p| p.into_inner());
        tch::no_grad(|| {
            let x = Inputs::new(x_scaled, self.device);
            let rows = Tensor::from_slice(rows).view([n, steps]).to(self.device);
            let mut start = 0;
            while start < n {
                let len = (n - start).min(4096);
                let p = net.forward(&x.gather(&rows.narrow(0, start, len))).to_kind(Kind::Double).to(Device::Cpu);
                out.extend(Vec::<f64>::try_from(&p).expect("a 1-d double tensor"));
                start += len;
            }
        });
        out
    }

    /// Predictions for `which` of `windows` over standardised rows, each block's row indices
    /// made as it is predicted (10M test windows are 1 GB of indices at once).
    pub fn predict_window_set(&self, x_scaled: &ScaledRows, windows: &WindowSet, which: &[Window]) -> Vec<f64> {
        let steps = self.params.sequence_length as i64;
        let mut out = Vec::with_capacity(which.len());
        let net = self.net.lock().unwrap_or_else(|p| p.into_inner());
        tch::no_grad(|| {
            let x = Inputs::new(x_scaled, self.device);
            for block in which.chunks(4096) {
                let rows = windows.row_index(block);
                let rows = Tensor::from_slice(&rows).view([block.len() as i64, steps]).to(self.device);
                let p = net.forward(&x.gather(&rows)).to_kind(Kind::Double).to(Device::Cpu);
                out.extend(Vec::<f64>::try_from(&p).expect("a 1-d double tensor"));
            }
        });
        out
    }

    /// One prediction from raw (unscaled) rows, oldest first: `sequence_length × features` values.
    pub fn predict_raw(&self, rows: &[f64]) -> Result<f64> {
        let want = self.params.sequence_length * self.scaler.features.len();
        if rows.len() != want {
            bail!("expected {} rows × {} features = {want} values, got {}", self.params.sequence_length, self.scaler.features.len(), rows.len());
        }
        Ok(self.predict_scaled(&self.scaler.transform(rows))[0])
    }

    pub fn device(&self) -> &'static str {
        torch_runtime::device_name(self.device)
    }

    /// Weights as safetensors, the scaler beside them, and `model.json`.
    pub fn save(&self, dir: &Path, meta: &ModelMeta) -> Result<()> {
        let files = ModelDir::new(dir);
        let weights = files.weights();
        // VarStore writes in place; the temporary name keeps a half-written file from ever
        // carrying the real one's name (and ends in .safetensors too: the format goes by it).
        let tmp = dir.join(format!(".tmp-{}", weights.file_name().and_then(|n| n.to_str()).unwrap_or("weights.safetensors")));
        self.vs.save(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &weights)?;
        write_atomic(&files.scaler(), &serde_json::to_vec_pretty(&self.scaler)?)?;
        super::write_meta(&files, meta)
    }

    /// Loads a saved model onto `device` (`auto` picks a GPU when there is one).
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<(ModelMeta, LstmCnn)> {
        let files = ModelDir::new(dir);
        let meta = super::read_meta(dir, super::ModelKind::LstmCnn)?;
        let params: Params = serde_json::from_value(meta.params.clone()).with_context(|| format!("{}: params", files.meta().display()))?;
        let scaler_path = files.scaler();
        let scaler: Scaler = serde_json::from_slice(&std::fs::read(&scaler_path).with_context(|| format!("reading {}", scaler_path.display()))?)
            .with_context(|| format!("{} is not a scaler", scaler_path.display()))?;
        scaler.check().map_err(|e| anyhow::anyhow!("{} is damaged: {e}", scaler_path.display()))?;
        if scaler.features != meta.features {
            bail!("{}: the scaler's features differ from model.json's", dir.display());
        }
        let device = torch_runtime::resolve(device)?;
        let mut vs = nn::VarStore::new(device);
        let net = Net::new(&vs.root(), scaler.features.len() as i64, &params);
        // A model saved before the second convolution was padded `same` has a narrower fc1.
        vs.load(files.weights())
            .with_context(|| format!("loading {} (if it was trained before both convolutions were padded `same`, it no longer fits: train a new one with `pipeline run`)", files.weights().display()))?;
        let folded = Folded::new(&net, &params);
        Ok((meta, LstmCnn { vs, net: std::sync::Mutex::new(folded), params, scaler, device }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randomise_batch_norms(vs: &nn::VarStore) {
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                let shape = v.size();
                let r = match name.rsplit('.').next() {
                    Some("running_mean") | Some("bias") if name.starts_with("bn") => Tensor::randn(&shape, (Kind::Float, Device::Cpu)),
                    Some("running_var") | Some("weight") if name.starts_with("bn") => Tensor::rand(&shape, (Kind::Float, Device::Cpu)) + 0.5,
                    _ => continue,
                };
                v.copy_(&r);
            }
        });
    }

    #[test]
    fn both_convolutions_pad_same_as_the_old_network() {
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        let x = Tensor::randn([3, 12, 5], (Kind::Float, Device::Cpu));
        // 128 filters × 12 steps kept by `same` padding, pooled by 2: 768 (640 unpadded).
        assert_eq!(tch::no_grad(|| net.cnn(&x, false)).size(), [3, 768]);
        assert_eq!(net.fc1.ws.size(), [64, 768 + 64]);
        assert_eq!(Params { kernel_size: 4, ..Params::default() }.check().unwrap_err().0, "kernel_size");
    }

    #[test]
    fn weights_start_as_keras_starts_them() {
        tch::manual_seed(3);
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        let max = |t: &Tensor| t.abs().max().double_value(&[]);
        // Glorot-uniform: bounded by √(6 / (fan_in + fan_out)), and reaching close to it.
        for (w, limit) in [
            (&net.conv1.ws, (6.0 / (5.0 * 3.0 + 64.0 * 3.0f64)).sqrt()),
            (&net.conv2.ws, (6.0 / (64.0 * 3.0 + 128.0 * 3.0f64)).sqrt()),
            (&net.fc1.ws, (6.0 / (832.0 + 64.0f64)).sqrt()),
            (&net.lstm1.weights[0], (6.0 / (5.0 + 512.0f64)).sqrt()),
        ] {
            assert!(max(w) <= limit && max(w) > 0.9 * limit, "max {} for limit {limit}", max(w));
        }
        for b in [&net.conv1.bs, &net.conv2.bs, &net.fc1.bs, &net.fc2.bs, &net.out.bs] {
            assert_eq!(max(b.as_ref().unwrap()), 0.0);
        }
        // Orthogonal recurrent weights: [4h, h] with orthonormal columns.
        let whh = &net.lstm1.weights[1];
        let gram = whh.transpose(0, 1).matmul(whh);
        assert!(max(&(gram - Tensor::eye(128, (Kind::Float, Device::Cpu)))) < 1e-4);
        // Gates i, f, g, o: only the forget gate's bias is 1.
        let bias: Vec<f32> = Vec::try_from(&net.lstm2.weights[2] + &net.lstm2.weights[3]).unwrap();
        let expected: Vec<f32> = (0..256).map(|i| if (64..128).contains(&i) { 1.0 } else { 0.0 }).collect();
        assert_eq!(bias, expected);
    }

    #[test]
    fn the_folded_network_computes_what_the_trained_one_does() {
        tch::manual_seed(7);
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        randomise_batch_norms(&vs);
        let x = Tensor::randn([9, p.sequence_length as i64, 5], (Kind::Float, Device::Cpu));
        let max_diff = |f: &Folded| tch::no_grad(|| (net.forward_t(&x, false) - f.forward(&x)).abs().max().double_value(&[]));
        let folded = Folded::new(&net, &p);
        assert!(folded.bn2.is_none(), "positive scales fold through the max-pool");
        assert!(max_diff(&folded) < 1e-4, "folded differs by {}", max_diff(&folded));
        // A negative scale does not commute with the max-pool: that batch norm stays.
        tch::no_grad(|| {
            let w = (vs.root() / "bn2").get("weight").unwrap();
            let _ = w.get(0).fill_(-0.7);
        });
        let folded = Folded::new(&net, &p);
        assert!(folded.bn2.is_some());
        assert!(max_diff(&folded) < 1e-4, "folded differs by {}", max_diff(&folded));
    }
}
