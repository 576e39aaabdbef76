//! `pipeline simulate`: realistic 23-column metrics for services driven by a real
//! request-rate trace, each simulated with pods, an HPA and queueing, and written the way
//! the collector writes them (every ~30 s with jitter, 06:00–22:00, one CSV per day).

pub mod closed_loop;
pub mod oracle;
pub mod scaler;
pub mod service;
mod trace;
pub mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::collect::derived::{Window, isoformat, round};
use crate::rng::Rng;
use closed_loop::Tally;
pub use scaler::ScalerSpec;
use service::{Profile, Sample, Service, default_profiles};
pub use trace::Trace;
pub use world::World;

/// Where files go: `DIR/metrics_YYYYMMDD.csv` or `DIR/YYYY/MM/metrics_YYYYMMDD.csv` (as on S3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Flat,
    S3,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub days: u32,
    /// Days before the first of `days` that every scaler lives through with the services' own
    /// HPA deciding: a decision server sees their rows, as one running for a while has its
    /// services' yesterday; nothing of them is counted, judged or written.
    pub warm_up_days: u32,
    pub out: PathBuf,
    pub trace: PathBuf,
    pub services: Vec<String>,
    pub seed: u64,
    pub layout: Layout,
    pub start: chrono::NaiveDate,
    pub gzip: bool,
    /// The HPA every service runs (at its own target, or the internal scaler's), which also
    /// acts on a decision server's answers: the one model the replay judges with.
    pub hpa: crate::hpa::Hpa,
    /// Every service's load times this (1: the trace's 99th percentile at its profile's peak).
    pub load: f64,
    /// What the cluster is like: start-ups, capacity curve, noise, flash crowds, maxReplicas.
    /// Its start-up is the HPA's (`hpa.pod_startup_seconds` is set from it).
    pub world: World,
    /// Seconds into the first judged day from which a decision server sees the services' rows
    /// (their own HPA scales them before, as before a team pointed them at the autoscaler);
    /// none: from the first step of the simulation.
    pub server_from: Option<f64>,
    /// The part of each judged day, in seconds since midnight, whose steps are counted and
    /// judged; none: the whole day.
    pub judge: Option<(f64, f64)>,
}

/// Who sets the replicas while the simulation runs.
pub enum Decider<'a> {
    /// The internal reactive HPA, at each service's own target or this one.
    Hpa(Option<f64>),
    /// A decision server, sent every service's row each step (all day, not only the hours
    /// the files keep), whose answers take effect at the next step.
    Server(&'a mut scaler::Server),
    /// The forecast that knew the future exactly (`oracle::Oracle`), answering as a server.
    Oracle,
}

const STEP_S: f64 = 30.0;
const DAY_START_H: f64 = 6.0;
const DAY_END_H: f64 = 22.0;
/// The nightly deploy restarts every pod (and so clears slow memory leaks) at 03:00.
const ROLLOUT_H: f64 = 3.0;

/// What was written, per service, so a user can see the data is worth training on.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: Vec<PathBuf>,
    pub rows: BTreeMap<String, u64>,
    pub replicas: BTreeMap<String, (u32, u32)>,
    /// (service, cpu %, ram %, p95 ms, replicas) of every written row, in time order.
    pub samples: Vec<(String, f64, f64, f64, u32)>,
    /// What each service went through, every step of the day (not only the written rows).
    pub tallies: BTreeMap<String, Tally>,
}

