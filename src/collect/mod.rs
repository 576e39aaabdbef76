//! Prometheus → the 23-column metrics row, for `pipeline collect` (live and backfill) and
//! `pipeline serve --prometheus`.
//!
//! Fourteen columns are queried (the PromQL is in `collect.yaml`, see [`config`]); the others
//! are derived here as the old collector derived them: the mean and least-squares slope of the
//! service's last 10 rows, and the calendar flags in the configured time zone.

pub mod config;
pub mod day_files;
pub mod derived;
pub mod exposition;
pub mod prometheus;

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use futures::StreamExt;

use crate::row::{Kind, NUMERIC};
use config::{Config, QUERIED, WhenMissing};
use derived::{Window, isoformat, round};
use prometheus::{Prometheus, QueryError, Series};

/// The step between rows, as the old collector's loop and a backfill's `query_range`.
pub const STEP_SECONDS: i64 = 30;

/// Services queried at once (each is 14 queries).
const PARALLEL_SERVICES: usize = 8;

/// One metrics row; a value Prometheus did not have is `None` (an empty field in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Wall clock in the collector's time zone, with that zone's offset at the time.
    pub timestamp: DateTime<FixedOffset>,
    pub service: String,
    /// In [`NUMERIC`] order.
    pub values: [Option<f64>; NUMERIC.len()],
}

/// A row's timestamp as the contract writes it: the wall clock, then its offset unless it is
/// UTC (`2026-10-25T02:30:00+02:00`, `2026-10-25T02:30:00+01:00`: the hour a DST fall-back
/// repeats is two distinct times, not duplicates). A timestamp without an offset is UTC.
pub fn format_timestamp(t: &DateTime<FixedOffset>) -> String {
    let wall = isoformat(t.naive_local().and_utc().timestamp_micros());
    if t.offset().local_minus_utc() == 0 { wall } else { format!("{wall}{}", t.format("%:z")) }
}

impl Row {
    /// The row as the collector writes it (the 23 columns' order, no newline).
    pub fn csv_line(&self) -> String {
        let mut line = format!("{},{}", format_timestamp(&self.timestamp), self.service);
        for (v, (_, kind)) in self.values.iter().zip(NUMERIC) {
            line.push(',');
            if let Some(v) = v {
                line.push_str(&format_value(*v, kind));
            }
        }
        line
    }

    /// The row as `POST /predict` takes it (an empty value is `null`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut row = serde_json::Map::new();
        row.insert(crate::row::TIMESTAMP.into(), format_timestamp(&self.timestamp).into());
        row.insert(crate::row::SERVICE.into(), self.service.clone().into());
        for (v, (name, _)) in self.values.iter().zip(NUMERIC) {
            row.insert(name.into(), v.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null));
        }
        serde_json::Value::Object(row)
    }
}

fn format_value(v: f64, kind: Kind) -> String {
    match kind {
        Kind::Count | Kind::Flag => format!("{}", v.round() as i64),
        _ => format!("{}", round(v, 4)),
    }
}

/// The header line of a day file.
pub fn header() -> String {
    crate::row::column_names().join(",")
}

fn numeric_index(name: &str) -> usize {
    NUMERIC.iter().position(|(n, _)| *n == name).expect("a metrics column")
}

/// A Prometheus and what to ask it, with each service's last rows for the derived columns.
pub struct Collector {
    pub config: Config,
    prometheus: Prometheus,
    windows: HashMap<String, [Window; 3]>,
    /// (service, column, problem) already logged: the live loop would repeat them every 30 s.
    warned: HashSet<(String, &'static str, &'static str)>,
}

impl Collector {
    pub fn new(config: Config, prometheus: Prometheus) -> Collector {
        Collector { config, prometheus, windows: HashMap::new(), warned: HashSet::new() }
    }

    pub fn prometheus(&self) -> &Prometheus {
        &self.prometheus
    }

    /// The listed services, or those the `discover` query finds at `at` (over `until`, every
    /// hour, for a backfill).
    pub async fn services(&mut self, at: f64, until: Option<f64>) -> Result<Vec<String>, QueryError> {
        if !self.config.services.is_empty() {
            return Ok(self.config.services.clone());
        }
        let query = self.config.expand(self.config.discover.as_deref().unwrap_or_default(), "");
        let found = match until {
            None => self.prometheus.query(&query, at).await?,
            Some(end) => self.prometheus.query_range(&query, at, end, 3600.0).await?,
        };
        let mut services = deployments(&found);
        // A label value becomes part of PromQL and of the rows: only names a Deployment can have.
        services.retain(|s| match crate::row::check_service_name(s) {
            Ok(()) => true,
            Err(e) => {
                if self.warned.insert((s.clone(), "deployment", "name")) {
                    tracing::warn!("the discover query found a `deployment` label that {e}; skipped");
                }
                false
            }
        });
        if services.is_empty() && self.warned.insert((String::new(), "services", "none")) {
            tracing::warn!(
                "the discover query of {} found no services: label their Deployments (autoscale=true with the built-in file) or list them under `services:`",
                self.config.file.display()
            );
        }
        Ok(services)
    }

