//! The server checking its own forecasts. Each forecast waits until its window has passed (the
//! pod start-up of the policy's HPA, then 2.5 minutes: the demand labels' window), and is then
//! compared with the demand that came: the `hpa` label rule applied to the rows seen,
//! `ceil(max over the window of replicas × CPU % / aim)`, the pods that would have held the CPU
//! at the top of the HPA's tolerance band (`target × (1 + tolerance)`, where the demand labels
//! put it). Per service the monitor keeps the errors of a recent window; when too
//! many forecasts fell short, or they missed by too many pods either way, the reactive HPA
//! decides for that service (`forecast_drift`) until the errors have stayed within bounds for a
//! while. A release that doubles the CPU per request, or a client that doubles the load in a way
//! the model never saw, makes the forecast wrong until the nightly run; this keeps it from
//! holding replicas wrong meanwhile.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// When a service's forecasts count as drifting, and when they are trusted again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftBounds {
    /// The errors of the forecasts whose windows ended in the last this many seconds are
    /// judged; 0 (the default) turns the monitor off.
    pub window_seconds: f64,
    /// Fewest judged forecasts before a verdict (20: ten minutes of 30 s rows).
    pub min_forecasts: usize,
    /// Drifting when more than this share of them fell short of the demand by a pod or more.
    pub max_short_share: f64,
    /// Drifting when they missed by more than this many pods on average, either way.
    pub max_error_pods: f64,
    /// Trusted again once within both bounds for this many seconds.
    pub recover_seconds: f64,
}

impl Default for DriftBounds {
    fn default() -> DriftBounds {
        DriftBounds { window_seconds: SUGGESTED_WINDOW_SECONDS, min_forecasts: 20, max_short_share: 0.75, max_error_pods: 2.0, recover_seconds: 900.0 }
    }
}

/// `serve --drift-window-seconds`'s default: half an hour of 30 s rows.
pub const SUGGESTED_WINDOW_SECONDS: f64 = 1800.0;

impl DriftBounds {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=7.0 * 86_400.0).contains(&self.window_seconds) {
            return Err(("--drift-window-seconds", format!("{} is not within 0..604800 seconds (0: off)", self.window_seconds)));
        }
        if !(0.0..=1.0).contains(&self.max_short_share) {
            return Err(("--drift-max-short-share", format!("{} is not a share between 0 and 1", self.max_short_share)));
        }
        if !(self.max_error_pods > 0.0) {
            return Err(("--drift-max-error-pods", format!("{} is not a positive number of pods", self.max_error_pods)));
        }
        if !(0.0..=86_400.0).contains(&self.recover_seconds) {
            return Err(("--drift-recover-seconds", format!("{} is not within 0..86400 seconds", self.recover_seconds)));
        }
        Ok(())
    }
}

/// One service's forecasts awaiting their demand, and the errors of those judged.
#[derive(Debug, Default, Clone)]
pub struct Monitor {
    /// (row time, forecast pods), oldest first.
    pending: VecDeque<(f64, f64)>,
    /// (row time, pods that would have held the CPU at target), as long as a pending window needs them.
    needed: VecDeque<(f64, f64)>,
    /// (time judged, demand − forecast in pods).
    errors: VecDeque<(f64, f64)>,
    /// Since when the forecasts have been drifting, and since when back within bounds.
    drifting: bool,
    within_since: Option<f64>,
}

/// Where a service's forecasts stand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Errors {
    pub judged: usize,
    /// Share of them short of the demand by a pod or more.
    pub short_share: f64,
    /// Mean absolute error in pods.
    pub mean_error_pods: f64,
}

/// The demand labels' window after the start-up: 2.5 minutes.
const WINDOW_AFTER_STARTUP: f64 = 150.0;

impl Monitor {
    /// Takes a row at `now` (the pods serving, their CPU %, the CPU % a pod is aimed at and the
    /// policy's pod start-up) and this row's forecast, if any; judges the forecasts whose
    /// windows have passed.
    pub fn observe(&mut self, now: f64, serving: f64, cpu: f64, target: f64, startup: f64, forecast: Option<f64>, bounds: &DriftBounds) {
        // Off, the forecasts are still judged (over the suggested window), for the decision
        // record and the dashboard; only the fall-back waits for the flag.
        let enabled = bounds.window_seconds > 0.0;
        let window = if enabled { bounds.window_seconds } else { SUGGESTED_WINDOW_SECONDS };
        self.needed.push_back((now, serving * cpu / target.max(1e-9)));
        let (lead, end) = (startup, startup + WINDOW_AFTER_STARTUP);
        while let Some(&(t, f)) = self.pending.front() {
            if t + end > now {
                break;
            }
            self.pending.pop_front();
            let demand = self.needed.iter().filter(|(s, _)| *s >= t + lead && *s <= t + end).map(|(_, n)| *n).fold(f64::NAN, f64::max);
            if demand.is_finite() {
                self.errors.push_back((now, demand.ceil() - f));
            }
        }
        // Rows older than any pending window's start are no longer needed.
        let keep_from = self.pending.front().map_or(now, |(t, _)| t + lead).min(now);
        while self.needed.front().is_some_and(|(s, _)| *s < keep_from) {
            self.needed.pop_front();
        }
        while self.errors.front().is_some_and(|(s, _)| *s < now - window) {
            self.errors.pop_front();
        }
        if let Some(f) = forecast {
            self.pending.push_back((now, f));
        }
        if !enabled {
            return;
        }
        let over = self
            .errors()
            .is_some_and(|e| e.judged >= bounds.min_forecasts && (e.short_share > bounds.max_short_share || e.mean_error_pods > bounds.max_error_pods));
        if over {
            self.drifting = true;
            self.within_since = None;
        } else if self.drifting {
            let since = *self.within_since.get_or_insert(now);
            if now - since >= bounds.recover_seconds {
                self.drifting = false;
                self.within_since = None;
            }
        }
    }

