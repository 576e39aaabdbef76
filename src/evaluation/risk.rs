//! A family of policies picked by risk: for a level `r`, the probability that demand exceeds
//! the forecast, each service's forecast is raised by the `1 − r` quantile of its errors
//! (demand label − forecast) on the hold-out. Split conformal intervals, per service:
//!
//! - chosen over a quantile regression forest because they work for every model the registry
//!   holds (the forest and the LSTM-CNN alike, and any model added later), need no change to how
//!   a model is trained or stored, and their coverage is guaranteed on exchangeable data whatever
//!   the model got wrong; a QRF's quantiles are only as calibrated as its leaves are large;
//! - cross-fitted where they are scored: each half of a service's hold-out (in time) is replayed
//!   with the quantiles of the other half's errors, so no row is judged with an offset its own
//!   error shaped; what is served uses the quantiles of the whole hold-out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The levels the replay scores by default: from a coin flip to one miss in fifty.
pub const LEVELS: [f64; 6] = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02];

/// One member of the family, as a version records it and `serve` applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskMember {
    /// The probability that demand exceeds the forecast.
    pub level: f64,
    /// Pods added to each service's forecast (negative: the forecast runs high).
    pub offsets: BTreeMap<String, f64>,
    /// Added for a service the hold-out did not have: the quantile of every service's errors.
    pub pooled: f64,
}

impl RiskMember {
    /// What `service`'s forecast is raised by.
    pub fn offset(&self, service: &str) -> f64 {
        self.offsets.get(service).copied().unwrap_or(self.pooled)
    }

    /// "risk 10 %" as people say it.
    pub fn describe(&self) -> String {
        format!("risk {} % (each service's forecast raised by its hold-out errors' {} % quantile)", percent(self.level), percent(1.0 - self.level))
    }
}

fn percent(x: f64) -> String {
    let p = 100.0 * x;
    if (p - p.round()).abs() < 1e-9 { format!("{p:.0}") } else { format!("{p}") }
}

/// The conformal quantile of `errors` for `level`: the `⌈(n + 1)(1 − level)⌉`-th smallest, so
/// that a new error exceeds it with probability at most `level` (the largest when n is small).
/// 0 for no errors.
pub fn quantile(errors: &[f64], level: f64) -> f64 {
    if errors.is_empty() {
        return 0.0;
    }
    let mut sorted: Vec<f64> = errors.iter().copied().filter(|e| e.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let k = ((n + 1) as f64 * (1.0 - level)).ceil() as usize;
    sorted[k.clamp(1, n) - 1]
}

/// The member at `level` from each service's errors on the whole hold-out.
pub fn member(errors: &BTreeMap<String, Vec<f64>>, level: f64) -> RiskMember {
    let offsets = errors.iter().map(|(s, e)| (s.clone(), quantile(e, level))).collect();
    let all: Vec<f64> = errors.values().flatten().copied().collect();
    RiskMember { level, offsets, pooled: quantile(&all, level) }
}

/// Offsets for one service's errors in time order, cross-fitted: the first half's rows get the
/// second half's quantile and the second half's the first's.
pub fn cross_fitted(errors: &[f64], level: f64) -> Vec<f64> {
    let half = errors.len() / 2;
    let (first, second) = errors.split_at(half);
    if first.is_empty() || second.is_empty() {
        return vec![quantile(errors, level); errors.len()];
    }
    let (for_first, for_second) = (quantile(second, level), quantile(first, level));
    (0..errors.len()).map(|i| if i < half { for_first } else { for_second }).collect()
}

/// A pipeline's choice of member: none (the forecast as it is), the cheapest member at least as
/// healthy as the reactive HPA at its target (`auto`), or a level.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RiskChoice {
    #[default]
    None,
    Auto,
    Level(f64),
}

impl<'de> Deserialize<'de> for RiskChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RiskChoice, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "`risk` is `none`, `auto` or a probability between 0 and 1 (0.1: demand exceeds the forecast one step in ten), not {v}"
            ))
        };
        match &v {
            serde_json::Value::String(s) if s == "none" || s.is_empty() => Ok(RiskChoice::None),
            serde_json::Value::String(s) if s == "auto" => Ok(RiskChoice::Auto),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if x > 0.0 && x < 1.0 => Ok(RiskChoice::Level(x)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl Serialize for RiskChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RiskChoice::None => s.serialize_str("none"),
            RiskChoice::Auto => s.serialize_str("auto"),
            RiskChoice::Level(x) => s.serialize_f64(*x),
        }
    }
}

/// A member's score on the hold-out, beside the frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub level: f64,
    pub pod_hours: f64,
    pub under_provisioned_minutes: f64,
    /// Of the scored rows, the share whose demand exceeded the (cross-fitted) raised forecast.
    pub exceedance: f64,
    /// Against the HPA's frontier: minutes below it at equal pod-hours, pod-hours saved at
    /// equal minutes (none: the HPA is never that healthy, or there is no frontier).
    #[serde(default)]
    pub margin_minutes: Option<f64>,
    #[serde(default)]
    pub saving_pod_hours: Option<f64>,
}

