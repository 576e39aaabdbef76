//! deploy/: valid Kubernetes objects (against the API's schemas), the objects the README
//! promises, flags the binary accepts, and the names that tie the manifests together.

use crate::common;
use common::{Project, repo, tool};

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
    assert_eq!(kinds(&server), ["Secret", "Deployment", "Service", "NetworkPolicy"]);
    let (deployment, service) = (&server[1], &server[2]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "serve");
    let help = Project::empty().pipeline(&["serve", "--help"]).ok().stdout();
    for flag in args[1..].iter().map(|a| a.split('=').next().unwrap()) {
        assert!(help.contains(flag), "`pipeline serve` has no flag {flag}");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let keda = docs("keda-scaledobject.yaml");
    assert_eq!(kinds(&keda), ["TriggerAuthentication", "ScaledObject"]);
    let trigger = &keda[1]["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "metrics-api");
    assert!(trigger["metadata"]["url"].as_str().unwrap().contains("/scale/"));
    assert_eq!(trigger["metadata"]["valueLocation"], "desiredReplicas");
    // KEDA applies a fallback only to AverageValue metrics.
    assert_eq!(trigger["metricType"], "AverageValue");
    assert!(keda[1]["spec"]["fallback"]["replicas"].as_u64().unwrap() >= 1);
    // The URL reaches the server's Service on its port.
    let url = trigger["metadata"]["url"].as_str().unwrap();
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert!(url.starts_with(&format!("http://{}.", service["metadata"]["name"].as_str().unwrap())), "{url}");
    assert!(url.contains(&format!(":{port}/scale/")), "{url}");
    assert_eq!(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]);

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
    let server = &docs("server.yaml")[1]["spec"]["template"]["spec"]["containers"][0];
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
    assert_eq!(kinds(&cluster), ["Deployment", "Service", "Deployment", "NetworkPolicy", "NetworkPolicy"]);
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

/// Every pod template of every manifest, with the file it is in.
fn pods() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for file in ["collector.yaml", "server.yaml", "cronjob.yaml", "ballista.yaml"] {
        for d in docs(file) {
            let pod = match d["kind"].as_str() {
                Some("Deployment") => d["spec"]["template"].clone(),
                Some("CronJob") => d["spec"]["jobTemplate"]["spec"]["template"].clone(),
                _ => continue,
            };
            out.push((format!("{file} {}", d["metadata"]["name"].as_str().unwrap()), pod));
        }
    }
    out
}

#[test]
fn every_pod_runs_locked_down_from_a_pinned_image_with_its_own_credentials() {
    let pods = pods();
    assert_eq!(pods.len(), 5);
    let mut s3_secrets = std::collections::BTreeSet::new();
    for (name, pod) in &pods {
        let spec = &pod["spec"];
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(spec["automountServiceAccountToken"], false, "{name}: no pod here talks to the Kubernetes API");
        for c in spec["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!((sc["allowPrivilegeEscalation"].as_bool(), sc["readOnlyRootFilesystem"].as_bool()), (Some(false), Some(true)), "{name}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
            let image = c["image"].as_str().unwrap();
            let tag = image.rsplit_once(':').map(|t| t.1).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{name}: image `{image}` is not pinned to a version");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}: no memory limit");
            // A read-only root needs somewhere to write temporary files.
            assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/tmp"), "{name}: no writable /tmp");
            for from in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(secret) = from["secretRef"]["name"].as_str().filter(|s| s.starts_with("autoscale-s3")) {
                    s3_secrets.insert((secret.to_string(), name.split(' ').next().unwrap().to_string()));
                }
            }
        }
    }
    // Each component its own S3 credentials: no secret shared between two manifests.
    let names: Vec<&str> = s3_secrets.iter().map(|(s, _)| s.as_str()).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "{s3_secrets:?}");
    assert!(names.len() >= 3, "{s3_secrets:?}");

    let cron = &docs("cronjob.yaml")[0]["spec"]["jobTemplate"]["spec"];
    assert!(cron["activeDeadlineSeconds"].as_u64().is_some_and(|s| s > 0 && s < 24 * 3600), "the nightly run must end before the next");

    // The collector writes the day on SIGTERM within its --stop-timeout, inside the grace period.
    let collector = &docs("collector.yaml")[1]["spec"]["template"]["spec"];
    let stop: f64 = flag(&args(&collector["containers"][0]), "--stop-timeout").unwrap().trim_end_matches('s').parse().unwrap();
    assert!(stop + 10.0 <= collector["terminationGracePeriodSeconds"].as_f64().unwrap(), "the day is written before the kubelet kills the pod");
}

