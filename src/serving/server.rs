//! `pipeline serve`: decisions over HTTP for HPA (through Prometheus) and KEDA (metrics-api).
//!
//! | endpoint              | what                                                        |
//! |-----------------------|-------------------------------------------------------------|
//! | `POST /predict`       | one raw metrics row → a decision                            |
//! | `POST /predict/batch` | a JSON array of rows → an array of decisions (all or none)  |
//! | `GET /scale/{service}`| the last decision for a service, for KEDA's metrics-api     |
//! |                       | (503 with the current replicas once it is too old)          |
//! | `GET /metrics`        | Prometheus text format                                      |
//! | `GET /healthz`        | the process is up                                           |
//! | `GET /readyz`         | ready; which model decides (none: the reactive HPA)         |
//!
//! A newly promoted version is loaded in the background and swapped in; requests in flight
//! finish with the model they started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::exposition::Exposition;
use super::features::{FieldError, RawRow};
use super::listener::Limits;
use super::predictor::{Guardrails, Loaded, Predictor, fallback};
use super::tls::Tls;
use crate::artifacts::models::Registry;
use crate::artifacts::shared;

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// Which promoted model to serve.
    pub model: crate::models::ModelKind,
    pub registry: PathBuf,
    /// Clients must send `Authorization: Bearer <token>` with one of these (health probes
    /// excepted); two while a Secret is rotated. None: no authentication.
    pub tokens: Vec<String>,
    pub guardrails: Guardrails,
    pub max_body_bytes: usize,
    /// Services with state at once; the one idle longest makes room for a new one.
    pub max_services: usize,
    pub reload_every: Duration,
    /// A shared store whose registry this server follows (`--store`).
    pub store: Option<crate::store::Store>,
    /// `/scale/{service}` falls back when the service's last decision is older than this.
    pub max_decision_age: Duration,
    /// Rows stamped further ahead of this machine's clock are refused.
    pub max_clock_skew: Option<Duration>,
    pub limits: Limits,
    /// Terminate TLS with this certificate (reloaded when its files change).
    pub tls: Option<Tls>,
}

/// `serve --prometheus`: the server takes each service's row itself, with `pipeline collect`'s
/// queries, every `every`.
pub struct Pull {
    pub collector: crate::collect::Collector,
    pub every: Duration,
}

struct App {
    predictor: Predictor,
    exposition: Exposition,
    cfg: Config,
    /// Requests being answered (`Limits::max_in_flight`).
    in_flight: tokio::sync::Semaphore,
}

type Shared = Arc<App>;

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    (status, Json(json!({ "error": message, "field": field }))).into_response()
}

/// The bearer-token check, once for every route but the probes (a layer on them). Any of the
/// configured tokens is accepted, so a Secret can hold the new and the old during a rotation.
async fn require_token(State(app): State<Shared>, request: Request, next: Next) -> Response {
    if !app.cfg.tokens.is_empty() {
        let sent = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Every token is compared, so the time taken does not tell which one matched.
        let matched = sent.is_some_and(|s| app.cfg.tokens.iter().fold(false, |any, t| same_secret(s, t) | any));
        if !matched {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": "missing or wrong bearer token" })))
                .into_response();
        }
    }
    next.run(request).await
}

/// Every request but the probes is answered within `--request-timeout` (its body read
/// included) and at most `--max-in-flight` at once; the others wait their turn within their
/// own timeout. A slow client gets 408, a saturated server 503.
async fn bounded(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let limits = &app.cfg.limits;
    let mut admitted = false;
    let work = async {
        let _permit = app.in_flight.acquire().await;
        admitted = true;
        next.run(request).await
    };
    let answered = tokio::time::timeout(limits.request_timeout, work).await;
    match answered {
        Ok(response) => response,
        Err(_) if admitted => error(StatusCode::REQUEST_TIMEOUT, format!("the request took longer than --request-timeout {:?}", limits.request_timeout), None),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} requests were being answered (--max-in-flight) for all of --request-timeout {:?}", limits.max_in_flight, limits.request_timeout),
            None,
        ),
    }
}

/// Compares the two strings' BLAKE3 digests, whose equality is constant-time: the time taken
/// tells neither where the first difference is nor how long the token is.
fn same_secret(sent: &str, token: &str) -> bool {
    blake3::hash(sent.as_bytes()) == blake3::hash(token.as_bytes())
}

fn parse_body(body: &Bytes) -> Result<serde_json::Value, Response> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}"), None))
}

