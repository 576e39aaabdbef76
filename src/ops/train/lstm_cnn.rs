//! Training the LSTM-CNN: windows per service, a scaler fitted on the training windows, the
//! network trained with early stopping, then scored on the test windows.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use anyhow::Context;

use super::{Fitted, Job, latency_us, prediction_batch};
use crate::models::lstm_cnn::{self, Epoch, Params, TrainingObserver, Windows};
use crate::models::row_keys::RowKeys;
use crate::models::scores;
use crate::models::sequences::{self, Part, ScaledRows, Window, WindowSet};
use crate::models::table::Table;
use crate::models::window_stream;

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

/// Windows sampled together, consecutive in time: 16 windows of 12 rows cover 27 rows, where 16
/// picked one by one cover up to 192 (at 10M rows, 200,000 windows picked one by one covered
/// 2.4M distinct rows, 12 times what 200,000 rows of the forest's sample are).
const RUN: usize = 16;

impl Parts {
    /// Every test window; training windows sampled by service to `max_train_rows`; then the
    /// validation windows in the same proportion (validating 8M windows an epoch to train on
    /// 2M would cost four trainings), by service, with the next seed.
    fn choose<'a>(job: &Job, windows: &WindowSet, service: impl Fn(usize) -> &'a str, p: &Params) -> Parts {
        let (train_w, val_w, test) = (windows.part(Part::Train), windows.part(Part::Validation), windows.part(Part::Test));
        let (train_available, val_available) = (train_w.len(), val_w.len());
        let max = job.max_train_rows.unwrap_or(usize::MAX);
        let train = sample_runs(windows, &train_w, max, &service, p.seed);
        let val = if train.len() < train_available {
            let keep = (val_available * train.len()).div_ceil(train_available.max(1));
            sample_runs(windows, &val_w, keep, &service, p.seed.wrapping_add(1))
        } else {
            val_w
        };
        Parts { train, val, test, train_available, val_available }
    }

    fn sampled(&self) -> bool {
        self.train.len() < self.train_available
    }
}

/// At most `keep` of `of` (windows of `windows`, in its order), stratified by service, in runs
/// of up to [`RUN`] consecutive windows of one service so that they share their rows: what the
/// stage reads and holds is the rows the sample covers.
fn sample_runs<'a>(windows: &WindowSet, of: &[Window], keep: usize, service: &impl Fn(usize) -> &'a str, seed: u64) -> Vec<Window> {
    if of.len() <= keep {
        return of.to_vec();
    }
    let mut runs: Vec<std::ops::Range<usize>> = Vec::with_capacity(of.len() / RUN + 1);
    let mut start = 0;
    for i in 1..=of.len() {
        let ends = i == of.len() || i - start == RUN || !of[i].follows(&of[i - 1]) || service(windows.last(&of[i])) != service(windows.last(&of[start]));
        if ends {
            runs.push(start..i);
            start = i;
        }
    }
    let services: Vec<&str> = runs.iter().map(|r| service(windows.last(&of[r.start]))).collect();
    let picked = (keep * runs.len()).div_ceil(of.len()).max(1);
    let mut chosen: Vec<Window> =
        crate::models::sample::stratified(&services, picked, seed).into_iter().flat_map(|r| of[runs[r].clone()].iter().copied()).collect();
    chosen.truncate(keep);
    chosen
}

