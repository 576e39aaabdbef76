//! What `evaluate` and `publish` both depend on, checked once: a temporal split first (its test
//! part is the hold-out every model is compared on), then the train stages of the models.

use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::Built;
use crate::evaluation::ModelInfo;
use crate::models::ModelKind;

/// The hold-out and the models of an evaluate or publish stage.
pub struct HoldoutAndModels {
    /// The label rule of the hold-out's labels.
    pub holdout_rule: String,
    pub models: Vec<(ModelInfo, ModelKind)>,
}

impl HoldoutAndModels {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec, built: &Built) -> Result<HoldoutAndModels, SpecError> {
        if spec.deps.len() < 2 {
            return Err(p.error(spec, Some("deps"), format!("op `{}` needs the hold-out split first, then one or more train stages", spec.op)));
        }
        let holdout = spec.deps[0].clone();
        let Some(cut) = super::temporal_split(built, &holdout).map(|s| s.test_fraction()) else {
            return Err(p.error(
                spec,
                Some("deps"),
                format!("the first dep, `{holdout}`, must be a temporal split: it is the hold-out every model is scored on"),
            ));
        };
        let mut models = Vec::new();
        for dep in &spec.deps[1..] {
            let Some(train) = super::upstream_op::<super::train::Train>(built, dep) else {
                return Err(p.error(spec, Some("deps"), format!("`{dep}` is not a train stage (after the hold-out, deps are models)")));
            };
            let split = p.stages[dep].deps.first().cloned().unwrap_or_default();
            // Unseen hold-out rows only when it was trained on a temporal split with the same cut.
            let honest = super::temporal_split(built, &split).is_some_and(|s| s.test_fraction() == cut);
            models.push((ModelInfo { stage: dep.clone(), label_rule: super::label_rule(p, built, &split), split, honest }, train.kind()));
        }
        Ok(HoldoutAndModels { holdout_rule: super::label_rule(p, built, &holdout), models })
    }

    /// The replay's few columns of the hold-out and two weeks, and the features of a group of
    /// services at a time (as many as this leaves room for, see `Holdout::load`).
    pub fn memory(input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Holds(crate::evaluation::Holdout::memory(input_bytes))
    }
}
