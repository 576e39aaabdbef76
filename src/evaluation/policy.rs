//! A scaling policy as publish promotes it and `pipeline serve` applies it, and the two parts
//! the replay and the server share: the reactive HPA's formula and scale-down stabilisation.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::replay;
use super::replay::capacity::ceil;

/// How a promoted model's output becomes replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySpec {
    /// The prediction is the replica count, as the old system used it (versions published
    /// before policies were recorded).
    AsPredicted,
    /// `max(reactive HPA, the model's forecast)`, scale-down stabilised: the forecast only adds
    /// pods ahead of the HPA.
    Proactive(Reactive),
    /// The model's forecast alone, scale-down stabilised as the HPA is; the reactive HPA with
    /// these settings decides only where the model gives no forecast (a service it does not
    /// know, an LSTM-CNN warming up). Publish records it when it lies further below the HPA's
    /// frontier than the forecast over any HPA floor: a floor reacts to every burst of CPU the
    /// forecast already provisioned for, and the stabilisation holds what it adds for minutes.
    Forecast(Reactive),
}

impl PolicySpec {
    /// The policy of a forecast replayed with its HPA floor at `target`, or with none.
    pub fn of_forecast(floor: Option<f64>, p: &replay::Params) -> PolicySpec {
        match floor {
            Some(target) => PolicySpec::Proactive(Reactive { target, ..Reactive::of(p) }),
            None => PolicySpec::Forecast(Reactive::of(p)),
        }
    }

    /// How the output becomes replicas, in a phrase (`pipeline models`, the run summary).
    pub fn describe(&self) -> String {
        match self {
            PolicySpec::AsPredicted => "its prediction is the replica count".into(),
            PolicySpec::Proactive(r) => format!("its forecast as a floor under the reactive HPA at {:.0} % CPU", r.target),
            PolicySpec::Forecast(r) => format!("its forecast alone, scale-down stabilised over {:.0} s (the reactive HPA at {:.0} % CPU where it has none)", r.stabilization_seconds, r.target),
        }
    }
}

/// The reactive HPA's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reactive {
    /// CPU % the HPA aims for.
    pub target: f64,
    /// No change while |utilisation / target − 1| is within this.
    pub tolerance: f64,
    /// Scale down only to the highest recommendation of this window.
    pub stabilization_seconds: f64,
    /// Utilisation is averaged over the rows of this window (metrics-server's).
    pub window_seconds: f64,
}

impl Reactive {
    pub fn of(p: &replay::Params) -> Reactive {
        Reactive {
            target: p.hpa_target,
            tolerance: p.hpa_tolerance,
            stabilization_seconds: p.scale_down_stabilization_seconds,
            window_seconds: p.metrics_window_seconds,
        }
    }

    /// The HPA's formula: `ceil(ready × utilisation / target)`, or `current` within the
    /// tolerance. Pods not ready yet count as idle, as Kubernetes counts them on the way up.
    pub fn recommend(&self, utilization: f64, ready: f64, current: f64) -> f64 {
        if (utilization / self.target - 1.0).abs() <= self.tolerance { current } else { ceil(ready * utilization / self.target) }
    }
}

/// Most rows an online window keeps, however close together they arrive: a row every 30 s fills
/// a 60 s window with 3 and a 300 s one with 11; a client sending thousands a second must not
/// grow them without end. Past it the oldest go first, so a flood shortens the window it covers.
const WINDOW_ROWS: usize = 256;

/// Scale-down stabilisation: up at once, down only to the highest recommendation of the window.
#[derive(Debug, Default, Clone)]
pub struct Stabilizer {
    recommendations: VecDeque<(f64, f64)>,
}

impl Stabilizer {
    /// The replicas to set at `now` (seconds) given what is wanted and what is set.
    pub fn apply(&mut self, now: f64, wanted: f64, current: f64, window_seconds: f64) -> f64 {
        self.recommendations.push_back((now, wanted));
        while self.recommendations.front().is_some_and(|(t, _)| now - t > window_seconds) || self.recommendations.len() > WINDOW_ROWS {
            self.recommendations.pop_front();
        }
        if wanted >= current {
            wanted
        } else {
            self.recommendations.iter().map(|r| r.1).fold(wanted, f64::max).min(current)
        }
    }
}

/// The reactive HPA on the rows a server receives: each row is what the metrics showed.
#[derive(Debug, Default, Clone)]
pub struct OnlineHpa {
    /// (seconds, CPU %) of the rows inside the metrics window, oldest first.
    seen: VecDeque<(f64, f64)>,
    stabilizer: Stabilizer,
}

/// A forecast's part in a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// Pods under which the HPA does not go (0: the HPA alone).
    Floor(f64),
    /// The pods to set, whatever the HPA says.
    Alone(f64),
}

/// What the policy decided for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// The reactive HPA's own recommendation.
    pub reactive: f64,
    /// The CPU % it acted on (the window's average).
    pub utilization: f64,
    /// The replicas to set: `max(reactive, floor)` within the bounds, stabilised.
    pub replicas: f64,
}

