//! The pooled forest: one forest for every service on load features that name none, carried
//! inside the random_forest version and served to a service the pipeline never saw once the
//! server has fitted what one of its pods serves.

use crate::serving::{export, raw_rows, trained};

use autoscale::artifacts::models::Registry;
use autoscale::models::ModelKind;
use autoscale::models::model::Model;
use autoscale::models::table::Table;
use autoscale::models::torch_runtime::DeviceChoice;
use autoscale::serving::features::RawRow;
use autoscale::serving::predictor::{Guardrails, Loaded, Predictor};

#[test]
fn a_service_never_trained_on_gets_forecasts_once_its_capacity_is_fitted() {
    let p = trained();
    // The promoted forest's version carries the pooled forest and, per trained service, which
    // of the two serves it.
    let reg = Registry::of_project(p.path());
    let (version, dir) = reg.serving_dir("random_forest").unwrap().expect("a promoted forest");
    assert!(dir.join("pooled/model.json").is_file() && dir.join("pooled/forest.bin").is_file(), "{}", dir.display());
    let choice = reg.version("random_forest", &version).unwrap().pooled.expect("version.json records the pooled choice");
    assert_eq!(choice.services.keys().collect::<Vec<_>>(), ["frontend", "order", "recommender"]);
    assert_eq!((choice.stage.as_str(), choice.aim_cpu), ("train_random_forest_pooled", 60.0 * 1.1));
    let pooled = Model::load(&dir.join("pooled"), DeviceChoice::Cpu).unwrap();
    assert!(pooled.meta().features.iter().all(|f| f.starts_with("load_pods")), "{:?}", pooled.meta().features);

    // A trained service given to the pooled forest gets its own forest's forecasts from its first
    // row, until the server has fitted its capacity.
    if let Some((trained, _)) = choice.services.iter().find(|(_, s)| **s == autoscale::models::pooled::Serves::Pooled) {
        let fresh = Predictor::new(Loaded::promoted(&reg, ModelKind::RandomForest).unwrap(), Guardrails::default());
        for row in raw_rows(&p).iter().filter(|r| &r.service == trained).take(3) {
            let o = fresh.decide(row).unwrap();
            assert!(o.fallback.is_none() && o.record.forecast.is_some(), "{trained}: {:?}", o.decision);
        }
    }

    // `order`'s rows under a name no model saw.
    let rows: Vec<RawRow> = raw_rows(&p).into_iter().filter(|r| r.service == "order").map(|r| RawRow { service: "checkout".into(), ..r }).collect();
    let loaded = Loaded::promoted(&reg, ModelKind::RandomForest).unwrap().unwrap();
    assert!(loaded.has_pooled());
    let predictor = Predictor::new(Some(loaded), Guardrails { max_step: 10, ..Guardrails::default() });
    let first = rows[0].timestamp;
    let (mut warming, mut forecasts, mut online) = (0, 0, std::collections::HashMap::new());
    for row in &rows {
        let o = predictor.decide(row).unwrap();
        let minutes = (row.timestamp - first) as f64 / 60e6;
        if minutes < 30.0 {
            assert_eq!(o.fallback, Some("warming_up"), "at minute {minutes}: {:?}", o.decision);
            assert!(o.decision.reasoning.contains("--capacity-min-minutes"), "{}", o.decision.reasoning);
            warming += 1;
        } else if o.fallback.is_none() {
            forecasts += 1;
            online.insert(row.timestamp, o.record.forecast.expect("a forecast"));
        }
    }
    assert!(warming >= 59, "half an hour of 30 s rows on the reactive HPA: {warming}");
    assert!(forecasts as f64 >= 0.95 * (rows.len() - warming) as f64, "forecasts for {forecasts} of {} rows after the warm-up", rows.len() - warming);

    // Those forecasts are the pooled forest's on the same rows with the pipeline's capacity
    // (fitted on the two days before the hold-out), to the pod on almost every row: the online
    // fit converges to the offline one.
    let table = Table::load(&{
        export(&p, "split_temporal_demand");
        p.path().join("split_temporal_demand.parquet")
    })
    .unwrap();
    let order: Vec<usize> = (0..table.len()).filter(|&i| table.service(i) == "order").collect();
    let batch = pooled.predict_rows(&table, &order).unwrap();
    let (mut same, mut compared) = (0, 0);
    for (&i, b) in order.iter().zip(batch) {
        if let (Some(b), Some(o)) = (b, online.get(&table.timestamps[i])) {
            compared += 1;
            same += usize::from(autoscale::models::scores::replicas(b, 1.0, 10.0) == *o);
        }
    }
    eprintln!("pooled choice {:?}; {warming} rows warming up, {forecasts} forecasts; the same pods as the batch on {same} of {compared} rows", choice.services);
    assert!(compared > 1000, "{compared}");
    assert!(same as f64 >= 0.9 * compared as f64, "the same pods on {same} of {compared} rows");
}