/// A row's problem as a 422, with the fallback decision when the row says enough for one.
fn invalid_row(e: &FieldError, v: &serde_json::Value, index: Option<usize>) -> Response {
    let current = v.get(crate::row::REPLICAS).and_then(|r| r.as_f64()).filter(|r| *r >= 0.0 && r.fract() == 0.0);
    let service = v.get(crate::row::SERVICE).and_then(|s| s.as_str());
    let decision = match (service, current) {
        (Some(s), Some(c)) => Some(fallback(s, c, format!("invalid row ({e})"))),
        _ => None,
    };
    let message = match index {
        Some(i) => format!("row {i}: {e}"),
        None => e.to_string(),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": message, "field": e.field, "index": index, "fallback": decision }))).into_response()
}

impl App {
    fn decide(&self, row: &RawRow) -> Result<super::predictor::Decision, FieldError> {
        let t0 = Instant::now();
        let outcome = self.predictor.decide(row)?;
        if let Some(gone) = &outcome.evicted {
            tracing::debug!(service = %gone, "state dropped to make room for `{}` (--max-services {})", row.service, self.cfg.max_services);
        }
        self.exposition.record(&outcome.decision, outcome.fallback, &outcome.record, t0.elapsed().as_secs_f64());
        Ok(outcome.decision)
    }
}

async fn predict(State(app): State<Shared>, body: Bytes) -> Response {
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let row = match RawRow::from_json(&v) {
        Ok(r) => r,
        Err(e) => {
            app.exposition.rejected();
            return invalid_row(&e, &v, None);
        }
    };
    let app2 = app.clone();
    // The LSTM-CNN computes for ~100 µs: off the async workers.
    match tokio::task::spawn_blocking(move || app2.decide(&row)).await {
        Ok(Ok(d)) => Json(d).into_response(),
        Ok(Err(e)) => {
            app.exposition.rejected();
            invalid_row(&e, &v, None)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the decision failed: {e}"), None),
    }
}

async fn predict_batch(State(app): State<Shared>, body: Bytes) -> Response {
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(items) = v.as_array() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "expected a JSON array of rows".into(), None);
    };
    // All rows are checked before any is applied: a bad row rejects the batch, not half of it.
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match RawRow::from_json(item) {
            Ok(r) => rows.push(r),
            Err(e) => {
                app.exposition.rejected();
                return invalid_row(&e, item, Some(i));
            }
        }
    }
    let app2 = app.clone();
    let result = tokio::task::spawn_blocking(move || rows.iter().map(|r| app2.decide(r)).collect::<Vec<_>>()).await;
    match result {
        Ok(decisions) => {
            let mut out = Vec::with_capacity(decisions.len());
            for (i, d) in decisions.into_iter().enumerate() {
                match d {
                    Ok(d) => out.push(serde_json::to_value(d).unwrap_or_default()),
                    Err(e) => out.push(json!({ "error": format!("row {i}: {e}"), "field": e.field, "index": i })),
                }
            }
            Json(out).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the decisions failed: {e}"), None),
    }
}

/// The last decision, for KEDA's metrics-api. A stale one (its rows stopped coming) answers 503
/// with the current replicas: KEDA counts the error and, past its `failureThreshold`, applies
/// the ScaledObject's `fallback.replicas`.
async fn scale(State(app): State<Shared>, Path(service): Path<String>) -> Response {
    match app.exposition.last(&service) {
        Some(last) => {
            let age = last.age;
            let (predicted, current) = (last.predicted, last.current);
            let stale = age > app.cfg.max_decision_age;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let tenth = |x: f64| (x * 10.0).round() / 10.0;
            let body = json!({
                "service": service,
                "desiredReplicas": if stale { current as u32 } else { predicted as u32 },
                "currentReplicas": current as u32,
                "confidence": last.confidence,
                "ageSeconds": tenth(age.as_secs_f64()),
                "model": app.predictor.model().map(|m| format!("{} {}", m.name, m.version)),
                // The decision record: what each term asked for and which one decided.
                "forecastReplicas": last.record.forecast,
                "reactiveReplicas": last.record.reactive,
                "decidedBy": last.record.decided_by,
                "fallback": last.fallback,
                "fallbacks": last.fallbacks,
                "rowAgeSeconds": tenth(now - last.record.row_time),
                "reasoning": last.reasoning,
            });
            if stale {
                let mut body = body;
                body["error"] = json!(format!(
                    "the last decision for `{service}` is {:.0} s old (over --max-decision-age {:.0} s): its rows stopped coming; is the collector or Prometheus down?",
                    age.as_secs_f64(),
                    app.cfg.max_decision_age.as_secs_f64()
                ));
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            } else {
                Json(body).into_response()
            }
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("no decision for service `{service}` yet: POST its metrics to /predict, or run the server with --prometheus"),
            Some("service"),
        ),
    }
}