/// Profiles for the requested services: the known seven by name, `NEW=KNOWN` for one of them
/// under a new name (the same service, renamed: what a model trained on the old name never
/// saw), and a plausible one derived from the name for any other, so new services can be
/// simulated too.
pub fn profiles_for(names: &[String]) -> Vec<Profile> {
    let defaults = default_profiles();
    if names.is_empty() {
        return defaults;
    }
    names
        .iter()
        .map(|n| match n.split_once('=').and_then(|(new, known)| Some((new, defaults.iter().find(|p| p.name == known)?))) {
            Some((new, p)) => Profile { name: new.to_string(), ..p.clone() },
            None => match defaults.iter().find(|p| &p.name == n) {
                Some(p) => p.clone(),
                None => {
                    let h = blake3::hash(n.as_bytes()).as_bytes()[0] as i64;
                    let mut p = defaults[(h as usize) % defaults.len()].clone();
                    p.name = n.clone();
                    p.trace_offset_days = h % 7;
                    p.lag_s = (h % 5) * 60;
                    p
                }
            },
        })
        .collect()
}

/// Write `opts.days` of metrics files, the services scaled by the internal HPA.
pub fn simulate(opts: &Options) -> Result<Summary> {
    run(opts, Decider::Hpa(None), Some(&opts.out), closed_loop::DEFAULT_TARGET_UTILIZATION)
}

