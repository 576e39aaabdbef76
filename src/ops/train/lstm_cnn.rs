//! Training the LSTM-CNN: windows per service, a scaler fitted on the training windows, the
//! network trained with early stopping, then scored on the test windows.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::json;

use super::{latency_us, write_predictions, Fitted, Job};
use crate::models::lstm_cnn::{self, Epoch, Params, TrainingObserver, Windows};
use crate::models::metrics;
use crate::models::row_keys::RowKeys;
use crate::models::sequences::{self, Part, Window, WindowSet};
use crate::models::table::Table;

struct Observer<'a> {
    job: &'a Job,
}

impl TrainingObserver for Observer<'_> {
    fn threads(&self) -> usize {
        self.job.claim.fair_share()
    }

    fn epoch(&self, e: &Epoch, best: bool) {
        self.job.progress.inc(1);
        self.job.progress.message(&format!(
            "epoch {}: loss {:.4}, val_loss {:.4}{}, lr {:.0e}",
            e.epoch,
            e.loss,
            e.val_loss,
            if best { " (best)" } else { "" },
            e.learning_rate
        ));
        tracing::debug!(epoch = e.epoch, loss = e.loss, mae = e.mae, val_loss = e.val_loss, val_mae = e.val_mae, lr = e.learning_rate, "epoch");
    }
}

/// The windows the network trains, validates and is tested on, and how many there were to
/// choose from.
struct Parts {
    train: Vec<Window>,
    val: Vec<Window>,
    test: Vec<Window>,
    train_available: usize,
    val_available: usize,
}

impl Parts {
    /// Every test window; training windows sampled by service to `max_train_rows`; then the
    /// validation windows in the same proportion (validating 8M windows an epoch to train on
    /// 2M would cost four trainings), by service, with the next seed.
    fn choose<'a>(job: &Job, windows: &WindowSet, service: impl Fn(usize) -> &'a str, p: &Params) -> Parts {
        let (train_w, val_w, test) = (windows.part(Part::Train), windows.part(Part::Validation), windows.part(Part::Test));
        let (train_available, val_available) = (train_w.len(), val_w.len());
        let train: Vec<Window> = job.sample((0..train_w.len()).collect(), |w| service(windows.last(&train_w[w])), p.seed).into_iter().map(|w| train_w[w]).collect();
        let val = if train.len() < train_available {
            let keep = (val_available * train.len()).div_ceil(train_available.max(1));
            let services: Vec<&str> = val_w.iter().map(|w| service(windows.last(w))).collect();
            crate::models::sample::stratified(&services, keep, p.seed.wrapping_add(1)).into_iter().map(|w| val_w[w]).collect()
        } else {
            val_w
        };
        Parts { train, val, test, train_available, val_available }
    }

    fn sampled(&self) -> bool {
        self.train.len() < self.train_available
    }
}

/// Loads what the network needs and trains it. With `max_train_rows` the windows are chosen
/// from the split's service, time and split columns first, and only the rows they cover are
/// read: a 200,000-window sample of 40M training rows reads its rows, the validation sample's
/// and the test rows, not 50M.
pub(super) fn load_and_train(job: &Job, input: &Path, features: Option<&[String]>, p: &Params) -> Result<Fitted> {
    let windows_of = |services: &[u32], timestamps: &[i64], test: &[bool]| sequences::windows(services, timestamps, test, p.sequence_length, p.validation_fraction);
    if job.max_train_rows.is_some() {
        let keys = RowKeys::read_with_time(input)?;
        let windows = windows_of(keys.service_ids(), &keys.timestamps, &keys.test);
        let parts = Parts::choose(job, &windows, |r| keys.service(r), p);
        if parts.sampled() {
            let chosen: Vec<Window> = parts.train.iter().chain(&parts.val).chain(&parts.test).copied().collect();
            let keep = windows.rows_of(&chosen, keys.len());
            let windows = windows.restrict(&keep);
            let filter = keys.keep(keep);
            drop(keys);
            job.progress.message(&format!("loading the {} rows the chosen windows cover", filter.rows()));
            let data = super::load(input, features, Some(&filter))?;
            return train(job, data, &windows, parts, p);
        }
    }
    let data = super::load(input, features, None)?;
    let ids: Vec<u32> = (0..data.len()).map(|i| data.service_id(i)).collect();
    let windows = windows_of(&ids, &data.timestamps, &data.test);
    let parts = Parts::choose(job, &windows, |r| data.service(r), p);
    train(job, data, &windows, parts, p)
}

