//! A run killed with SIGKILL at several points leaves nothing half-written: the next run
//! completes and reuses every stage that had finished.

use crate::common;
use common::Project;

use std::time::{Duration, Instant};

const QUICK: &[&str] =
    &["--set", "rf_trees=8", "--set", "cv_folds=0", "--set", "lstm_epochs=3", "--set", "device=cpu", "--set", "require_beating_hpa=false", "--no-progress"];

fn entries(p: &Project) -> usize {
    common::count(&p.path().join("artifacts/cache/entries"))
}

#[test]
fn killed_runs_resume_from_what_finished() {
    let p = Project::new();
    // Kill after 1, 4 and 8 finished stages: during ingest/SQL, during training, near the report.
    for after in [1, 4, 8] {
        let mut child = common::command()
            .arg("run")
            .args(QUICK)
            .current_dir(p.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while entries(&p) < after && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Every entry on disk is whole: its files match their checksums (inspect verifies).
        for e in std::fs::read_dir(p.path().join("artifacts/cache/entries")).unwrap().flatten() {
            assert!(e.path().join("meta.json").is_file(), "entry {} has no meta.json", e.path().display());
        }
        if let Ok(target) = std::fs::read_link(p.path().join("artifacts/runs/latest")) {
            assert!(p.path().join("artifacts/runs").join(target).join("manifest.json").is_file(), "latest points at a whole run");
        }
    }
    let before = entries(&p);
    let mut args = vec!["run"];
    args.extend_from_slice(QUICK);
    let run = p.pipeline(&args).ok();
    let cached = run.stdout().lines().filter(|l| l.split_whitespace().nth(1) == Some("cached")).count();
    assert!(before >= 8, "the kills came after 8 finished stages, {before} entries");
    assert_eq!(cached, before, "every finished stage is reused\n{}", run.stdout());
    assert!(p.path().join("artifacts/runs/latest/report/report.html").is_file());
    p.pipeline(&["models", "list"]).ok().stdout_has("random_forest").stdout_has("lstm_cnn");
}