    pub fn errors(&self) -> Option<Errors> {
        let n = self.errors.len();
        (n > 0).then(|| Errors {
            judged: n,
            short_share: self.errors.iter().filter(|(_, e)| *e >= 1.0).count() as f64 / n as f64,
            mean_error_pods: self.errors.iter().map(|(_, e)| e.abs()).sum::<f64>() / n as f64,
        })
    }

    /// Why the forecast is not trusted now, or none.
    pub fn drift(&self, bounds: &DriftBounds) -> Option<String> {
        if !self.drifting {
            return None;
        }
        let e = self.errors()?;
        Some(format!(
            "the forecast has drifted: {:.0} % of its last {} forecasts fell short of the demand that came (bound {:.0} %), off by {:.1} pods on average (bound {:.1}); the reactive HPA decides until they are within bounds for {:.0} s",
            100.0 * e.short_share,
            e.judged,
            100.0 * bounds.max_short_share,
            e.mean_error_pods,
            bounds.max_error_pods,
            bounds.recover_seconds
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> DriftBounds {
        DriftBounds { window_seconds: SUGGESTED_WINDOW_SECONDS, ..DriftBounds::default() }
    }

    /// A service whose CPU per pod doubles at `change` seconds: forecasts of 3 pods hold 60 % CPU
    /// at 3 pods before, 120 % after, so 6 were needed.
    fn run(change: f64, until: f64, bounds: &DriftBounds) -> (Monitor, Option<f64>, Option<f64>) {
        let mut m = Monitor::default();
        let (mut tripped, mut recovered) = (None, None);
        let mut t = 0.0;
        while t <= until {
            let cpu = if t >= change && t < change + 3600.0 { 120.0 } else { 60.0 };
            m.observe(t, 3.0, cpu, 60.0, 60.0, Some(3.0), bounds);
            if m.drift(bounds).is_some() && tripped.is_none() {
                tripped = Some(t);
            }
            if tripped.is_some() && recovered.is_none() && m.drift(bounds).is_none() {
                recovered = Some(t);
            }
            t += 30.0;
        }
        (m, tripped, recovered)
    }

    #[test]
    fn a_doubled_cpu_per_request_trips_the_monitor_within_its_window_and_it_recovers() {
        let bounds = on();
        let (m, tripped, recovered) = run(7200.0, 7200.0 * 2.0, &bounds);
        // Within bounds while the forecast was right.
        let tripped = tripped.expect("the monitor trips");
        assert!(tripped > 7200.0, "{tripped}");
        // Every forecast after the change is 3 pods short: their mean error passes 2 pods once
        // two thirds of the window holds them (the short share's 75 % comes later), plus the
        // forecasts' own window.
        let by = bounds.window_seconds * 2.0 / 3.0 + 60.0 + WINDOW_AFTER_STARTUP + 30.0;
        assert!(tripped - 7200.0 <= by, "tripped {} s after the change, not within {by}", tripped - 7200.0);
        let reason = run(7200.0, tripped, &bounds).0.drift(&bounds).unwrap();
        assert!(reason.contains("fell short of the demand") && reason.contains("bound 75 %") && reason.contains("bound 2.0"), "{reason}");
        // The change lasts an hour; then the errors leave the window and, 15 minutes within
        // bounds later, the forecast decides again.
        let recovered = recovered.expect("it recovers");
        assert!(recovered > 7200.0 + 3600.0 + bounds.recover_seconds, "{recovered}");
        assert!(m.drift(&bounds).is_none());
    }

    #[test]
    fn an_accurate_forecast_or_a_monitor_turned_off_never_trips() {
        let (_, tripped, _) = run(f64::INFINITY, 86_400.0, &on());
        assert_eq!(tripped, None);
        let off = DriftBounds { window_seconds: 0.0, ..DriftBounds::default() };
        let (m, tripped, _) = run(3600.0, 4.0 * 3600.0, &off);
        assert_eq!(tripped, None, "off, it never hands a service to the HPA");
        assert!(m.errors().is_some_and(|e| e.judged > 0), "but it still judges the forecasts, for /metrics");
    }

    #[test]
    fn bounds_that_cannot_hold_are_named() {
        assert_eq!(DriftBounds { max_short_share: 1.5, ..DriftBounds::default() }.check().unwrap_err().0, "--drift-max-short-share");
        assert_eq!(DriftBounds { window_seconds: -1.0, ..DriftBounds::default() }.check().unwrap_err().0, "--drift-window-seconds");
        assert!(DriftBounds::default().check().is_ok());
    }
}