fn train(job: &Job, mut data: Table, windows: &WindowSet, parts: Parts, p: &Params) -> Result<Fitted> {
    let nf = data.nf();
    let Parts { train: train_w, val: val_w, test: test_w, train_available, val_available } = parts;
    let sampled = crate::models::sample::note(train_w.len(), train_available, "windows")
        .map(|s| format!("{s}, validated on {} of {val_available} windows", val_w.len()));
    // As the old code: fitted on the training windows' rows, never on validation or test rows.
    let in_training = windows.rows_of(&train_w, data.len());
    let scaler = data.fit_scaler(|i| in_training[i]);
    drop(in_training);
    let x_scaled = data.scaled(&scaler);
    if test_w.is_empty() {
        bail!("no test windows: each service needs test rows and at least {} rows in all", p.sequence_length);
    }
    // Raw rows for the single-decision latency, as a server would send them; then the f64
    // values go (at 10M rows they were half of the stage's memory: x_scaled holds them as f32).
    let raw: Vec<Vec<f64>> =
        test_w.iter().take(200).map(|w| data.matrix(&windows.rows(w).iter().map(|&r| r as usize).collect::<Vec<_>>())).collect();
    data.release_values();
    let (rtr, ytr) = windows.index(&train_w, &data.y);
    let (rva, yva) = windows.index(&val_w, &data.y);

    job.progress.set_length(p.epochs as u64, "epochs");
    job.progress.message(&format!("{} train / {} validation windows of {} × {nf}", train_w.len(), val_w.len(), p.sequence_length));
    let trained = lstm_cnn::fit(&x_scaled, &Windows { rows: &rtr, y: &ytr }, &Windows { rows: &rva, y: &yva }, scaler, p, &Observer { job })?;
    let model = &trained.model;

    let t_batch = std::time::Instant::now();
    let predicted = model.predict_window_set(&x_scaled, windows, &test_w);
    let batch_seconds = t_batch.elapsed().as_secs_f64();
    let yte: Vec<f64> = test_w.iter().map(|w| data.y[windows.last(w)]).collect();
    let (lo, hi) = job.bounds;
    let test = metrics::score(&yte, &predicted, lo, hi);
    // Single-window latency from raw rows (scaling included).
    let single_us = {
        let _torch = crate::models::torch_runtime::exclusive();
        crate::models::torch_runtime::set_threads(1);
        // Steady state, as a server sees it: the first calls set up libtorch's kernels.
        for w in raw.iter().take(20) {
            std::hint::black_box(model.predict_raw(w).unwrap_or_default());
        }
        latency_us(raw.len(), |i| model.predict_raw(&raw[i]).unwrap_or_default())
    };

    let last = trained.history.last().map(|e| e.epoch).unwrap_or(0);
    let meta = job.meta(
        "lstm_cnn",
        &data.features,
        serde_json::to_value(p)?,
        json!({
            "test": test,
            "training_seconds": trained.seconds,
            "epochs_run": last,
            "best_epoch": trained.best_epoch,
            "best_val_loss": trained.history.get(trained.best_epoch.saturating_sub(1)).map(|e| e.val_loss),
            "single_prediction_us": single_us,
            "batch_predict_seconds": batch_seconds,
            "device": model.device(),
            "train_windows": train_w.len(),
            "sampled": sampled,
            "validation_windows": val_w.len(),
            "test_rows": yte.len(),
        }),
    );
    model.save(&job.out_dir, &meta)?;
    write_history(&job.out_dir, &trained.history)?;
    let rows: Vec<usize> = test_w.iter().map(|w| windows.last(w)).collect();
    write_predictions(&data, &job.out_dir.join(crate::cache::OUTPUT), &rows, &predicted, job.bounds)?;
    let mut note = format!("{}; best epoch {} of {last} on {}", job.note(&test, trained.seconds, single_us), trained.best_epoch, model.device());
    if let Some(s) = sampled {
        note.push_str(&format!("; {s}"));
    }
    Ok(Fitted {
        note,
        summary: json!({ "model": meta, "test": { "rmse": test.rmse, "exact_accuracy": test.exact_accuracy } }),
        test_rows: yte.len() as u64,
    })
}

/// `history.json` for tools, `history.csv` for a spreadsheet or `pipeline query`.
fn write_history(dir: &std::path::Path, history: &[Epoch]) -> Result<()> {
    let files = crate::models::ModelDir::new(dir);
    crate::io::fs::write_atomic(&files.history_json(), &serde_json::to_vec_pretty(history)?)?;
    let mut csv = String::from("epoch,loss,mae,val_loss,val_mae,learning_rate,seconds\n");
    for e in history {
        csv.push_str(&format!("{},{},{},{},{},{},{}\n", e.epoch, e.loss, e.mae, e.val_loss, e.val_mae, e.learning_rate, e.seconds));
    }
    crate::io::fs::write_atomic(&files.history_csv(), csv.as_bytes())
}
