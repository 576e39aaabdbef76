//! Training: Adam on the Huber loss with Keras' early stopping and learning-rate schedule.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Result, bail};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Kind, Reduction, Tensor};

use super::inputs::{Inputs, to_device};
use super::net::{Folded, Net};
use super::trained::LstmCnn;
use super::{Epoch, Params, Trained, TrainingObserver, Windows};
use crate::models::sequences::{ScaledRows, Scaler};
use crate::models::torch_runtime;

/// Trains on `train` and stops early on `val`, both windows over `x`, the table's rows
/// standardised.
pub fn fit(x: &ScaledRows, train: &Windows, val: &Windows, scaler: Scaler, p: &Params, observer: &dyn TrainingObserver) -> Result<Trained> {
    let nf = scaler.features.len() as i64;
    let steps = p.sequence_length as i64;
    if train.len() < 2 || val.is_empty() {
        bail!(
            "the LSTM-CNN needs training and validation windows; got {} and {} (are there at least {} rows per service?)",
            train.len(),
            val.len(),
            p.sequence_length
        );
    }
    let _torch = torch_runtime::exclusive();
    let device = torch_runtime::resolve(p.device)?;
    torch_runtime::set_threads(observer.threads());
    tch::manual_seed(p.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), nf, p);
    let mut opt = nn::Adam::default().eps(1e-7).build(&vs, p.learning_rate)?;

    let x = Inputs::new(x, device);
    let (rtr, ytr) = to_device(train, steps, device);
    let (rva, yva) = to_device(val, steps, device);
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
    Ok(Trained { model: LstmCnn::new(vs, folded, p.clone(), scaler, device), history, best_epoch, seconds })
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
