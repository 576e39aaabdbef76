//! The pipeline file: YAML types, `${param}` substitution and structural validation.
//!
//! Parsing keeps the line and column of every stage and field so that every error a user
//! can make in the file points at the place to fix.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// A place in the pipeline file, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc { line: s.referenced.line() as u32, column: s.referenced.column() as u32 }
    }
}

/// A mistake in the pipeline file: where it is, which stage and field, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub loc: Option<Loc>,
    pub stage: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(loc) = self.loc {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        write!(f, ": ")?;
        match (&self.stage, &self.field) {
            (Some(s), Some(field)) => write!(f, "stage `{s}`, field `{field}`: ")?,
            (Some(s), None) => write!(f, "stage `{s}`: ")?,
            (None, Some(field)) => write!(f, "field `{field}`: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.message)
    }
}

/// One stage as declared, with its params resolved against the pipeline params.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub op: String,
    pub deps: Vec<String>,
    /// Op-specific fields (everything but `op`, `deps` and `description`), `${...}` resolved.
    pub params: serde_json::Map<String, Value>,
    pub description: Option<String>,
    pub loc: Loc,
    field_locs: HashMap<String, Loc>,
}

impl super::graph::Node for StageSpec {
    fn deps(&self) -> &[String] {
        &self.deps
    }
}

impl StageSpec {
    pub fn field_loc(&self, field: &str) -> Loc {
        self.field_locs.get(field).copied().unwrap_or(self.loc)
    }
}

/// A parsed and structurally valid pipeline (ops and their params are checked by `ops`).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub file: PathBuf,
    /// Relative paths in the file (SQL, data, artifacts) resolve against this folder.
    pub root: PathBuf,
    pub params: IndexMap<String, Value>,
    pub stages: IndexMap<String, StageSpec>,
    /// The bytes of the file, hashed into run manifests.
    pub source: String,
    /// `s3://bucket/prefix` holding the cache and artifacts shared between machines.
    pub store: Option<String>,
    /// Where the SQL stages run (`engine:`, `--engine`). Not part of any cache key: every
    /// engine gives the same table.
    pub engine: crate::engine::Engine,
}

impl Pipeline {
    pub fn error(&self, stage: &StageSpec, field: Option<&str>, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.clone(),
            loc: Some(field.map(|f| stage.field_loc(f)).unwrap_or(stage.loc)),
            stage: Some(stage.name.clone()),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_path_buf() } else { self.root.join(p) }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    params: IndexMap<Spanned<String>, Spanned<Value>>,
    store: Option<Spanned<String>>,
    engine: Option<Spanned<String>>,
    stages: IndexMap<Spanned<String>, Spanned<IndexMap<Spanned<String>, Spanned<Value>>>>,
}