#[test]
fn the_server_is_authenticated_and_its_clients_use_the_token() {
    let server = docs("server.yaml");
    let (secret, deployment, service, policy) = (&server[0], &server[1], &server[2], &server[3]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    // The server's token comes from the Secret, which must exist (not optional).
    let token = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "PIPELINE_SERVE_TOKEN").expect("a token").clone();
    let key_ref = &token["valueFrom"]["secretKeyRef"];
    assert_eq!(key_ref["name"], secret_name);
    assert!(key_ref["optional"].is_null() || key_ref["optional"] == false, "the token is not optional");
    let key = key_ref["key"].as_str().unwrap();
    assert!(secret["stringData"][key].is_string());
    // The manifest's placeholder is refused: applied as it is, the server does not start open.
    let placeholder = secret["stringData"][key].as_str().unwrap();
    Project::empty().pipeline_env(&["serve", "--addr", "0.0.0.0:0"], &[("PIPELINE_SERVE_TOKEN", placeholder)]).code(2).stderr_has("too short");
    Project::empty().pipeline_env(&["serve", "--addr", "0.0.0.0:0"], &[("PIPELINE_SERVE_TOKEN", "")]).code(2);
    let mut open = common::command();
    open.args(["serve", "--addr", "0.0.0.0:0"]).env_remove("PIPELINE_SERVE_TOKEN");
    let out = open.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a server on all addresses without a token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));

    // KEDA's metrics-api trigger sends it (KEDA >= 2.13: authMode bearer, the TriggerAuthentication's
    // `bearerToken` parameter), read from the same Secret and key.
    let keda = docs("keda-scaledobject.yaml");
    let (auth, scaled) = (&keda[0], &keda[1]);
    assert_eq!(auth["apiVersion"], "keda.sh/v1alpha1");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["metadata"]["authMode"], "bearer");
    assert_eq!(trigger["authenticationRef"]["name"], auth["metadata"]["name"]);
    let refs = auth["spec"]["secretTargetRef"].as_array().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!((refs[0]["parameter"].as_str(), refs[0]["name"].as_str(), refs[0]["key"].as_str()), (Some("bearerToken"), Some(secret_name), Some(key)));
    let known = ["apiVersion", "kind", "metadata", "spec"];
    for d in [auth, scaled] {
        for k in d.as_object().unwrap().keys() {
            assert!(known.contains(&k.as_str()), "unknown top-level field {k}");
        }
    }
    for k in trigger.as_object().unwrap().keys() {
        assert!(["type", "metricType", "metadata", "authenticationRef"].contains(&k.as_str()), "unknown trigger field {k}");
    }

    // Prometheus scrapes /metrics with it (prometheus-operator's ServiceMonitor).
    let monitor = &docs("servicemonitor.yaml")[0];
    assert_eq!((monitor["apiVersion"].as_str(), monitor["kind"].as_str()), (Some("monitoring.coreos.com/v1"), Some("ServiceMonitor")));
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]);
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    assert_eq!(endpoint["authorization"]["credentials"]["name"], secret_name);
    assert_eq!(endpoint["authorization"]["credentials"]["key"], key);
    assert!(deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"].is_null(), "an annotation scrape would get 401");

    // Only KEDA and Prometheus reach it, on its port.
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(policy["spec"]["ingress"][0]["from"].as_array().unwrap().len(), 2);
}