/// Loads what the network needs and trains it. With `max_train_rows` the windows are chosen
/// from the split's service, time and split columns first, only the rows the training and
/// validation windows cover are read to train on, and the test windows are predicted as the
/// split streams past (see [`window_stream`]): 200,000 windows of 40M training rows read about
/// 400,000 rows, and the 10M test rows are never held at once.
pub(super) fn load_and_train(job: &Job, input: &Path, features: Option<&[String]>, p: &Params) -> Result<Fitted> {
    let windows_of =
        |services: &[u32], timestamps: &[i64], test: &[bool]| sequences::windows(services, timestamps, test, p.sequence_length, p.validation_fraction);
    if job.max_train_rows.is_some() {
        let keys = RowKeys::read_with_time(input)?;
        let windows = windows_of(keys.service_ids(), &keys.timestamps, &keys.test);
        let parts = Parts::choose(job, &windows, |r| keys.service(r), p);
        if parts.sampled() {
            let (file_rows, services) = (keys.len(), keys.service_names().to_vec());
            let fit_on: Vec<Window> = parts.train.iter().chain(&parts.val).copied().collect();
            let keep = windows.rows_of(&fit_on, file_rows);
            let restricted = windows.restrict(&keep);
            let filter = keys.keep(keep);
            drop(keys);
            job.progress.message(&format!("loading the {} rows the chosen windows cover", filter.rows()));
            let data = super::load(input, features, Some(&filter))?;
            drop(filter);
            let fit = fit(job, data, &restricted, &parts, p)?;
            drop(restricted);
            job.progress.message(&format!("predicting {} test windows as the split streams past", parts.test.len()));
            let mut scoring = Scoring::new(job, &fit.trained.model);
            let features = Some(fit.data.features.as_slice());
            let held = window_stream::stream(input, features, &windows, &parts.test, file_rows, &services, window_stream::CHUNK_ROWS, |ready| {
                scoring.add(ready.table, &ready.table.scaled(&fit.trained.model.scaler), ready.rows, ready.last)
            })?;
            tracing::debug!(held, "most rows held while predicting the test windows");
            let scored = scoring.finish()?;
            return finish(job, fit, &parts, scored, p);
        }
    }
    let data = super::load(input, features, None)?;
    let ids: Vec<u32> = (0..data.len()).map(|i| data.service_id(i)).collect();
    let windows = windows_of(&ids, &data.timestamps, &data.test);
    let parts = Parts::choose(job, &windows, |r| data.service(r), p);
    let fit = fit(job, data, &windows, &parts, p)?;
    let mut scoring = Scoring::new(job, &fit.trained.model);
    for block in parts.test.chunks(window_stream::CHUNK_ROWS) {
        let last: Vec<usize> = block.iter().map(|w| windows.last(w)).collect();
        scoring.add(&fit.data, &fit.x_scaled, &windows.row_index(block), &last)?;
    }
    let scored = scoring.finish()?;
    finish(job, fit, &parts, scored, p)
}

/// A trained network and what scoring it needs: the table it trained on (its feature values
/// released), those rows standardised, and a few validation windows' raw rows.
struct Fit {
    trained: lstm_cnn::Trained,
    data: Table,
    x_scaled: ScaledRows,
    raw: Vec<Vec<f64>>,
}

fn fit(job: &Job, mut data: Table, windows: &WindowSet, parts: &Parts, p: &Params) -> Result<Fit> {
    let nf = data.nf();
    let (train_w, val_w) = (&parts.train, &parts.val);
    if parts.test.is_empty() {
        bail!("no test windows: each service needs test rows and at least {} rows in all", p.sequence_length);
    }
    // As the old code: fitted on the training windows' rows, never on validation or test rows.
    let in_training = windows.rows_of(train_w, data.len());
    let scaler = data.fit_scaler(|i| in_training[i]);
    drop(in_training);
    let x_scaled = data.scaled(&scaler);
    // Raw rows for the single-decision latency, as a server would send them; then the f64
    // values go (at 10M rows they were half of the stage's memory: x_scaled holds them as f32).
    let raw: Vec<Vec<f64>> = val_w.iter().take(200).map(|w| data.matrix(&windows.rows(w).iter().map(|&r| r as usize).collect::<Vec<_>>())).collect();
    data.release_values();
    let (rtr, ytr) = windows.index(train_w, &data.y);
    let (rva, yva) = windows.index(val_w, &data.y);

    job.progress.set_length(p.epochs as u64, "epochs");
    job.progress.message(&format!("{} train / {} validation windows of {} × {nf}", train_w.len(), val_w.len(), p.sequence_length));
    let trained = lstm_cnn::fit(&x_scaled, &Windows { rows: &rtr, y: &ytr }, &Windows { rows: &rva, y: &yva }, scaler, p, &Observer { job })?;
    Ok(Fit { trained, data, x_scaled, raw })
}

/// The test windows' predictions as they come: written to the stage's table block by block,
/// with each window's target kept for the scores.
struct Scoring<'a> {
    job: &'a Job,
    model: &'a lstm_cnn::LstmCnn,
    writer: Option<crate::io::table::TableWriter>,
    actual: Vec<f64>,
    predicted: Vec<f64>,
    seconds: f64,
}

struct Scored {
    actual: Vec<f64>,
    predicted: Vec<f64>,
    /// Predicting alone, without reading or writing.
    seconds: f64,
}

