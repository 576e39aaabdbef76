//! A trained (or loaded) LSTM-CNN: predictions from standardised or raw rows, and its files.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::Params;
use super::inputs::Inputs;
use super::net::{Folded, Net};
use crate::io::fs::write_atomic;
use crate::models::sequences::{ScaledRows, Scaler, Window, WindowSet};
use crate::models::torch_runtime::{self, DeviceChoice};
use crate::models::{ModelDir, ModelMeta};

/// A trained (or loaded) network with what it needs to read raw rows.
pub struct LstmCnn {
    vs: nn::VarStore,
    /// libtorch tensors may be sent between threads but not shared; one forward at a time.
    net: std::sync::Mutex<Folded>,
    pub params: Params,
    pub scaler: Scaler,
    device: Device,
}

impl LstmCnn {
    pub(super) fn new(vs: nn::VarStore, folded: Folded, params: Params, scaler: Scaler, device: Device) -> LstmCnn {
        LstmCnn { vs, net: std::sync::Mutex::new(folded), params, scaler, device }
    }
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
        crate::models::write_meta(&files, meta)
    }

    /// Loads a saved model onto `device` (`auto` picks a GPU when there is one).
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<(ModelMeta, LstmCnn)> {
        let files = ModelDir::new(dir);
        let meta = crate::models::read_meta(dir, crate::models::ModelKind::LstmCnn)?;
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
        vs.load(files.weights()).with_context(|| {
            format!(
                "loading {} (if it was trained before both convolutions were padded `same`, it no longer fits: train a new one with `pipeline run`)",
                files.weights().display()
            )
        })?;
        let folded = Folded::new(&net, &params);
        Ok((meta, LstmCnn { vs, net: std::sync::Mutex::new(folded), params, scaler, device }))
    }
}
