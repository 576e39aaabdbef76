//! The reactive HPA's frontier: pod-hours against under-provisioned minutes over HPA targets,
//! and how far below it (better) or above it (worse) a policy lands, on both axes: the minutes it
//! saves at its own cost ([`Margin`]), and the pod-hours it saves at its own health ([`Saving`]).

use serde::{Deserialize, Serialize};

use super::Score;

/// The HPA at one target, over every replayed service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub target: f64,
    pub pod_hours: f64,
    pub under_provisioned_minutes: f64,
}

/// A policy against the frontier at its own pod-hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Margin {
    /// The HPA's under-provisioned minutes at the policy's pod-hours (interpolated).
    pub hpa_minutes: f64,
    /// `hpa_minutes − the policy's minutes`: above 0 the policy beats the HPA.
    pub minutes: f64,
    /// `minutes` as % of `hpa_minutes` (0 when the HPA has none there).
    pub percent: f64,
    /// The policy's pod-hours lie within the frontier's range (else the end segment is extended).
    pub within: bool,
}

impl Margin {
    pub fn beats_hpa(&self) -> bool {
        self.minutes > 0.0
    }

    /// "12.0 min (35%) below the HPA frontier", or above it.
    pub fn describe(&self) -> String {
        let side = if self.beats_hpa() { "below" } else { "above" };
        let pct = if self.hpa_minutes > 0.0 { format!(" ({:.0}%)", self.percent.abs()) } else { String::new() };
        format!("{:.1} min{pct} {side} the HPA frontier", self.minutes.abs())
    }
}

/// A policy against the frontier at its own under-provisioned minutes: the cost axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saving {
    /// The HPA's pod-hours for the policy's minutes (interpolated); none when no HPA target
    /// gets the services that healthy.
    pub hpa_pod_hours: Option<f64>,
    /// `hpa_pod_hours − the policy's pod-hours`: above 0 the policy is cheaper at equal health.
    pub pod_hours: Option<f64>,
    /// `pod_hours` as % of `hpa_pod_hours`.
    pub percent: Option<f64>,
}

impl Saving {
    pub fn cheaper_than_hpa(&self) -> bool {
        self.pod_hours.is_some_and(|p| p > 0.0)
    }

