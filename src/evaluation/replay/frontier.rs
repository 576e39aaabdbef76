//! The reactive HPA's frontier: pod-hours against under-provisioned minutes over HPA targets,
//! and how far below it (better) or above it (worse) a policy lands.

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

    pub fn margin(&self, s: &Score) -> Option<Margin> {
        let hpa = self.minutes_at(s.pod_hours)?;
        let minutes = hpa - s.under_provisioned_minutes;
        let (lo, hi) = (self.points.first()?.pod_hours, self.points.last()?.pod_hours);
        Some(Margin {
            hpa_minutes: hpa,
            minutes,
            percent: if hpa > 0.0 { 100.0 * minutes / hpa } else { 0.0 },
            within: (lo..=hi).contains(&s.pod_hours),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(pod_hours: f64, minutes: f64) -> Score {
        Score { pod_hours, under_provisioned_minutes: minutes, ..Score::default() }
    }

    #[test]
    fn a_policy_below_the_curve_beats_the_hpa() {
        // Cheaper targets (80 %) use fewer pod-hours and leave more minutes under-provisioned.
        let f = Frontier::new(vec![
            Point { target: 40.0, pod_hours: 200.0, under_provisioned_minutes: 0.0 },
            Point { target: 80.0, pod_hours: 100.0, under_provisioned_minutes: 100.0 },
            Point { target: 60.0, pod_hours: 140.0, under_provisioned_minutes: 20.0 },
        ]);
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
}
