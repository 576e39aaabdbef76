//! `collect.yaml`: the PromQL behind each column, the services, the time zone and holidays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::invalid::InvalidInput;

/// The defaults (kube-prometheus-stack + ingress-nginx), used when no `--config` is given.
pub const DEFAULT: &str = include_str!("../../pipelines/collect.yaml");

/// The columns read from Prometheus, in row order; the others are derived (windows, calendar).
pub const QUERIED: [&str; 14] = [
    "cpu_usage_percent",
    "ram_usage_percent",
    "request_count_per_second",
    "response_time_ms",
    "replica_count",
    "cpu_request",
    "cpu_limit",
    "ram_request",
    "ram_limit",
    "queue_length",
    "error_rate",
    "pod_restart_count",
    "node_cpu_pressure_flag",
    "node_memory_pressure_flag",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenMissing {
    /// Left empty: ingest quarantines the row, naming the column.
    #[default]
    Empty,
    /// No data means zero here (no requests, no restarts).
    Zero,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub query: String,
    #[serde(default)]
    pub when_missing: WhenMissing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    discover: Option<String>,
    pods: String,
    #[serde(default = "default_tz")]
    time_zone: String,
    #[serde(default)]
    holidays: Vec<String>,
    columns: BTreeMap<String, Column>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_tz() -> String {
    "UTC".into()
}

/// A checked `collect.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, for messages.
    pub file: PathBuf,
    pub namespace: String,
    pub services: Vec<String>,
    pub discover: Option<String>,
    pub pods: String,
    pub time_zone: chrono_tz::Tz,
    pub holidays: Vec<chrono::NaiveDate>,
    /// In [`QUERIED`] order.
    pub columns: Vec<Column>,
}

impl Config {
    /// The file at `path`, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, InvalidInput> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| InvalidInput::file(p.display(), format!("cannot read it: {e}")))?;
                Config::parse(p, &text)
            }
            None => Config::parse(Path::new("(built-in collect.yaml)"), DEFAULT),
        }
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, InvalidInput> {
        let bad = |field: Option<String>, message: String| {
            let e = InvalidInput::file(file.display(), message);
            match field {
                Some(f) => e.field(f),
                None => e,
            }
        };
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let invalid = bad(None, format!("invalid collect YAML: {}", msg.lines().next().unwrap_or("?")));
            match e.location() {
                Some(l) => invalid.at(l.line() as u32, l.column() as u32),
                None => invalid,
            }
        })?;
        for name in raw.columns.keys() {
            if !QUERIED.contains(&name.as_str()) {
                let derived = crate::row::column_names().contains(&name.as_str());
                return Err(bad(
                    Some(format!("columns.{name}")),
                    format!(
                        "{}; the queried columns are {}",
                        if derived { "derived by the collector (windows, calendar), not queried" } else { "not a metrics column" },
                        QUERIED.join(", ")
                    ),
                ));
            }
        }
        let mut columns = Vec::with_capacity(QUERIED.len());
        for name in QUERIED {
            match raw.columns.get(name) {
                Some(c) => columns.push(c.clone()),
                None => return Err(bad(Some(format!("columns.{name}")), "missing: every queried column needs a query".into())),
            }
        }
        if raw.services.is_empty() && raw.discover.is_none() {
            return Err(bad(None, "list `services`, or give a `discover` query whose series' `deployment` label names them".into()));
        }
        let time_zone: chrono_tz::Tz =
            raw.time_zone.parse().map_err(|_| bad(Some("time_zone".into()), format!("`{}` is not an IANA zone (e.g. UTC, Europe/Paris)", raw.time_zone)))?;
        // Both go into every query: names Kubernetes could have, refused here otherwise.
        crate::row::check_service_name(&raw.namespace).map_err(|e| bad(Some("namespace".into()), format!("the namespace {e}")))?;
        for (i, s) in raw.services.iter().enumerate() {
            crate::row::check_service_name(s).map_err(|e| bad(Some(format!("services[{i}]")), format!("the service {e}")))?;
        }
        let holidays = raw
            .holidays
            .iter()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| bad(Some("holidays".into()), format!("`{d}` is not a YYYY-MM-DD date"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            file: file.to_path_buf(),
            namespace: raw.namespace,
            services: raw.services,
            discover: raw.discover,
            pods: raw.pods,
            time_zone,
            holidays,
            columns,
        })
    }

    /// A query with its placeholders filled for one service. The placeholders sit inside PromQL
    /// strings (`deployment="${service}"`, `pod=~"${pods}"`), so each value is escaped for one:
    /// whatever a name holds, it stays a string (and a literal in the regex) and never becomes
    /// PromQL.
    pub fn expand(&self, query: &str, service: &str) -> String {
        let pods = self.pods.replace("${service}", &promql_string(&regex_escape(service)));
        query.replace("${pods}", &pods).replace("${service}", &promql_string(service)).replace("${namespace}", &promql_string(&self.namespace))
    }
}