/// Takes every service's row from Prometheus each step and decides on it, as if it had been
/// POSTed: every replica of the server computes the same state from the same source.
async fn pull(app: Shared, mut p: Pull) {
    // A restarted replica starts where the others are: each service's seasonal profile up to
    // the replayed stretch, then its last rows (windows, capacity fit, the HPA's history).
    let now = chrono::Utc::now().timestamp();
    let replay_from = now - REPLAY_SECONDS;
    if app.predictor.model().is_some_and(|m| m.reads_seasonal()) {
        rebuild_profiles(&app, &mut p, replay_from).await;
    }
    replay(&app, &mut p, replay_from, now).await;
    let mut tick = tokio::time::interval(p.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let rows = match p.collector.collect(chrono::Utc::now()).await {
            Ok(rows) => rows,
            Err(e) => {
                app.exposition.pull_failed();
                tracing::warn!("no rows from Prometheus this step: {e}");
                continue;
            }
        };
        let app = app.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for row in rows {
                // One service's failure, however it fails, must not cost the services after it
                // in the step their decision.
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RawRow::from_json(&row.to_json()).and_then(|r| app.decide(&r))));
                match checked {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        app.exposition.rejected();
                        tracing::warn!(service = %row.service, "row from Prometheus refused, no decision: {e}");
                    }
                    Err(_) => {
                        app.exposition.rejected();
                        tracing::error!(service = %row.service, "deciding on the row from Prometheus failed (a bug: please report it); the other services are decided");
                    }
                }
            }
        })
        .await;
    }
}

/// Each service's last eight days of request rate from Prometheus, so a restarted server has
/// yesterday and last week at once instead of falling back for a week (docs/serving.md).
async fn rebuild_profiles(app: &Shared, p: &mut Pull, now: i64) {
    use crate::features::seasonal::{DAY, SLOT_SECONDS, WEEK};
    let services = match p.collector.services(now as f64, None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("seasonal profiles start empty: Prometheus did not list the services: {e}");
            return;
        }
    };
    let mut rebuilt = 0;
    for service in &services {
        match p.collector.request_history(service, now - (WEEK + DAY) * SLOT_SECONDS, now).await {
            Ok(history) => {
                app.predictor.rebuild_profile(service, &history);
                rebuilt += 1;
            }
            Err(e) => tracing::warn!(service = %service, "its seasonal profile starts empty: Prometheus did not give its history: {e}"),
        }
    }
    tracing::info!("rebuilt the seasonal profile of {rebuilt} of {} services from eight days of Prometheus history", services.len());
}

/// How far back a starting server replays every service's rows from Prometheus: two hours, so
/// the capacity fit of a service the model was not trained on (`--capacity-min-minutes`, 30 by
/// default) and every window are full before the first live step.
const REPLAY_SECONDS: i64 = 2 * 3600;

/// Tries at the replay before the server starts with empty state.
const REPLAY_TRIES: u64 = 3;

/// Decides on each service's rows of `[from, to)` from Prometheus' history, in time order, as
/// the live loop would have; the decisions are not served or counted, only the state they leave.
async fn replay(app: &Shared, p: &mut Pull, from: i64, to: i64) {
    // A Prometheus busy at the server's start (a node coming up, a rollout of both) answers the
    // next try; without the replay a new service waits `--capacity-min-minutes` for a forecast.
    let mut tries = 1;
    let rows = loop {
        match p.collector.backfill(from, to - 1).await {
            Ok(rows) => break rows,
            Err(e) if tries < REPLAY_TRIES => {
                tracing::warn!("Prometheus did not give the services' last rows (try {tries} of {REPLAY_TRIES}; again in {tries} s): {e}");
                tokio::time::sleep(std::time::Duration::from_secs(tries)).await;
                tries += 1;
            }
            Err(e) => {
                tracing::warn!("the services' state starts empty: Prometheus did not give their last rows in {REPLAY_TRIES} tries: {e}");
                return;
            }
        }
    };
    let app = app.clone();
    let n = rows.len();
    let _ = tokio::task::spawn_blocking(move || {
        for row in rows {
            if let Ok(raw) = RawRow::from_json(&row.to_json()) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.predictor.decide(&raw)));
            }
        }
    })
    .await;
    tracing::info!("replayed {n} rows of the last {} minutes from Prometheus", (to - from) / 60);
}

