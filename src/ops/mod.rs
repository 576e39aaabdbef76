//! Stage ops. Each op is a module with a type implementing [`Stage`]; [`build`] is the one
//! place that maps an `op:` name to it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Built, Stage};

pub mod evaluate;
mod holdout_deps;
pub mod ingest;
pub mod publish;
pub mod report;
pub mod split;
pub mod sql;
pub mod train;

/// The ops a pipeline may use, for `build` and for error messages.
pub const OPS: &[&str] = &["ingest", "sql", "split", "train", "evaluate", "report", "publish"];

/// Build the stage for a spec, checking its params; `built` holds its upstream stages.
pub fn build(p: &Pipeline, spec: &StageSpec, built: &Built) -> Result<Arc<dyn Stage>, SpecError> {
    Ok(match spec.op.as_str() {
        "ingest" => Arc::new(ingest::Ingest::from_spec(p, spec)?),
        "sql" => Arc::new(sql::Sql::from_spec(p, spec)?),
        "split" => Arc::new(split::Split::from_spec(p, spec)?),
        "train" => Arc::new(train::Train::from_spec(p, spec, built)?),
        "evaluate" => Arc::new(evaluate::Evaluate::from_spec(p, spec, built)?),
        "report" => Arc::new(report::ReportOp::from_spec(p, spec)?),
        "publish" => Arc::new(publish::Publish::from_spec(p, spec, built)?),
        other => {
            return Err(p.error(spec, Some("op"), format!("unknown op `{other}` (known ops: {})", OPS.join(", "))));
        }
    })
}

/// An upstream stage as the op it is, if it is that op: `upstream_op::<Split>(built, "split_temporal")`.
pub fn upstream_op<'a, T: Stage>(built: &'a Built, name: &str) -> Option<&'a T> {
    let stage: &dyn std::any::Any = built.get(name)?.as_ref();
    stage.downcast_ref::<T>()
}

/// The temporal split `name` is, if it is one: the hold-out every comparison is made on.
pub fn temporal_split<'a>(built: &'a Built, name: &str) -> Option<&'a split::Split> {
    upstream_op::<split::Split>(built, name).filter(|s| s.method() == split::Method::Temporal)
}

/// The `label_rule` of the labels stage behind a split (`seed` when it sets none): what the
/// models trained on it learned to predict.
pub fn label_rule(p: &Pipeline, built: &Built, split: &str) -> String {
    label_param(p, built, split, "label_rule").as_ref().and_then(|r| r.as_str()).unwrap_or("seed").to_string()
}

/// A param of the SQL stage that a split stage splits (its labels), when it has it.
pub fn label_param(p: &Pipeline, built: &Built, split: &str, name: &str) -> Option<serde_json::Value> {
    p.stages.get(split).and_then(|s| s.deps.first()).and_then(|labels| upstream_op::<sql::Sql>(built, labels)).and_then(|l| l.param(name)).cloned()
}

/// Read an op's typed params from the stage's fields; a type error names the field and its line.
pub fn parse_params<T: DeserializeOwned>(p: &Pipeline, spec: &StageSpec) -> Result<T, SpecError> {
    let value = serde_json::Value::Object(spec.params.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().filter(|f| !f.is_empty() && *f != "?").map(str::to_string);
        let inner = e.into_inner().to_string();
        // serde_json names unknown fields itself; point at that field's line.
        let field = field.or_else(|| inner.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).map(str::to_string));
        let message = if path.is_empty() || path == "." { inner } else { format!("{inner} (at `{path}`)") };
        p.error(spec, field.as_deref(), message)
    })
}

/// Check that a stage has exactly the number of deps its op needs.
pub fn expect_deps(p: &Pipeline, spec: &StageSpec, range: std::ops::RangeInclusive<usize>, what: &str) -> Result<(), SpecError> {
    if range.contains(&spec.deps.len()) {
        Ok(())
    } else {
        Err(p.error(spec, Some("deps"), format!("op `{}` needs {what}, found {}", spec.op, spec.deps.len())))
    }
}

/// A project file named by a stage must exist now, not halfway through a run.
pub fn existing_file(p: &Pipeline, spec: &StageSpec, field: &str, rel: &str) -> Result<PathBuf, SpecError> {
    let path = p.resolve_path(rel);
    if path.is_file() { Ok(path) } else { Err(p.error(spec, Some(field), format!("file {} does not exist", path.display()))) }
}
