//! Load forecasts the predictive autoscalers teams know use, as baselines for the models: the
//! seasonal naive forecast and Holt-Winters on a service's request rate. Each gives, at a row,
//! the peak request rate expected once pods asked for now are ready, from rows up to that one.

use super::Params;

const DAY: f64 = 86_400.0;
const WEEK: f64 = 7.0 * DAY;
/// Holt-Winters' seasonal profile has one value per this many seconds of the day: fine enough
/// for daily ramps, coarse enough that each value is updated several times a day.
const SLOT: f64 = 300.0;

/// A service's request rate, every row it has (training and hold-out), in time order.
pub struct Load<'a> {
    /// Seconds since the epoch.
    pub seconds: &'a [f64],
    pub rps: &'a [f64],
}

impl Load<'_> {
    /// Highest rate of the rows in `[from, to]`, if there are any.
    fn peak(&self, from: f64, to: f64) -> Option<f64> {
        let a = self.seconds.partition_point(|&t| t < from);
        let b = self.seconds.partition_point(|&t| t <= to);
        self.rps[a..b].iter().copied().filter(|v| v.is_finite()).reduce(f64::max)
    }
}

/// The window a decision at `t` provisions for: from when its pods are ready, `horizon` long.
fn ahead(t: f64, p: &Params) -> (f64, f64) {
    (t + p.pod_startup_seconds, t + p.pod_startup_seconds + p.forecast_horizon_seconds)
}

/// At each row `at[k]` of `load`: the peak its window actually had, what a forecast that knew
/// the future would provision for; `None` where the rows end before the window does.
pub fn realized(load: &Load, at: &[usize], p: &Params) -> Vec<Option<f64>> {
    let last = load.seconds.last().copied().unwrap_or(f64::NEG_INFINITY);
    at.iter()
        .map(|&i| {
            let (from, to) = ahead(load.seconds[i], p);
            if to > last { None } else { load.peak(from, to) }
        })
        .collect()
}

/// At each row `at[k]` of `load`: the peak of the same window one week earlier when the data
/// reaches back a week, else one day earlier; `None` before a day of data.
pub fn seasonal_naive(load: &Load, at: &[usize], p: &Params) -> Vec<Option<f64>> {
    let first = load.seconds.first().copied().unwrap_or(0.0);
    at.iter()
        .map(|&i| {
            let (from, to) = ahead(load.seconds[i], p);
            let season = [WEEK, DAY].into_iter().find(|s| from - s >= first)?;
            load.peak(from - season, to - season)
        })
        .collect()
}

/// Additive Holt-Winters state: level and trend (per second) of the rate, and its daily profile.
#[derive(Debug, Clone)]
struct HoltWinters {
    alpha: f64,
    beta: f64,
    gamma: f64,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    last: f64,
}

fn slot(t: f64) -> usize {
    (t.rem_euclid(DAY) / SLOT) as usize
}

impl HoltWinters {
    /// Level and profile from the first day of rows (those before `first + DAY`).
    fn start(load: &Load, alpha: f64, beta: f64, gamma: f64) -> (HoltWinters, usize) {
        let first = load.seconds[0];
        let n = load.seconds.partition_point(|&t| t < first + DAY);
        let slots = (DAY / SLOT) as usize;
        let (mut sum, mut count) = (vec![0.0; slots], vec![0usize; slots]);
        for i in 0..n {
            sum[slot(load.seconds[i])] += load.rps[i];
            count[slot(load.seconds[i])] += 1;
        }
        let level = load.rps[..n].iter().sum::<f64>() / n.max(1) as f64;
        let season = sum.iter().zip(&count).map(|(s, &c)| if c > 0 { s / c as f64 - level } else { 0.0 }).collect();
        (HoltWinters { alpha, beta, gamma, level, trend: 0.0, season, last: load.seconds[n.max(1) - 1] }, n)
    }

    fn forecast(&self, t: f64) -> f64 {
        (self.level + self.trend * (t - self.last) + self.season[slot(t)]).max(0.0)
    }