/// A regex (RE2, what Prometheus matches with) that matches `name` literally.
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inside of a double-quoted PromQL string holding `text`.
fn promql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_and_fill_placeholders() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.columns.len(), QUERIED.len());
        let q = c.expand(&c.columns[4].query, "product");
        assert_eq!(q, r#"sum(kube_deployment_status_replicas{namespace="default", deployment="product"})"#);
        let cpu = c.expand(&c.columns[0].query, "product");
        assert!(cpu.contains(r#"pod=~"product-[a-z0-9]+-[a-z0-9]+""#), "{cpu}");
        assert_eq!(c.columns[2].when_missing, WhenMissing::Zero);
        assert_eq!(c.columns[0].when_missing, WhenMissing::Empty);
    }

    #[test]
    fn values_stay_strings_in_promql() {
        let mut c = Config::load(None).unwrap();
        let q = c.expand(&c.columns[4].query, "shop.api");
        assert!(q.contains(r#"deployment="shop.api""#), "{q}");
        let cpu = c.expand(&c.columns[0].query, "shop.api");
        assert!(cpu.contains(r#"pod=~"shop\\.api-[a-z0-9]+-[a-z0-9]+""#), "{cpu}");
        // A value that tries to close the string stays inside it.
        c.namespace = "x\"} or vector(1) #".into();
        let q = c.expand(&c.columns[4].query, r#"a"\b"#);
        assert_eq!(q, r#"sum(kube_deployment_status_replicas{namespace="x\"} or vector(1) #", deployment="a\"\\b"})"#);
        assert_eq!(regex_escape("a.b+c(d)"), r"a\.b\+c\(d\)");
    }

    #[test]
    fn mistakes_name_the_field() {
        let base = DEFAULT.replace("time_zone: UTC", "time_zone: Mars/Olympus");
        let e = Config::parse(Path::new("c.yaml"), &base).unwrap_err().to_string();
        assert!(e.contains("c.yaml: field `time_zone`: `Mars/Olympus` is not an IANA zone"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), &DEFAULT.replace("  cpu_limit:", "  cpu_limt:")).unwrap_err().to_string();
        assert!(e.contains("field `columns.cpu_limt`: not a metrics column"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), &DEFAULT.replace("  cpu_limit:", "  is_weekend:")).unwrap_err().to_string();
        assert!(e.contains("derived by the collector"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), "pods: x\nservices: [a]\ncolumns: {}\n").unwrap_err().to_string();
        assert!(e.contains("field `columns.cpu_usage_percent`: missing"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), &DEFAULT.replace("namespace: default", "namespace: 'a\"} or x'")).unwrap_err().to_string();
        assert!(e.contains("field `namespace`") && e.contains("not a Kubernetes"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), &DEFAULT.replace("services: []", "services: [web, Web_2]")).unwrap_err().to_string();
        assert!(e.contains("field `services[1]`"), "{e}");
        let e = Config::parse(Path::new("c.yaml"), "pods: [").unwrap_err().to_string();
        assert!(e.starts_with("c.yaml:"), "{e}");
    }
}