impl OnlineHpa {
    /// `floor`: `Floor(pods)` under the HPA (0 for the HPA alone), or `Alone(pods)`, a forecast
    /// that decides by itself (the HPA still sees the row, so its window stays whole).
    pub fn decide(&mut self, now: f64, cpu: f64, replicas: f64, forecast: Forecast, r: &Reactive, (lo, hi): (f64, f64)) -> Recommendation {
        self.seen.push_back((now, cpu));
        while (self.seen.front().is_some_and(|(t, _)| now - t >= r.window_seconds.max(1e-9)) && self.seen.len() > 1) || self.seen.len() > WINDOW_ROWS {
            self.seen.pop_front();
        }
        let utilization = self.seen.iter().map(|s| s.1).sum::<f64>() / self.seen.len() as f64;
        let reactive = r.recommend(utilization, replicas, replicas).clamp(lo, hi);
        let wanted = match forecast {
            Forecast::Floor(pods) => reactive.max(pods),
            Forecast::Alone(pods) => pods,
        }
        .clamp(lo, hi);
        let replicas = self.stabilizer.apply(now, wanted, replicas, r.stabilization_seconds);
        Recommendation { reactive, utilization, replicas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reactive() -> Reactive {
        Reactive { target: 60.0, tolerance: 0.1, stabilization_seconds: 300.0, window_seconds: 60.0 }
    }

    #[test]
    fn the_online_hpa_averages_the_window_and_holds_pods_for_the_stabilisation() {
        let mut h = OnlineHpa::default();
        let r = reactive();
        // 3 pods at 90 %: ceil(3 × 90 / 60) = 5.
        assert_eq!(h.decide(0.0, 90.0, 3.0, Forecast::Floor(0.0), &r, (1.0, 10.0)).replicas, 5.0);
        // Next row 30 % on 5 pods: the window (90, 30) averages 60 %: within the tolerance.
        let d = h.decide(30.0, 30.0, 5.0, Forecast::Floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.utilization, d.reactive, d.replicas), (60.0, 5.0, 5.0));
        // Then 30 % alone: the HPA wants 3, but 5 was recommended within 5 minutes.
        let d = h.decide(60.0, 30.0, 5.0, Forecast::Floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (3.0, 5.0));
        // A forecast of 7 pods lifts the decision above the HPA at once.
        assert_eq!(h.decide(90.0, 30.0, 5.0, Forecast::Floor(7.0), &r, (1.0, 10.0)).replicas, 7.0);
        // Six minutes on at 30 %, the window has forgotten the 7: ceil(7 × 30 / 60) = 4.
        let d = h.decide(460.0, 30.0, 7.0, Forecast::Floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (4.0, 4.0));
    }

    #[test]
    fn a_forecast_alone_sets_the_replicas_and_is_held_for_the_stabilisation() {
        let mut h = OnlineHpa::default();
        let r = reactive();
        // 3 pods at 90 %: the HPA would want 5; the forecast says 3, and decides.
        let d = h.decide(0.0, 90.0, 3.0, Forecast::Alone(3.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (5.0, 3.0));
        // Up at once, down only to the highest forecast of the last 5 minutes.
        assert_eq!(h.decide(30.0, 30.0, 3.0, Forecast::Alone(7.0), &r, (1.0, 10.0)).replicas, 7.0);
        assert_eq!(h.decide(60.0, 30.0, 7.0, Forecast::Alone(2.0), &r, (1.0, 10.0)).replicas, 7.0);
        assert_eq!(h.decide(331.0, 30.0, 7.0, Forecast::Alone(2.0), &r, (1.0, 10.0)).replicas, 2.0);
        // Within the bounds.
        assert_eq!(h.decide(360.0, 30.0, 2.0, Forecast::Alone(0.0), &r, (1.0, 10.0)).replicas, 2.0, "2 was asked for at 331 s");
        assert_eq!(h.decide(700.0, 30.0, 2.0, Forecast::Alone(40.0), &r, (1.0, 10.0)).replicas, 10.0);
    }

    #[test]
    fn rows_in_a_flood_do_not_grow_the_windows() {
        let mut h = OnlineHpa::default();
        let r = reactive();
        for i in 0..100_000 {
            h.decide(i as f64 * 1e-6, 50.0, 3.0, Forecast::Floor(0.0), &r, (1.0, 10.0));
        }
        assert_eq!((h.seen.len(), h.stabilizer.recommendations.len()), (WINDOW_ROWS, WINDOW_ROWS));
    }

    #[test]
    fn policies_are_written_with_their_kind() {
        let p = PolicySpec::Proactive(reactive());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["kind"], "proactive");
        assert_eq!(json["target"], 60.0);
        assert_eq!(serde_json::from_value::<PolicySpec>(json).unwrap(), p);
        assert_eq!(serde_json::from_str::<PolicySpec>(r#"{"kind":"as_predicted"}"#).unwrap(), PolicySpec::AsPredicted);
        let alone = PolicySpec::of_forecast(None, &replay::Params::default());
        let json = serde_json::to_value(&alone).unwrap();
        assert_eq!((json["kind"].as_str(), json["target"].as_f64()), (Some("forecast"), Some(60.0)), "the HPA's settings for where it has no forecast");
        assert_eq!(serde_json::from_value::<PolicySpec>(json).unwrap(), alone);
        assert_eq!(PolicySpec::of_forecast(Some(75.0), &replay::Params::default()), PolicySpec::Proactive(Reactive { target: 75.0, ..reactive() }));
    }
}
