//! A real request-rate trace (`time,value` CSV, optionally gzipped), resampled on demand.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub struct Trace {
    /// Seconds since the epoch, ascending.
    times: Vec<i64>,
    /// Load normalised so that the trace's 99th percentile is 1.
    load: Vec<f64>,
    pub name: String,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Trace> {
        let mut raw = Vec::new();
        let mut file = std::fs::File::open(path).with_context(|| {
            format!(
                "opening trace {} (a relative path is taken from the current folder: run from the project \
                 folder, or pass --trace with a `time,value` CSV such as data/traces/worldcup98/wc98_requests_per_minute.csv.gz)",
                path.display()
            )
        })?;
        file.read_to_end(&mut raw).with_context(|| format!("reading trace {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "gz") {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).with_context(|| format!("decompressing {}", path.display()))?;
            raw = out;
        }
        let text = String::from_utf8_lossy(&raw);
        let mut points: Vec<(i64, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let mut it = line.split(',');
            let (Some(t), Some(v)) = (it.next(), it.next()) else { continue };
            let t = chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
                .with_context(|| format!("{}:{}: `{t}` is not a YYYY-MM-DD HH:MM:SS time", path.display(), i + 1))?;
            let v: f64 = v.trim().parse().with_context(|| format!("{}:{}: `{v}` is not a number", path.display(), i + 1))?;
            if v.is_finite() && v >= 0.0 {
                points.push((t.and_utc().timestamp(), v));
            }
        }
        if points.len() < 2 {
            bail!("trace {} has fewer than two points", path.display());
        }
        points.sort_by_key(|p| p.0);
        let mut sorted: Vec<f64> = points.iter().map(|p| p.1).collect();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[(sorted.len() as f64 * 0.99) as usize].max(1e-9);
        Ok(Trace {
            times: points.iter().map(|p| p.0).collect(),
            load: points.iter().map(|p| p.1 / p99).collect(),
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        })
    }

    pub fn start(&self) -> i64 {
        self.times[0]
    }

    pub fn span(&self) -> i64 {
        self.times[self.times.len() - 1] - self.times[0]
    }

    /// Normalised load at `t` seconds after the trace's start, wrapping around its end and
    /// interpolating linearly between points (gaps in the trace are bridged).
    pub fn at(&self, offset: i64) -> f64 {
        let t = self.start() + offset.rem_euclid(self.span().max(1));
        let i = self.times.partition_point(|&x| x <= t);
        if i == 0 {
            return self.load[0];
        }
        if i >= self.times.len() {
            return self.load[self.load.len() - 1];
        }
        let (t0, t1) = (self.times[i - 1], self.times[i]);
        let w = (t - t0) as f64 / (t1 - t0).max(1) as f64;
        self.load[i - 1] * (1.0 - w) + self.load[i] * w
    }
}