/// A server started under `--prometheus` replays every service's last two hours of rows from
/// Prometheus' history before its first live step, so a restarted replica does not start the
/// capacity fit (nor any window) from nothing.
#[test]
fn a_starting_server_replays_the_services_last_rows_from_prometheus() {
    use crate::common::prometheus::{self, Exporter, Prometheus, get};
    assert!(prometheus::installed(), "this test needs a real Prometheus (Debian package `prometheus`; .ci/run installs it)");
    let p = trained();
    // The test cluster's services (`web`, `api`: names the forest never saw), with 40 minutes
    // of history behind the live scrapes.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let exporter = Exporter::start();
    prometheus::write_history(p.path(), &prometheus::history(t - 40 * 60, t - 2, 15, Some(&exporter.addr)));
    let prom = Prometheus::start(p.path(), Some(&exporter.addr));
    prom.wait_for_scrapes(2);
    let config = std::fs::read_to_string(crate::common::repo().join("pipelines/collect.yaml")).unwrap().replace("namespace: default", "namespace: shop");
    p.write("collect.yaml", &config);
    let server = crate::common::start_server(&p, &["--prometheus", &prom.url(), "--collect-config", "collect.yaml", "--every", "0.5"], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let web = loop {
        if let Some((200, body)) = get(&format!("{}/scale/web", server.base)) {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no decision for web");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The pooled forest takes web; its first live decision already has the replayed 40 minutes
    // behind it, so it is not waiting for --capacity-min-minutes of rows: it forecasts (or, if
    // this cluster's nearly constant load per pod gives nothing to fit, says that instead).
    let why = web["reasoning"].as_str().unwrap();
    assert!(!why.contains("--capacity-min-minutes"), "the history was not replayed: {web}");
    assert!(web["fallback"].is_null() || why.contains("`web`'s load per pod has not varied enough"), "{web}");
}

#[test]
fn a_service_pointed_at_the_server_at_noon_is_judged_on_its_first_hour() {
    let p = trained();
    let server = crate::common::start_server(&p, &[], &[]);
    // `order` under a name no model saw; the server sees its first row at noon, and only the
    // hour after counts: half an hour on the reactive HPA (warming_up), then the pooled forest.
    let args = ["--days", "1", "--seed", "7", "--services", "checkout=order", "--server-from", "12:00", "--judge", "12:00-13:00"];
    let mut args = args.to_vec();
    args.extend_from_slice(&["--scaler", &server.base, "--out", "first-hour", "--summary", "first-hour.json"]);
    let out = p.simulate(&args);
    let s = crate::common::json(&p.path().join("first-hour.json"));
    let served = &s["runs"][0]["total"];
    assert_eq!(served["decisions"], 120, "an hour of 30 s steps: {served}");
    assert_eq!(served["fallbacks"], 60, "the first half hour warming up, none after: {served}");
    assert_eq!(served["first_fallback_minute"].as_f64(), Some(720.0), "{served}");
    // The internal HPA's frontier is judged on the same hour: at most 8 pods (order's
    // maxReplicas) for an hour each.
    for point in s["frontier"]["points"].as_array().unwrap() {
        let pod_hours = point["pod_hours"].as_f64().unwrap();
        assert!(pod_hours > 0.0 && pod_hours <= 8.0 * 1.01, "{point}");
    }
    assert!(served["pod_hours"].as_f64().unwrap() <= 8.0 * 1.01, "{served}");
    out.stdout_has("the HPA frontier").stdout_has("12:00");
}
