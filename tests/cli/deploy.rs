//! deploy/: valid YAML, the objects the README promises, and flags the binary accepts.

use crate::common;
use common::{repo, Project};

fn docs(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo().join("deploy").join(file)).unwrap();
    serde_saphyr::from_multiple::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("deploy/{file} is not valid YAML: {e}"))
}

fn kinds(d: &[serde_json::Value]) -> Vec<&str> {
    d.iter().map(|d| d["kind"].as_str().unwrap_or("?")).collect()
}

#[test]
fn manifests_are_valid_and_match_the_binary() {
    let server = docs("server.yaml");
    assert_eq!(kinds(&server), ["Deployment", "Service"]);
    let container = &server[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "serve");
    let help = Project::empty().pipeline(&["serve", "--help"]).ok().stdout();
    for flag in args[1..].iter().map(|a| a.split('=').next().unwrap()) {
        assert!(help.contains(flag), "`pipeline serve` has no flag {flag}");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let keda = docs("keda-scaledobject.yaml");
    assert_eq!(kinds(&keda), ["ScaledObject"]);
    let trigger = &keda[0]["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "metrics-api");
    assert!(trigger["metadata"]["url"].as_str().unwrap().contains("/scale/"));
    assert_eq!(trigger["metadata"]["valueLocation"], "desiredReplicas");

    let cron = docs("cronjob.yaml");
    assert_eq!(kinds(&cron), ["CronJob"]);
    let job = &cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job["args"][0], "run");
    assert_eq!(cron[0]["spec"]["concurrencyPolicy"], "Forbid");
}
