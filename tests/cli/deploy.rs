//! deploy/: valid Kubernetes objects (against the API's schemas), the objects the README
//! promises, flags the binary accepts, and the names that tie the manifests together.

use crate::common;
use common::{repo, tool, Project};

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
    // KEDA applies a fallback only to AverageValue metrics.
    assert_eq!(trigger["metricType"], "AverageValue");
    assert!(keda[0]["spec"]["fallback"]["replicas"].as_u64().unwrap() >= 1);
    // The URL reaches the server's Service on its port.
    let url = trigger["metadata"]["url"].as_str().unwrap();
    let service = &server[1];
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert!(url.starts_with(&format!("http://{}.", service["metadata"]["name"].as_str().unwrap())), "{url}");
    assert!(url.contains(&format!(":{port}/scale/")), "{url}");
    assert_eq!(service["spec"]["selector"], server[0]["spec"]["template"]["metadata"]["labels"]);

    let cron = docs("cronjob.yaml");
    assert_eq!(kinds(&cron), ["CronJob"]);
    let job = &cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job["args"][0], "run");
    assert_eq!(cron[0]["spec"]["concurrencyPolicy"], "Forbid");
}

fn args(container: &serde_json::Value) -> Vec<&str> {
    container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

fn env<'a>(container: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn the_collector_feeds_what_the_server_and_the_cronjob_read() {
    let collector = docs("collector.yaml");
    assert_eq!(kinds(&collector), ["ServiceAccount", "Deployment"]);
    let deployment = &collector[1]["spec"];
    // One writer per day file, and no Kubernetes API rights: everything comes from Prometheus.
    assert_eq!(deployment["replicas"], 1);
    assert_eq!(deployment["strategy"]["type"], "Recreate");
    let pod = &deployment["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], collector[0]["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    let collect = args(container);
    assert_eq!(collect[0], "collect");
    let help = Project::empty().pipeline(&["collect", "--help"]).ok().stdout();
    for flag in collect[1..].iter().map(|a| a.split('=').next().unwrap()) {
        assert!(help.contains(flag), "`pipeline collect` has no flag {flag}");
    }
    assert!(help.contains("[env: PIPELINE_PROMETHEUS="), "collect reads PIPELINE_PROMETHEUS");
    let prometheus = env(container, "PIPELINE_PROMETHEUS").expect("the collector names its Prometheus");

    // The server reads the same Prometheus, the same way.
    let server = &docs("server.yaml")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(server, "PIPELINE_PROMETHEUS"), Some(prometheus));
    assert!(Project::empty().pipeline(&["serve", "--help"]).ok().stdout().contains("[env: PIPELINE_PROMETHEUS="));

    // The nightly run trains on what the collector writes.
    let out = collect.iter().find_map(|a| a.strip_prefix("--out=")).expect("the collector writes somewhere");
    let cron = docs("cronjob.yaml");
    let job = &cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let metrics_uri = args(job).iter().find_map(|a| a.strip_prefix("metrics_uri=")).expect("the CronJob names its metrics");
    assert_eq!(metrics_uri.trim_end_matches('/'), out.trim_end_matches('/'));
}

/// The value of `--flag=value` among a container's args.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(&format!("{name}=")))
}

#[test]
fn the_executors_reach_the_scheduler_and_report_well_within_its_timeout() {
    let cluster = docs("ballista.yaml");
    assert_eq!(kinds(&cluster), ["Deployment", "Service", "Deployment"]);
    let (scheduler, service, executor) = (&cluster[0], &cluster[1], &cluster[2]);
    let container = |d: &serde_json::Value| d["spec"]["template"]["spec"]["containers"][0].clone();
    let (s, e) = (container(scheduler), container(executor));
    let (s_args, e_args) = (args(&s), args(&e));
    assert_eq!((s_args[0], e_args[0]), ("scheduler", "executor"));
    for (command, list) in [("scheduler", &s_args), ("executor", &e_args)] {
        let help = Project::empty().pipeline(&[command, "--help"]).ok().stdout();
        for a in &list[1..] {
            let name = a.split('=').next().unwrap();
            assert!(help.contains(name), "`pipeline {command}` has no flag {name}");
        }
    }
    // One scheduler, behind the Service the executors name.
    assert_eq!(scheduler["spec"]["replicas"], 1);
    assert_eq!(service["spec"]["selector"], scheduler["spec"]["template"]["metadata"]["labels"]);
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let bind_port: u64 = flag(&s_args, "--bind").unwrap().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(bind_port, port);
    assert_eq!(flag(&e_args, "--scheduler"), Some(format!("{}:{port}", service["metadata"]["name"].as_str().unwrap()).as_str()));
    // The address an executor advertises is its pod's, from the downward API.
    assert_eq!(flag(&e_args, "--external-host"), Some("$(POD_IP)"));
    assert!(e["env"].as_array().unwrap().iter().any(|v| v["name"] == "POD_IP" && v["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"));
    let heartbeat: u64 = flag(&e_args, "--heartbeat").unwrap().parse().unwrap();
    let timeout: u64 = flag(&s_args, "--executor-timeout").unwrap().parse().unwrap();
    assert!(heartbeat * 3 <= timeout, "a live executor reports at least three times per timeout");
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    // kubernetes-validate (PyPI, installed by scripts/setup.sh) carries the API's JSON schemas,
    // so this needs no cluster; KEDA's CRD is not among them (its fields are checked above).
    let files: Vec<String> = ["collector.yaml", "server.yaml", "cronjob.yaml", "keda-scaledobject.yaml", "ballista.yaml"]
        .iter()
        .map(|f| repo().join("deploy").join(f).to_string_lossy().into_owned())
        .collect();
    let out = std::process::Command::new(tool("kubernetes-validate"))
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate must be installed (scripts/setup.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for object in [
        "deployment/autoscale-collector",
        "deployment/autoscale-server",
        "service/autoscale-server",
        "cronjob/autoscale-train",
        "deployment/autoscale-scheduler",
        "service/autoscale-scheduler",
        "deployment/autoscale-executor",
    ] {
        assert!(text.contains(&format!("passed for resource {object}")), "{object} not validated:\n{text}");
    }
    // A typo is caught: the check can fail.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, std::fs::read_to_string(&files[0]).unwrap().replace("replicas: 1", "replicaz: 1")).unwrap();
    let out = std::process::Command::new(tool("kubernetes-validate")).arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success());
}