/// Simulate with `decider` setting the replicas; files go to `out` (none: only the tallies),
/// and a service counts as under-provisioned while its load needs more than
/// `target_utilization` % CPU of its ready pods.
pub fn run(opts: &Options, mut decider: Decider<'_>, out: Option<&Path>, target_utilization: f64) -> Result<Summary> {
    if opts.days == 0 {
        bail!("--days must be at least 1");
    }
    let trace = Trace::load(&opts.trace)?;
    let world = &opts.world;
    world.check().map_err(|e| anyhow::anyhow!("the world: {e}"))?;
    let mut profiles = profiles_for(&opts.services);
    for p in &mut profiles {
        p.peak_rps *= opts.load;
        p.noise *= world.noise;
        p.max_replicas = world.max_replicas(p.min_replicas, p.max_replicas);
        if let Decider::Hpa(Some(t)) = decider {
            p.target_cpu = t;
        }
    }
    // Start the trace at a midnight near its middle: the busy part of most traces.
    let anchor = ((trace.start() + trace.span() * 45 / 100) / 86_400 * 86_400) - trace.start();
    let start = opts.start.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    // Warm-up days come first; days are counted from the first of them.
    let (warm, total) = (opts.warm_up_days as i64, opts.warm_up_days as i64 + opts.days as i64);
    let first = start - warm * 86_400;
    let node_cores: f64 = profiles.iter().map(|p| p.max_replicas as f64 * p.cpu_request).sum::<f64>() * 0.5;
    let node_mib: f64 = profiles.iter().map(|p| p.max_replicas as f64 * p.ram_request).sum::<f64>() * 0.6;

    let mut rng = Rng::new(opts.seed, 0);
    // Flash crowds have a stream of their own: the same days for every scaler and service count.
    let mut crowds = Rng::new(opts.seed, 1 << 41);
    let crowds: Vec<_> = (0..total).map(|day| world.flash_crowd(&mut crowds, (first + day * 86_400) as f64)).collect();
    let steps = (86_400.0 / STEP_S) as i64;
    // The normalised load service `p` meets at `now`, on day `day`.
    let load_at = |p: &Profile, day: i64, now: f64| {
        let offset = anchor + (now as i64 - start) + p.trace_offset_days * 86_400 - p.lag_s;
        trace.at(offset) * crowds[day as usize].map_or(1.0, |c| c.multiplier(now))
    };
    // The world's release lands on the first judged day, so warm-up days come before it.
    let release_at = start as f64 + world.release_hour * 3600.0;
    let oracle = matches!(decider, Decider::Oracle).then(|| {
        let demands: Vec<Vec<f64>> = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d = service::Demand::new(opts.seed, i as u64);
                (0..total * steps).map(|g| d.next(p, load_at(p, g / steps, (first + g / steps * 86_400) as f64 + (g % steps) as f64 * STEP_S))).collect()
            })
            .collect();
        // The first step at or after the release, as a service meets it (`now >= release_at`).
        let release_step = ((release_at - first as f64) / STEP_S).ceil() as usize;
        oracle::Oracle::new(&profiles, &demands, world, target_utilization, STEP_S, release_step)
    });
    let mut services: Vec<Service> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let hpa = crate::hpa::Hpa { target: p.target_cpu, pod_startup_seconds: world.pod_startup_seconds, ..opts.hpa.clone() };
            let mut s = Service::in_world(p.clone(), hpa, world, first as f64, opts.seed, i as u64);
            s.release_at = release_at;
            s
        })
        .collect();
    let mut windows: Vec<[Window; 3]> = vec![Default::default(); services.len()];
    let mut summary = Summary::default();
    let (mut cpu_pressure, mut mem_pressure) = (false, false);
    let feed = matches!(decider, Decider::Server(_));
    let asks = !matches!(decider, Decider::Hpa(_));
    let joins = opts.server_from.map_or(f64::NEG_INFINITY, |at| start as f64 + at);
    let counted = |k: i64| opts.judge.is_none_or(|(from, to)| (from..to).contains(&(k as f64 * STEP_S)));
    let mut line = String::with_capacity(512);
    let mut batch: Vec<serde_json::Value> = Vec::with_capacity(services.len());

    for day in 0..total {
        let day_start = first + day * 86_400;
        let judged = day >= warm;
        let date = chrono::DateTime::from_timestamp(day_start, 0).unwrap().date_naive();
        let weekend = matches!(chrono::Datelike::weekday(&date), chrono::Weekday::Sat | chrono::Weekday::Sun);
        let mut file = String::with_capacity(4 << 20);
        file.push_str(&crate::row::column_names().join(","));
        file.push('\n');
        for k in 0..steps {
            let now = day_start as f64 + k as f64 * STEP_S;
            // Judged days write their files whole; their tallies count the judged part.
            let tallied = judged && counted(k);
            let joined = now >= joins;
            let hour = k as f64 * STEP_S / 3600.0;
            let collect = (DAY_START_H..DAY_END_H).contains(&hour);
            // The collector wakes late by up to ~2 s and visits services one after another.
            let wake = now + rng.uniform() * 2.0;
            let (mut cores, mut mib) = (0.0, 0.0);
            batch.clear();
            for (i, svc) in services.iter_mut().enumerate() {
                if k as f64 * STEP_S == ROLLOUT_H * 3600.0 {
                    svc.rollout(now);
                }
                let sample = svc.step(now, STEP_S, load_at(&svc.profile, day, now));
                cores += sample.cpu_cores;
                mib += sample.ram_mib;
                if tallied {
                    summary.tallies.entry(svc.profile.name.clone()).or_default().add(&sample, STEP_S, target_utilization);
                }
                // Drawn every step, written or not, so the timestamps are the same whoever scales.
                let ts = ((wake + i as f64 * 0.035 + rng.uniform() * 0.02) * 1e6).round() as i64;
                if collect || feed {
                    line.clear();
                    write_row(&mut line, ts, &svc.profile, &sample, &mut windows[i], weekend, cpu_pressure, mem_pressure);
                    if feed && joined {
                        batch.push(row_json(&line));
                    }
                }
                if collect && judged {
                    file.push_str(&line);
                    *summary.rows.entry(svc.profile.name.clone()).or_insert(0) += 1;
                    let r = summary.replicas.entry(svc.profile.name.clone()).or_insert((u32::MAX, 0));
                    *r = (r.0.min(sample.replicas), r.1.max(sample.replicas));
                    summary.samples.push((
                        svc.profile.name.clone(),
                        round(sample.cpu_percent, 2),
                        round(sample.ram_percent, 2),
                        round(sample.p95_ms, 2),
                        sample.replicas,
                    ));
                }
            }
            // The server's answers to this step's rows act at the next step, as a controller's
            // decision acts after the metrics it read.
            if let Decider::Server(server) = &mut decider
                && joined
            {
                let answers = server.decide(&batch);
                for (svc, answer) in services.iter_mut().zip(answers).filter(|_| judged) {
                    svc.wanted = Some(answer.replicas.unwrap_or(svc.replicas()));
                    if !tallied {
                        continue;
                    }
                    let tally = summary.tallies.entry(svc.profile.name.clone()).or_default();
                    if answer.fallback {
                        tally.fallbacks += 1;
                        tally.first_fallback_minute.get_or_insert((now - start as f64) / 60.0);
                    }
                }
            }
            if let Some(oracle) = oracle.as_ref().filter(|_| judged) {
                for (i, svc) in services.iter_mut().enumerate() {
                    svc.wanted = Some(oracle.wanted(i, (day * steps + k) as usize, (svc.profile.min_replicas, svc.profile.max_replicas)));
                }
            }
            if asks && tallied && (joined || matches!(decider, Decider::Oracle)) {
                for svc in &services {
                    summary.tallies.entry(svc.profile.name.clone()).or_default().decisions += 1;
                }
            }
            // Node pressure follows the whole cluster's use, as kubelet reports it.
            cpu_pressure = cores > 0.85 * node_cores;
            mem_pressure = mib > 0.85 * node_mib;
        }
        if let Some(out) = out.filter(|_| judged) {
            let path = file_path(out, opts.layout, date, opts.gzip);
            write_file(&path, file.as_bytes(), opts.gzip)?;
            summary.files.push(path);
        }
    }
    Ok(summary)
}

