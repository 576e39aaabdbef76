//! Training the LSTM-CNN: windows per service, a scaler fitted on the training windows, the
//! network trained with early stopping, then scored on the test windows.

use anyhow::{bail, Result};
use serde_json::json;

use super::{latency_us, write_predictions, Fitted, Job};
use crate::models::table::Table;
use crate::models::lstm_cnn::{self, Epoch, Params, TrainingObserver, Windows};
use crate::models::metrics;
use crate::models::sequences::{self, Part};

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

pub(super) fn train(job: &Job, data: &Table, p: &Params) -> Result<Fitted> {
    let nf = data.nf();
    let windows = sequences::windows(&data.service_refs(), &data.timestamps, &data.test, p.sequence_length, p.validation_fraction);
    let (train_w, val_w, test_w) = (windows.part(Part::Train), windows.part(Part::Validation), windows.part(Part::Test));
    let n_available = train_w.len();
    let train_w: Vec<_> =
        job.sample((0..train_w.len()).collect(), |w| data.service(windows.last(&train_w[w])), p.seed).into_iter().map(|w| train_w[w]).collect();
    let sampled = crate::models::sample::note(train_w.len(), n_available, "windows");
    // As the old code: fitted on the training windows' rows, never on validation or test rows.
    let in_training = windows.rows_of(&train_w, data.y.len());
    let scaler = data.fit_scaler(|i| in_training[i]);
    let x_scaled = data.scaled(&scaler);
    if test_w.is_empty() {
        bail!("no test windows: each service needs test rows and at least {} rows in all", p.sequence_length);
    }
    let (rtr, ytr) = windows.index(&train_w, &data.y);
    let (rva, yva) = windows.index(&val_w, &data.y);
    let (rte, _) = windows.index(&test_w, &data.y);

    job.progress.set_length(p.epochs as u64, "epochs");
    job.progress.message(&format!("{} train / {} validation windows of {} × {nf}", train_w.len(), val_w.len(), p.sequence_length));
    let trained = lstm_cnn::fit(&x_scaled, &Windows { rows: &rtr, y: &ytr }, &Windows { rows: &rva, y: &yva }, scaler, p, &Observer { job })?;
    let model = &trained.model;

    let t_batch = std::time::Instant::now();
    let predicted = model.predict_windows(&x_scaled, &rte);
    let batch_seconds = t_batch.elapsed().as_secs_f64();
    let yte: Vec<f64> = test_w.iter().map(|w| data.y[windows.last(w)]).collect();
    let (lo, hi) = job.bounds;
    let test = metrics::score(&yte, &predicted, lo, hi);
    // Single-window latency from raw rows (scaling included), as a server would call it.
    let raw: Vec<Vec<f64>> =
        test_w.iter().take(200).map(|w| data.matrix(&windows.rows(w).iter().map(|&r| r as usize).collect::<Vec<_>>())).collect();
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
    write_predictions(data, &job.out_dir.join(crate::cache::OUTPUT), &rows, &predicted, job.bounds)?;
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
