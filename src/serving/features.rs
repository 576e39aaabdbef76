//! The features of `sql/features.sql`, computed one row at a time from a service's recent rows
//! and its seasonal profile, so the server can take raw metrics. `tests/cli/serving.rs` proves both give the same numbers
//! (1e-9) on the same history; change one, change the other.

use std::collections::VecDeque;

use crate::features::seasonal::{self, Profile};
use crate::row::{Kind, NUMERIC};

/// The 18 core features: metrics as read (not replica_count, is_holiday, is_weekend).
pub const CORE_FEATURES: [&str; 18] = [
    "cpu_usage_percent",
    "cpu_usage_percent_last_5_min",
    "cpu_usage_percent_slope",
    "ram_usage_percent",
    "ram_usage_percent_last_5_min",
    "ram_usage_percent_slope",
    "request_count_per_second",
    "request_count_per_second_last_5_min",
    "response_time_ms",
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

/// The 15 engineered features, in the order [`History::push`] returns them after the core ones.
pub const ENGINEERED: [&str; 15] = [
    "hour_sin",
    "hour_cos",
    "cpu_utilization_ratio",
    "ram_utilization_ratio",
    "cpu_change_rate",
    "ram_change_rate",
    "request_change_rate",
    "cpu_rolling_std",
    "ram_rolling_std",
    "request_rolling_max",
    "response_time_rolling_p95",
    "cpu_per_replica",
    "ram_per_replica",
    "requests_per_replica",
    "system_pressure",
];

/// Features in [`Named`].
pub const NAMED: usize = CORE_FEATURES.len() + ENGINEERED.len() + seasonal::NAMES.len();

/// A row's features: the 18 core, the 15 engineered, then the 5 seasonal, in [`name`] order.
pub type Named = [f64; NAMED];

/// The name of a feature of [`Named`] by position.
pub fn name(i: usize) -> &'static str {
    let (core, engineered) = (CORE_FEATURES.len(), CORE_FEATURES.len() + ENGINEERED.len());
    match i {
        _ if i < core => CORE_FEATURES[i],
        _ if i < engineered => ENGINEERED[i - core],
        _ => seasonal::NAMES[i - engineered],
    }
}

/// Position of a feature in [`Named`].
pub fn position(feature: &str) -> Option<usize> {
    (0..NAMED).find(|&i| name(i) == feature)
}

/// Rows in the rolling windows (`ROWS BETWEEN 9 PRECEDING AND CURRENT ROW`).
pub const WINDOW: usize = 10;

/// One raw 23-column row: numbers in [`NUMERIC`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// Microseconds since the epoch, wall clock as written.
    pub timestamp: i64,
    pub service: String,
    pub values: [f64; NUMERIC.len()],
}

/// A field that is missing or invalid, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

fn index(name: &str) -> usize {
    NUMERIC.iter().position(|(n, _)| *n == name).unwrap_or_else(|| panic!("`{name}` is a metrics column"))
}

impl RawRow {
    pub fn get(&self, name: &str) -> f64 {
        self.values[index(name)]
    }

    pub fn replicas(&self) -> f64 {
        self.get(crate::row::REPLICAS)
    }

    /// Reads a JSON object with the collector's field names, checking each value as ingest does.
    pub fn from_json(v: &serde_json::Value) -> Result<RawRow, FieldError> {
        let err = |field: &str, message: String| FieldError { field: field.to_string(), message };
        let obj = v.as_object().ok_or_else(|| err("(body)", "expected a JSON object with the 23 metrics fields".into()))?;
        let text = |field: &str| -> Result<&str, FieldError> {
            match obj.get(field) {
                Some(serde_json::Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(err(field, "must be a string".into())),
                None => Err(err(field, "is missing".into())),
            }
        };
        let service = text(crate::row::SERVICE)?.trim();
        crate::row::check_service_name(service).map_err(|m| err(crate::row::SERVICE, m))?;
        let (timestamp, _) = crate::row::parse_timestamp(text(crate::row::TIMESTAMP)?).map_err(|m| err(crate::row::TIMESTAMP, m.to_string()))?;
        let mut values = [0.0; NUMERIC.len()];
        for (i, (name, kind)) in NUMERIC.iter().enumerate() {
            let raw = match obj.get(*name) {
                None | Some(serde_json::Value::Null) => return Err(err(name, "is missing".into())),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Bool(b)) if *kind == Kind::Flag => u8::from(*b).to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => return Err(err(name, format!("must be a number, not {other}"))),
            };
            values[i] = crate::row::parse_value(&raw, *kind).map_err(|m| err(name, m.to_string()))?;
        }
        Ok(RawRow { timestamp, service: service.to_string(), values })
    }
}

/// The recent rows of one service, and its load by 5-minute slot over the last week.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// (cpu, ram, requests/s, response time) of the last [`WINDOW`] rows, oldest first.
    window: VecDeque<[f64; 4]>,
    pub last_timestamp: Option<i64>,
    /// Starts empty, or as the serving model's version left it at the end of training.
    pub profile: Profile,
}

