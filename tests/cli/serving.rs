//! Serving: the predictor replays raw rows to the same features and predictions as the batch
//! pipeline, and the real server answers every endpoint over a socket.

use crate::common;
use common::{Project, row_json, start_server as start};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autoscale::artifacts::models::Registry;
use autoscale::evaluation::policy::PolicySpec;
use autoscale::hpa::{Ask, OnlineHpa};
use autoscale::models::model::Model;
use autoscale::models::table::Table;
use autoscale::row::NUMERIC;
use autoscale::serving::features::{History, RawRow};
use autoscale::serving::predictor::{Guardrails, Loaded, Predictor};

pub const QUICK: &[&str] =
    &["--set", "rf_trees=8", "--set", "cv_folds=0", "--set", "lstm_epochs=2", "--set", "device=cpu", "--set", "require_beating_hpa=false"];

/// A project whose registry has a promoted forest and LSTM-CNN.
pub fn trained() -> Project {
    let p = Project::new();
    let mut args = vec!["run", "--until", "publish", "--no-progress"];
    args.extend_from_slice(QUICK);
    p.pipeline(&args).ok();
    p
}

pub fn export(p: &Project, stage: &str) -> datafusion::arrow::array::RecordBatch {
    let path = p.path().join(format!("{stage}.parquet"));
    let mut args = vec!["export", stage, path.to_str().unwrap()];
    args.extend_from_slice(QUICK);
    p.pipeline(&args).ok();
    common::read_parquet(&path)
}

/// The ingest table's rows as the collector would send them, in time order per service.
pub fn raw_rows(p: &Project) -> Vec<RawRow> {
    let t = export(p, "ingest");
    let ts = common::i64_column(&t, "timestamp");
    let svc = common::str_column(&t, "service_name");
    let cols: Vec<Vec<f64>> = NUMERIC.iter().map(|(n, _)| common::f64_column(&t, n)).collect();
    let mut rows: Vec<RawRow> = (0..t.num_rows())
        .map(|i| {
            let mut values = [0.0; NUMERIC.len()];
            for (j, c) in cols.iter().enumerate() {
                values[j] = c[i];
            }
            RawRow { timestamp: ts[i], service: svc[i].clone(), values }
        })
        .collect();
    rows.sort_by(|a, b| (&a.service, a.timestamp).cmp(&(&b.service, b.timestamp)));
    rows
}

