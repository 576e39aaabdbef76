//! The proactive policy on load the models have not seen: with a daily ramp it beats the
//! reactive HPA's frontier in the replay (new pods start in 60 s); on flat load it costs about
//! what the HPA costs.

use crate::common;
use common::{Project, daily_trace as trace, json};

const QUICK: &[&str] = &["--set", "rf_trees=16", "--set", "cv_folds=0", "--set", "lstm_epochs=1", "--set", "device=cpu"];

/// A project trained and evaluated on 4 simulated days of `trace`, quickly.
fn evaluated(trace_csv: String) -> (Project, serde_json::Value) {
    let p = Project::bare().file("trace.csv", &trace_csv);
    p.pipeline(&["simulate", "--days", "4", "--services", "frontend,order", "--trace", "trace.csv", "--out", "data/metrics"]).ok();
    let mut run = vec!["run", "--until", "evaluate", "--no-progress"];
    run.extend_from_slice(QUICK);
    p.pipeline(&run).ok();
    let eval = json(&p.entry_dir("evaluate", QUICK).join("evaluation.json"));
    (p, eval)
}

fn margin(eval: &serde_json::Value, policy: &str) -> f64 {
    eval["margins"][policy]["minutes"].as_f64().unwrap_or_else(|| panic!("no margin for {policy}: {}", eval["margins"]))
}

#[test]
fn with_a_daily_ramp_the_forecast_beats_the_hpa() {
    // Quiet nights, a steep morning ramp (07:00-08:00), a busy day, an evening decline.
    let (p, eval) = evaluated(trace(4, |h| match h {
        h if h < 7.0 => 80.0,
        h if h < 8.0 => 80.0 + 920.0 * (h - 7.0),
        h if h < 18.0 => 1000.0 + 60.0 * (h * 3.0).sin(),
        h if h < 21.0 => 1000.0 - 300.0 * (h - 18.0),
        _ => 80.0,
    }));
    for (policy, m) in eval["margins"].as_object().unwrap() {
        eprintln!(
            "{policy:<40} {:>8.1} pod-h {:>8.1} min  margin {:>7.1} min ({:.0}%)",
            eval["replay"][policy]["pod_hours"].as_f64().unwrap(),
            eval["replay"][policy]["under_provisioned_minutes"].as_f64().unwrap(),
            m["minutes"].as_f64().unwrap(),
            m["percent"].as_f64().unwrap()
        );
    }
    let frontier = eval["frontier"]["points"].as_array().unwrap();
    assert_eq!(frontier.len(), 9, "the HPA at 40, 45, ..., 80 %");
    let demand = margin(&eval, "train_random_forest_demand+hpa");
    assert!(demand > 0.0, "the demand forecast under the HPA beats the frontier: {demand} min; {}", eval["margins"]);
    // The HPA itself lies on its frontier.
    assert!(margin(&eval, "hpa").abs() < 1.0, "{}", eval["margins"]["hpa"]);

    // The demand forest's risk family: the less risk, the more pods and the fewer minutes short,
    // and the less often demand came above the raised forecast.
    let family = eval["risk"]["train_random_forest_demand"].as_array().unwrap_or_else(|| panic!("no risk family: {}", eval["risk"]));
    let level = |k: usize, what: &str| family[k][what].as_f64().unwrap();
    assert_eq!(family.iter().map(|m| m["level"].as_f64().unwrap()).collect::<Vec<_>>(), [0.5, 0.3, 0.2, 0.1, 0.05, 0.02]);
    let last = family.len() - 1;
    assert!(level(last, "pod_hours") > level(0, "pod_hours"), "{family:?}");
    assert!(level(last, "under_provisioned_minutes") <= level(0, "under_provisioned_minutes"), "{family:?}");
    assert!(level(last, "exceedance") < level(0, "exceedance"), "{family:?}");

    // A pipeline that asks for one member publishes it with its offsets; serve and `models show`
    // read them from the version.
    let mut publish = vec!["run", "--until", "publish", "--no-progress", "--set", "risk=0.1", "--set", "require_beating_hpa=false"];
    publish.extend_from_slice(QUICK);
    p.pipeline(&publish).ok().stdout_has("random_forest v1: promoted");
    let version = json(&p.path().join("artifacts/models/random_forest/v1/version.json"));
    assert_eq!(version["risk"]["level"].as_f64(), Some(0.1), "{version}");
    assert!(version["risk"]["offsets"]["frontend"].is_number() && version["risk"]["pooled"].is_number(), "{version}");
    p.pipeline(&["models", "show", "random_forest"])
        .ok()
        .stdout_has("risk:       risk 10 % (each service's forecast raised by its hold-out errors' 90 % quantile); pods added: frontend ");
    let mut bad = vec!["run", "--until", "publish", "--no-progress", "--set", "risk=often"];
    bad.extend_from_slice(QUICK);
    p.pipeline(&bad).code(2).stderr_has("publish").stderr_has("`risk` is `none`, `auto` or a probability");
}

#[test]
fn on_flat_load_the_forecast_costs_what_the_hpa_costs() {
    // A service of a few pods: half a pod on average is a tenth of its pod-hours, so "about"
    // is 10 %, and no forecast may buy its pods at a worse rate than the HPA's frontier.
    let (_p, eval) = evaluated(trace(4, |h| 500.0 + 20.0 * (h * 7.0).sin()));
    let hpa = eval["replay"]["hpa"]["pod_hours"].as_f64().unwrap();
    for policy in ["train_random_forest_demand+hpa", "seasonal_naive", "holt_winters"] {
        let pods = eval["replay"][policy]["pod_hours"].as_f64().unwrap_or_else(|| panic!("no {policy}: {}", eval["replay"]));
        assert!(pods <= 1.1 * hpa, "{policy}: {pods:.1} pod-hours against the HPA's {hpa:.1}");
        assert!(margin(&eval, policy) > -1.0, "{policy} above the HPA's frontier: {}", eval["margins"][policy]);
    }
}