/// Sample standard deviation (n−1); 0 for a single value, as the SQL's coalesce gives.
fn stddev_samp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = xs.clone().count();
    if n < 2 {
        return 0.0;
    }
    let mean = xs.clone().sum::<f64>() / n as f64;
    (xs.map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// numpy's default percentile: linear interpolation at position q·(n−1).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

impl History {
    /// Adds the row and returns its features (core, engineered, seasonal; not the one-hot).
    pub fn push(&mut self, row: &RawRow) -> Named {
        let g = |n: &str| row.get(n);
        let (cpu, ram, rps, rt) = (g("cpu_usage_percent"), g("ram_usage_percent"), g("request_count_per_second"), g("response_time_ms"));
        let prev = self.window.back().copied();
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back([cpu, ram, rps, rt]);
        self.last_timestamp = Some(row.timestamp);
        let col = |k: usize| self.window.iter().map(move |r| r[k]);
        let mut rts: Vec<f64> = col(3).collect();
        let hour = row.timestamp.div_euclid(3_600_000_000).rem_euclid(24) as f64;
        let replicas = row.replicas();
        let change = |k: usize, now: f64| prev.map_or(0.0, |p| now - p[k]);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut out = [0.0; NAMED];
        for (i, n) in CORE_FEATURES.iter().enumerate() {
            out[i] = g(n);
        }
        let engineered = CORE_FEATURES.len()..CORE_FEATURES.len() + ENGINEERED.len();
        out[engineered.end..].copy_from_slice(&self.profile.push(row.timestamp, rps));
        // In ENGINEERED's order.
        out[engineered].copy_from_slice(&[
            (2.0 * std::f64::consts::PI * hour / 24.0).sin(),
            (2.0 * std::f64::consts::PI * hour / 24.0).cos(),
            cpu / (g("cpu_limit") + 1e-6),
            ram / (g("ram_limit") + 1e-6),
            change(0, cpu),
            change(1, ram),
            change(2, rps),
            stddev_samp(col(0)),
            stddev_samp(col(1)),
            col(2).fold(f64::MIN, f64::max),
            quantile(&mut rts, 0.95),
            cpu / (replicas + 1.0),
            ram / (replicas + 1.0),
            rps / (replicas + 1.0),
            flag(cpu > 70.0)
                + flag(ram > 75.0)
                + flag(rt > 500.0)
                + flag(g("error_rate") > 0.05)
                + g("node_cpu_pressure_flag")
                + g("node_memory_pressure_flag"),
        ]);
        out
    }
}

/// Where each of a model's features comes from, worked out once per model.
#[derive(Debug, Clone)]
enum Slot {
    Named(usize),
    /// `service_<name>`: 1 for that service's rows.
    Service(String),
    /// A pooled forest's load feature: the named request feature over what one pod serves.
    Load(usize),
}

/// How to build a model's feature vector from a row's [`Named`] features and its service.
#[derive(Debug, Clone)]
pub struct Plan(Vec<Slot>);

impl Plan {
    /// Fails with the features the model wants but this code does not compute.
    pub fn new(model_features: &[String], one_hot_prefix: &str) -> Result<Plan, Vec<String>> {
        let mut missing = Vec::new();
        let slots = model_features
            .iter()
            .map(|f| match (position(f), f.strip_prefix(one_hot_prefix), crate::models::pooled::load_source(f).and_then(position)) {
                (Some(i), _, _) => Slot::Named(i),
                (None, Some(s), _) => Slot::Service(s.to_string()),
                (None, None, Some(i)) => Slot::Load(i),
                (None, None, None) => {
                    missing.push(f.clone());
                    Slot::Named(0)
                }
            })
            .collect();
        if missing.is_empty() { Ok(Plan(slots)) } else { Err(missing) }
    }

    /// Whether the model reads load features, and so a service's fitted capacity.
    pub fn reads_load(&self) -> bool {
        self.0.iter().any(|s| matches!(s, Slot::Load(_)))
    }

    /// Appends the model's features; `rps_per_pod` is what one pod of the service serves (the
    /// load features are NaN without it).
    pub fn extend(&self, named: &Named, service: &str, rps_per_pod: Option<f64>, out: &mut Vec<f64>) {
        out.extend(self.0.iter().map(|s| match s {
            Slot::Named(i) => named[*i],
            Slot::Service(s) => f64::from(u8::from(s == service)),
            Slot::Load(i) => rps_per_pod.map_or(f64::NAN, |c| named[*i] / c),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_s: i64, cpu: f64, rt: f64) -> RawRow {
        let mut values = [0.0; NUMERIC.len()];
        values[index("cpu_usage_percent")] = cpu;
        values[index("response_time_ms")] = rt;
        values[index("replica_count")] = 3.0;
        values[index("cpu_limit")] = 1.0;
        RawRow { timestamp: ts_s * 1_000_000, service: "a".into(), values }
    }

    #[test]
    fn windows_and_first_row() {
        let mut h = History::default();
        let f = h.push(&row(7 * 3600, 50.0, 100.0));
        let get = |f: &Named, n: &str| f[position(n).unwrap()];
        assert_eq!(get(&f, "cpu_change_rate"), 0.0);
        assert_eq!(get(&f, "cpu_rolling_std"), 0.0);
        assert_eq!(get(&f, "response_time_rolling_p95"), 100.0);
        assert!((get(&f, "hour_sin") - (2.0 * std::f64::consts::PI * 7.0 / 24.0).sin()).abs() < 1e-15);
        for i in 1..12 {
            h.push(&row(7 * 3600 + 30 * i, 50.0 + i as f64, 100.0 * i as f64));
        }
        let f = h.push(&row(8 * 3600, 70.0, 50.0));
        assert_eq!(get(&f, "cpu_change_rate"), 70.0 - 61.0);
        // The window holds the last 10 rows: response times 300..1100 and 50.
        let mut w: Vec<f64> = (3..12).map(|i| 100.0 * i as f64).chain([50.0]).collect();
        assert_eq!(get(&f, "response_time_rolling_p95"), quantile(&mut w, 0.95));
        assert_eq!(get(&f, "cpu_per_replica"), 70.0 / 4.0);
        assert_eq!(get(&f, "system_pressure"), 0.0);
    }

    #[test]
    fn json_rows_name_the_bad_field() {
        let mut ok = serde_json::json!({ "timestamp": "2025-10-06T06:00:00.5", "service_name": "order" });
        for (n, _) in NUMERIC {
            ok[n] = serde_json::json!(1);
        }
        assert!(RawRow::from_json(&ok).is_ok());
        let mut bad = ok.clone();
        bad["replica_count"] = serde_json::json!(-2);
        assert_eq!(RawRow::from_json(&bad).unwrap_err().field, "replica_count");
        let mut bad = ok.clone();
        bad.as_object_mut().unwrap().remove("error_rate");
        assert_eq!(RawRow::from_json(&bad).unwrap_err().to_string(), "field `error_rate`: is missing");
        let mut bad = ok.clone();
        bad["cpu_usage_percent"] = serde_json::json!("NaN");
        assert_eq!(RawRow::from_json(&bad).unwrap_err().field, "cpu_usage_percent");
        for name in ["Product", "order_api", "-order", "order.", "a..b", "", " ", "ordér"] {
            let mut bad = ok.clone();
            bad["service_name"] = serde_json::json!(name);
            assert_eq!(RawRow::from_json(&bad).unwrap_err().field, "service_name", "{name:?}");
        }
        for name in ["order", "order-v2", "shop.order", "0rder"] {
            let mut good = ok.clone();
            good["service_name"] = serde_json::json!(name);
            assert!(RawRow::from_json(&good).is_ok(), "{name:?}");
        }
        let mut long = ok.clone();
        long["service_name"] = serde_json::json!("a".repeat(254));
        assert!(RawRow::from_json(&long).unwrap_err().message.contains("at most 253"));
        long["service_name"] = serde_json::json!("a".repeat(253));
        assert!(RawRow::from_json(&long).is_ok());
        let mut bad = ok;
        bad["timestamp"] = serde_json::json!("yesterday");
        assert_eq!(RawRow::from_json(&bad).unwrap_err().field, "timestamp");
        let mut named = [0.0; NAMED];
        named[position("cpu_per_replica").unwrap()] = 2.0;
        let plan = Plan::new(&["cpu_per_replica".into(), "service_order".into(), "service_x".into()], "service_").unwrap();
        let mut v = Vec::new();
        plan.extend(&named, "order", None, &mut v);
        assert_eq!(v, vec![2.0, 1.0, 0.0]);
        assert!(!plan.reads_load());
        // The pooled forest's load features: the request features in pods of a capacity.
        named[position("request_rolling_max").unwrap()] = 90.0;
        let pooled = Plan::new(&["load_pods_rolling_max".into(), "cpu_per_replica".into()], "service_").unwrap();
        assert!(pooled.reads_load());
        v.clear();
        pooled.extend(&named, "order", Some(30.0), &mut v);
        assert_eq!(v, vec![3.0, 2.0]);
        v.clear();
        pooled.extend(&named, "order", None, &mut v);
        assert!(v[0].is_nan(), "no capacity: not a number, so no forecast");
        assert_eq!(Plan::new(&["nope".into()], "service_").unwrap_err(), vec!["nope".to_string()]);
        assert!((0..NAMED).all(|i| position(name(i)) == Some(i)), "names are unique");
        assert_eq!(name(NAMED - 1), "request_rate_holt_winters");
    }
}
