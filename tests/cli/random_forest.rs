//! The Random Forest stage through the real binary: trains, caches, persists, and gives the
//! same model for the same seed whatever `--jobs` is.

use crate::common;
use common::Project;

fn small_forest(p: &Project, extra: &[&str]) -> common::Run {
    let mut args = vec!["run", "--until", "train_random_forest", "--set", "rf_trees=8", "--set", "cv_folds=2"];
    args.extend_from_slice(extra);
    p.pipeline(&args)
}

fn model_dir(p: &Project) -> std::path::PathBuf {
    p.entry_dir("train_random_forest", &["--set", "rf_trees=8", "--set", "cv_folds=2"])
}

#[test]
fn trains_scores_persists_and_reuses() {
    let p = Project::new();
    let run = small_forest(&p, &[]).ok().stdout_has("test RMSE").stdout_has("µs per decision");
    assert_eq!(run.stage_status("train_random_forest"), "ran");
    assert_eq!(run.stage_status("split_temporal"), "-", "not needed for the forest");
    let dir = model_dir(&p);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "random_forest");
    let features: Vec<&str> = meta["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(features.contains(&"response_time_rolling_p95") && features.contains(&"service_order"));
    assert!(!features.contains(&"replica_count") && !features.contains(&"target_replicas"));
    let m = &meta["metrics"];
    for k in ["rmse", "mae", "r2", "exact_accuracy", "within_1_accuracy"] {
        assert!(m["test"][k].is_number(), "test metric {k} missing: {m}");
    }
    assert!(m["cv_rmse_mean"].as_f64().unwrap() > 0.0);
    assert!(m["test"]["within_1_accuracy"].as_f64().unwrap() > 0.5, "a forest should get most rows within one replica: {m}");
    assert_eq!(meta["lineage"]["split_stage"], "split_shuffled");
    let imp = std::fs::read_to_string(dir.join("importances.csv")).unwrap();
    assert!(imp.starts_with("feature,importance\n") && imp.lines().count() == features.len() + 1);
    // The stage's table: test rows with predictions.
    p.pipeline(&["query", "--set", "rf_trees=8", "--set", "cv_folds=2", "SELECT count(*) AS n, min(predicted_replicas) >= 1 AS ok FROM train_random_forest"])
        .ok()
        .stdout_has("| true |");
    small_forest(&p, &[]).ok().stdout_has("0 ran");
    p.pipeline(&["inspect", "train_random_forest", "--set", "rf_trees=8", "--set", "cv_folds=2", "--rows", "0"])
        .ok()
        .stdout_has("notes:")
        .stdout_has("test RMSE");
}

#[test]
fn features_and_max_train_rows_choose_what_the_forest_learns_from() {
    let p = Project::new();
    // The default pipeline samples the forests the report only compares (`compare_rows`).
    let stage = "  train_random_forest:\n    op: train\n    deps: [split_shuffled]\n    model: random_forest\n    max_train_rows: ${compare_rows}\n";
    let yaml = p.read("pipelines/train.yaml");
    assert!(yaml.contains(stage));
    let sampled = yaml.replace("  compare_rows: 20000\n", "  compare_rows: 500\n");
    p.write("pipelines/train.yaml", &sampled.replace(stage, &format!("{stage}    features: [request_count_per_second, service_*]\n")));
    small_forest(&p, &[]).ok().stdout_has("trained on a sample of 500 of ");
    let meta = common::json(&model_dir(&p).join("model.json"));
    let features: Vec<&str> = meta["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(features[0], "request_count_per_second");
    assert!(features.len() > 2 && features[1..].iter().all(|f| f.starts_with("service_")), "{features:?}");
    assert_eq!(meta["metrics"]["train_rows"], 500);
    assert!(meta["metrics"]["sampled"].as_str().unwrap().contains("500 of"), "{}", meta["metrics"]);
    // The same seed samples the same rows: the same forest again.
    let first = std::fs::read(model_dir(&p).join("forest.bin")).unwrap();
    small_forest(&p, &["--from", "train_random_forest"]).ok();
    assert!(first == std::fs::read(model_dir(&p).join("forest.bin")).unwrap());

    // A name that matches no feature fails the stage, listing the ones there are.
    p.write("pipelines/train.yaml", &yaml.replace(stage, &format!("{stage}    features: [requests]\n")));
    small_forest(&p, &[]).code(1).stderr_has("no feature matches `requests`").stderr_has("request_count_per_second");
    p.write("pipelines/train.yaml", &yaml);
    small_forest(&p, &["--set", "compare_rows=1"]).code(2).stderr_has("max_train_rows").stderr_has("at least 2");
}

#[test]
fn same_seed_same_model_whatever_the_jobs() {
    let p = Project::new();
    small_forest(&p, &[]).ok();
    let first = std::fs::read(model_dir(&p).join("forest.bin")).unwrap();
    small_forest(&p, &["--from", "train_random_forest", "--jobs", "1"]).ok();
    let again = std::fs::read(model_dir(&p).join("forest.bin")).unwrap();
    assert!(first == again, "a retrain with --jobs 1 must give the same forest");
    small_forest(&p, &["--set", "seed=7"]).ok();
}

#[test]
fn bad_model_params_name_the_field() {
    let p = Project::new();
    p.pipeline(&["run", "--set", "rf_trees=0"]).code(2).stderr_has("field `params`: n_estimators and sub_forests must be at least 1");
    let yaml = p.read("pipelines/train.yaml").replace("      max_depth: 15\n", "      max_deep: 15\n");
    p.write("pipelines/train.yaml", &yaml);
    p.pipeline(&["run"]).code(2).stderr_has("unknown field `max_deep`");
}