async fn metrics(State(app): State<Shared>) -> Response {
    let model = app.predictor.model();
    let text = app.exposition.render(model.as_ref().map(|m| (m.name.as_str(), m.version.as_str())));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready as soon as it listens: without a promoted model the reactive HPA decides, which is
/// what a cluster would do without this server, so there is no reason to turn traffic away.
async fn readyz(State(app): State<Shared>) -> Response {
    match app.predictor.model() {
        Some(m) => Json(json!({ "ready": true, "model": m.name, "version": m.version })).into_response(),
        None => Json(json!({
            "ready": true,
            "model": null,
            "policy": format!("reactive HPA: no promoted {} model in {}", app.cfg.model, app.cfg.registry.display()),
        }))
        .into_response(),
    }
}

fn router(app: Shared) -> Router {
    let limit = app.cfg.max_body_bytes;
    let guarded = Router::new()
        .route("/predict", post(predict))
        .route("/predict/batch", post(predict_batch))
        .route("/scale/{service}", get(scale))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(app.clone(), bounded));
    // Kubelet probes carry no token.
    let probes = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz));
    guarded.merge(probes).layer(DefaultBodyLimit::max(limit)).with_state(app)
}

/// How often a server with `--store` asks the store for new promotions.
const STORE_POLL: Duration = Duration::from_secs(10);

/// Loads the promoted version when it differs from the one serving.
fn reload(app: &App) {
    let registry = Registry::at(&app.cfg.registry);
    let want = match registry.promoted(app.cfg.model.as_str()) {
        Ok(p) => p.current().map(|c| c.version.clone()),
        Err(e) => {
            tracing::warn!("cannot read the promoted {} version: {e:#}", app.cfg.model);
            return;
        }
    };
    let have = app.predictor.model().map(|m| m.version.clone());
    if want == have {
        return;
    }
    match Loaded::promoted(&registry, app.cfg.model) {
        Ok(Some(m)) => {
            tracing::info!(model = %m.name, version = %m.version, "serving a newly promoted version");
            app.predictor.replace_model(Some(m));
        }
        Ok(None) => {}
        // Keep serving the old model: a broken new version must not take decisions down.
        Err(e) => tracing::error!("cannot load the promoted {} version; still serving {:?}: {e:#}", app.cfg.model, have),
    }
}

/// Brings the shared store's versions and promotions into the local registry, if the server
/// follows a store. A store that does not answer must not keep the server down: it goes on
/// with the local registry.
async fn pull_from_store(cfg: &Config) {
    let Some(store) = &cfg.store else { return };
    if let Err(e) = shared::pull_registry(store, &Registry::at(&cfg.registry)).await {
        tracing::warn!("cannot fetch the registry from {}; serving the local one: {e:#}", store.url());
    }
}

/// Binds, prints the address, and serves until ctrl-c / SIGTERM.
pub async fn serve(cfg: Config, pull_from: Option<Pull>) -> Result<()> {
    pull_from_store(&cfg).await;
    let registry = Registry::at(&cfg.registry);
    let loaded = tokio::task::spawn_blocking({
        let model = cfg.model;
        move || Loaded::promoted(&registry, model)
    })
    .await??;
    match &loaded {
        Some(m) => tracing::info!(model = %m.name, version = %m.version, "model loaded"),
        None => tracing::warn!(
            "no promoted {} model in {} yet: every decision falls back to the current replicas until one is promoted",
            cfg.model,
            cfg.registry.display()
        ),
    }
    let predictor = Predictor::new(loaded, cfg.guardrails.clone()).max_services(cfg.max_services).max_clock_skew(cfg.max_clock_skew);
    let in_flight = tokio::sync::Semaphore::new(cfg.limits.max_in_flight.max(1));
    let app = Arc::new(App { predictor, exposition: Exposition::new(cfg.max_services), cfg: cfg.clone(), in_flight });
    let listener = tokio::net::TcpListener::bind(cfg.addr).await.with_context(|| format!("binding {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find a port picked by the OS (--addr 127.0.0.1:0).
    println!("listening on {}://{addr}", if cfg.tls.is_some() { "https" } else { "http" });
    let certificates = cfg.tls.clone().map(|t| tokio::spawn(t.watch(cfg.reload_every.max(Duration::from_secs(1)))));
    let watcher = {
        let app = app.clone();
        tokio::spawn(async move {
            // Object storage is asked less often than the local folder is looked at.
            let pull_every = app.cfg.reload_every.max(STORE_POLL);
            let mut pulled = Instant::now();
            loop {
                tokio::time::sleep(app.cfg.reload_every).await;
                if pulled.elapsed() >= pull_every {
                    pulled = Instant::now();
                    pull_from_store(&app.cfg).await;
                }
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || reload(&app)).await;
            }
        })
    };
    let puller = pull_from.map(|p| {
        tracing::info!("taking rows from Prometheus at {} every {:?}", p.collector.prometheus().url(), p.every);
        tokio::spawn(pull(app.clone(), p))
    });
    super::listener::serve(listener, router(app), cfg.limits.clone(), cfg.tls.clone(), shutdown()).await?;
    watcher.abort();
    if let Some(c) = certificates {
        c.abort();
    }
    if let Some(p) = puller {
        p.abort();
    }
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM (what Kubernetes sends before it kills a pod).
pub async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