/// A written CSV line as the JSON row a collector would post: the same values, by name.
fn row_json(line: &str) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    for (name, value) in crate::row::column_names().into_iter().zip(line.trim_end().split(',')) {
        let v = match value.parse::<f64>() {
            Ok(x) if name != crate::row::TIMESTAMP && name != crate::row::SERVICE => serde_json::json!(x),
            _ => serde_json::json!(value),
        };
        row.insert(name.to_string(), v);
    }
    serde_json::Value::Object(row)
}

#[allow(clippy::too_many_arguments)]
fn write_row(out: &mut String, ts: i64, p: &Profile, s: &Sample, w: &mut [Window; 3], weekend: bool, cpu_pressure: bool, mem_pressure: bool) {
    use std::fmt::Write as _;
    let cpu = round(s.cpu_percent, 2);
    let ram = round(s.ram_percent, 2);
    let rps = round(s.rps, 2);
    w[0].push(cpu);
    w[1].push(ram);
    w[2].push(rps);
    let _ = writeln!(
        out,
        "{},{},{:?},{:?},{:?},{:?},{:?},{:?},{:?},{:?},{:?},{},{},{},{:?},{:?},{:?},{:?},{},{:?},{},{},{}",
        isoformat(ts),
        p.name,
        cpu,
        round(w[0].mean(), 2),
        round(w[0].slope(), 4),
        ram,
        round(w[1].mean(), 2),
        round(w[1].slope(), 4),
        rps,
        round(w[2].mean(), 2),
        round(s.p95_ms, 2),
        s.replicas,
        0,
        weekend as u8,
        p.cpu_request,
        p.cpu_limit,
        p.ram_request,
        p.ram_limit,
        s.queue.round() as i64,
        round(s.error_rate, 4),
        s.restarts,
        cpu_pressure as u8,
        mem_pressure as u8,
    );
}

fn file_path(out: &Path, layout: Layout, date: chrono::NaiveDate, gzip: bool) -> PathBuf {
    let name = format!("metrics_{}.csv{}", date.format("%Y%m%d"), if gzip { ".gz" } else { "" });
    match layout {
        Layout::Flat => out.join(name),
        Layout::S3 => out.join(date.format("%Y").to_string()).join(date.format("%m").to_string()).join(name),
    }
}

