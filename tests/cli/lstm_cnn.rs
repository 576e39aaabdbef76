//! The LSTM-CNN stage through the real binary: trains on windows of one service, keeps its
//! history, is deterministic for a seed on the CPU, and reloads to identical predictions.

use crate::common;
use common::Project;

use autoscale::models::lstm_cnn::LstmCnn;
use autoscale::models::sequences::{self, Part};
use autoscale::models::torch_runtime::DeviceChoice;

const QUICK: &[&str] = &["--set", "lstm_epochs=3", "--set", "device=cpu"];

fn train(p: &Project, extra: &[&str]) -> common::Run {
    let mut args = vec!["run", "--until", "train_lstm_cnn"];
    args.extend_from_slice(QUICK);
    args.extend_from_slice(extra);
    p.pipeline(&args)
}

fn model_dir(p: &Project) -> std::path::PathBuf {
    p.entry_dir("train_lstm_cnn", QUICK)
}

use common::json;

#[test]
fn trains_keeps_history_and_reloads_to_identical_predictions() {
    let p = Project::new();
    let run = train(&p, &[]).ok().stdout_has("test RMSE").stdout_has("best epoch");
    assert_eq!(run.stage_status("train_lstm_cnn"), "ran");
    assert_eq!(run.stage_status("split_shuffled"), "-", "not needed for the LSTM-CNN");
    let dir = model_dir(&p);
    for f in ["weights.safetensors", "scaler.json", "history.json", "history.csv", "model.json"] {
        assert!(dir.join(f).is_file(), "{f} missing from the model folder");
    }
    let meta = json(&dir.join("model.json"));
    assert_eq!(meta["kind"], "lstm_cnn");
    assert_eq!(meta["params"]["sequence_length"], 12);
    assert_eq!(meta["metrics"]["device"], "cpu");
    // Recorded for the report; how fast it is belongs to benches/lstm_cnn.py, not to a test that
    // fails when the machine is busy.
    assert!(meta["metrics"]["single_prediction_us"].as_f64().is_some_and(|us| us > 0.0), "single-row latency recorded: {}", meta["metrics"]);
    let history = json(&dir.join("history.json"));
    let epochs = history.as_array().unwrap();
    assert_eq!(epochs.len(), 3);
    for e in epochs {
        for k in ["loss", "mae", "val_loss", "val_mae", "learning_rate"] {
            assert!(e[k].as_f64().is_some_and(f64::is_finite), "epoch field {k}: {e}");
        }
    }
    assert!(epochs[2]["loss"].as_f64() < epochs[0]["loss"].as_f64(), "training loss should fall: {history}");

    // Reload from disk and predict the stage's test windows again: the same numbers.
    let (meta, model) = LstmCnn::load(&dir, DeviceChoice::Cpu).unwrap();
    let split = p.path().join("split.parquet");
    p.pipeline(&["export", "split_temporal", split.to_str().unwrap()]).ok();
    // (The pooled forest's load features are read only where named.)
    let table = autoscale::models::table::Table::load(&split).unwrap().without_named_only().unwrap();
    let features: Vec<String> = meta.features.clone();
    assert_eq!(table.features, features);
    let (ts, x) = (&table.timestamps, &table.dense());
    let windows = sequences::windows(&table.service_refs(), ts, &table.test, 12, 0.2);
    let test_w = windows.part(Part::Test);
    let x_scaled = model.scaler.transform(x);
    // Stacked windows of the dense rows, and windows gathered from the rows with the one-hot
    // columns as each row's service: the same numbers.
    let again = model.predict_scaled(&windows.stack(&test_w, &x_scaled, features.len()));
    let (rows, _) = windows.index(&test_w, &vec![0.0; ts.len()]);
    let scaled = table.scaled(&model.scaler);
    assert!(scaled.stored < features.len(), "the one-hot columns are not stored");
    assert_eq!(model.predict_windows(&scaled, &rows), again);
    assert_eq!(model.predict_windows(&sequences::ScaledRows::dense(x_scaled.clone(), features.len()), &rows), again);
    let stage = common::read_parquet(&dir.join("output.parquet"));
    let stored = common::f64_column(&stage, "prediction");
    assert_eq!(again.len(), stored.len());
    for (a, b) in again.iter().zip(&stored) {
        assert!((a - b).abs() < 1e-6, "reloaded prediction {a} differs from the stage's {b}");
    }
    // One window from raw rows gives the batch answer too.
    let nf = features.len();
    let raw: Vec<f64> = windows.rows(&test_w[0]).iter().flat_map(|&r| x[r as usize * nf..(r as usize + 1) * nf].to_vec()).collect();
    assert!((model.predict_raw(&raw).unwrap() - stored[0]).abs() < 1e-5);

    // Cached on the second run; inspect shows the metrics.
    train(&p, &[]).ok().stdout_has("0 ran");
}

