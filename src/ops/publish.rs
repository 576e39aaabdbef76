//! `op: publish`: register each trained model as a version with the policy it serves under
//! (its forecast as a floor under the reactive HPA), and promote it only when that policy beats
//! the reactive HPA's frontier and the serving version on the same hold-out.
//!
//! ```yaml
//! publish:
//!   op: publish
//!   deps: [split_temporal, train_random_forest_demand, train_lstm_cnn]  # hold-out, then models
//!   replay: { target_utilization: 70, hpa_target: 60 }
//!   rule:
//!     max_under_provisioned_increase_minutes: 0   # margin below the HPA frontier not smaller...
//!     max_exact_accuracy_drop: 0                  # ...and exact accuracy not lower
//!     require_beating_hpa: true                   # never promote what the HPA beats
//!   pooled: train_random_forest_pooled  # a forest on load features: rides with random_forest
//! ```
//! `pooled` names a train stage among the deps whose forest reads no service column
//! (`models::pooled`): it is registered inside the `random_forest` version, and each trained
//! service is served by whichever of the two forests replays it no worse on the hold-out
//! (`pooled::choose`); the version is scored, and promoted, as it will serve.
//! Both models are scored on the rows of this run's hold-out, so an old model is judged on the
//! same data as its challenger. Exact accuracy is compared only between models that learned the
//! hold-out's label rule: a `demand` forest's replicas are not the `seed` rule's, and the margin
//! below the HPA frontier is what decides. The registry serves one version per model, so each
//! model is published from one train stage. A version that does not beat the HPA is registered but never
//! promoted: with nothing promoted, `pipeline serve` answers with the reactive HPA. The registry is
//! `artifacts/models/<model>/`; see `pipeline models`.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::holdout_deps::HoldoutAndModels;
use super::parse_params;
use crate::artifacts::models::{Registry, VersionInfo};
use crate::artifacts::promotion::{self, Candidate, Rule, Serving, Verdict};
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Built, Stage, StageContext, StageOutput};
use crate::evaluation::policy::PolicySpec;
use crate::evaluation::policy_name::PolicyName;
use crate::evaluation::replay::Score;
use crate::evaluation::risk::{self, RiskChoice};
use crate::evaluation::{Holdout, replay};
use crate::features::seasonal::{self, Profiles};
use crate::models::model::Model;
use crate::models::torch_runtime::DeviceChoice;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    replay: replay::Params,
    #[serde(default)]
    rule: Rule,
    /// The member of each model's risk family to serve: `none` (the forecast as it is), `auto`
    /// (the cheapest member at least as healthy as the reactive HPA at its target) or a level.
    #[serde(default)]
    risk: RiskChoice,
    /// The train stage of the pooled forest that rides with the `random_forest` version.
    #[serde(default)]
    pooled: Option<String>,
}

/// The pooled forest's stage and the CPU % its load features count pods at.
#[derive(Debug, Clone, Serialize)]
struct PooledStage {
    stage: String,
    aim_cpu: f64,
}

pub struct Publish {
    replay: replay::Params,
    rule: Rule,
    risk: RiskChoice,
    /// The label rule of the hold-out, and of each train stage's labels.
    holdout_rule: String,
    label_rules: std::collections::BTreeMap<String, String>,
    pooled: Option<PooledStage>,
}

impl Publish {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec, built: &Built) -> Result<Publish, SpecError> {
        let deps = HoldoutAndModels::from_spec(p, spec, built)?;
        let params: Params = parse_params(p, spec)?;
        let pooled = match &params.pooled {
            None => None,
            Some(stage) => Some(pooled_stage(p, spec, built, &deps, stage)?),
        };
        let mut kinds: std::collections::BTreeMap<crate::models::ModelKind, &str> = Default::default();
        let mut label_rules = std::collections::BTreeMap::new();
        for (model, kind) in deps.models.iter().filter(|(m, _)| pooled.as_ref().is_none_or(|p| p.stage != m.stage)) {
            if let Some(other) = kinds.insert(*kind, &model.stage) {
                return Err(p.error(
                    spec,
                    Some("deps"),
                    format!("`{other}` and `{}` both train a {kind}; the registry serves one version of each model, so publish one of them", model.stage),
                ));
            }
            label_rules.insert(model.stage.clone(), model.label_rule.clone());
        }
        params.replay.check().map_err(|e| p.error(spec, Some("replay"), e.to_string()))?;
        Ok(Publish { replay: params.replay, rule: params.rule, risk: params.risk, holdout_rule: deps.holdout_rule, label_rules, pooled })
    }
}