/// The folder that relative paths resolve against: the project holding `pipelines/`, or the
/// pipeline file's own folder when it does not live in one.
fn project_root(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let root =
        if dir.file_name().is_some_and(|n| n == "pipelines") { dir.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")) } else { dir };
    root.to_path_buf()
}

/// A `--set` override or a `${param}` reference that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("`{0}` is not NAME=VALUE (for example --set date=2024-10)")]
    NotNameValue(String),
    #[error("`{0}` has an empty NAME")]
    EmptyName(String),
    #[error("`${{{name}}}` refers to no param (declared params: {})", if .declared.is_empty() { "none".to_string() } else { .declared.join(", ") })]
    Unknown { name: String, declared: Vec<String> },
    #[error("unclosed `${{` in `{0}`")]
    Unclosed(String),
    #[error(transparent)]
    Expression(#[from] super::expr::ExprError),
}

/// Parse `--set NAME=VALUE`; VALUE is read as a YAML scalar so numbers stay numbers.
pub fn parse_override(s: &str) -> Result<(String, Value), ParamError> {
    let (name, value) = s.split_once('=').ok_or_else(|| ParamError::NotNameValue(s.into()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ParamError::EmptyName(s.into()));
    }
    let v = match value.trim() {
        "" => Value::String(String::new()),
        // Dates like 2024-10 must stay strings, so only plain numbers and booleans are typed.
        t if t.parse::<i64>().is_ok() => Value::from(t.parse::<i64>().unwrap()),
        t if t.parse::<f64>().is_ok() && !t.contains('-') => Value::from(t.parse::<f64>().unwrap()),
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => Value::String(t.to_string()),
    };
    Ok((name.to_string(), v))
}

pub fn load(file: &Path, overrides: &[(String, Value)]) -> Result<Pipeline, SpecError> {
    let err = |loc: Option<Loc>, message: String| SpecError { file: file.to_path_buf(), loc, stage: None, field: None, message };
    let source = std::fs::read_to_string(file).map_err(|e| err(None, format!("cannot read the pipeline file: {e}")))?;
    parse(file, &source, overrides)
}

pub fn parse(file: &Path, source: &str, overrides: &[(String, Value)]) -> Result<Pipeline, SpecError> {
    let err = |loc: Option<Loc>, stage: Option<&str>, field: Option<&str>, message: String| SpecError {
        file: file.to_path_buf(),
        loc,
        stage: stage.map(str::to_string),
        field: field.map(str::to_string),
        message,
    };
    let raw: RawPipeline = serde_saphyr::from_str(source).map_err(|e| {
        let loc = e.location().map(|l| Loc { line: l.line() as u32, column: l.column() as u32 });
        // The crate's Display repeats the position and a snippet; keep the first line only.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        err(loc, None, None, format!("invalid pipeline YAML: {first}"))
    })?;

    let mut params: IndexMap<String, Value> = IndexMap::new();
    for (k, v) in raw.params {
        match &v.value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(err(Some(Loc::of(&v)), None, Some(&format!("params.{}", k.value)), "a param must be a string, number or boolean".into()));
            }
        }
        params.insert(k.value, v.value);
    }
    for (name, value) in overrides {
        if !params.contains_key(name) {
            let known: Vec<&str> = params.keys().map(String::as_str).collect();
            return Err(err(
                None,
                None,
                None,
                format!("--set {name}: the pipeline has no param `{name}` (it has: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") }),
            ));
        }
        params.insert(name.clone(), value.clone());
    }

    let mut stages: IndexMap<String, StageSpec> = IndexMap::new();
    for (name, body) in raw.stages {
        let stage_loc = Loc::of(&name);
        let sname = name.value;
        if !is_identifier(&sname) {
            return Err(err(
                Some(stage_loc),
                Some(&sname),
                None,
                "a stage name must be letters, digits and `_`, starting with a letter (it becomes a SQL table name)".into(),
            ));
        }
        let mut op = None;
        let mut deps = Vec::new();
        let mut description = None;
        let mut out = serde_json::Map::new();
        let mut field_locs = HashMap::new();
        for (key, value) in body.value {
            let loc = Loc::of(&value);
            let field = key.value;
            field_locs.insert(field.clone(), loc);
            let value = substitute(&value.value, &params).map_err(|m| err(Some(loc), Some(&sname), Some(&field), m.to_string()))?;
            match field.as_str() {
                "op" => match value {
                    Value::String(s) => op = Some(s),
                    _ => return Err(err(Some(loc), Some(&sname), Some("op"), "must be a string naming an op".into())),
                },
                "deps" => match value {
                    Value::Array(items) => {
                        for it in items {
                            match it {
                                Value::String(s) => deps.push(s),
                                _ => return Err(err(Some(loc), Some(&sname), Some("deps"), "must be a list of stage names".into())),
                            }
                        }
                    }
                    Value::String(s) => deps.push(s),
                    _ => return Err(err(Some(loc), Some(&sname), Some("deps"), "must be a list of stage names".into())),
                },
                "description" => description = value.as_str().map(str::to_string),
                _ => {
                    out.insert(field, value);
                }
            }
        }
        let Some(op) = op else {
            return Err(err(Some(stage_loc), Some(&sname), Some("op"), "missing: every stage needs an `op`".into()));
        };
        stages.insert(sname.clone(), StageSpec { name: sname, op, deps, params: out, description, loc: stage_loc, field_locs });
    }
    if stages.is_empty() {
        return Err(err(None, None, Some("stages"), "the pipeline has no stages".into()));
    }

    let store = match raw.store {
        None => None,
        Some(v) => {
            let loc = Loc::of(&v);
            match substitute_str(&v.value, &params).map_err(|m| err(Some(loc), None, Some("store"), m.to_string()))? {
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => {
                    crate::store::check_url(&s).map_err(|m| err(Some(loc), None, Some("store"), m.to_string()))?;
                    Some(s)
                }
                _ => return Err(err(Some(loc), None, Some("store"), "must be an s3://bucket/prefix URL".into())),
            }
        }
    };

    let engine = match raw.engine {
        None => crate::engine::Engine::Local,
        Some(v) => {
            let loc = Loc::of(&v);
            match substitute_str(&v.value, &params).map_err(|m| err(Some(loc), None, Some("engine"), m.to_string()))? {
                Value::String(s) => crate::engine::Engine::parse_supported(&s).map_err(|m| err(Some(loc), None, Some("engine"), m))?,
                _ => return Err(err(Some(loc), None, Some("engine"), "must be `local` or a ballista://HOST:PORT URL".into())),
            }
        }
    };

    let name = raw.name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()));
    let pipeline = Pipeline { name, file: file.to_path_buf(), root: project_root(file), params, stages, source: source.to_string(), store, engine };
    check_graph(&pipeline)?;
    Ok(pipeline)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replace `${name}` in every string. A string that is exactly `${name}` takes the param's