#[test]
fn same_seed_same_weights_on_the_cpu() {
    let (a, b) = (Project::new(), Project::new());
    train(&a, &[]).ok();
    train(&b, &["--jobs", "1"]).ok();
    let wa = std::fs::read(model_dir(&a).join("weights.safetensors")).unwrap();
    let wb = std::fs::read(model_dir(&b).join("weights.safetensors")).unwrap();
    assert!(wa == wb, "two trainings with one seed must give the same weights");
}

#[test]
fn misconfiguration_is_refused_with_the_fix() {
    let p = Project::new();
    let yaml = p.read("pipelines/train.yaml");
    p.write("pipelines/train.yaml", &yaml.replace("    deps: [split_temporal]\n    model: lstm_cnn", "    deps: [split_shuffled]\n    model: lstm_cnn"));
    p.pipeline(&["run"]).code(2).stderr_has("needs a temporal split");
    p.write("pipelines/train.yaml", &yaml.replace("      sequence_length: 12\n", "      sequence_len: 12\n"));
    p.pipeline(&["run"]).code(2).stderr_has("unknown field `sequence_len`");
    p.write("pipelines/train.yaml", &yaml.replace("      sequence_length: 12\n", "      sequence_length: 12\n      kernel_size: 4\n"));
    p.pipeline(&["run"]).code(2).stderr_has("kernel_size").stderr_has("must be odd");
    // Evaluation and publishing compare on a temporal hold-out, read from the split stage itself.
    for (deps, stage) in [
        (
            "train_random_forest_temporal, train_lstm_cnn, train_random_forest, train_random_forest_hpa, train_random_forest_demand, train_random_forest_pooled]",
            "evaluate",
        ),
        ("train_random_forest_demand, train_lstm_cnn, train_random_forest_pooled]\n", "publish"),
    ] {
        let from = format!("deps: [split_temporal, {deps}");
        assert_eq!(yaml.matches(&from).count(), 1, "{stage}'s deps in train.yaml");
        p.write("pipelines/train.yaml", &yaml.replace(&from, &from.replace("split_temporal", "split_shuffled")));
        p.pipeline(&["run"]).code(2).stderr_has(&format!("stage `{stage}`, field `deps`: the first dep, `split_shuffled`, must be a temporal split"));
    }
    // The registry serves one version of each model: publishing two forests is refused.
    let from = "deps: [split_temporal, train_random_forest_demand, train_lstm_cnn, train_random_forest_pooled]\n";
    p.write(
        "pipelines/train.yaml",
        &yaml.replace(from, "deps: [split_temporal, train_random_forest_demand, train_random_forest_temporal, train_random_forest_pooled]\n"),
    );
    p.pipeline(&["run"])
        .code(2)
        .stderr_has("stage `publish`, field `deps`: `train_random_forest_demand` and `train_random_forest_temporal` both train a random_forest");
    // The pooled forest rides with the forest's version: it must be one of the deps, and a forest.
    p.write("pipelines/train.yaml", &yaml.replace("    pooled: train_random_forest_pooled\n", "    pooled: train_random_forest_hpa\n"));
    p.pipeline(&["run"]).code(2).stderr_has("stage `publish`, field `pooled`: `train_random_forest_hpa` is not among the train stages in deps");
    p.write("pipelines/train.yaml", &yaml.replace("    pooled: train_random_forest_pooled\n", "    pooled: train_lstm_cnn\n"));
    p.pipeline(&["run"]).code(2).stderr_has("`train_lstm_cnn` trains a lstm_cnn; the pooled model is a random_forest");
    p.write("pipelines/train.yaml", &yaml);
    // Asking for a GPU where there is none names what to do.
    if !std::path::Path::new("/proc/driver/nvidia").exists() {
        p.pipeline(&["run", "--until", "train_lstm_cnn", "--set", "device=cuda", "--set", "lstm_epochs=1"]).code(1).stderr_has("device: cuda");
    }
}