impl<'a> Scoring<'a> {
    fn new(job: &'a Job, model: &'a lstm_cnn::LstmCnn) -> Scoring<'a> {
        Scoring { job, model, writer: None, actual: Vec::new(), predicted: Vec::new(), seconds: 0.0 }
    }

    /// Windows `rows` (`[n, steps]` into `x`, the rows of `table` standardised), each
    /// predicting the label of row `last[i]`.
    fn add(&mut self, table: &Table, x: &ScaledRows, rows: &[i64], last: &[usize]) -> Result<()> {
        let t = std::time::Instant::now();
        let predicted = self.model.predict_windows(x, rows);
        self.seconds += t.elapsed().as_secs_f64();
        let batch = prediction_batch(table, last, &predicted, self.job.bounds)?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(crate::io::table::TableWriter::create(&self.job.out_dir.join(crate::cache::OUTPUT), batch.schema())?),
        };
        writer.write(&batch)?;
        self.actual.extend(last.iter().map(|&r| table.y[r]));
        self.predicted.extend(predicted);
        Ok(())
    }

    fn finish(self) -> Result<Scored> {
        self.writer.context("no test window was predicted")?.finish()?;
        Ok(Scored { actual: self.actual, predicted: self.predicted, seconds: self.seconds })
    }
}

fn finish(job: &Job, fit: Fit, parts: &Parts, scored: Scored, p: &Params) -> Result<Fitted> {
    let Fit { trained, data, raw, .. } = fit;
    let model = &trained.model;
    let (train_w, val_w) = (&parts.train, &parts.val);
    let sampled = crate::models::sample::note(train_w.len(), parts.train_available, "windows")
        .map(|s| format!("{s}, validated on {} of {} windows", val_w.len(), parts.val_available));
    let (lo, hi) = job.bounds;
    let test = scores::score(&scored.actual, &scored.predicted, lo, hi);
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
        crate::models::ModelKind::LstmCnn,
        &data.features,
        serde_json::to_value(p)?,
        json!({
            "test": test,
            "training_seconds": trained.seconds,
            "epochs_run": last,
            "best_epoch": trained.best_epoch,
            "best_val_loss": trained.history.get(trained.best_epoch.saturating_sub(1)).map(|e| e.val_loss),
            "single_prediction_us": single_us,
            "batch_predict_seconds": scored.seconds,
            "device": model.device(),
            "train_windows": train_w.len(),
            "sampled": sampled,
            "validation_windows": val_w.len(),
            "test_rows": scored.actual.len(),
        }),
    );
    model.save(&job.out_dir, &meta)?;
    write_history(&job.out_dir, &trained.history)?;
    let mut note = format!("{}; best epoch {} of {last} on {}", job.note(&test, trained.seconds, single_us), trained.best_epoch, model.device());
    if let Some(s) = sampled {
        note.push_str(&format!("; {s}"));
    }
    Ok(Fitted {
        note,
        summary: json!({ "model": meta, "test": { "rmse": test.rmse, "exact_accuracy": test.exact_accuracy } }),
        test_rows: scored.actual.len() as u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_sampled_in_runs_that_share_their_rows() {
        // Two services of 2,000 and 1,000 rows, interleaved; windows of 12.
        let services: Vec<u32> = (0..3000).map(|i| u32::from(i % 3 == 2)).collect();
        let timestamps: Vec<i64> = (0..3000).collect();
        let set = sequences::windows(&services, &timestamps, &[false; 3000], 12, 0.0);
        let train = set.part(Part::Train);
        let names = ["a", "b"];
        let service = |r: usize| names[services[r] as usize];
        let sample = sample_runs(&set, &train, 320, &service, 42);
        assert_eq!(sample.len(), 320);
        let count = |name: &str| sample.iter().filter(|w| service(set.last(w)) == name).count();
        let a = count("a");
        assert!((200..=230).contains(&a), "a has two thirds of the windows: {a}");
        // Runs of consecutive windows: they cover far fewer rows than 320 windows apart would.
        let covered = set.rows_of(&sample, 3000).iter().filter(|&&c| c).count();
        assert!(covered <= 320 / RUN * (RUN + 11) + 2 * RUN, "{covered} rows");
        let runs = 1 + sample.windows(2).filter(|p| !p[1].follows(&p[0])).count();
        assert!(runs >= 320 / RUN, "{runs} runs");
        assert_eq!(sample_runs(&set, &train, 320, &service, 42), sample, "seeded");
        assert_ne!(sample_runs(&set, &train, 320, &service, 43), sample);
        assert_eq!(sample_runs(&set, &train, 5000, &service, 42), train, "all of them when they fit");
    }
}