/// Which of `members` a pipeline's `choice` serves: the level asked for (the nearest scored),
/// or the cheapest at most as under-provisioned as `healthy_minutes` (none when no member is).
pub fn pick(members: &[Scored], choice: RiskChoice, healthy_minutes: f64) -> Option<&Scored> {
    match choice {
        RiskChoice::None => None,
        RiskChoice::Level(x) => members.iter().min_by(|a, b| (a.level - x).abs().total_cmp(&(b.level - x).abs())),
        RiskChoice::Auto => members.iter().filter(|m| m.under_provisioned_minutes <= healthy_minutes + 1e-9).min_by(|a, b| a.pod_hours.total_cmp(&b.pod_hours)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_conformal_quantile_is_an_order_statistic() {
        let e: Vec<f64> = (1..=9).map(f64::from).collect();
        // (9 + 1) × 0.9 = 9th smallest; × 0.5 = 5th; a tiny risk takes the largest.
        assert_eq!((quantile(&e, 0.1), quantile(&e, 0.5), quantile(&e, 0.001)), (9.0, 5.0, 9.0));
        assert_eq!((quantile(&[], 0.1), quantile(&[f64::NAN, 2.0], 0.5)), (0.0, 2.0));
        assert_eq!(cross_fitted(&[1.0, 2.0, 10.0, 20.0], 0.5), [20.0, 20.0, 2.0, 2.0]);
        assert_eq!(cross_fitted(&[3.0], 0.5), [3.0]);
    }

    /// Errors of two services whose forecasts miss by different amounts, drawn again for the
    /// rows the offsets are tried on: at every level, the share of new demand above the raised
    /// forecast is the level, within 3 points, per service and over both.
    #[test]
    fn a_member_is_calibrated_on_held_out_data() {
        let mut rng = Rng::new(11, 3);
        let mut draw = |sd: f64, bias: f64, n: usize| (0..n).map(|_| bias + sd * rng.normal()).collect::<Vec<f64>>();
        let fitted: BTreeMap<String, Vec<f64>> = [("api".to_string(), draw(0.4, 0.2, 3000)), ("batch".to_string(), draw(2.0, -1.0, 3000))].into();
        let fresh: BTreeMap<String, Vec<f64>> = [("api".to_string(), draw(0.4, 0.2, 5000)), ("batch".to_string(), draw(2.0, -1.0, 5000))].into();
        for level in LEVELS {
            let m = member(&fitted, level);
            let mut over = 0usize;
            for (s, e) in &fresh {
                let here = e.iter().filter(|&&x| x > m.offset(s)).count();
                let share = here as f64 / e.len() as f64;
                assert!((share - level).abs() <= 0.03, "{s} at {level}: {share}");
                over += here;
            }
            assert!((over as f64 / 10_000.0 - level).abs() <= 0.03);
            // Cross-fitted on one series: the same.
            let e = &fresh["batch"];
            let offsets = cross_fitted(e, level);
            let share = e.iter().zip(&offsets).filter(|(x, o)| x > o).count() as f64 / e.len() as f64;
            assert!((share - level).abs() <= 0.03, "cross-fitted at {level}: {share}");
        }
        // A service the hold-out did not have gets the pooled quantile.
        let m = member(&fitted, 0.1);
        assert!(m.offset("new") > m.offset("api") && m.offset("new") < m.offset("batch"));
        assert!(m.describe().starts_with("risk 10 % (each service's forecast raised by its hold-out errors' 90 % quantile"), "{}", m.describe());
    }

    #[test]
    fn a_pipeline_picks_a_level_or_the_cheapest_as_healthy_as_the_hpa() {
        let s = |level: f64, pod_hours: f64, minutes: f64| Scored {
            level,
            pod_hours,
            under_provisioned_minutes: minutes,
            exceedance: level,
            margin_minutes: None,
            saving_pod_hours: None,
        };
        let members = [s(0.5, 100.0, 30.0), s(0.2, 110.0, 12.0), s(0.1, 120.0, 8.0), s(0.05, 130.0, 5.0)];
        assert_eq!(pick(&members, RiskChoice::None, 10.0), None);
        assert_eq!(pick(&members, RiskChoice::Auto, 10.0).map(|m| m.level), Some(0.1));
        assert_eq!(pick(&members, RiskChoice::Auto, 1.0), None, "none is that healthy");
        assert_eq!(pick(&members, RiskChoice::Level(0.12), 0.0).map(|m| m.level), Some(0.1));
        let parse = |v: serde_json::Value| serde_json::from_value::<RiskChoice>(v);
        assert_eq!(parse("auto".into()).unwrap(), RiskChoice::Auto);
        assert_eq!(parse("none".into()).unwrap(), RiskChoice::None);
        assert_eq!(parse(0.1.into()).unwrap(), RiskChoice::Level(0.1));
        assert!(parse(1.5.into()).unwrap_err().to_string().contains("a probability between 0 and 1"));
        assert!(parse("often".into()).is_err());
    }
}