/// `pooled:` checked: a random_forest train stage among the deps, whose labels say at what CPU
/// % their load features count pods.
fn pooled_stage(p: &Pipeline, spec: &StageSpec, built: &Built, deps: &HoldoutAndModels, stage: &str) -> Result<PooledStage, SpecError> {
    let Some((model, kind)) = deps.models.iter().find(|(m, _)| m.stage == stage) else {
        return Err(p.error(spec, Some("pooled"), format!("`{stage}` is not among the train stages in deps; add it there")));
    };
    if *kind != crate::models::ModelKind::RandomForest {
        return Err(p.error(spec, Some("pooled"), format!("`{stage}` trains a {kind}; the pooled model is a random_forest")));
    }
    let number = |name: &str| super::label_param(p, built, &model.split, name).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    match (number("target_cpu"), number("hpa_tolerance")) {
        (Some(target), Some(tolerance)) if target > 0.0 && tolerance >= 0.0 => {
            Ok(PooledStage { stage: stage.to_string(), aim_cpu: target * (1.0 + tolerance) })
        }
        _ => Err(p.error(
            spec,
            Some("pooled"),
            format!("the labels behind `{stage}` need `target_cpu` and `hpa_tolerance` params (sql/labels.sql): its load features count pods at that CPU %"),
        )),
    }
}

/// What publishing one model decided.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub model: String,
    pub version: String,
    pub promoted: bool,
    pub reason: String,
}

#[async_trait]
impl Stage for Publish {
    fn version(&self) -> u32 {
        // 2: exact accuracy on replicas rounded half to even. 3: the replay with delays.
        // 4: label rules recorded, exact accuracy compared only on the hold-out's labels.
        // 5: the replay's history is the two weeks before the hold-out. 6: both axes decide;
        // the risk family. 7: a model reading seasonal features carries each service's profile.
        // 8: the pooled forest rides with the random_forest version.
        8
    }