#[test]
fn ballista_is_reached_only_through_its_network_policies() {
    let cluster = docs("ballista.yaml");
    let label = |d: &serde_json::Value| d["spec"]["template"]["metadata"]["labels"]["app"].as_str().unwrap().to_string();
    let (scheduler, executor) = (label(&cluster[0]), label(&cluster[2]));
    for (d, expected) in [(&cluster[3], &scheduler), (&cluster[4], &executor)] {
        assert_eq!(d["spec"]["podSelector"]["matchLabels"]["app"].as_str(), Some(expected.as_str()));
        let from: Vec<&str> =
            d["spec"]["ingress"][0]["from"].as_array().unwrap().iter().map(|f| f["podSelector"]["matchLabels"]["app"].as_str().unwrap()).collect();
        assert!(from.contains(&"autoscale-train"), "{from:?}");
    }
    // The nightly run's pods carry the label the policies admit.
    let cron = docs("cronjob.yaml");
    assert_eq!(cron[0]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app"], "autoscale-train");
    // They bind all addresses only because the policies are there.
    for d in [&cluster[0], &cluster[2]] {
        assert!(args(&d["spec"]["template"]["spec"]["containers"][0]).contains(&"--insecure"));
    }
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    // kubernetes-validate (PyPI, installed by scripts/setup.sh) carries the API's JSON schemas,
    // so this needs no cluster; KEDA's CRD is not among them (its fields are checked above).
    let files: Vec<String> = ["collector.yaml", "server.yaml", "cronjob.yaml", "keda-scaledobject.yaml", "servicemonitor.yaml", "ballista.yaml"]
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
        "secret/autoscale-server",
        "networkpolicy/autoscale-server",
        "networkpolicy/autoscale-scheduler",
        "networkpolicy/autoscale-executor",
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

#[test]
fn the_alerts_fire_where_they_should_and_query_only_series_the_server_exports() {
    let dir = repo().join("deploy/alerts");
    if std::process::Command::new("promtool").arg("--version").output().is_err() {
        panic!("promtool is needed (Debian package `prometheus`; .ci/run installs it)");
    }
    let promtool = |args: &[&str]| {
        let out = std::process::Command::new("promtool").args(args).current_dir(&dir).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    };
    promtool(&["check", "rules", "autoscaler.rules.yaml"]);
    promtool(&["test", "rules", "autoscaler.rules.test.yaml"]);

    // The operator's copy has the same groups.
    let rules = std::fs::read_to_string(dir.join("autoscaler.rules.yaml")).unwrap();
    let plain: serde_json::Value = serde_saphyr::from_str(&rules).unwrap();
    let crd = docs("prometheusrule.yaml");
    assert_eq!(kinds(&crd), ["PrometheusRule"]);
    assert_eq!(crd[0]["spec"]["groups"], plain["groups"], "deploy/prometheusrule.yaml and deploy/alerts/autoscaler.rules.yaml differ");

    // Every autoscaler_* series an alert reads is in the server's or the collector's /metrics.
    let exported = exported_series();
    let mut read = Vec::new();
    for group in plain["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("autoscaler_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                read.push(name);
            }
            assert!(rule["annotations"]["runbook"].as_str().is_some_and(|r| !r.is_empty()), "{} has no runbook line", rule["alert"]);
        }
    }
    assert!(read.len() >= 5, "{read:?}");
    for name in read {
        assert!(
            exported.contains(&format!("\n{name}{{")) || exported.contains(&format!("\n{name} ")),
            "the alerts read `{name}`, which neither the server nor the collector exports"
        );
    }
}

/// What the server's and the collector's /metrics give after a decision and a few steps.
fn exported_series() -> String {
    let exposition = autoscale::serving::exposition::Exposition::new(10);
    let decision = autoscale::serving::predictor::Decision {
        service_name: "web".into(),
        current_replicas: 2,
        predicted_replicas: 3,
        action: "scale_up".into(),
        change: 1,
        confidence: 1.0,
        reasoning: String::new(),
    };
    let record = autoscale::serving::predictor::Record {
        forecast: Some(3.0),
        reactive: 2.0,
        decided_by: autoscale::serving::predictor::Term::Forecast,
        row_time: 1.0,
        cpu_percent: 55.0,
        requests_per_second: 40.0,
        latency_p95_ms: 120.0,
        target_cpu: 60.0,
        errors: Some(autoscale::serving::drift::Errors { judged: 20, short_share: 0.1, mean_error_pods: 0.4 }),
    };
    exposition.record(&decision, Some("model_error"), &record, 1e-4);
    let collector = autoscale::collect::exposition::CollectorMetrics::default();
    collector.step(3);
    collector.skipped();
    format!("{}{}", exposition.render(Some(("random_forest", "v1"))), collector.render())
}