/// Write through a temp file and rename, so a reader never sees half a day.
fn write_file(path: &Path, bytes: &[u8], gzip: bool) -> Result<()> {
    let data = if gzip {
        // A fixed header (no mtime, no name) keeps the bytes reproducible.
        let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes)?;
        gz.finish()?
    } else {
        bytes.to_vec()
    };
    crate::io::fs::write_atomic(path, &data).with_context(|| format!("writing {}", path.display()))
}

/// How the seed rules (spec thresholds, replicas 1..10) would label each row that has 10
/// future rows, per service: (scale up, scale down, keep). Simulated data is only worth
/// training on when all three occur.
pub fn label_mix(rows: &[(String, f64, f64, f64, u32)]) -> BTreeMap<String, (u64, u64, u64)> {
    let mut by: BTreeMap<String, Vec<(f64, f64, f64, u32)>> = BTreeMap::new();
    for (s, cpu, ram, rt, reps) in rows {
        by.entry(s.clone()).or_default().push((*cpu, *ram, *rt, *reps));
    }
    let mut out = BTreeMap::new();
    for (s, v) in by {
        let mut c = (0, 0, 0);
        for i in 0..v.len().saturating_sub(10) {
            let f = &v[i + 1..=i + 10];
            let cpu = f.iter().map(|x| x.0).fold(f64::MIN, f64::max);
            let ram = f.iter().map(|x| x.1).fold(f64::MIN, f64::max);
            let mut rts: Vec<f64> = f.iter().map(|x| x.2).collect();
            rts.sort_by(f64::total_cmp);
            let pos: f64 = 0.95 * 9.0;
            let rt = rts[pos as usize] + (rts[pos as usize + 1] - rts[pos as usize]) * (pos - pos.floor());
            let current = v[i].3;
            let mut target = current;
            if cpu > 70.0 || ram > 75.0 || rt > 500.0 {
                target = (current + 1).min(10);
            }
            if cpu < 30.0 && ram < 35.0 {
                target = current.saturating_sub(1).max(1);
            }
            match target.cmp(&current) {
                std::cmp::Ordering::Greater => c.0 += 1,
                std::cmp::Ordering::Less => c.1 += 1,
                std::cmp::Ordering::Equal => c.2 += 1,
            }
        }
        out.insert(s, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_service_can_be_simulated_under_a_new_name() {
        let known = profiles_for(&["order".into()]);
        let renamed = profiles_for(&["checkout=order".into(), "payments".into()]);
        assert_eq!(renamed[0].name, "checkout");
        let as_order = Profile { name: "order".into(), ..renamed[0].clone() };
        assert_eq!(format!("{as_order:?}"), format!("{:?}", known[0]), "the same service, renamed");
        assert_eq!(renamed[1].name, "payments");
    }

    #[test]
    fn a_written_line_is_posted_as_the_row_a_collector_sends() {
        let p = default_profiles().remove(0);
        let s = Sample {
            cpu_percent: 61.234,
            ram_percent: 40.0,
            rps: 120.5,
            p95_ms: 80.0,
            replicas: 3,
            queue: 0.4,
            error_rate: 0.002,
            restarts: 1,
            ..Sample::default()
        };
        let mut line = String::new();
        write_row(&mut line, 1_759_737_600_250_000, &p, &s, &mut Default::default(), false, true, false);
        let v = row_json(&line);
        assert_eq!(v["timestamp"], "2025-10-06T08:00:00.250000");
        assert_eq!(v["service_name"], "frontend");
        assert_eq!((v["cpu_usage_percent"].as_f64(), v["replica_count"].as_f64(), v["node_cpu_pressure_flag"].as_f64()), (Some(61.23), Some(3.0), Some(1.0)));
        let row = crate::serving::features::RawRow::from_json(&v).unwrap();
        assert_eq!((row.service.as_str(), row.replicas(), row.get("cpu_request")), ("frontend", 3.0, p.cpu_request));
    }
}