    fn params(&self) -> serde_json::Value {
        json!({ "replay": self.replay, "rule": self.rule, "risk": self.risk, "holdout_rule": self.holdout_rule, "label_rules": self.label_rules, "pooled": self.pooled })
    }

    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        HoldoutAndModels::memory(input_bytes)
    }

    fn describe(&self) -> String {
        "register models; promote the better".into()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let mut deps = ctx.upstream.iter();
        let (holdout_stage, holdout) = deps.next().context("publish needs the hold-out split")?;
        let (holdout_stage, holdout) = (holdout_stage.clone(), holdout.output());
        let holdout_path = holdout.clone();
        let pooled_stage = self.pooled.clone();
        let is_pooled = |s: &str| pooled_stage.as_ref().is_some_and(|p| p.stage == s);
        let mut pooled = None;
        let mut models: Vec<(String, std::path::PathBuf, String)> = Vec::new();
        for (s, e) in deps {
            if is_pooled(s) {
                pooled = pooled_stage.clone().map(|p| (p, e.dir.clone(), e.meta.key.clone()));
            } else {
                models.push((s.clone(), e.dir.clone(), e.meta.key.clone()));
            }
        }
        let registry = Registry::of_project(&ctx.pipeline.root);
        let (rp, rule, risk_choice) = (self.replay.clone(), self.rule.clone(), self.risk);
        let pipeline = ctx.pipeline.name.clone();
        let (holdout_rule, label_rules) = (self.holdout_rule.clone(), self.label_rules.clone());
        let progress = ctx.progress.clone();
        let memory = ctx.memory;
        let out = ctx.output_path();
        let decisions = tokio::task::spawn_blocking(move || -> Result<Vec<Decision>> {
            let holdout = Holdout::load(&holdout, &holdout_stage, memory)?;
            let mut decisions = Vec::new();
            for (stage, dir, key) in models {
                progress.message(&format!("publishing {stage}"));
                let model = Model::load(&dir, DeviceChoice::Cpu).with_context(|| format!("loading the model of `{stage}`"))?;
                let kind = model.kind().to_string();
                let label_rule = label_rules.get(&stage).cloned().unwrap_or_else(|| "seed".into());
                let serving = registry.serving_dir(&kind)?;
                let serving_rule = match &serving {
                    Some((sv, _)) => Some(registry.version(&kind, sv)?.label_rule().to_string()),
                    None => None,
                };
                let serving_model = serving.as_ref().map(|(v, d)| (v.clone(), Served::load(&registry, &kind, v, d)));
                // The pooled forest rides with the random_forest version.
                let pooled_here = match &pooled {
                    Some((p, pdir, pkey)) if kind == crate::models::ModelKind::RandomForest.as_str() => {
                        let m = Model::load(pdir, DeviceChoice::Cpu).with_context(|| format!("loading the pooled forest of `{}`", p.stage))?;
                        if let Some(f) = m.meta().features.iter().find(|f| f.starts_with(crate::models::SERVICE_PREFIX)) {
                            anyhow::bail!(
                                "`{}` is named `pooled`, but its forest reads `{f}`: a pooled forest names no service (list its features without service_*)",
                                p.stage
                            );
                        }
                        Some((p.clone(), pdir.clone(), pkey.clone(), m))
                    }
                    _ => None,
                };
                // Both scored on the rows both can predict; a serving model that cannot be read
                // or cannot predict these rows is replaced.
                let mut names = vec!["new".to_string()];
                let report = |m: &str| progress.message(m);
                // One read of the features for both; only if that fails, the new model alone (its
                // own failure then stops the stage, the serving one's is why it is replaced).
                let mut ours: Vec<&Model> = vec![&model];
                ours.extend(pooled_here.as_ref().map(|p| &p.3));
                let n_ours = ours.len();
                let (mut preds, old_pred) = match &serving_model {
                    Some((_, Ok(old))) => match holdout.predict(&[ours.as_slice(), old.models().as_slice()].concat(), &report) {
                        Ok(mut all) => {
                            let old = old.combine(&holdout, all.split_off(n_ours));
                            (all, Some(Ok(old)))
                        }
                        Err(e) => (holdout.predict(&ours, &report)?, Some(Err(e))),
                    },
                    _ => (holdout.predict(&ours, &report)?, None),
                };
                // Each trained service goes to the forest that replays it no worse; the version
                // is then scored as it will serve.
                let choice = match &pooled_here {
                    Some((p, ..)) => {
                        progress.message(&format!("{stage}: per service, its own forest or the pooled `{}`", p.stage));
                        let pooled_preds = preds.pop().expect("the pooled forest's predictions");
                        let per_service = preds[0].clone();
                        let both = holdout.score(vec!["per_service".into(), "pooled".into()], &[per_service, pooled_preds.clone()], &rp, &mut |_| Ok(()))?;
                        let by_service = |name: &str| -> std::collections::BTreeMap<String, (f64, f64)> {
                            let policy = PolicyName::Forecast(name.to_string()).to_string();
                            both.services
                                .iter()
                                .filter_map(|s| s.policies.get(&policy).map(|sc| (s.service.clone(), (sc.under_provisioned_minutes, sc.pod_hours))))
                                .collect()
                        };
                        let choice = crate::models::pooled::PooledChoice {
                            services: crate::models::pooled::choose(&by_service("per_service"), &by_service("pooled")),
                            stage: p.stage.clone(),
                            aim_cpu: p.aim_cpu,
                        };
                        preds[0] = combine(&holdout, &preds[0], &pooled_preds, &choice, &model);
                        Some(choice)
                    }
                    None => None,
                };
                if let Some(Ok(o)) = &old_pred {
                    names.push("serving".into());
                    preds.push(o.clone());
                }
                let scored = holdout.score(names, &preds, &rp, &mut |_| Ok(()))?;
                let rows = scored.rows.len();
                let exact = |m: usize| scored.accuracy(&holdout.table, m, (rp.min_replicas, rp.max_replicas)).overall.exact_accuracy;
                // What would serve: the model's forecast under the policy the replay chose for it (an HPA
                // floor at some target, or the forecast alone).
                let forecast = |name: &str| PolicyName::Forecast(name.to_string()).to_string();
                let margin = |name: &str| scored.totals.get(&forecast(name)).and_then(|s| scored.frontier.margin(s));
                // The member of its risk family the pipeline asked for, scored as it would serve.
                let hpa_minutes = scored.under_provisioned_minutes(&PolicyName::Hpa.to_string());
                let member = risk::pick(scored.risk.get("new").map_or(&[][..], Vec::as_slice), risk_choice, hpa_minutes);
                let new_score = match member {
                    Some(m) => Score { pod_hours: m.pod_hours, under_provisioned_minutes: m.under_provisioned_minutes, ..Score::default() },
                    None => scored.totals.get(&forecast("new")).cloned().unwrap_or_default(),
                };
                let (new_margin, new_exact) = (scored.frontier.margin(&new_score), exact(0));
                let new_saving = scored.frontier.saving(&new_score);
                let served_risk = member.map(|m| risk::member(&scored.errors["new"], m.level));
                if risk_choice != RiskChoice::None && member.is_none() {
                    progress.message(&format!(
                        "{stage}: no member of its risk family is as healthy as the HPA at {:.0} %; it serves its forecast as it is",
                        rp.hpa_target
                    ));
                }
                // Exact accuracy means something only against the labels the model learned.
                let learned_holdout = label_rule == holdout_rule;
                let mut info = VersionInfo {
                    version: String::new(),
                    model: kind.clone(),
                    source_key: key,
                    stage: stage.clone(),
                    pipeline: pipeline.clone(),
                    registered_at: String::new(),
                    holdout: json!({
                        "rows": rows,
                        "exact_accuracy": learned_holdout.then_some(new_exact),
                        "under_provisioned_minutes": new_score.under_provisioned_minutes,
                        "pod_hours": new_score.pod_hours,
                        "frontier_margin_minutes": new_margin.as_ref().map(|m| m.minutes),
                        "frontier_saving_pod_hours": new_saving.as_ref().and_then(|s| s.pod_hours),
                        "risk_family": scored.risk.get("new"),
                    }),
                    policy: Some(PolicySpec::of_forecast(scored.targets.get(&forecast("new")).copied().unwrap_or(Some(rp.hpa_target)), &rp)),
                    label_rule: Some(label_rule.clone()),
                    risk: served_risk,
                    pooled: choice.clone(),
                };
                // A model reading seasonal features serves with each service's profile as its
                // training data left it (the split holds every row, hold-out included).
                let mut extra = Vec::new();
                if Profiles::wanted_by(&model.meta().features) {
                    progress.message(&format!("{stage}: each service's seasonal profile"));
                    extra.push((seasonal::FILE.to_string(), serde_json::to_vec(&Profiles::from_table(&holdout_path)?)?));
                }
                if let Some((_, pdir, pkey, _)) = &pooled_here {
                    // One version per pair of forests.
                    info.source_key = format!("{}+{pkey}", info.source_key);
                    let dir = crate::models::ModelDir::new(pdir.as_path());
                    for file in [dir.meta(), dir.forest()] {
                        let name = format!("{}/{}", crate::models::pooled::DIR, file.file_name().expect("a file").to_string_lossy());
                        extra.push((name, std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?));
                    }
                }
                let (version, _) = registry.register_with(&kind, &dir, info, &extra)?;
                let v = version.version.clone();
                let candidate = Candidate {
                    kind: kind.clone(),
                    version: v.clone(),
                    margin: new_margin,
                    saving: new_saving,
                    exact_accuracy: new_exact,
                    label_rule: label_rule.clone(),
                    rows,
                };
                let serving = match (&serving, &serving_model, old_pred) {
                    (None, _, _) => Serving::None,
                    (Some((sv, _)), Some((_, Err(e))), _) => Serving::Unloadable { version: sv.clone(), error: format!("{e:#}") },
                    (Some((sv, _)), _, Some(Err(e))) => Serving::CannotScore { version: sv.clone(), error: format!("{e:#}") },
                    (Some((sv, _)), _, _) => Serving::Scored {
                        version: sv.clone(),
                        margin_minutes: margin("serving").map_or(f64::NEG_INFINITY, |m| m.minutes),
                        exact_accuracy: exact(1),
                        label_rule: serving_rule.clone().unwrap_or_else(|| "seed".into()),
                    },
                };
                let Verdict { promote, reason } = promotion::decide(&candidate, &serving, &rule, &holdout_rule);
                if promote {
                    registry.promote(&kind, &v, &reason)?;
                }
                decisions.push(Decision { model: kind, version: v, promoted: promote, reason });
            }
            write_decisions(&out, &decisions)?;
            Ok(decisions)
        })
        .await??;
        let notes = decisions.iter().map(|d| format!("{} {}: {}{}", d.model, d.version, if d.promoted { "promoted, " } else { "" }, d.reason)).collect();
        Ok(StageOutput { rows: decisions.len() as u64, summary: json!({ "decisions": decisions }), notes, ..Default::default() })
    }
}