/// The series of `exposition` (Prometheus text) every 15 s over `[from, to]` seconds, as
/// OpenMetrics for promtool: counters (`_total`, and a histogram's `_bucket`, `_count`, `_sum`)
/// grow by their value each step, so every rate has something to say; gauges hold still.
fn history_of(exposition: &str, from: i64, to: i64) -> String {
    let mut by_name: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for line in exposition.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap().to_string();
        by_name.entry(name).or_default().push((series.to_string(), value.parse().unwrap()));
    }
    let mut text = String::new();
    for (name, series) in by_name {
        let counter = ["_total", "_bucket", "_count", "_sum"].iter().any(|s| name.ends_with(s));
        for (s, v) in series {
            for (k, t) in (from..=to).step_by(15).enumerate() {
                let value = if counter { v.max(1.0) * (k + 1) as f64 } else { v };
                text.push_str(&format!("{s} {value} {t}\n"));
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

#[test]
fn the_dashboard_is_grafanas_sdk_output_and_every_panel_query_answers_on_a_real_prometheus() {
    // deploy/grafana/autoscaler.json is what deploy/grafana/dashboard.py builds with Grafana's
    // own SDK (grafana-foundation-sdk), so it is a dashboard Grafana's schema accepts.
    let out = std::process::Command::new(tool("python3"))
        .arg(repo().join("deploy/grafana/dashboard.py"))
        .output()
        .expect("python3 with grafana-foundation-sdk (scripts/setup.sh)");
    assert!(out.status.success(), "dashboard.py: {}", String::from_utf8_lossy(&out.stderr));
    let built = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        built,
        std::fs::read_to_string(repo().join("deploy/grafana/autoscaler.json")).unwrap(),
        "deploy/grafana/autoscaler.json is not dashboard.py's output: run `.venv/bin/python deploy/grafana/dashboard.py deploy/grafana/autoscaler.json`"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&built).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<(String, String)> = panels
        .iter()
        .flat_map(|p| {
            p["targets"].as_array().into_iter().flatten().map(move |t| (p["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()))
        })
        .collect();
    assert!(queries.len() >= 18, "{queries:?}");
    let ids: std::collections::BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has its own id");
    for wanted in [
        "autoscaler_forecast_replicas",
        "autoscaler_reactive_replicas",
        "autoscaler_cpu_utilization_ratio",
        "autoscaler_forecast_error_pods",
        "autoscaler_fallbacks_total",
        "autoscaler_collector_skipped_steps_total",
    ] {
        assert!(queries.iter().any(|(_, q)| q.contains(wanted)), "no panel reads {wanted}");
    }

    // A real Prometheus holding twenty minutes of what the server and the collector export:
    // every query parses and returns series, so a misspelt metric or label fails here.
    assert!(common::prometheus::installed(), "prometheus is needed (Debian package `prometheus`; .ci/run installs it)");
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    common::prometheus::write_history(dir.path(), &history_of(&exported_series(), now - 1200, now - 60));
    let prometheus = common::prometheus::Prometheus::start(dir.path(), None);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (panel, expr) in &queries {
        let q = expr.replace("$__rate_interval", "2m").replace("$service", ".+");
        let mut r = agent.get(&format!("{}/api/v1/query", prometheus.url())).query("query", &q).query("time", (now - 90).to_string()).call().unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{panel}: {q}: {body}"));
        assert_eq!(v["status"], "success", "{panel}: `{q}` does not parse: {body}");
        assert!(v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()), "{panel}: `{q}` finds no series in what the server and the collector export");
    }
}
