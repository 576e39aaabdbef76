//! Training a Random Forest: fit on the train rows, score on the test rows, k-fold CV on the
//! training part, and the forest's feature importances beside the model.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Fitted, Job, latency_us, write_predictions};
use crate::dag::progress::StageProgress;
use crate::models::random_forest::{self, Params};
use crate::models::scores;
use crate::models::table::Table;

/// The row-major features and the targets of the table's rows that `pick` selects.
fn table_rows(data: &Table, pick: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let picked: Vec<usize> = (0..data.len()).filter(|&i| pick(i)).collect();
    (data.matrix(&picked), picked.iter().map(|&i| data.y[i]).collect())
}

/// The rows of a row-major matrix (and their targets) that `pick` selects.
fn rows(x: &[f64], y: &[f64], nf: usize, pick: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..y.len() {
        if pick(i) {
            xs.extend_from_slice(&x[i * nf..(i + 1) * nf]);
            ys.push(y[i]);
        }
    }
    (xs, ys)
}

pub(super) fn train(job: &Job, data: &Table, rf: &Params, folds: usize) -> Result<Fitted> {
    let nf = data.nf();
    // Rows with a feature that is not a number (a load feature of a service whose capacity
    // could not be fitted) are left out of both parts.
    let available: Vec<usize> = (0..data.len()).filter(|&i| !data.test[i] && data.finite(i)).collect();
    let n_available = job.sampled_from.unwrap_or(available.len());
    let mut picked = vec![false; data.len()];
    for i in job.sample(available, |i| data.service(i), rf.seed) {
        picked[i] = true;
    }
    let (xtr, ytr) = table_rows(data, |i| picked[i]);
    let sampled = crate::models::sample::note(ytr.len(), n_available, "rows");
    let test_rows: Vec<usize> = data.test_rows().into_iter().filter(|&i| data.finite(i)).collect();
    let yte: Vec<f64> = test_rows.iter().map(|&i| data.y[i]).collect();
    if ytr.is_empty() || yte.is_empty() {
        bail!("the split has {} train and {} test rows; both are needed", ytr.len(), yte.len());
    }
    let (lo, hi) = job.bounds;
    let threads = job.claim.fair_share();
    job.progress.message(&format!("fitting {} trees on {} rows × {nf} features ({threads} threads)", rf.n_estimators, ytr.len()));
    let t0 = std::time::Instant::now();
    let fitted = random_forest::fit(&xtr, &ytr, nf, rf, threads)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let t_batch = std::time::Instant::now();
    let predicted = data.map_chunks(&test_rows, |x| fitted.forest.predict_batch(x, job.claim.fair_share()));
    let batch_seconds = t_batch.elapsed().as_secs_f64();
    let test = scores::score(&yte, &predicted, lo, hi);
    let xs = data.matrix(&test_rows[..yte.len().min(2000)]);
    let single_us = latency_us(yte.len().min(2000), |r| fitted.forest.predict_row(&xs[r * nf..(r + 1) * nf]));

    let cv = if folds >= 2 { Some(cross_validate(&xtr, &ytr, nf, rf, folds, job)?) } else { None };

    let meta = job.meta(
        crate::models::ModelKind::RandomForest,
        &data.features,
        serde_json::to_value(rf)?,
        json!({
            "test": test,
            "cv_rmse_mean": cv.map(|c| c.0),
            "cv_rmse_std": cv.map(|c| c.1),
            "training_seconds": train_seconds,
            "single_prediction_us": single_us,
            "batch_predict_seconds": batch_seconds,
            "train_rows": ytr.len(),
            "sampled": sampled,
            "test_rows": yte.len(),
        }),
    );
    crate::models::save_forest(&job.out_dir, &meta, &fitted.forest)?;
    write_importances(&job.out_dir, &data.features, &fitted.importances)?;
    write_predictions(data, &job.out_dir.join(crate::cache::OUTPUT), &test_rows, &predicted, job.bounds)?;
    Ok(Fitted {
        note: job.note(&test, train_seconds, single_us) + &sampled.map(|s| format!("; {s}")).unwrap_or_default(),
        summary: json!({ "model": meta, "test": { "rmse": test.rmse, "exact_accuracy": test.exact_accuracy } }),
        test_rows: yte.len() as u64,
    })
}

/// k-fold RMSE on the training part: rows shuffled with the model's seed, then cut into
/// contiguous folds (scikit-learn's KFold over an already shuffled training set).
fn cross_validate(x: &[f64], y: &[f64], nf: usize, rf: &Params, folds: usize, job: &Job) -> Result<(f64, f64)> {
    let progress: &StageProgress = &job.progress;
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    crate::rng::Rng::new(rf.seed, 2).shuffle(&mut order);
    let mut rmses = Vec::with_capacity(folds);
    for k in 0..folds {
        progress.message(&format!("cross-validation fold {}/{folds}", k + 1));
        let (a, b) = (n * k / folds, n * (k + 1) / folds);
        let held: std::collections::HashSet<usize> = order[a..b].iter().copied().collect();
        let (xtr, ytr) = rows(x, y, nf, |i| !held.contains(&i));
        let (xva, yva) = rows(x, y, nf, |i| held.contains(&i));
        let threads = job.claim.fair_share();
        let f = random_forest::fit(&xtr, &ytr, nf, rf, threads)?;
        let p = f.forest.predict_batch(&xva, threads);
        rmses.push(scores::score(&yva, &p, f64::MIN, f64::MAX).rmse);
    }
    let mean = rmses.iter().sum::<f64>() / folds as f64;
    let std = (rmses.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / folds as f64).sqrt();
    Ok((mean, std))
}

fn write_importances(dir: &std::path::Path, features: &[String], imp: &[f64]) -> Result<()> {
    let mut pairs: Vec<(&String, f64)> = features.iter().zip(imp.iter().copied()).collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut csv = String::from("feature,importance\n");
    for (f, v) in &pairs {
        csv.push_str(&format!("{f},{v}\n"));
    }
    let files = crate::models::ModelDir::new(dir);
    crate::io::fs::write_atomic(&files.importances_csv(), csv.as_bytes())?;
    let json: Vec<serde_json::Value> = pairs.iter().map(|(f, v)| json!({ "feature": f, "importance": v })).collect();
    crate::io::fs::write_atomic(&files.importances_json(), &serde_json::to_vec_pretty(&json)?)
}