#[test]
fn predictor_replays_rows_to_the_batch_features_and_predictions() {
    let p = trained();
    let rows = raw_rows(&p);
    let features = export(&p, "features");
    let split = Table::load(&{
        export(&p, "split_temporal");
        p.path().join("split_temporal.parquet")
    })
    .unwrap();
    // Features, row by row, against the SQL stage (same order: service, then time).
    let names: Vec<String> = features
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !["timestamp", "service_name", "replica_count"].contains(&n.as_str()) && !n.starts_with("service_"))
        .collect();
    let sql: Vec<Vec<f64>> = names.iter().map(|n| common::f64_column(&features, n)).collect();
    let sql_service = common::str_column(&features, "service_name");
    let sql_ts = common::i64_column(&features, "timestamp");
    let mut order: Vec<usize> = (0..features.num_rows()).collect();
    order.sort_by(|&a, &b| (&sql_service[a], sql_ts[a]).cmp(&(&sql_service[b], sql_ts[b])));
    assert_eq!(rows.len(), order.len());
    let mut histories: std::collections::HashMap<String, History> = Default::default();
    let mut worst = 0.0f64;
    for (row, &i) in rows.iter().zip(&order) {
        assert_eq!((row.service.as_str(), row.timestamp), (sql_service[i].as_str(), sql_ts[i]));
        let online = histories.entry(row.service.clone()).or_default().push(row);
        for (j, name) in names.iter().enumerate() {
            let v = online[autoscale::serving::features::position(name).unwrap_or_else(|| panic!("the server does not compute `{name}`"))];
            let d = (v - sql[j][i]).abs() / sql[j][i].abs().max(1.0);
            worst = worst.max(d);
            assert!(d <= 1e-9, "{name} of {} at {}: online {v} vs SQL {}", row.service, row.timestamp, sql[j][i]);
        }
    }
    assert!(worst <= 1e-9);

    // Decisions against batch predictions of the same models (no step limit, so the policy's
    // replicas show through): the promoted policy is the forecast as a floor under the reactive
    // HPA on the rows the server saw, so a decision is never below the model's replicas and is
    // exactly what that policy gives.
    let reg = Registry::of_project(p.path());
    // (The drift monitor, tested on its own, off: this compares with the batch forecasts.)
    let open =
        Guardrails { max_step: 10, drift: autoscale::serving::drift::DriftBounds { window_seconds: 0.0, ..Default::default() }, ..Guardrails::default() };
    for kind in autoscale::models::ModelKind::ALL {
        let loaded = Loaded::promoted(&reg, kind).unwrap().expect("a promoted model");
        let model = Model::load(&loaded.dir, autoscale::models::torch_runtime::DeviceChoice::Cpu).unwrap();
        let all: Vec<usize> = (0..split.len()).collect();
        let batch = model.predict_rows(&split, &all).unwrap();
        let mut by_key: std::collections::HashMap<(String, i64), Option<f64>> = Default::default();
        for i in all {
            by_key.insert((split.service(i).to_string(), split.timestamps[i]), batch[i]);
        }
        // The server holds nothing by default (the actuator's HPA does): the policy's HPA
        // settings without their stabilisation.
        let (reactive, alone) = match loaded.policy.clone() {
            PolicySpec::Proactive(r) => (r, false),
            PolicySpec::Forecast(r) => (r, true),
            PolicySpec::AsPredicted => panic!("{kind} was published without a policy"),
        };
        let reactive = reactive.unheld();
        // The version's own model alone: its pooled forest is compared in pooled.rs.
        let predictor = Predictor::new(Some(loaded.without_pooled()), open.clone());
        let mut hpa: std::collections::HashMap<String, OnlineHpa> = Default::default();
        let (mut compared, mut warming, mut above) = (0, 0, 0);
        for row in &rows {
            let d = predictor.decide(row).unwrap().decision;
            let b = by_key[&(row.service.clone(), row.timestamp)];
            let forecast = b.map_or(0.0, |b| autoscale::models::scores::replicas(b, 1.0, 10.0));
            let (now, cpu) = (row.timestamp as f64 / 1e6, row.get("cpu_usage_percent"));
            let part = if alone && b.is_some() { Ask::Replicas(forecast) } else { Ask::Metrics { floor: forecast } };
            let want = hpa.entry(row.service.clone()).or_default().decide(now, cpu, row.replicas(), part, &reactive, (1.0, 10.0));
            assert_eq!(d.predicted_replicas as f64, want.replicas, "{kind} {} at {}: {d:?} vs forecast {forecast}", row.service, row.timestamp);
            if b.is_some() {
                assert!(d.predicted_replicas as f64 >= forecast, "{d:?} below the forecast {forecast}");
                above += usize::from(d.predicted_replicas as f64 > forecast);
                compared += 1;
            } else {
                assert!(d.reasoning.contains("needs 12 rows") && d.reasoning.contains("the reactive HPA decides"), "{d:?}");
                warming += 1;
            }
        }
        if alone {
            assert_eq!(above, 0, "{kind}: a forecast alone is the decision");
        } else {
            assert!(above > 0, "{kind}: the HPA floor never lifted a decision");
        }
        assert!(compared > 1000, "{kind}: only {compared} rows compared");
        assert_eq!(
            warming,
            if kind == autoscale::models::ModelKind::LstmCnn { 11 * 3 } else { 0 },
            "{kind}: the LSTM-CNN warms up on 11 rows of each of 3 services"
        );
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn body(mut r: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

fn post(base: &str, path: &str, text: &str) -> (u16, String) {
    body(agent().post(format!("{base}{path}")).header("Content-Type", "application/json").send(text).unwrap())
}

fn get(base: &str, path: &str) -> (u16, String) {
    body(agent().get(format!("{base}{path}")).call().unwrap())
}

#[test]
fn the_server_answers_every_endpoint_and_refuses_bad_requests() {
    let p = trained();
    let s = start(&p, &["--max-body-bytes", "8192"], &[]);
    let b = &s.base;
    assert_eq!(get(b, "/healthz"), (200, "ok\n".into()));
    let (code, ready) = get(b, "/readyz");
    assert!(code == 200 && ready.contains("\"version\":\"v1\""), "{ready}");

    // A decision, with exactly the old fields.
    let (code, d) = post(b, "/predict", &row_json("frontend", 0, 85.0).to_string());
    assert_eq!(code, 200, "{d}");
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["action", "change", "confidence", "current_replicas", "predicted_replicas", "reasoning", "service_name"]);
    assert!((1..=10).contains(&d["predicted_replicas"].as_u64().unwrap()));

    // Batches, KEDA and an unknown service.
    let batch = serde_json::json!([row_json("frontend", 30, 50.0), row_json("order", 30, 20.0), row_json("checkout", 30, 20.0)]);
    let (code, out) = post(b, "/predict/batch", &batch.to_string());
    assert_eq!(code, 200, "{out}");
    let out: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[2]["reasoning"].as_str().unwrap().contains("the pooled forest forecasts `checkout` once its capacity is fitted"), "{}", out[2]);
    // The reactive HPA decides for it: ceil(3 × 20 / target) = 1 (targets are 60 % or more),
    // within the step of 2.
    assert!(out[2]["reasoning"].as_str().unwrap().contains("the reactive HPA decides (CPU 20.0%"), "{}", out[2]);
    assert_eq!(out[2]["predicted_replicas"], 1);
    let (code, keda) = get(b, "/scale/frontend");
    assert_eq!(code, 200);
    let keda: serde_json::Value = serde_json::from_str(&keda).unwrap();
    assert!(keda["desiredReplicas"].as_u64().is_some(), "{keda}");
    // The decision record: each term's pods and the one that decided.
    assert!(keda["forecastReplicas"].as_f64().is_some() && keda["reactiveReplicas"].as_f64().is_some(), "{keda}");
    assert!(["forecast", "reactive", "both"].contains(&keda["decidedBy"].as_str().unwrap()), "{keda}");
    assert!(keda["fallback"].is_null() && keda["fallbacks"] == serde_json::json!({}), "{keda}");
    assert!(keda["rowAgeSeconds"].as_f64().is_some(), "{keda}");
    let (_, checkout) = get(b, "/scale/checkout");
    let checkout: serde_json::Value = serde_json::from_str(&checkout).unwrap();
    assert_eq!(checkout["decidedBy"], "reactive", "{checkout}");
    assert!(checkout["forecastReplicas"].is_null(), "{checkout}");
    // A service no model was trained on: the pooled forest takes it once its capacity is fitted.
    assert_eq!(checkout["fallback"], "warming_up", "{checkout}");
    assert_eq!(checkout["fallbacks"], serde_json::json!({ "warming_up": 1 }), "{checkout}");
    assert_eq!(get(b, "/scale/nobody").0, 404);

    // Bad requests: 4xx naming the field, nothing crashes.
    let (code, e) = post(b, "/predict", "{not json");
    assert!(code == 400 && e.contains("not valid JSON"), "{code} {e}");
    let mut missing = row_json("frontend", 60, 50.0);
    missing.as_object_mut().unwrap().remove("error_rate");
    let (code, e) = post(b, "/predict", &missing.to_string());
    assert!(code == 422 && e.contains("\"field\":\"error_rate\""), "{code} {e}");
    let mut nan = row_json("frontend", 60, 50.0);
    nan["ram_usage_percent"] = serde_json::json!("NaN");
    let (code, e) = post(b, "/predict", &nan.to_string());
    assert!(code == 422 && e.contains("ram_usage_percent") && e.contains("fallback"), "{code} {e}");
    let mut text = row_json("frontend", 60, 50.0);
    text["queue_length"] = serde_json::json!("lots");
    assert_eq!(post(b, "/predict", &text.to_string()).0, 422);
    let mut neg = row_json("frontend", 60, 50.0);
    neg["replica_count"] = serde_json::json!(-1);
    let (code, e) = post(b, "/predict", &neg.to_string());
    assert!(code == 422 && e.contains("replica_count"), "{code} {e}");
    let (code, e) = post(b, "/predict", &row_json("frontend", 0, 50.0).to_string());
    assert!(code == 422 && e.contains("time order"), "an old row is refused: {code} {e}");
    let (code, e) = post(b, "/predict/batch", &serde_json::json!([row_json("order", 90, 1.0), missing]).to_string());
    assert!(code == 422 && e.contains("row 1"), "{code} {e}");
    let big = format!("[{}]", vec![row_json("order", 120, 1.0).to_string(); 40].join(","));
    assert_eq!(post(b, "/predict/batch", &big).0, 413, "bodies over the limit are refused");
    assert_eq!(get(b, "/healthz").0, 200, "still up");

    // Prometheus text that promtool accepts.
    let (code, metrics) = get(b, "/metrics");
    assert_eq!(code, 200);
    for needle in [
        "autoscaler_predicted_replicas{service=\"frontend\"}",
        "autoscaler_decisions_total{service=\"order\",action=",
        "autoscaler_decision_latency_seconds_bucket{le=\"+Inf\"}",
        "autoscaler_model_info{model=\"random_forest\",version=\"v1\"} 1",
        "autoscaler_fallbacks_total{service=\"checkout\",reason=\"warming_up\"} 1",
        "autoscaler_decisions_by_term_total{service=\"checkout\",term=\"reactive\"} 1",
        "autoscaler_reactive_replicas{service=\"checkout\"} 1",
        "autoscaler_last_row_timestamp_seconds{service=\"frontend\"}",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    if let Ok(mut promtool) = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        use std::io::Write;
        promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(out.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("promtool not installed (Debian package `prometheus`): skipped its check");
    }

    // Hot reload: promote a new version while requests flow; none fails, the new one serves.
    let reg = Registry::of_project(p.path());
    let v1 = reg.version_dir("random_forest", "v1");
    let src = p.path().join("copy");
    std::fs::create_dir_all(&src).unwrap();
    for f in std::fs::read_dir(&v1).unwrap().flatten() {
        if f.path().is_dir() {
            common::copy_dir(&f.path(), &src.join(f.file_name()));
        } else if f.file_name() != "version.json" {
            std::fs::copy(f.path(), src.join(f.file_name())).unwrap();
        }
    }
    let mut info = reg.version("random_forest", "v1").unwrap();
    info.source_key = "another".into();
    let (v2, _) = reg.register("random_forest", &src, info).unwrap();
    let base = b.clone();
    let flow = std::thread::spawn(move || {
        let mut codes = Vec::new();
        for i in 0..150u32 {
            codes.push(post(&base, "/predict", &row_json("product", 200 + i, 60.0).to_string()).0);
        }
        codes
    });
    std::thread::sleep(Duration::from_millis(50));
    p.pipeline(&["models", "promote", "random_forest", &v2.version]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(b, "/readyz").1.contains("\"version\":\"v2\"") {
        assert!(Instant::now() < deadline, "v2 was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let codes = flow.join().unwrap();
    assert!(codes.iter().all(|c| *c == 200), "requests failed during the reload: {codes:?}");
    assert!(get(b, "/metrics").1.contains("version=\"v2\""));
}

#[test]
fn a_token_guards_everything_but_the_probes() {
    let p = Project::empty();
    let s = start(&p, &[], &[("PIPELINE_SERVE_TOKEN", "s3cret-0123456789")]);
    assert_eq!(get(&s.base, "/healthz").0, 200);
    let (code, ready) = get(&s.base, "/readyz");
    assert_eq!(code, 200, "the reactive HPA answers until a model is promoted: {ready}");
    assert!(ready.contains("reactive HPA: no promoted random_forest model"), "{ready}");
    assert_eq!(post(&s.base, "/predict", &row_json("a", 0, 1.0).to_string()).0, 401);
    assert_eq!(get(&s.base, "/metrics").0, 401);
    assert_eq!(get(&s.base, "/scale/a").0, 401);
    for wrong in ["Bearer s3cret-012345678", "Bearer s3cret-0123456789!", "Bearer S3CRET-0123456789", "s3cret-0123456789"] {
        let r = agent().get(format!("{}/metrics", s.base)).header("Authorization", wrong).call().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{wrong}");
    }
    let r = agent().post(format!("{}/predict", s.base)).header("Authorization", "Bearer s3cret-0123456789").send(row_json("a", 0, 1.0).to_string()).unwrap();
    let (code, d) = body(r);
    assert_eq!(code, 200, "{d}");
    assert!(d.contains("no promoted model"), "falls back without a model: {d}");
}

/// A server in a pod without the training volume follows the registry in the shared store.
#[test]
fn the_server_follows_the_registry_in_the_shared_store() {
    let moto = common::moto::Moto::start();
    moto.create_bucket("models");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let trainer = trained();
    let mut args = vec!["run", "--until", "publish", "--no-progress", "--store", "s3://models/team"];
    args.extend_from_slice(QUICK);
    trainer.pipeline_env(&args, &env).ok().stdout_has("0 ran");

    let pod = Project::empty();
    let s = start(&pod, &["--store", "s3://models/team"], &env);
    let (code, body) = get(&s.base, "/readyz");
    assert_eq!(code, 200, "the promoted model comes from the store: {body}");
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    pod.pipeline_env(&["models", "list", "--store", "s3://models/team"], &env).ok().stdout_has("lstm_cnn");
}
