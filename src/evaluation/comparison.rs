//! Every policy replayed on the hold-out, per service: the recorded replicas, the reactive HPA
//! and its frontier, the forecasting baselines, and each model both as the old system used it
//! (`<name>`: its prediction is the replica count) and proactively (`<name>+hpa`: its forecast
//! as a floor under the reactive HPA).
//!
//! A forecast and the HPA under it share the work: with a good forecast the HPA can aim at a
//! higher utilisation. So each forecasting policy runs with the HPA at `hpa_target` and at
//! every higher `floor_targets` value (60, 65, …, 80 %), and with no floor at all (`forecast_alone`),
//! and keeps the one that puts it furthest below the frontier (the target publish records and
//! serve applies). Lower targets are not tried: buying pods by
//! running the HPA colder is the frontier's own trade, not the forecast's merit. The target is
//! chosen on the hold-out it is scored on: one number of a handful.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::policy_name::PolicyName;
use super::replay::frontier::{Frontier, Point};
use super::replay::{self, Capacity, Policy, RowState, Score, Series, forecast};
use super::risk;
use crate::models::scores;
use crate::models::table::Table;

/// One policy's replay of one service, step by step (what evaluate writes as `replay.parquet`),
/// handed on as each is replayed rather than gathered: a 10M-row hold-out times a dozen
/// policies would be most of evaluate's memory.
pub struct ReplayTrace<'a> {
    pub service: &'a str,
    pub policy: &'a str,
    pub timestamps: &'a [i64],
    pub steps: &'a [RowState],
}

/// One policy's replay of one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReplay {
    pub service: String,
    pub capacity: Option<Capacity>,
    pub mean_rps: f64,
    pub policies: BTreeMap<String, replay::Score>,
    /// The reactive HPA at each frontier target.
    #[serde(default)]
    pub frontier: Vec<(f64, replay::Score)>,
}

