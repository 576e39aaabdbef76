//! Seasonal features: a service's load at the same time yesterday and a week ago, the peak just
//! after it, and a Holt-Winters forecast of its next five minutes. They let a forecast see a
//! ramp coming that its own recent rows do not show yet.
//!
//! Everything is on 5-minute slots of time (`slot = floor(epoch seconds / 300)`), each holding
//! the mean request rate of the service's rows in it, so gaps (a night without rows, a collector
//! down for an hour) never shift a lag: yesterday is slot − 288, whatever rows lie in between.
//! `sql/features.sql` builds the slots with a GROUP BY and joins them back to the rows; the
//! server keeps the same slots per service in a [`Profile`] (16 KiB, the last 2,048 slots) and
//! updates it online. Both call the same [`HoltWinters`], `holt_winters_next` in SQL.
//!
//! A row whose lagged slot has no rows (the first day, the first week, after a gap) gets its own
//! request rate instead, for the lag and its peak alike; a Holt-Winters forecast with less than a
//! day behind it does the same. The model still trains and serves; the feature then says "as now".

use std::ops::Range;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};
use serde::{Deserialize, Serialize};

/// Seconds in a slot.
pub const SLOT_SECONDS: i64 = 300;
/// Slots in a day and in a week: the lags.
pub const DAY: i64 = 288;
pub const WEEK: i64 = 7 * DAY;
/// Slots after a lagged one that its peak also covers: the demand label's window (at most 7
/// minutes ahead for start-ups up to 5 minutes) lies within the lagged slot and the next.
pub const PEAK_SLOTS: i64 = 1;

/// The seasonal features, in the order [`Profile::push`] returns them.
pub const NAMES: [&str; 5] =
    ["request_rate_yesterday", "request_peak_yesterday", "request_rate_last_week", "request_peak_last_week", "request_rate_holt_winters"];

/// The slot of a timestamp in microseconds since the epoch.
pub fn slot_of(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(SLOT_SECONDS * 1_000_000)
}

/// Additive Holt-Winters with a damped trend and a daily season, one step per slot. The
/// smoothing constants are textbook ones (Hyndman & Athanasopoulos, FPP3 §8.3), not tuned on any
/// trace: the level follows in about five slots, the season learns a third of each day's news.
const ALPHA: f64 = 0.2;
const BETA: f64 = 0.02;
const GAMMA: f64 = 0.3;
/// The trend fades by this per slot, so a ramp's slope is not carried across a night's gap.
const PHI: f64 = 0.9;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoltWinters {
    level: f64,
    trend: f64,
    /// Per slot of the day; none until that slot has been seen.
    season: Vec<Option<f64>>,
    /// The first and the last slot observed; none before any.
    first: Option<i64>,
    last: i64,
}

impl HoltWinters {
    /// Takes slot `slot`'s mean rate; slots must come in increasing order (an older one is
    /// ignored). More than a week without any slot starts it over.
    pub fn observe(&mut self, slot: i64, x: f64) {
        if !x.is_finite() || self.first.is_some() && slot <= self.last {
            return;
        }
        if self.first.is_none() || slot - self.last > WEEK {
            *self = HoltWinters { level: x, trend: 0.0, season: vec![None; DAY as usize], first: Some(slot), last: slot };
            self.season[slot.rem_euclid(DAY) as usize] = Some(0.0);
            return;
        }
        // Slots without rows: the level goes on along the fading trend.
        for _ in self.last + 1..slot {
            self.level += PHI * self.trend;
            self.trend *= PHI;
        }
        let i = slot.rem_euclid(DAY) as usize;
        let s = self.season[i].unwrap_or(0.0);
        let level = ALPHA * (x - s) + (1.0 - ALPHA) * (self.level + PHI * self.trend);
        self.trend = BETA * (level - self.level) + (1.0 - BETA) * PHI * self.trend;
        self.season[i] = Some(match self.season[i] {
            Some(s) => GAMMA * (x - level) + (1.0 - GAMMA) * s,
            None => x - level,
        });
        self.level = level;
        self.last = slot;
    }