    /// "14.2 pod-h (3%) cheaper than the HPA at equal health", dearer, or that no HPA target
    /// gets that healthy.
    pub fn describe(&self) -> String {
        match (self.pod_hours, self.percent) {
            (Some(p), Some(pct)) => {
                let side = if p > 0.0 { "cheaper" } else { "dearer" };
                format!("{:.1} pod-h ({:.0}%) {side} than the HPA at equal health", p.abs(), pct.abs())
            }
            _ => "healthier than the HPA at any target".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Frontier {
    /// By pod-hours, cheapest first.
    pub points: Vec<Point>,
}

impl Frontier {
    pub fn new(mut points: Vec<Point>) -> Frontier {
        points.sort_by(|a, b| a.pod_hours.total_cmp(&b.pod_hours));
        Frontier { points }
    }

    /// The HPA's minutes at `pod_hours`: linear between neighbouring targets, flat past the
    /// ends. Past the cheapest target a policy is not credited with the slope it would have if
    /// the HPA could go on saving pods (a policy that never scales would "beat" it); past the
    /// dearest, more pods buy it nothing.
    pub fn minutes_at(&self, pod_hours: f64) -> Option<f64> {
        let pts = &self.points;
        let (lo, hi) = (pts.first()?.pod_hours, pts.last()?.pod_hours);
        let pod_hours = pod_hours.clamp(lo, hi);
        match pts.len() {
            0 => None,
            1 => Some(pts[0].under_provisioned_minutes),
            n => {
                let k = pts.partition_point(|q| q.pod_hours < pod_hours).clamp(1, n - 1);
                let (a, b) = (&pts[k - 1], &pts[k]);
                let span = b.pod_hours - a.pod_hours;
                let v = if span <= 0.0 {
                    a.under_provisioned_minutes.min(b.under_provisioned_minutes)
                } else {
                    a.under_provisioned_minutes + (pod_hours - a.pod_hours) / span * (b.under_provisioned_minutes - a.under_provisioned_minutes)
                };
                Some(v.max(0.0))
            }
        }
    }

    /// The HPA's pod-hours to be under-provisioned at most `minutes`: the cheapest point of the
    /// curve (linear between targets) that is that healthy. The cheapest target if it already
    /// is (as `minutes_at` is flat past the ends, a policy earns no credit for pods the HPA
    /// would save below its cheapest target); none if even the dearest target is not.
    pub fn pod_hours_at(&self, minutes: f64) -> Option<f64> {
        let pts = &self.points;
        let first = pts.first()?;
        if first.under_provisioned_minutes <= minutes {
            return Some(first.pod_hours);
        }
        for w in pts.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.under_provisioned_minutes <= minutes {
                // a is less healthy than `minutes`, b at least as healthy: the crossing.
                let drop = a.under_provisioned_minutes - b.under_provisioned_minutes;
                return Some(a.pod_hours + (a.under_provisioned_minutes - minutes) / drop * (b.pod_hours - a.pod_hours));
            }
        }
        None
    }

    /// The cost axis: the pod-hours a policy saves against the HPA as healthy as it is.
    pub fn saving(&self, s: &Score) -> Option<Saving> {
        if self.points.is_empty() {
            return None;
        }
        let hpa = self.pod_hours_at(s.under_provisioned_minutes);
        let saved = hpa.map(|h| h - s.pod_hours);
        let percent = hpa.zip(saved).map(|(h, p)| if h > 0.0 { 100.0 * p / h } else { 0.0 });
        Some(Saving { hpa_pod_hours: hpa, pod_hours: saved, percent })
    }

    pub fn margin(&self, s: &Score) -> Option<Margin> {
        let hpa = self.minutes_at(s.pod_hours)?;
        let minutes = hpa - s.under_provisioned_minutes;
        let (lo, hi) = (self.points.first()?.pod_hours, self.points.last()?.pod_hours);
        Some(Margin { hpa_minutes: hpa, minutes, percent: if hpa > 0.0 { 100.0 * minutes / hpa } else { 0.0 }, within: (lo..=hi).contains(&s.pod_hours) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(pod_hours: f64, minutes: f64) -> Score {
        Score { pod_hours, under_provisioned_minutes: minutes, ..Score::default() }
    }

    /// 80 %: 100 pod-h and 100 min; 60 %: 140 and 20; 40 %: 200 and 0 (given out of order).
    fn three_targets() -> Frontier {
        Frontier::new(vec![
            Point { target: 40.0, pod_hours: 200.0, under_provisioned_minutes: 0.0 },
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 100.0 },
            Point { target: 60.0, pod_hours: 140.0, under_provisioned_minutes: 20.0 },
        ])
    }

    #[test]
    fn a_policy_below_the_curve_beats_the_hpa() {
        // Cheaper targets (80 %) use fewer pod-hours and leave more minutes under-provisioned.
        let f = three_targets();
        assert_eq!(f.points[0].target, 80.0);
        // Halfway between 100 and 140 pod-hours: 60 minutes.
        let m = f.margin(&score(120.0, 30.0)).unwrap();
        assert_eq!((m.hpa_minutes, m.minutes, m.percent, m.within), (60.0, 30.0, 50.0, true));
        assert!(m.beats_hpa());
        assert_eq!(m.describe(), "30.0 min (50%) below the HPA frontier");
        let m = f.margin(&score(150.0, 20.0)).unwrap();
        assert!((m.hpa_minutes - 50.0 / 3.0).abs() < 1e-12 && !m.beats_hpa());
        // Beyond the ends the frontier is flat: saving pods past the cheapest target earns no
        // credit, so a policy that starves the service does not beat the HPA.
        let m = f.margin(&score(90.0, 100.0)).unwrap();
        assert_eq!((m.hpa_minutes, m.within, m.beats_hpa()), (100.0, false, false));
        let starving = f.margin(&score(20.0, 1000.0)).unwrap();
        assert_eq!((starving.hpa_minutes, starving.beats_hpa()), (100.0, false));
        assert_eq!(f.margin(&score(300.0, 0.0)).unwrap().hpa_minutes, 0.0);
        assert!(Frontier::default().margin(&score(1.0, 1.0)).is_none());
    }

    #[test]
    fn the_cost_axis_reads_the_curve_the_other_way() {
        let f = three_targets();
        // 60 min lies halfway from 100 to 20 min: halfway from 100 to 140 pod-h.
        assert_eq!(f.pod_hours_at(60.0), Some(120.0));
        assert_eq!(f.pod_hours_at(20.0), Some(140.0));
        // 10 min: halfway from 20 to 0, so halfway from 140 to 200.
        assert_eq!(f.pod_hours_at(10.0), Some(170.0));
        assert_eq!(f.pod_hours_at(0.0), Some(200.0));
        // Less healthy than the cheapest target: that target's cost, no credit below it.
        assert_eq!(f.pod_hours_at(150.0), Some(100.0));
        // A policy with 60 min on 110 pod-h saves 10 of the HPA's 120.
        let s = f.saving(&score(110.0, 60.0)).unwrap();
        assert_eq!((s.hpa_pod_hours, s.pod_hours), (Some(120.0), Some(10.0)));
        assert!((s.percent.unwrap() - 100.0 / 12.0).abs() < 1e-12 && s.cheaper_than_hpa());
        assert_eq!(s.describe(), "10.0 pod-h (8%) cheaper than the HPA at equal health");
        let dearer = f.saving(&score(150.0, 20.0)).unwrap();
        assert_eq!((dearer.pod_hours, dearer.cheaper_than_hpa()), (Some(-10.0), false));
        assert!(Frontier::default().saving(&score(1.0, 1.0)).is_none());
    }

    #[test]
    fn a_health_the_hpa_never_reaches_is_said_so() {
        let f = Frontier::new(vec![
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 50.0 },
            Point { target: 50.0, pod_hours: 200.0, under_provisioned_minutes: 10.0 },
        ]);
        assert_eq!(f.pod_hours_at(5.0), None);
        let s = f.saving(&score(150.0, 5.0)).unwrap();
        assert_eq!((s.hpa_pod_hours, s.pod_hours, s.cheaper_than_hpa()), (None, None, false));
        assert_eq!(s.describe(), "healthier than the HPA at any target");
    }

    #[test]
    fn ties_take_the_cheapest_target_that_healthy() {
        // Two targets equally healthy: the cheaper one is the HPA's cost.
        let flat = Frontier::new(vec![
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 10.0 },
            Point { target: 70.0, pod_hours: 150.0, under_provisioned_minutes: 10.0 },
            Point { target: 50.0, pod_hours: 200.0, under_provisioned_minutes: 0.0 },
        ]);
        assert_eq!(flat.pod_hours_at(10.0), Some(100.0));
        assert_eq!(flat.pod_hours_at(5.0), Some(175.0));
        // A dearer target that is less healthy (noise between targets) is passed over.
        let bumpy = Frontier::new(vec![
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 50.0 },
            Point { target: 70.0, pod_hours: 120.0, under_provisioned_minutes: 60.0 },
            Point { target: 60.0, pod_hours: 160.0, under_provisioned_minutes: 30.0 },
        ]);
        assert_eq!(bumpy.pod_hours_at(55.0), Some(100.0));
        assert_eq!(bumpy.pod_hours_at(45.0), Some(140.0));
        // Same pod-hours at two targets: no division by a zero span.
        let same = Frontier::new(vec![
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 40.0 },
            Point { target: 75.0, pod_hours: 100.0, under_provisioned_minutes: 20.0 },
        ]);
        assert_eq!(same.pod_hours_at(30.0), Some(100.0));
    }
}
