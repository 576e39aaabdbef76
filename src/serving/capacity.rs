//! What one pod of a service serves, fitted online from the rows the server sees: the same
//! least squares as the replay's and the demand labels' (`evaluation::replay::capacity`), CPU %
//! against requests per pod, over a window that forgets with a half-life. The pooled forest's
//! load features are the load in pods of this capacity, so a service new to the model gets
//! forecasts once the fit has enough of its rows.

use crate::evaluation::replay::capacity::Capacity;

/// The fit forgets a row's weight by half in this time: long enough to hold a day's range of
/// load (the fit needs the load per pod to vary), short enough to follow a release that
/// changes the CPU per request within the day.
pub const HALF_LIFE_SECONDS: f64 = 6.0 * 3600.0;

/// Minutes of a service's rows before its capacity is trusted (`serve --capacity-min-minutes`).
/// 30: on the bundled week the fit after 30 minutes (from 14 starting points per service) was
/// within 2 % of the whole week's fit at the median and 6 % at the 90th percentile; after 10
/// minutes the 90th percentile was 15 %.
pub const DEFAULT_MIN_MINUTES: f64 = 30.0;

/// The least variation of the load per pod (standard deviation over mean) the fit needs.
pub const MIN_SPREAD: f64 = 0.02;

/// Exponentially weighted sums of one service's (requests per pod, CPU %).
#[derive(Debug, Default, Clone)]
pub struct OnlineCapacity {
    w: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    yy: f64,
    first: Option<f64>,
    last: f64,
}

impl OnlineCapacity {
    /// Adds a row at `t` seconds: its request rate, CPU % and replicas (rows without replicas
    /// or with a value that is not a number say nothing and are skipped).
    pub fn push(&mut self, t: f64, rps: f64, cpu: f64, replicas: f64) {
        if !(rps.is_finite() && cpu.is_finite() && replicas > 0.0) {
            return;
        }
        if self.first.is_some() {
            let keep = 0.5f64.powf((t - self.last).max(0.0) / HALF_LIFE_SECONDS);
            for s in [&mut self.w, &mut self.x, &mut self.y, &mut self.xx, &mut self.xy, &mut self.yy] {
                *s *= keep;
            }
        }
        self.first.get_or_insert(t);
        self.last = t;
        let x = rps / replicas;
        self.w += 1.0;
        self.x += x;
        self.y += cpu;
        self.xx += x * x;
        self.xy += x * cpu;
        self.yy += cpu * cpu;
    }

    /// Seconds between the first and the last row taken.
    pub fn span_seconds(&self) -> f64 {
        self.first.map_or(0.0, |f| self.last - f)
    }

    /// The fit, once rows span `min_seconds` and CPU rises with load; none before.
    pub fn fit(&self, min_seconds: f64) -> Option<Capacity> {
        if self.first.is_none() || self.span_seconds() < min_seconds || self.w < 3.0 {
            return None;
        }
        let (mx, my) = (self.x / self.w, self.y / self.w);
        let sxx = self.xx - self.w * mx * mx;
        let sxy = self.xy - self.w * mx * my;
        let syy = self.yy - self.w * my * my;
        // A load per pod that varied by under 2 % (its standard deviation against its mean) has
        // no spread to fit on: the slope would be the rounding of the rows.
        if sxx <= (MIN_SPREAD * mx).powi(2) * self.w {
            return None;
        }
        Capacity::from_moments((mx, my), (sxx, sxy, syy), self.w.round() as usize)
    }

    /// Requests/s one pod serves at `aim` CPU %, once fitted; none where the fit leaves no
    /// headroom under `aim` (the labels then give the service no capacity either).
    pub fn rps_per_pod(&self, aim: f64, min_seconds: f64) -> Option<f64> {
        let c = self.fit(min_seconds)?;
        (aim > c.base).then(|| (aim - c.base) / c.slope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_online_fit_finds_the_capacity_the_offline_fit_finds_and_waits_for_its_minutes() {
        let (mut online, mut rps, mut cpu, mut reps) = (OnlineCapacity::default(), vec![], vec![], vec![]);
        for k in 0..120 {
            let t = k as f64 * 30.0;
            let load = 100.0 + 80.0 * (k as f64 / 9.0).sin();
            let r = 1.0 + (k / 30) as f64;
            let c = 12.0 + 0.6 * load / r;
            online.push(t, load, c, r);
            rps.push(load);
            cpu.push(c);
            reps.push(r);
            if t < 1800.0 {
                assert!(online.rps_per_pod(66.0, 1800.0).is_none(), "not before 30 minutes of rows (t = {t})");
            }
        }
        let offline = Capacity::fit(&rps, &cpu, &reps).unwrap();
        let fitted = online.fit(1800.0).unwrap();
        assert!((fitted.slope - offline.slope).abs() < 1e-6 && (fitted.base - offline.base).abs() < 1e-6, "{fitted:?} vs {offline:?}");
        assert!((online.rps_per_pod(66.0, 1800.0).unwrap() - 90.0).abs() < 1e-6);
        // A row without replicas or with NaN is skipped; a service whose CPU never moves has none.
        let before = online.fit(0.0);
        online.push(4000.0, f64::NAN, 50.0, 1.0);
        online.push(4000.0, 10.0, 50.0, 0.0);
        assert_eq!(online.fit(0.0), before);
        let mut flat = OnlineCapacity::default();
        for k in 0..200 {
            flat.push(k as f64 * 30.0, 100.0, 40.0, 2.0);
        }
        assert!(flat.fit(0.0).is_none());
        // Load per pod within rounding of constant (±0.5 %): CPU that follows it is no fit either.
        let mut jitter = OnlineCapacity::default();
        for k in 0..200 {
            let load = if k % 2 == 0 { 199.0 } else { 201.0 };
            jitter.push(k as f64 * 30.0, load, 10.0 + 0.5 * load / 2.0, 2.0);
        }
        assert!(jitter.fit(0.0).is_none());
        // Older rows fade: a release that doubles the CPU per request is followed within hours.
        for k in 120..(120 + 2 * 24 * 120) {
            let load = 100.0 + 80.0 * (k as f64 / 9.0).sin();
            online.push(k as f64 * 30.0, load, 12.0 + 1.2 * load / 2.0, 2.0);
        }
        assert!((online.fit(0.0).unwrap().slope - 1.2).abs() < 0.01);
    }
}