    /// The forecast of slot `target` (after the last observed), or none with less than a day
    /// behind it. Never below zero: it is a request rate.
    pub fn forecast(&self, target: i64) -> Option<f64> {
        let first = self.first?;
        if target <= self.last || target - first < DAY {
            return None;
        }
        let h = target - self.last;
        let damped: f64 = (1..=h.min(64)).map(|k| PHI.powi(k as i32)).sum();
        let s = self.season[target.rem_euclid(DAY) as usize].unwrap_or(0.0);
        Some((self.level + damped * self.trend + s).max(0.0))
    }
}

/// Slots kept per service: a week and the peak's reach, rounded up to a power of two.
const RING: usize = 2048;

/// One service's slots and Holt-Winters state, as the server keeps them between rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Mean rate of finished slots by `slot % RING`; NaN where the slot had no rows.
    #[serde(with = "ring_serde")]
    ring: Vec<f64>,
    /// The newest finished slot.
    finished: Option<i64>,
    /// The slot rows are arriving in: (slot, sum of rates, rows).
    current: Option<(i64, f64, u32)>,
    holt_winters: HoltWinters,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile { ring: vec![f64::NAN; RING], finished: None, current: None, holt_winters: HoltWinters::default() }
    }
}

impl Profile {
    /// Adds a row (in time order) and returns its seasonal features, [`NAMES`] order.
    pub fn push(&mut self, timestamp_us: i64, rate: f64) -> [f64; 5] {
        let slot = slot_of(timestamp_us);
        match self.current {
            Some((s, ref mut sum, ref mut n)) if s == slot => {
                *sum += rate;
                *n += 1;
            }
            Some((s, sum, n)) if s < slot => {
                self.finish(s, sum / n as f64);
                self.current = Some((slot, rate, 1));
            }
            // An older slot than the current one: the server refuses such rows before here.
            Some(_) => {}
            None => self.current = Some((slot, rate, 1)),
        }
        let (yesterday, peak_yesterday) = self.lagged(slot - DAY, rate);
        let (last_week, peak_last_week) = self.lagged(slot - WEEK, rate);
        let holt_winters = self.holt_winters.forecast(slot + 1).unwrap_or(rate);
        [yesterday, peak_yesterday, last_week, peak_last_week, holt_winters]
    }

    /// Whether it has seen no row.
    pub fn is_empty(&self) -> bool {
        self.current.is_none()
    }

    /// Whether a row at `timestamp_us` comes after every row this profile has seen: only such a
    /// row may continue it (a profile from a row's future would hand it its own tomorrow).
    pub fn ends_before(&self, timestamp_us: i64) -> bool {
        self.current.is_none_or(|(s, _, _)| s < slot_of(timestamp_us))
    }

    fn finish(&mut self, slot: i64, mean: f64) {
        if let Some(f) = self.finished {
            for s in (f + 1).max(slot - RING as i64 + 1)..slot {
                self.ring[s.rem_euclid(RING as i64) as usize] = f64::NAN;
            }
        }
        self.ring[slot.rem_euclid(RING as i64) as usize] = mean;
        self.finished = Some(slot);
        self.holt_winters.observe(slot, mean);
    }

    /// A finished slot's mean rate, if it had rows and is still kept.
    pub fn rate(&self, slot: i64) -> Option<f64> {
        let f = self.finished?;
        if slot > f || slot <= f - RING as i64 {
            return None;
        }
        Some(self.ring[slot.rem_euclid(RING as i64) as usize]).filter(|r| !r.is_nan())
    }

    /// The lagged slot's rate and its peak with the next [`PEAK_SLOTS`], or `fallback` for both.
    fn lagged(&self, slot: i64, fallback: f64) -> (f64, f64) {
        match self.rate(slot) {
            Some(r) => (r, (slot + 1..=slot + PEAK_SLOTS).filter_map(|s| self.rate(s)).fold(r, f64::max)),
            None => (fallback, fallback),
        }
    }
}

/// The file in a model version with each service's [`Profile`] at the end of its training data,
/// so a server starts with yesterday and last week instead of a week of fallbacks.
pub const FILE: &str = "seasonal.json";

/// Each service's profile, as a model version carries it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Profiles {
    pub services: std::collections::BTreeMap<String, Profile>,
}