/// The serving version as it serves: its forest, and the pooled forest with its choice when
/// it carries one.
struct Served {
    model: Model,
    pooled: Option<(Model, crate::models::pooled::PooledChoice)>,
}

impl Served {
    fn load(registry: &Registry, kind: &str, version: &str, dir: &std::path::Path) -> Result<Served> {
        let model = Model::load(dir, DeviceChoice::Cpu)?;
        let pooled = match registry.version(kind, version)?.pooled {
            Some(choice) => Some((Model::load(&dir.join(crate::models::pooled::DIR), DeviceChoice::Cpu)?, choice)),
            None => None,
        };
        Ok(Served { model, pooled })
    }

    fn models(&self) -> Vec<&Model> {
        let mut m = vec![&self.model];
        m.extend(self.pooled.as_ref().map(|p| &p.0));
        m
    }

    /// Its predictions from those of [`Served::models`], each service's from its forest.
    fn combine(&self, holdout: &Holdout, mut predictions: Vec<Vec<Option<f64>>>) -> Vec<Option<f64>> {
        match &self.pooled {
            None => predictions.swap_remove(0),
            Some((_, choice)) => combine(holdout, &predictions[0], &predictions[1], choice, &self.model),
        }
    }
}

/// Per hold-out row, the pooled forest's prediction where `choice` gives it the row's service
/// (and it has one), else that of `own`, the per-service forest.
fn combine(
    holdout: &Holdout,
    per_service: &[Option<f64>],
    pooled: &[Option<f64>],
    choice: &crate::models::pooled::PooledChoice,
    own: &Model,
) -> Vec<Option<f64>> {
    holdout
        .test
        .iter()
        .enumerate()
        .map(|(k, &row)| {
            let service = holdout.table.service(row);
            match pooled[k] {
                Some(p) if choice.pooled_serves(service, own.meta().knows_service(service)) => Some(p),
                _ => per_service[k],
            }
        })
        .collect()
}

fn write_decisions(path: &std::path::Path, d: &[Decision]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("promoted", DataType::Boolean, false),
        Field::new("reason", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.model.as_str()))),
            Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.version.as_str()))),
            Arc::new(BooleanArray::from(d.iter().map(|x| x.promoted).collect::<Vec<_>>())),
            Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.reason.as_str()))),
        ],
    )?;
    crate::io::table::write_parquet(path, schema, &[batch])?;
    Ok(())
}