/// own type, so `n_estimators: ${trees}` stays a number.
fn substitute(v: &Value, params: &IndexMap<String, Value>) -> Result<Value, ParamError> {
    Ok(match v {
        Value::String(s) => substitute_str(s, params)?,
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute(i, params)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| Ok((k.clone(), substitute(v, params)?))).collect::<Result<_, ParamError>>()?),
        other => other.clone(),
    })
}

fn substitute_str(s: &str, params: &IndexMap<String, Value>) -> Result<Value, ParamError> {
    // `${name}` is the param; anything else inside `${…}` is arithmetic on params (dag::expr).
    let lookup = |name: &str| {
        if !is_identifier(name) && !name.is_empty() {
            return Ok(super::expr::evaluate(name, params)?);
        }
        params.get(name).cloned().ok_or_else(|| ParamError::Unknown { name: name.into(), declared: params.keys().cloned().collect() })
    };
    if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !name.contains(['$', '{', '}'])
    {
        return lookup(name.trim());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ParamError::Unclosed(s.into()))?;
        match lookup(after[..end].trim())? {
            Value::String(v) => out.push_str(&v),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// Unknown deps and cycles: the graph must be a DAG before anything plans or runs.
fn check_graph(p: &Pipeline) -> Result<(), SpecError> {
    for stage in p.stages.values() {
        for dep in &stage.deps {
            if !p.stages.contains_key(dep) {
                let known: Vec<&str> = p.stages.keys().map(String::as_str).collect();
                return Err(p.error(stage, Some("deps"), format!("unknown stage `{dep}` (stages: {})", known.join(", "))));
            }
            if dep == &stage.name {
                return Err(p.error(stage, Some("deps"), "a stage cannot depend on itself".to_string()));
            }
        }
    }
    if let Err(cycle) = super::graph::topo_order(&p.stages) {
        let first = &p.stages[&cycle[0]];
        return Err(p.error(first, Some("deps"), format!("dependency cycle: {}", cycle.join(" → "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> Result<Pipeline, SpecError> {
        parse(Path::new("pipelines/t.yaml"), src, &[])
    }

    #[test]
    fn params_substitute_typed_and_inline() {
        let p = parse(
            Path::new("pipelines/t.yaml"),
            "
params:
  uri: data/metrics
  trees: 200
stages:
  ingest:
    op: ingest
    source: ${uri}
    note: \"from ${uri} with ${trees}\"
    n: ${trees}
",
            &[("trees".into(), Value::from(50))],
        )
        .unwrap();
        let s = &p.stages["ingest"];
        assert_eq!(s.params["source"], Value::from("data/metrics"));
        assert_eq!(s.params["n"], Value::from(50));
        assert_eq!(s.params["note"], Value::from("from data/metrics with 50"));
        assert_eq!(p.root, PathBuf::from("."));
    }

    #[test]
    fn one_fact_in_seconds_is_read_in_rows_by_arithmetic_on_params() {
        let src = "
params:
  pod_startup_seconds: 60
  row_seconds: 30
stages:
  labels:
    op: sql
    params:
      lead_start: ${ceil(pod_startup_seconds / row_seconds)}
      horizon_end: ${ceil(pod_startup_seconds / row_seconds) + 4}
      note: \"ready after ${pod_startup_seconds * 1000} ms\"
";
        let p = parse(Path::new("pipelines/t.yaml"), src, &[("pod_startup_seconds".into(), Value::from(45))]).unwrap();
        let s = &p.stages["labels"].params["params"];
        assert_eq!((&s["lead_start"], &s["horizon_end"], &s["note"]), (&Value::from(2), &Value::from(6), &Value::from("ready after 45000 ms")));
        let e = parse_str("params:\n  a: 1\nstages:\n  s:\n    op: sql\n    n: ${ceil(a / b)}\n").unwrap_err().to_string();
        assert!(e.starts_with("pipelines/t.yaml:6:") && e.contains("field `n`") && e.contains("no param `b`"), "{e}");
    }

    #[test]
    fn unknown_param_reference_names_place() {
        let e = parse_str("stages:\n  a:\n    op: ingest\n    source: ${nope}\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("pipelines/t.yaml:4:"), "{msg}");
        assert!(msg.contains("stage `a`, field `source`"), "{msg}");
        assert!(msg.contains("${nope}"), "{msg}");
    }

    #[test]
    fn unknown_dep_and_cycle() {
        let e = parse_str("stages:\n  a:\n    op: sql\n    deps: [b]\n").unwrap_err().to_string();
        assert!(e.contains(":4:") && e.contains("unknown stage `b`"), "{e}");
        let e = parse_str("stages:\n  a:\n    op: sql\n    deps: [b]\n  b:\n    op: sql\n    deps: [a]\n").unwrap_err().to_string();
        assert!(e.contains("dependency cycle: a → b → a") || e.contains("dependency cycle: b → a → b"), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse_str("stages:\n  a:\n    op: [sql\n").unwrap_err();
        assert!(e.loc.is_some(), "{e}");
        assert!(e.to_string().contains("invalid pipeline YAML"), "{e}");
    }

    #[test]
    fn missing_op_and_bad_name() {
        let e = parse_str("stages:\n  a:\n    deps: []\n").unwrap_err().to_string();
        assert!(e.contains("stage `a`, field `op`: missing"), "{e}");
        let e = parse_str("stages:\n  bad-name:\n    op: sql\n").unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("stage name"), "{e}");
    }

    #[test]
    fn overrides_must_name_declared_params() {
        let e = parse(Path::new("t.yaml"), "params: {date: ''}\nstages: {a: {op: sql}}\n", &[("dat".into(), Value::from("x"))]).unwrap_err().to_string();
        assert!(e.contains("no param `dat`") && e.contains("date"), "{e}");
    }

    #[test]
    fn override_values_are_typed_but_dates_stay_strings() {
        assert_eq!(parse_override("date=2024-10").unwrap().1, Value::from("2024-10"));
        assert_eq!(parse_override("n=3").unwrap().1, Value::from(3));
        assert_eq!(parse_override("f=0.5").unwrap().1, Value::from(0.5));
        assert_eq!(parse_override("novalue"), Err(ParamError::NotNameValue("novalue".into())));
        assert_eq!(parse_override(" =1"), Err(ParamError::EmptyName(" =1".into())));
    }

    #[test]
    fn anchors_are_supported() {
        let p = parse_str(
            "
stages:
  a: &base
    op: sql
    sql: sql/x.sql
  b:
    <<: *base
    deps: [a]
",
        )
        .unwrap();
        assert_eq!(p.stages["b"].params["sql"], Value::from("sql/x.sql"));
        assert_eq!(p.stages["b"].deps, vec!["a".to_string()]);
        // Shared params (as pipelines/train.yaml's label and forest params), one changed here.
        let p = parse_str(
            "
stages:
  a:
    op: sql
    params: &shared { horizon: 10, rule: seed }
  b:
    op: sql
    params: { <<: *shared, rule: demand }
  c:
    op: sql
    params: *shared
",
        )
        .unwrap();
        let params = |s: &str| serde_json::to_string(&p.stages[s].params["params"]).unwrap();
        assert_eq!(params("b"), r#"{"horizon":10,"rule":"demand"}"#);
        assert_eq!(params("c"), params("a"));
    }
}