impl Profiles {
    /// Whether a model with these features reads a profile.
    pub fn wanted_by(features: &[String]) -> bool {
        features.iter().any(|f| NAMES.contains(&f.as_str()))
    }

    /// Every service's rows of a stage's table (sorted by service and time, as `features` writes
    /// them and the splits keep them), played through a profile each.
    pub fn from_table(path: &std::path::Path) -> anyhow::Result<Profiles> {
        use anyhow::Context;
        use datafusion::parquet::arrow::ProjectionMask;
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let read = || -> anyhow::Result<Profiles> {
            let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
            let position = |name: &str| builder.schema().index_of(name).map_err(|_| anyhow::anyhow!("the table has no column `{name}`"));
            let roots = vec![position("service_name")?, position("timestamp")?, position("request_count_per_second")?];
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let mut profiles = Profiles::default();
            for batch in builder.with_projection(mask).build()? {
                let batch = batch?;
                let column = |n: &str| batch.column_by_name(n).with_context(|| n.to_string());
                let services = datafusion::arrow::compute::cast(column("service_name")?, &DataType::Utf8)?;
                let times = datafusion::arrow::compute::cast(column("timestamp")?, &DataType::Int64)?;
                let rates = datafusion::arrow::compute::cast(column("request_count_per_second")?, &DataType::Float64)?;
                let (services, times, rates) = (services.as_string::<i32>(), times.as_primitive::<Int64Type>(), rates.as_primitive::<Float64Type>());
                for i in 0..batch.num_rows() {
                    if services.is_null(i) || times.is_null(i) || rates.is_null(i) {
                        continue;
                    }
                    let service = services.value(i);
                    if !profiles.services.contains_key(service) {
                        profiles.services.insert(service.to_string(), Profile::default());
                    }
                    profiles.services.get_mut(service).expect("just inserted").push(times.value(i), rates.value(i));
                }
            }
            Ok(profiles)
        };
        read().with_context(|| format!("building each service's seasonal profile from {}", path.display()))
    }

    /// The profiles a model version carries, if it carries any.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Option<Profiles>> {
        use anyhow::Context;
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// The ring as JSON: NaN (no rows) as null.
mod ring_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(ring: &[f64], s: S) -> Result<S::Ok, S::Error> {
        ring.iter().map(|r| if r.is_nan() { None } else { Some(*r) }).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v: Vec<Option<f64>> = Vec::deserialize(d)?;
        if v.len() != super::RING {
            return Err(serde::de::Error::custom(format!("a profile keeps {} slots, not {}", super::RING, v.len())));
        }
        Ok(v.into_iter().map(|r| r.unwrap_or(f64::NAN)).collect())
    }
}

/// `holt_winters_next(rate, slot) OVER (PARTITION BY service ORDER BY slot)`: for each slot, the
/// forecast of the slot after it from the slots before it (null with less than a day behind),
/// as [`Profile::push`] gives a row of that slot.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HoltWintersNext {
    signature: Signature,
}

impl Default for HoltWintersNext {
    fn default() -> HoltWintersNext {
        HoltWintersNext { signature: Signature::exact(vec![DataType::Float64, DataType::Int64], Volatility::Immutable) }
    }
}

impl WindowUDFImpl for HoltWintersNext {
    fn name(&self) -> &str {
        "holt_winters_next"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(HoltWintersEvaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Field::new(field_args.name(), DataType::Float64, true).into())
    }
}

#[derive(Debug)]
struct HoltWintersEvaluator;