pub struct Compared {
    pub services: Vec<ServiceReplay>,
    /// Per policy, summed over the services that could be replayed.
    pub totals: BTreeMap<String, Score>,
    pub frontier: Frontier,
    /// The HPA target each forecasting policy runs with (none: the forecast alone).
    pub targets: BTreeMap<String, Option<f64>>,
    /// What the reader should know (a baseline that had too little history).
    pub notes: Vec<String>,
    /// Per model: its risk family, each level replayed under the model's HPA target.
    pub risk: BTreeMap<String, Vec<risk::Scored>>,
    /// Per model and service: the demand (pods the load in the window after the start-up
    /// needed) less the model's forecast, per scored row in time order (NaN where the rows end
    /// before the window): what a risk member's offsets are the quantiles of.
    pub errors: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// One service, ready to replay.
struct Prepared {
    service: String,
    capacity: Option<Capacity>,
    mean_rps: f64,
    series: Series,
    /// Replica counts applied as they are: `recorded`, then each model as predicted.
    given: Vec<(String, Vec<f64>)>,
    /// Forecast pods under the HPA: the baselines, then `<model>+hpa`.
    forecasts: Vec<(String, Vec<f64>)>,
    /// Holt-Winters had under two days of rows before the hold-out.
    no_holt_winters: bool,
    /// Per model: its forecast as it came (unrounded), and the demand less it (see `Compared::errors`).
    raw: Vec<Vec<f64>>,
    errors: Vec<Vec<f64>>,
}

/// `predictions[m][table row]` for each of `names`, scored on `rows` (the hold-out rows all
/// models predict); each service's replay of each policy goes to `trace`.
pub fn compare(
    table: &Table,
    rows: &[usize],
    names: &[String],
    predictions: &[Vec<f64>],
    p: &replay::Params,
    trace: &mut dyn FnMut(ReplayTrace) -> Result<()>,
) -> Result<Compared> {
    let prepared = prepare(table, rows, names, predictions, p)?;
    let replayable: Vec<(&Prepared, &Capacity)> = prepared.iter().filter_map(|s| Some((s, s.capacity.as_ref()?))).collect();
    let total = |policy: &dyn Fn(&Prepared) -> Policy| {
        let mut t = Score::default();
        for (s, cap) in &replayable {
            t.add(&replay::simulate(&s.series, cap, &policy(s), p).score);
        }
        t
    };

    let mut frontier_by_service: HashMap<&str, Vec<(f64, Score)>> = HashMap::new();
    let mut points = Vec::new();
    for &target in &p.frontier_targets {
        let mut sum = Score::default();
        for (s, cap) in &replayable {
            let score = replay::simulate(&s.series, cap, &Policy::Reactive { target }, p).score;
            sum.add(&score);
            frontier_by_service.entry(s.service.as_str()).or_default().push((target, score));
        }
        points.push(Point { target, pod_hours: sum.pod_hours, under_provisioned_minutes: sum.under_provisioned_minutes });
    }
    let frontier = Frontier::new(points);

    // The HPA target under each forecast, or none (the forecast alone): the one furthest below
    // the frontier, never below hpa_target. Ties go to the first tried: hpa_target, the hotter
    // floors in order, then no floor, so a forecast loses its safety net only for a gain.
    let mut targets = BTreeMap::new();
    // Every replayable service has the same forecasts in the same order.
    for (k, (name, _)) in replayable.first().map(|(s, _)| s.forecasts.as_slice()).unwrap_or_default().iter().enumerate() {
        let mut best: Option<(f64, Option<f64>)> = None;
        let hotter = p.floor_targets.iter().copied().filter(|&t| t > p.hpa_target);
        let tried = std::iter::once(p.hpa_target).chain(hotter).map(Some).chain(p.forecast_alone.then_some(None));
        for target in tried {
            let score = total(&|s: &Prepared| Policy::Proactive { target, forecast: &s.forecasts[k].1 });
            let Some(margin) = frontier.margin(&score) else { continue };
            if best.is_none_or(|(m, _)| margin.minutes > m) {
                best = Some((margin.minutes, target));
            }
        }
        targets.insert(name.clone(), best.map_or(Some(p.hpa_target), |b| b.1));
    }

    let mut services = Vec::new();
    let mut totals: BTreeMap<String, Score> = BTreeMap::new();
    for s in &prepared {
        let mut policies = BTreeMap::new();
        if let Some(cap) = &s.capacity {
            let hpa = PolicyName::Hpa.to_string();
            let mut run: Vec<(&str, Policy)> = vec![(hpa.as_str(), Policy::Reactive { target: p.hpa_target })];
            run.extend(s.given.iter().map(|(name, r)| (name.as_str(), Policy::Given(r))));
            run.extend(s.forecasts.iter().map(|(name, f)| (name.as_str(), Policy::Proactive { target: targets[name], forecast: f })));
            for (policy, how) in run {
                let o = replay::simulate(&s.series, cap, &how, p);
                trace(ReplayTrace { service: &s.service, policy, timestamps: &s.series.timestamps, steps: &o.rows })?;
                totals.entry(policy.to_string()).or_default().add(&o.score);
                policies.insert(policy.to_string(), o.score);
            }
        }
        let frontier = frontier_by_service.remove(s.service.as_str()).unwrap_or_default();
        services.push(ServiceReplay { service: s.service.clone(), capacity: s.capacity, mean_rps: s.mean_rps, policies, frontier });
    }
    let short: Vec<&str> = prepared.iter().filter(|s| s.no_holt_winters).map(|s| s.service.as_str()).collect();
    let mut notes = Vec::new();
    if !short.is_empty() {
        notes.push(format!("holt_winters needs two days of rows before the hold-out; for {} it is the reactive HPA alone", short.join(", ")));
    }
    // Each model's risk family, under the HPA target its forecast runs best with.
    let bounded = |v: f64| scores::replicas(v, p.min_replicas, p.max_replicas);
    let mut family = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (m, name) in names.iter().enumerate() {
        let target = targets.get(&PolicyName::Forecast(name.clone()).to_string()).copied().unwrap_or(Some(p.hpa_target));
        let mut members = Vec::new();
        for &level in &p.risk_levels {
            let (mut score, mut over, mut known) = (Score::default(), 0usize, 0usize);
            for (s, cap) in &replayable {
                let offsets = risk::cross_fitted(&s.errors[m], level);
                let raised: Vec<f64> = s.raw[m].iter().zip(&offsets).map(|(f, o)| bounded(f + o)).collect();
                score.add(&replay::simulate(&s.series, cap, &Policy::Proactive { target, forecast: &raised }, p).score);
                for (e, o) in s.errors[m].iter().zip(&offsets).filter(|(e, _)| e.is_finite()) {
                    known += 1;
                    over += usize::from(e > o);
                }
            }
            members.push(risk::Scored {
                level,
                pod_hours: score.pod_hours,
                under_provisioned_minutes: score.under_provisioned_minutes,
                exceedance: over as f64 / known.max(1) as f64,
                margin_minutes: frontier.margin(&score).map(|m| m.minutes),
                saving_pod_hours: frontier.saving(&score).and_then(|s| s.pod_hours),
            });
        }
        family.insert(name.clone(), members);
        errors.insert(name.clone(), replayable.iter().map(|(s, _)| (s.service.clone(), s.errors[m].clone())).collect());
    }
    Ok(Compared { services, totals, frontier, targets, notes, risk: family, errors })
}

/// Per service: its capacity (fitted on the rows before the hold-out), its hold-out series,
/// and every policy's replicas or forecast pods for each of its scored rows.
fn prepare(table: &Table, rows: &[usize], names: &[String], predictions: &[Vec<f64>], p: &replay::Params) -> Result<Vec<Prepared>> {
    let rps = table.column_f64("request_count_per_second").context("the replay needs the request rate")?;
    let cpu = table.column_f64("cpu_usage_percent").context("the replay needs CPU usage")?;
    let mut scored: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        scored.entry(table.service(r)).or_default().push(r);
    }
    let mut history: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in 0..table.len() {
        if scored.contains_key(table.service(i)) {
            history.entry(table.service(i)).or_default().push(i);
        }
    }
    let bounded = |v: f64| scores::replicas(v, p.min_replicas, p.max_replicas);
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let mut out = Vec::new();
    for (service, mut rs) in scored {
        rs.sort_by_key(|&r| table.timestamps[r]);
        let mut all = history.remove(service).unwrap_or_default();
        all.sort_by_key(|&r| table.timestamps[r]);
        // Capacity and Holt-Winters are fitted on the rows before the hold-out starts.
        let fit_until = all.iter().position(|&r| table.test[r]).unwrap_or(all.len());
        let train = &all[..fit_until];
        let capacity = Capacity::fit(&pick(&rps, train), &pick(&cpu, train), &pick(&table.replicas, train));
        let series = Series { timestamps: rs.iter().map(|&r| table.timestamps[r]).collect(), rps: pick(&rps, &rs), recorded: pick(&table.replicas, &rs) };
        let mean_rps = series.rps.iter().sum::<f64>() / series.rps.len().max(1) as f64;
        let mut given = vec![(PolicyName::Recorded.to_string(), series.recorded.clone())];
        let mut forecasts = Vec::new();
        let mut no_holt_winters = false;
        let mut demand = vec![None; rs.len()];
        if let Some(cap) = &capacity {
            let seconds: Vec<f64> = all.iter().map(|&i| table.timestamps[i] as f64 / 1e6).collect();
            let load_rps = pick(&rps, &all);
            let load = forecast::Load { seconds: &seconds, rps: &load_rps };
            let position: HashMap<usize, usize> = all.iter().enumerate().map(|(k, &r)| (r, k)).collect();
            let at: Vec<usize> = rs.iter().map(|r| position[r]).collect();
            // Pods that keep the forecast peak within the HPA's tolerance band: what the HPA itself
            // would not do without at that load, so a steady forecast adds nothing.
            let pods = |peak: f64| cap.needed(peak, p.hpa_target * (1.0 + p.hpa_tolerance), p);
            let seasonal = forecast::seasonal_naive(&load, &at, p).into_iter().map(|f| f.map_or(p.min_replicas, pods)).collect();
            forecasts.push((PolicyName::SeasonalNaive.to_string(), seasonal));
            // Without two days of history, Holt-Winters forecasts nothing: the policy is the HPA.
            let hw = forecast::holt_winters(&load, fit_until, &at, p);
            no_holt_winters = hw.is_none();
            let hw = hw.map_or_else(|| vec![p.min_replicas; rs.len()], |f| f.into_iter().map(pods).collect());
            forecasts.push((PolicyName::HoltWinters.to_string(), hw));
            demand = forecast::realized(&load, &at, p).into_iter().map(|f| f.map(pods)).collect();
        }
        let (mut raw, mut errors) = (Vec::new(), Vec::new());
        for (name, pred) in names.iter().zip(predictions) {
            let r: Vec<f64> = rs.iter().map(|&i| bounded(pred[i])).collect();
            given.push((name.clone(), r.clone()));
            forecasts.push((PolicyName::Forecast(name.clone()).to_string(), r));
            let f: Vec<f64> = rs.iter().map(|&i| pred[i]).collect();
            errors.push(f.iter().zip(&demand).map(|(f, d)| d.map_or(f64::NAN, |d| d - f)).collect());
            raw.push(f);
        }
        out.push(Prepared { service: service.to_string(), capacity, mean_rps, series, given, forecasts, no_holt_winters, raw, errors });
    }
    Ok(out)
}