    fn observe(&mut self, t: f64, y: f64) {
        let dt = (t - self.last).max(0.0);
        let s = slot(t);
        let level = self.alpha * (y - self.season[s]) + (1.0 - self.alpha) * (self.level + self.trend * dt);
        if dt > 0.0 {
            self.trend = self.beta * (level - self.level) / dt + (1.0 - self.beta) * self.trend;
        }
        self.season[s] = self.gamma * (y - level) + (1.0 - self.gamma) * self.season[s];
        self.level = level;
        self.last = t;
    }
}

/// At each row `at[k]` of `load` (all after `fit_until`, the training rows' end): the peak
/// Holt-Winters forecast of the window ahead, updated with every row up to that one. Smoothing
/// weights are chosen on the training rows (least squared one-step error); `None` with less
/// than two days of training rows.
pub fn holt_winters(load: &Load, fit_until: usize, at: &[usize], p: &Params) -> Option<Vec<f64>> {
    if fit_until < 3 || load.seconds[fit_until - 1] - load.seconds[0] < 2.0 * DAY {
        return None;
    }
    let mut best: Option<(f64, HoltWinters)> = None;
    for alpha in [0.05, 0.2, 0.5] {
        for beta in [0.0, 0.01, 0.1] {
            for gamma in [0.05, 0.2, 0.5] {
                let (mut hw, from) = HoltWinters::start(load, alpha, beta, gamma);
                let mut sse = 0.0;
                for i in from..fit_until {
                    let e = load.rps[i] - hw.forecast(load.seconds[i]);
                    sse += e * e;
                    hw.observe(load.seconds[i], load.rps[i]);
                }
                if sse.is_finite() && best.as_ref().is_none_or(|(b, _)| sse < *b) {
                    best = Some((sse, hw));
                }
            }
        }
    }
    let (_, mut hw) = best?;
    let mut next = fit_until;
    let mut out = Vec::with_capacity(at.len());
    for &i in at {
        while next <= i {
            hw.observe(load.seconds[next], load.rps[next]);
            next += 1;
        }
        let (from, to) = ahead(load.seconds[i], p);
        let samples = ((to - from) / 30.0).ceil().max(0.0) as usize;
        out.push((0..=samples).map(|k| hw.forecast((from + 30.0 * k as f64).min(to))).fold(0.0, f64::max));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `days` of 30 s rows from midnight: 100 rps at night, 400 from 08:00 to 20:00.
    fn daily(days: usize) -> (Vec<f64>, Vec<f64>) {
        let t: Vec<f64> = (0..days * 2880).map(|k| 30.0 * k as f64).collect();
        let rps = t.iter().map(|&t| if (8.0 * 3600.0..20.0 * 3600.0).contains(&t.rem_euclid(DAY)) { 400.0 } else { 100.0 }).collect();
        (t, rps)
    }

    #[test]
    fn seasonal_naive_sees_the_ramp_a_day_ahead() {
        let (t, rps) = daily(3);
        let load = Load { seconds: &t, rps: &rps };
        let p = Params::default();
        // Day 2, 07:57: the window ahead (07:58–08:03) held 400 rps a day earlier.
        let at = [2880 + (7 * 3600 + 57 * 60) / 30, 100];
        let f = seasonal_naive(&load, &at, &p);
        assert_eq!(f[0], Some(400.0));
        assert_eq!(f[1], None, "no day of data before the first day");
    }

    #[test]
    fn holt_winters_learns_the_daily_profile() {
        let (t, rps) = daily(4);
        let load = Load { seconds: &t, rps: &rps };
        let p = Params::default();
        let fit_until = 3 * 2880;
        let at = [fit_until + (7 * 3600 + 57 * 60) / 30, fit_until + 3 * 3600 / 30];
        let f = holt_winters(&load, fit_until, &at, &p).unwrap();
        assert!((f[0] - 400.0).abs() < 20.0, "the ramp at 08:00 is forecast from 07:57: {f:?}");
        assert!((f[1] - 100.0).abs() < 20.0, "quiet at 03:00: {f:?}");
        assert!(holt_winters(&load, 2880, &at, &p).is_none(), "one day is not enough to fit");
    }
}