impl PartitionEvaluator for HoltWintersEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let [rates, slots] = values else { return exec_err!("holt_winters_next takes (rate, slot)") };
        let (rates, slots) = (rates.as_primitive::<Float64Type>(), slots.as_primitive::<Int64Type>());
        let mut hw = HoltWinters::default();
        let mut out = Vec::with_capacity(num_rows);
        for i in 0..num_rows {
            if slots.is_null(i) {
                out.push(None);
                continue;
            }
            let slot = slots.value(i);
            out.push(hw.forecast(slot + 1));
            if rates.is_valid(i) {
                hw.observe(slot, rates.value(i));
            }
        }
        Ok(std::sync::Arc::new(Float64Array::from(out)))
    }

    fn evaluate(&mut self, _values: &[ArrayRef], _range: &Range<usize>) -> Result<datafusion::common::ScalarValue> {
        exec_err!("holt_winters_next is evaluated over its whole partition")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: i64 = 1_000_000;

    #[test]
    fn a_lag_reads_the_slot_a_day_back_and_falls_back_to_the_rate_without_it() {
        let mut p = Profile::default();
        let day0 = 20_000 * DAY * SLOT_SECONDS * US;
        // Day 0: two rows in slot 12 (rates 4 and 6), one in slot 13 (10).
        for (s, r) in [(12 * 300, 4.0), (12 * 300 + 30, 6.0), (13 * 300, 10.0)] {
            p.push(day0 + s * US, r);
        }
        // Nothing on day 1 before slot 12: the first row there has its lag and the peak with slot 13.
        let f = p.push(day0 + (DAY * 300 + 12 * 300 + 60) * US, 7.0);
        assert_eq!(&f[..2], &[5.0, 10.0]);
        // A week back there is nothing: its own rate, for the lag and its peak.
        assert_eq!(&f[2..4], &[7.0, 7.0]);
        // Holt-Winters has seen slots 12 and 13 of day 0; its target, slot 13 of day 1, lies a
        // day after its first: it forecasts.
        assert!(f[4].is_finite());
        // Slot 14 of day 1: yesterday's slot 14 had no rows, so its own rate.
        let f = p.push(day0 + (DAY * 300 + 14 * 300) * US, 3.0);
        assert_eq!(&f[..2], &[3.0, 3.0]);
    }

    #[test]
    fn the_ring_forgets_slots_older_than_it_keeps_and_gaps_clear_it() {
        let mut p = Profile::default();
        p.push(0, 1.0);
        p.push(300 * US, 2.0);
        assert_eq!(p.rate(0), Some(1.0));
        assert_eq!(p.rate(1), None, "slot 1 is not finished");
        // 2,048 slots later slot 0's place in the ring is reused; it must not read as slot 2,048's.
        p.push(RING as i64 * 300 * US, 3.0);
        p.push((RING as i64 + 1) * 300 * US, 3.0);
        assert_eq!(p.rate(0), None);
        assert_eq!(p.rate(RING as i64), Some(3.0));
        assert_eq!(p.rate(1), Some(2.0), "slot 1 is the oldest of the 2,048 kept");
        p.push((RING as i64 + 2) * 300 * US, 3.0);
        assert_eq!(p.rate(1), None, "and then it is not");
        // Written into a model version and read back by a server: the same slots and forecasts
        // (serde_json reads a float back to within its last bit).
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert!((0..RING as i64 + 3).all(|s| back.rate(s) == p.rate(s)));
        assert!((back.holt_winters.level - p.holt_winters.level).abs() < 1e-12 && back.current == p.current && back.finished == p.finished);
    }

    #[test]
    fn holt_winters_learns_a_daily_shape_and_waits_a_day() {
        let mut hw = HoltWinters::default();
        let shape = |s: i64| 10.0 + 5.0 * (2.0 * std::f64::consts::PI * s as f64 / DAY as f64).sin();
        assert_eq!(hw.forecast(1), None);
        for s in 0..DAY - 1 {
            hw.observe(s, shape(s));
        }
        assert_eq!(hw.forecast(DAY - 1), None, "less than a day behind");
        for s in DAY - 1..10 * DAY + 71 {
            hw.observe(s, shape(s));
        }
        // The slot after next, as a row of slot 10 days + 71 gets it: a quarter into the day, the peak.
        let target = 10 * DAY + 72;
        assert!((hw.forecast(target).unwrap() - shape(target)).abs() < 0.25, "{:?}", hw.forecast(target));
        // A gap: slots without rows do not move the season.
        let mut gapped = hw.clone();
        gapped.observe(10 * DAY + 100, shape(10 * DAY + 100));
        assert!((gapped.forecast(10 * DAY + 101).unwrap() - shape(10 * DAY + 101)).abs() < 1.0);
        // Older slots are ignored; a week of silence starts it over.
        let before = gapped.clone();
        gapped.observe(5, 1e9);
        assert_eq!(gapped, before);
        gapped.observe(30 * DAY, 1.0);
        assert_eq!(gapped.forecast(30 * DAY + 1), None);
    }
}
