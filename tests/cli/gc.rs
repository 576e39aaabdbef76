//! `pipeline gc`: old runs and unreferenced cache entries go; the latest run, each stage's last
//! build and the model registry stay.

use crate::common;
use common::{Project, count};

/// Ingest and one SQL stage whose key follows a param: three complete runs, three entries of it.
const PIPELINE: &str = "
name: t
params:
  cpu: 70
stages:
  ingest:
    op: ingest
    source: data/metrics
  busy:
    op: sql
    deps: [ingest]
    sql: sql/busy.sql
    params:
      cpu: ${cpu}
";

#[test]
fn gc_keeps_what_the_next_run_needs_and_every_model() {
    let p = Project::new()
        .file("pipelines/t.yaml", PIPELINE)
        .file("sql/busy.sql", "SELECT service_name, count(*) AS n FROM ingest WHERE cpu_usage_percent > ${cpu} GROUP BY 1");
    for cpu in ["70", "71", "72"] {
        p.pipeline(&["run", "pipelines/t.yaml", "--set", &format!("cpu={cpu}")]).ok();
    }
    let entries = p.path().join("artifacts/cache/entries");
    let runs = p.path().join("artifacts/runs");
    assert_eq!(count(&entries), 4, "ingest, three of busy");
    assert_eq!(count(&runs), 4, "three runs and latest");
    let model = p.path().join("artifacts/models/random_forest/v1");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.json"), "{}").unwrap();

    p.pipeline(&["gc", "--keep-runs", "1", "--dry-run"]).ok().stdout_has("would remove 2 runs and 2 cache entries");
    assert_eq!(count(&entries), 4, "a dry run removes nothing");
    p.pipeline(&["gc", "--keep-runs", "1"]).ok().stdout_has("removed 2 runs and 2 cache entries");
    assert_eq!(count(&entries), 2);
    assert_eq!(count(&runs), 2, "the newest run and latest");
    assert!(runs.join("latest/manifest.json").is_file(), "latest still points at a run");
    assert!(model.join("model.json").is_file(), "the registry is never collected");
    p.pipeline(&["run", "pipelines/t.yaml", "--set", "cpu=72"]).ok().stdout_has("0 ran");
}