    /// One row per service at `at`. Prometheus not answering fails the whole step: a row with
    /// some columns from one moment and some missing would look like data and not be.
    pub async fn collect(&mut self, at: DateTime<Utc>) -> Result<Vec<Row>, QueryError> {
        let t = at.timestamp_millis() as f64 / 1000.0;
        let services = self.services(t, None).await?;
        let this = &*self;
        let sampled: Vec<(String, Result<Vec<Vec<Series>>, QueryError>)> = futures::stream::iter(services)
            .map(|s| async move {
                let queries = this.config.columns.iter().map(|c| this.config.expand(&c.query, &s)).collect::<Vec<_>>();
                let answers = futures::future::join_all(queries.iter().map(|q| this.prometheus.query(q, t))).await;
                (s, answers.into_iter().collect::<Result<Vec<_>, _>>())
            })
            .buffered(PARALLEL_SERVICES)
            .collect()
            .await;
        let local = at.with_timezone(&self.config.time_zone).fixed_offset();
        let mut rows = Vec::new();
        for (service, answers) in sampled {
            let answers = answers?;
            let queried: Vec<Option<f64>> = answers
                .iter()
                .enumerate()
                .map(|(k, series)| self.value(&service, k, series.iter().map(|s| s.samples.first().map(|p| p.1)).collect()))
                .collect();
            if let Some(row) = self.row(&service, local, &queried) {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Every 30 s row of one day (in the collector's time zone) rebuilt from Prometheus'
    /// history, with the same queries evaluated at the same instants as the live loop.
    pub async fn backfill_day(&mut self, day: NaiveDate) -> Result<Vec<Row>, QueryError> {
        let tz = self.config.time_zone;
        let start = local_midnight(tz, day);
        let end = local_midnight(tz, day.succ_opt().unwrap_or(day)) - STEP_SECONDS;
        self.backfill(start, end).await
    }

    /// Every 30 s row from `start` to `end` (seconds since the epoch, inclusive), rebuilt from
    /// Prometheus' history as [`Collector::backfill_day`] does; ordered by time, then service.
    pub async fn backfill(&mut self, start: i64, end: i64) -> Result<Vec<Row>, QueryError> {
        let tz = self.config.time_zone;
        let start = start - start.rem_euclid(STEP_SECONDS);
        let services = self.services(start as f64, Some(end as f64)).await?;
        let steps: Vec<i64> = (start..=end).step_by(STEP_SECONDS as usize).collect();
        let mut rows = Vec::new();
        for service in services {
            let queries: Vec<String> = self.config.columns.iter().map(|c| self.config.expand(&c.query, &service)).collect();
            let columns: Vec<Vec<Series>> =
                futures::future::try_join_all(queries.iter().map(|q| self.prometheus.query_range(q, start as f64, end as f64, STEP_SECONDS as f64))).await?;
            // Each series' samples by second: a series may lack some steps.
            let by_time: Vec<Vec<HashMap<i64, f64>>> = columns.iter().map(|series| by_second(series)).collect();
            for &t in &steps {
                let queried: Vec<Option<f64>> = by_time
                    .iter()
                    .enumerate()
                    .map(|(k, series)| self.value(&service, k, series.iter().filter_map(|m| m.get(&t).map(|v| Some(*v))).collect()))
                    .collect();
                let at = Utc.timestamp_opt(t, 0).single().expect("a time in range").with_timezone(&tz).fixed_offset();
                if let Some(row) = self.row(&service, at, &queried) {
                    rows.push(row);
                }
            }
        }
        rows.sort_by(|a, b| (a.timestamp, &a.service).cmp(&(b.timestamp, &b.service)));
        Ok(rows)
    }

    /// `service`'s request rate every 30 s from `start` to `end` (seconds since the epoch), as
    /// the live rows take it, from Prometheus' history: what rebuilds its seasonal profile when
    /// a server starts. Steps without a sample are left out (the service did not exist yet).
    pub async fn request_history(&mut self, service: &str, start: i64, end: i64) -> Result<Vec<(i64, f64)>, QueryError> {
        let k = QUERIED.iter().position(|n| *n == "request_count_per_second").expect("a queried column");
        let query = self.config.expand(&self.config.columns[k].query, service);
        let mut out = Vec::new();
        let mut from = start - start.rem_euclid(STEP_SECONDS);
        while from < end {
            // A day a query: 2,880 points, under Prometheus' 11,000 a series.
            let to = (from + 86_400 - STEP_SECONDS).min(end);
            let series = self.prometheus.query_range(&query, from as f64, to as f64, STEP_SECONDS as f64).await?;
            let by_time = by_second(&series);
            for t in (from..=to).step_by(STEP_SECONDS as usize) {
                let samples: Vec<Option<f64>> = by_time.iter().filter_map(|m| m.get(&t).map(|v| Some(*v))).collect();
                if !samples.is_empty()
                    && let Some(v) = self.value(service, k, samples)
                {
                    out.push((t, round(v, 2)));
                }
            }
            from = to + STEP_SECONDS;
        }
        Ok(out)
    }

    /// One column's value from the series its query returned (each series' sample, if any).
    fn value(&mut self, service: &str, k: usize, samples: Vec<Option<f64>>) -> Option<f64> {
        let name = QUERIED[k];
        let zero = self.config.columns[k].when_missing == WhenMissing::Zero;
        let mut warn = |problem: &'static str, detail: String| {
            if self.warned.insert((service.to_string(), name, problem)) {
                tracing::warn!(service, column = name, "{detail}");
            }
        };
        match samples.as_slice() {
            [] | [None] => zero.then_some(0.0),
            [Some(v)] if v.is_finite() => Some(*v),
            [Some(v)] if v.is_nan() && zero => Some(0.0),
            [Some(v)] => {
                warn("not finite", format!("the query gave {v}; the field is left empty (collect.yaml: columns.{name})"));
                None
            }
            many => {
                warn(
                    "several series",
                    format!(
                        "the query gave {} series where one is needed; aggregate it with sum or max (collect.yaml: columns.{name}); the field is left empty",
                        many.len()
                    ),
                );
                None
            }
        }
    }

    /// The row for the queried values, with the derived columns, or `None` when the service
    /// has no replica count (it did not exist at that time).
    fn row(&mut self, service: &str, at: DateTime<FixedOffset>, queried: &[Option<f64>]) -> Option<Row> {
        let mut values = [None; NUMERIC.len()];
        for (k, name) in QUERIED.iter().enumerate() {
            values[numeric_index(name)] = queried[k];
        }
        values[numeric_index(crate::row::REPLICAS)]?;
        let windows = self.windows.entry(service.to_string()).or_default();
        for (w, (col, mean, slope)) in windows.iter_mut().zip([
            ("cpu_usage_percent", "cpu_usage_percent_last_5_min", Some("cpu_usage_percent_slope")),
            ("ram_usage_percent", "ram_usage_percent_last_5_min", Some("ram_usage_percent_slope")),
            ("request_count_per_second", "request_count_per_second_last_5_min", None),
        ]) {
            let i = numeric_index(col);
            let Some(v) = values[i] else { continue };
            let v = round(v, 2);
            values[i] = Some(v);
            w.push(v);
            values[numeric_index(mean)] = Some(round(w.mean(), 2));
            if let Some(slope) = slope {
                values[numeric_index(slope)] = Some(round(w.slope(), 4));
            }
        }
        let date = at.date_naive();
        values[numeric_index("is_holiday")] = Some(f64::from(u8::from(self.config.holidays.contains(&date))));
        values[numeric_index("is_weekend")] =
            Some(f64::from(u8::from(matches!(chrono::Datelike::weekday(&date), chrono::Weekday::Sat | chrono::Weekday::Sun))));
        Some(Row { timestamp: at, service: service.to_string(), values })
    }
}

/// Each series' samples keyed by their second (a series may lack some steps).
fn by_second(series: &[Series]) -> Vec<HashMap<i64, f64>> {
    series.iter().map(|s| s.samples.iter().map(|(t, v)| (t.round() as i64, *v)).collect()).collect()
}

/// Seconds since the epoch of the first instant of `day` in `tz` (a day starting in a DST gap
/// starts at the first valid time).
fn local_midnight(tz: chrono_tz::Tz, day: NaiveDate) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..4)
        .find_map(|h| tz.from_local_datetime(&(midnight + chrono::Duration::hours(h))).earliest())
        .map(|t| t.timestamp())
        .unwrap_or_else(|| midnight.and_utc().timestamp())
}

/// The `deployment` label values of a discovery query's series, sorted and unique.
fn deployments(series: &[Series]) -> Vec<String> {
    series.iter().filter_map(|s| s.labels.get("deployment").cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector() -> Collector {
        let mut config = Config::load(None).unwrap();
        config.holidays = vec![NaiveDate::from_ymd_opt(2025, 12, 25).unwrap()];
        Collector::new(config, Prometheus::new("http://127.0.0.1:9", std::time::Duration::from_secs(1)).unwrap())
    }

    fn queried(cpu: f64) -> Vec<Option<f64>> {
        // QUERIED order: cpu, ram, rps, p95, replicas, cpu req/lim, ram req/lim, queue, errors,
        // restarts, node cpu/mem pressure.
        vec![
            Some(cpu),
            Some(40.0),
            Some(12.5),
            Some(80.0),
            Some(3.0),
            Some(0.5),
            Some(1.0),
            Some(256.0),
            Some(512.0),
            Some(0.0),
            Some(0.001),
            Some(0.0),
            Some(0.0),
            Some(1.0),
        ]
    }

    fn utc(t: chrono::NaiveDateTime) -> DateTime<FixedOffset> {
        t.and_utc().fixed_offset()
    }

    #[test]
    fn rows_carry_windows_calendar_and_the_collectors_format() {
        let mut c = collector();
        let t = utc(NaiveDate::from_ymd_opt(2025, 12, 25).unwrap().and_hms_opt(10, 0, 0).unwrap());
        c.row("web", t, &queried(10.0)).unwrap();
        let row = c.row("web", t + chrono::Duration::seconds(30), &queried(20.004)).unwrap();
        assert_eq!(row.csv_line(), "2025-12-25T10:00:30,web,20,15,10,40,40,0,12.5,12.5,80,3,1,0,0.5,1,256,512,0,0.001,0,0,1");
        let fresh = c.row("api", t, &queried(50.0)).unwrap();
        assert_eq!(fresh.values[numeric_index("cpu_usage_percent_last_5_min")], Some(50.0), "windows are per service");
        let json = row.to_json();
        assert_eq!(json["replica_count"], 3.0);
        assert_eq!(json["timestamp"], "2025-12-25T10:00:30");
    }

    #[test]
    fn missing_values_follow_the_column_rule() {
        let mut c = collector();
        let cpu = QUERIED.iter().position(|n| *n == "cpu_usage_percent").unwrap();
        let rps = QUERIED.iter().position(|n| *n == "request_count_per_second").unwrap();
        assert_eq!(c.value("web", cpu, vec![]), None);
        assert_eq!(c.value("web", rps, vec![]), Some(0.0));
        assert_eq!(c.value("web", rps, vec![Some(f64::NAN)]), Some(0.0));
        assert_eq!(c.value("web", cpu, vec![Some(f64::NAN)]), None);
        assert_eq!(c.value("web", cpu, vec![Some(1.0), Some(2.0)]), None, "several series are not one value");
        assert_eq!(c.value("web", cpu, vec![Some(f64::INFINITY)]), None);
        let mut q = queried(10.0);
        q[QUERIED.iter().position(|n| *n == "replica_count").unwrap()] = None;
        let t = utc(NaiveDate::from_ymd_opt(2025, 12, 26).unwrap().and_hms_opt(0, 0, 0).unwrap());
        assert_eq!(c.row("web", t, &q), None, "no replica count: no row");
        let mut q = queried(10.0);
        q[cpu] = None;
        let line = c.row("web", t, &q).unwrap().csv_line();
        assert!(line.starts_with("2025-12-26T00:00:00,web,,,,40,"), "{line}");
    }

    #[test]
    fn the_hour_a_fall_back_repeats_is_written_twice_with_its_offsets() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let mut c = collector();
        // 2025-10-26: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let first = Utc.with_ymd_and_hms(2025, 10, 26, 0, 30, 0).unwrap().with_timezone(&paris).fixed_offset();
        let second = Utc.with_ymd_and_hms(2025, 10, 26, 1, 30, 0).unwrap().with_timezone(&paris).fixed_offset();
        let a = c.row("web", first, &queried(10.0)).unwrap().csv_line();
        let b = c.row("web", second, &queried(10.0)).unwrap().csv_line();
        assert!(a.starts_with("2025-10-26T02:30:00+02:00,web,"), "{a}");
        assert!(b.starts_with("2025-10-26T02:30:00+01:00,web,"), "{b}");
        // Read back as the contract reads them: an hour apart, in order.
        let read = |line: &str| crate::row::parse_timestamp(line.split(',').next().unwrap()).unwrap().0;
        assert_eq!(read(&b) - read(&a), 3_600_000_000);
        assert_eq!(format_timestamp(&utc(NaiveDate::from_ymd_opt(2025, 10, 26).unwrap().and_hms_opt(1, 30, 0).unwrap())), "2025-10-26T01:30:00");
    }

    #[test]
    fn days_start_at_local_midnight() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2025, 10, 6).unwrap();
        assert_eq!(local_midnight(paris, d), local_midnight(chrono_tz::UTC, d) - 2 * 3600);
    }
}
