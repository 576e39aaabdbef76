//! The whole default pipeline on small data: evaluation on the common hold-out, the replay, the
//! report with its plots, the run folder, and the model registry's promotion rule.

use crate::common;
use common::Project;

/// Small and quick, but every stage of pipelines/train.yaml.
/// Models this small rarely beat the HPA; the registry is tested here, the gate in policy.rs.
const QUICK: &[&str] = &["--set", "rf_trees=8", "--set", "cv_folds=0", "--set", "lstm_epochs=2", "--set", "device=cpu", "--set", "require_beating_hpa=false"];

fn run_all(p: &Project) -> common::Run {
    let mut args = vec!["run", "--no-progress"];
    args.extend_from_slice(QUICK);
    p.pipeline(&args)
}

use common::json;

/// Width and height from a PNG's IHDR, after checking the signature.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

#[test]
fn a_run_ends_with_the_report_its_plots_and_promoted_models() {
    let p = Project::new();
    let run = run_all(&p).ok();
    for stage in ["evaluate", "report", "publish", "train_lstm_cnn", "train_random_forest_hpa"] {
        assert_eq!(run.stage_status(stage), "ran", "{stage}");
    }
    run.stdout_has("random_forest v1: promoted, first random_forest version").stdout_has("lstm_cnn v1: promoted, first lstm_cnn version");

    // The run folder keeps the report and links the published versions.
    let latest = p.path().join("artifacts/runs/latest");
    let report = latest.join("report");
    for f in ["comparison_report.txt", "comparison_report.json", "report.html"] {
        assert!(report.join(f).is_file(), "{f} missing from the run's report");
    }
    for f in [
        "model_comparison.png",
        "prediction_comparison.png",
        "rf_predictions.png",
        "lstm_cnn_predictions.png",
        "rf_feature_importance.png",
        "lstm_cnn_training_history.png",
        "frontier.png",
        "replay.png",
    ] {
        let (w, h) = png_size(&report.join(f));
        assert!(w >= 800 && h >= 400, "{f} is {w}×{h}");
    }
    let manifest = json(&latest.join("manifest.json"));
    assert_eq!(manifest["models"].as_array().unwrap().len(), 2, "{manifest}");
    assert!(latest.join("models/random_forest/model.json").is_file(), "run links the published forest");
    assert!(latest.join("models/lstm_cnn/weights.safetensors").is_file(), "run links the published LSTM-CNN");

    // The report says which comparison is honest, compares on the hold-out and replays.
    let text = std::fs::read_to_string(report.join("comparison_report.txt")).unwrap();
    for needle in ["THE HONEST COMPARISON", "leaks the future", "AUTOSCALING REPLAY", "hpa", "recorded", "RECOMMENDATION", "LABEL RULES", "scale_up"] {
        assert!(text.contains(needle), "the text report lacks `{needle}`:\n{text}");
    }
    let hpa_row = text.lines().find(|l| l.trim_start().starts_with("hpa ")).unwrap_or_else(|| panic!("no hpa row:\n{text}"));
    assert!(hpa_row.ends_with("on the frontier") && hpa_row.matches("on the frontier").count() == 2, "the HPA is a point of its frontier: {hpa_row}");
    // The demand forest's risk family, listed and drawn beside the frontier.
    assert!(text.contains("The risk family of train_random_forest_demand"), "{text}");
    let r = json(&report.join("comparison_report.json"));
    assert_eq!(r["risk"]["train_random_forest_demand"].as_array().map(Vec::len), Some(6), "{}", r["risk"]);
    assert_eq!(r["models"], serde_json::json!(["train_random_forest_temporal", "train_lstm_cnn"]), "the honest comparison: unseen hold-out, same labels");
    let recommendation = r["recommendation"].as_str().unwrap();
    assert!(r["recommended_model"].is_string() || recommendation.starts_with("Keep the reactive HPA"), "{recommendation}");
    assert_eq!(r["frontier"].as_array().unwrap().len(), 9, "the HPA at 40..80 %");
    let policies: Vec<&str> = r["replay"].as_array().unwrap().iter().map(|p| p["policy"].as_str().unwrap()).collect();
    for p in ["recorded", "hpa", "seasonal_naive", "train_lstm_cnn", "train_lstm_cnn+hpa"] {
        assert!(policies.contains(&p), "{p} replayed: {policies:?}");
    }
    let own: Vec<(String, bool)> =
        r["own_split"].as_array().unwrap().iter().map(|m| (m["model"].as_str().unwrap().to_string(), m["leaks_future"].as_bool().unwrap())).collect();
    assert!(own.contains(&("train_random_forest".into(), true)), "the shuffled forest is flagged: {own:?}");
    assert!(own.contains(&("train_lstm_cnn".into(), false)));
    assert_eq!(r["label_rules"].as_object().unwrap().len(), 3, "every label rule replayed: {}", r["label_rules"]);
    assert!(r["better_label_rule"].is_string());
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 8, "all plots inlined");

    // The registry.
    p.pipeline(&["models", "list"]).ok().stdout_has("random_forest").stdout_has("*     v1").stdout_has("lstm_cnn");
    p.pipeline(&["models", "show", "random_forest"])
        .ok()
        .stdout_has("(serving)")
        .stdout_has("train_random_forest_demand")
        .stdout_has("label rule: demand")
        .stdout_has("pooled:     a pooled forest (stage `train_random_forest_pooled`)");
    p.pipeline(&["models", "rollback", "random_forest"]).code(1).stderr_has("nothing to roll back to");

    // Decisions without a server: the README's example row (a service this forest never saw:
    // the reactive HPA decides until the pooled forest has its capacity, and says so), then a
    // history through the LSTM-CNN.
    let row = common::repo().join("data/row.json");
    let one: serde_json::Value = serde_json::from_str(&p.pipeline(&["predict", row.to_str().unwrap()]).ok().stdout()).unwrap();
    assert_eq!((one["service_name"].as_str(), one["current_replicas"].as_u64()), (Some("product"), Some(3)), "{one}");
    assert!(one["reasoning"].as_str().unwrap().contains("the pooled forest forecasts `product` once its capacity is fitted"), "{one}");
    let history: Vec<String> = (0..12).map(|i| common::row_json("order", 30 * i, 55.0).to_string()).collect();
    p.write("rows.jsonl", &history.join("\n"));
    let lines = p.pipeline(&["predict", "rows.jsonl", "--model", "lstm_cnn"]).ok().stdout();
    let decisions: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(decisions.len(), 12, "{lines}");
    assert!(decisions[10]["reasoning"].as_str().unwrap().contains("needs 12 rows"), "{}", decisions[10]);
    assert!(!decisions[11]["reasoning"].as_str().unwrap().contains("fallback"), "the 12th row has a window: {}", decisions[11]);
    p.write("bad.json", &format!("[{}, {{\"service_name\": \"order\"}}]", history[0]));
    p.pipeline(&["predict", "bad.json"]).code(2).stderr_has("bad.json: row 2: field `timestamp`");
    p.pipeline(&["predict", "rows.jsonl", "--registry", "elsewhere"]).code(1).stderr_has("no promoted random_forest model in elsewhere");

    // Nothing changed: everything cached, the promoted versions untouched.
    run_all(&p).ok().stdout_has("0 ran");

    // Evaluate given a sliver of memory reads the features a service at a time: the same evaluation.
    let evaluated = || {
        let mut args = vec!["inspect", "evaluate", "--rows", "0"];
        args.extend_from_slice(QUICK);
        let out = p.pipeline(&args).ok().stdout();
        let file = out.lines().find_map(|l| l.strip_prefix("file:")).expect("inspect names the entry's file").trim().to_string();
        let dir = p.path().join(file).parent().unwrap().to_path_buf();
        (std::fs::read(dir.join("evaluation.json")).unwrap(), std::fs::read(dir.join("replay.parquet")).unwrap())
    };
    let whole = evaluated();
    let mut sliver = vec!["-v", "run", "--no-progress", "--only", "evaluate", "--force", "--memory", "1MiB"];
    sliver.extend_from_slice(QUICK);
    p.pipeline(&sliver).ok().stderr_has("groups of services in turn");
    let grouped = evaluated();
    assert!(grouped.0 == whole.0, "evaluation.json differs when read a service at a time");
    assert!(grouped.1 == whole.1, "replay.parquet differs when read a service at a time");
    let complete = std::fs::read_link(&latest).unwrap();

    // A quick partial run after a change leaves `latest` (and its report) where it was.
    let mut partial = vec!["run", "--no-progress", "--until", "labels"];
    partial.extend_from_slice(&QUICK[..4]);
    partial.extend_from_slice(&["--set", "lstm_epochs=3", "--set", "device=cpu"]);
    p.pipeline(&partial).ok();
    assert_eq!(std::fs::read_link(&latest).unwrap(), complete, "a partial run does not move latest");
    assert!(report.join("report.html").is_file());

    // A forest the rule does not accept (stumps, and a rule that asks a challenger for 1000 more
    // minutes below the frontier) is registered but does not replace the serving one. (On data
    // this small, stumps under the HPA floor can land as far below the frontier as a deep forest.)
    let yaml = p.read("pipelines/train.yaml").replace("max_under_provisioned_increase_minutes: 0", "max_under_provisioned_increase_minutes: -1000");
    let (before, demand) = yaml.split_once("  train_random_forest_demand:\n").expect("the published forest's stage");
    let worse =
        format!("{before}  train_random_forest_demand:\n{}", demand.replacen("    params: *forest\n", "    params: { <<: *forest, max_depth: 1 }\n", 1));
    assert_ne!(worse, yaml, "the test edits the published forest");
    p.write("pipelines/train.yaml", &worse);
    run_all(&p).ok().stdout_has("random_forest v2: kept serving v1: v2 has a smaller margin below the HPA");
    let list = p.pipeline(&["models", "list"]).ok().stdout();
    assert!(list.contains("*     v1") && list.contains("      v2"), "{list}");

    // By hand: promote v2, roll back to v1.
    p.pipeline(&["models", "promote", "random_forest", "v2"]).ok().stdout_has("v2 is now serving");
    p.pipeline(&["models", "rollback", "random_forest"]).ok().stdout_has("v1 is serving again");
    p.pipeline(&["models", "promote", "random_forest", "v7"]).code(1).stderr_has("no version `v7`");
}