/// A clone without libtorch must hear which command installs it, before torch-sys's build
/// script fails in its C++ compile; the wrapper must not get in the way of anything else.
#[test]
fn a_build_without_libtorch_names_the_setup_script() {
    let wrapper = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rustc-wrapper");
    let empty = tempfile::tempdir().unwrap();
    let torch_build_script = "/registry/torch-sys-0.26.0/build.rs";
    let out = std::process::Command::new(wrapper)
        .args(["rustc", "--crate-name", "build_script_build", torch_build_script])
        .env("LIBTORCH", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("./scripts/setup.sh"), "{stderr}");
    assert!(stderr.contains(&empty.path().display().to_string()), "{stderr}");

    // With the project's libtorch (what scripts/setup.sh installed), the build goes on.
    let installed = std::process::Command::new(wrapper)
        .args(["true", "--crate-name", "build_script_build", torch_build_script])
        .env("LIBTORCH", concat!(env!("CARGO_MANIFEST_DIR"), "/.libtorch"))
        .status()
        .unwrap();
    assert!(installed.success(), "the wrapper must find the libtorch scripts/setup.sh installs");

    let passthrough = std::process::Command::new(wrapper).args(["echo", "--crate-name", "tch"]).env("LIBTORCH", empty.path()).output().unwrap();
    assert!(passthrough.status.success());
    assert_eq!(String::from_utf8_lossy(&passthrough.stdout), "--crate-name tch\n");
}

#[test]
fn max_train_rows_samples_training_windows_by_service() {
    let p = Project::new();
    // The default pipeline samples the LSTM-CNN's windows (`lstm_windows`).
    let stage = "  train_lstm_cnn:\n    op: train\n    deps: [split_temporal]\n    model: lstm_cnn\n    max_train_rows: ${lstm_windows}\n";
    assert!(p.read("pipelines/train.yaml").contains(stage));
    train(&p, &["--set", "lstm_epochs=1", "--set", "lstm_windows=700"]).ok().stdout_has("trained on a sample of 700 of ").stdout_has(", validated on ");
    let dir = p.entry_dir("train_lstm_cnn", &["--set", "lstm_epochs=1", "--set", "device=cpu", "--set", "lstm_windows=700"]);
    let m = &json(&dir.join("model.json"))["metrics"];
    assert_eq!(m["train_windows"], 700, "{m}");
    let validation = m["validation_windows"].as_u64().unwrap();
    assert!(validation > 0 && validation < 700, "validation sampled in the training sample's proportion: {m}");

    // The stage read only the rows its windows cover; the model on the whole split predicts
    // the test rows as the stage did, so those were the rows it read.
    let split = p.path().join("split.parquet");
    p.pipeline(&["export", "split_temporal", split.to_str().unwrap()]).ok();
    let table = autoscale::models::table::Table::load(&split).unwrap();
    let model = autoscale::models::model::Model::load(&dir, DeviceChoice::Cpu).unwrap();
    let whole: std::collections::HashMap<(String, i64), f64> = table
        .test_rows()
        .into_iter()
        .zip(model.predict_rows(&table, &table.test_rows()).unwrap())
        .filter_map(|(r, pred)| Some(((table.service(r).to_string(), table.timestamps[r]), pred?)))
        .collect();
    let stage = common::read_parquet(&dir.join("output.parquet"));
    let keys = common::str_column(&stage, "service_name").into_iter().zip(common::i64_column(&stage, "timestamp"));
    let stored = common::f64_column(&stage, "prediction");
    assert_eq!(stored.len(), whole.len());
    for (key, s) in keys.zip(stored) {
        assert!((whole[&key] - s).abs() < 1e-6, "{key:?}: {} on the whole split, {s} in the stage", whole[&key]);
    }
}
