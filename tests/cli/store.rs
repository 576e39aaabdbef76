//! `--store s3://bucket/prefix`: machines (project folders) sharing the cache and the
//! artifacts through a real S3 API server (moto) on loopback, and the server going away.

use crate::common;
use common::moto::Moto;
use common::{Project, count};

use std::time::{Duration, Instant};

const STORE: &str = "s3://team/autoscale";
const METRICS: &str = "metrics_uri=s3://team/metrics/";

/// A promoted model version, as `publish` would have registered it on this machine.
fn register_model(p: &Project) {
    p.write("artifacts/models/random_forest/v1/model.json", "{\"trees\": []}");
    p.write(
        "artifacts/models/random_forest/v1/version.json",
        r#"{"version": "v1", "model": "random_forest", "source_key": "k1", "stage": "train_random_forest",
            "pipeline": "train", "registered_at": "2026-11-27T02:00:00Z", "holdout": {}}"#,
    );
    p.write("artifacts/models/random_forest/promoted.json", r#"{"history": [{"version": "v1", "at": "2026-11-27T02:00:00Z", "reason": "first model"}]}"#);
}

#[test]
fn machines_share_stages_and_models_and_survive_the_store_going_away() {
    let moto = Moto::start();
    let a = Project::new();
    moto.upload(&a.path().join("data/metrics"), "team", "metrics/");
    register_model(&a);
    let until_labels = ["run", "--until", "labels", "--store", STORE, "--set", METRICS];

    // Machine A builds the stages and shares them, with its model.
    a.pipeline_env(&until_labels, &moto.env()).ok().stdout_has("3 ran, 0 cached");

    // A machine whose project another run holds fetches nothing: the store is read under the
    // run lock, as the cache is written.
    let c = Project::bare();
    std::fs::create_dir_all(c.path().join("artifacts")).unwrap();
    let held = autoscale::artifacts::lock::RunLock::acquire(c.path(), false, |_| {}).unwrap();
    let mut no_wait = until_labels.to_vec();
    no_wait.push("--no-wait");
    c.pipeline_env(&no_wait, &moto.env()).code(3);
    assert_eq!(count(&c.path().join("artifacts/cache/entries")), 0, "fetched from the store without the run lock");
    drop(held);

    // Machine B has no data and no cache: it reuses every stage and gets the registry.
    let b = Project::bare();
    b.pipeline_env(&until_labels, &moto.env()).ok().stdout_has("0 ran, 3 cached");
    assert_eq!(count(&b.path().join("artifacts/cache/entries")), 3);
    assert!(b.path().join("artifacts/models/random_forest/v1/model.json").is_file());
    let promoted = "artifacts/models/random_forest/promoted.json";
    assert_eq!(common::json(&b.path().join(promoted)), common::json(&a.path().join(promoted)));
    b.pipeline_env(&["inspect", "labels", "--store", STORE, "--set", METRICS], &moto.env()).ok().stdout_has("target_replicas");

    // The store goes away while B runs: the run fails, naming the store, and keeps what it built.
    let changed = ["run", "--until", "train_random_forest_temporal", "--store", STORE, "--set", METRICS, "--set", "scale_up_cpu=71"];
    let env = moto.env();
    let mut run = common::command();
    run.args(changed).current_dir(b.path()).envs(env.iter().map(|(k, v)| (k, v)));
    let child = run.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let entries = b.path().join("artifacts/cache/entries");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&entries) < 4 {
        assert!(Instant::now() < deadline, "the new labels stage never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    moto.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(STORE), "the error must name the store: {stderr}");
    assert!(count(&entries) >= 4, "what was built stays in the local cache");

    // The store comes back, empty (moto keeps nothing): the next run completes and shares all
    // it has, so a third machine reuses every stage and the model.
    let moto = Moto::start();
    moto.upload(&a.path().join("data/metrics"), "team", "metrics/");
    let out = b.pipeline_env(&changed, &moto.env()).ok();
    assert_eq!(out.stage_status("train_random_forest_temporal"), "ran", "{}", out.stdout());
    // C names the store in its pipeline file instead of on the command line.
    let c = Project::bare();
    let train = c.read("pipelines/train.yaml").replacen("name: train\n", &format!("name: train\nstore: {STORE}\n"), 1);
    c.write("pipelines/train.yaml", &train);
    let without_flag: Vec<&str> = changed.iter().copied().filter(|a| *a != "--store" && *a != STORE).collect();
    c.pipeline_env(&without_flag, &moto.env()).ok().stdout_has("0 ran, 5 cached");
    assert!(c.path().join("artifacts/models/random_forest/v1/version.json").is_file());
}

#[test]
fn a_bad_store_url_is_refused_before_anything_runs() {
    let p = Project::new();
    p.pipeline(&["run", "--store", "/mnt/shared"]).code(2).stderr_has("s3://bucket/prefix");
    p.write("pipelines/shared.yaml", "store: gs://bucket/x\nstages:\n  ingest: {op: ingest, source: data/metrics}\n");
    p.pipeline(&["run", "pipelines/shared.yaml"]).code(2).stderr_has("shared.yaml:1");
    assert!(!p.path().join("artifacts/cache").exists(), "nothing ran");
}

#[test]
fn gc_collects_the_store_by_the_same_rules() {
    let moto = Moto::start();
    let a = Project::new();
    moto.upload(&a.path().join("data/metrics"), "team", "metrics/");
    let run = |cpu: &'static str| ["run", "--until", "labels", "--store", STORE, "--set", METRICS, "--set", cpu];
    for cpu in ["scale_up_cpu=70", "scale_up_cpu=71", "scale_up_cpu=72"] {
        a.pipeline_env(&run(cpu), &moto.env()).ok();
    }
    // Another machine, with nothing of its own to keep, collects the store: the newest run
    // (also `latest`) and its three entries stay; the two older runs and their labels go.
    let b = Project::bare();
    b.pipeline_env(&["gc", "--keep-runs", "1", "--store", STORE, "--dry-run"], &moto.env())
        .ok()
        .stdout_has("s3://team/autoscale: would remove 2 runs and 2 cache entries");
    b.pipeline_env(&["gc", "--keep-runs", "1", "--store", STORE], &moto.env())
        .ok()
        .stdout_has("s3://team/autoscale: removed 2 runs and 2 cache entries")
        .stdout_has("kept 1 runs");
    let c = Project::bare();
    c.pipeline_env(&run("scale_up_cpu=72"), &moto.env()).ok().stdout_has("0 ran, 3 cached");
    c.pipeline_env(&run("scale_up_cpu=70"), &moto.env()).ok().stdout_has("1 ran, 2 cached");
    // Machine A's own cache is its own: the store's collection leaves it alone.
    assert_eq!(count(&a.path().join("artifacts/cache/entries")), 5);
    b.pipeline(&["gc", "--store", "/mnt/shared"]).code(2).stderr_has("s3://bucket/prefix");
}
