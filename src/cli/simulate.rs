//! `pipeline simulate`: write realistic metrics files, optionally with a decision server in the
//! loop, and say what the services went through.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::exit;
use crate::simulate::closed_loop::{self, Comparison, Tally};
use crate::simulate::{self, Options, ScalerSpec, World, label_mix, world};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Number of days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Days lived through before the judged ones, the services' own HPA deciding: a --scaler
    /// server sees their rows (its services' yesterday, as one that has been running has);
    /// nothing of them is counted or written.
    #[arg(long, default_value_t = 0, value_name = "DAYS")]
    warm_up_days: u32,
    /// A --scaler server sees the services' rows only from this time of the first judged day
    /// (their own HPA scales them before): services pointed at the autoscaler mid-day, whose
    /// first row the server sees then. With `--judge` and renamed services (`NEW=KNOWN`), the
    /// first hour of services no model knows.
    #[arg(long, value_name = "HH:MM", value_parser = time_of_day)]
    server_from: Option<f64>,
    /// Count and judge only this part of each judged day (`12:00-13:00`); the files still hold
    /// the whole day.
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = part_of_day)]
    judge: Option<(f64, f64)>,
    /// Output folder (with several --scaler values, one subfolder per scaler).
    #[arg(long, value_name = "DIR", required_unless_present = "list_worlds")]
    out: Option<PathBuf>,
    /// Request-rate trace: CSV `time,value` (YYYY-MM-DD HH:MM:SS), optionally gzipped.
    #[arg(long, value_name = "FILE", default_value = "data/traces/worldcup98/wc98_requests_per_minute.csv.gz")]
    trace: PathBuf,
    /// Services to simulate, comma separated [default: the seven of the old system];
    /// `NEW=KNOWN` simulates one of the seven under a new name (`checkout=order`).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    services: Vec<String>,
    /// Random seed: the same seed and options give the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// `flat`: DIR/metrics_YYYYMMDD.csv; `s3`: DIR/YYYY/MM/metrics_YYYYMMDD.csv.
    #[arg(long, value_enum, default_value = "s3")]
    layout: simulate::Layout,
    /// First day (YYYY-MM-DD).
    #[arg(long, default_value = "2025-10-06", value_name = "DATE")]
    start: chrono::NaiveDate,
    /// Write gzip-compressed files (`.csv.gz`), which ingest reads as well.
    #[arg(long)]
    gzip: bool,
    /// Who sets the replicas: `hpa` (the internal reactive HPA at each service's 60 %),
    /// `hpa:TARGET`, a decision server's URL (`http://127.0.0.1:8080`, `pipeline serve`), or
    /// `oracle`: the forecast that knew the future exactly, the limit of what any forecast brings.
    /// Repeat it to compare policies on the same load and seed; any --scaler also prints the
    /// internal HPA's frontier (targets 40–80 %) and each policy's margin below it.
    #[arg(long, value_name = "hpa[:TARGET]|URL")]
    scaler: Vec<ScalerSpec>,
    /// Bearer token for a scaler server started with --token.
    #[arg(long, env = "PIPELINE_SERVE_TOKEN", hide_env_values = true)]
    scaler_token: Option<String>,
    /// What the cluster is like beyond its load (start-ups, a capacity knee, noise, flash
    /// crowds, maxReplicas, initial replicas): one of the named worlds (--list-worlds;
    /// docs/worlds.md says where each value comes from).
    #[arg(long, default_value = "default", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(world::NAMES))]
    world: String,
    /// One setting of the world, as `FIELD=VALUE` (repeatable): `pod_startup_seconds`,
    /// `startup_spread`, `knee`, `knee_slowdown`, `noise`, `flash_crowd_chance`,
    /// `flash_crowd_factor=[2,5]`, `flash_crowd_minutes=[20,60]`, `max_replicas_factor`,
    /// `initial_replicas`.
    #[arg(long = "world-set", value_name = "FIELD=VALUE", value_parser = crate::dag::spec::parse_override)]
    world_set: Vec<(String, serde_json::Value)>,
    /// Print the named worlds (name, pod start-up, what it is), one a line, and exit.
    #[arg(long)]
    list_worlds: bool,
    /// Seconds from a new pod's scheduling to ready [default: the world's, 60 in `default`].
    #[arg(long, value_name = "SECONDS")]
    pod_startup_seconds: Option<f64>,
    /// Scale down only to the highest decision of this many seconds, as the HPA does.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    stabilization_seconds: f64,
    /// Any other setting of the HPA that scales the services (and acts on a --scaler server's
    /// answers), as `FIELD=VALUE` (repeatable): `sync_seconds`, `tolerance`,
    /// `metrics_window_seconds`, `metrics_delay_seconds`, `scale_up_stabilization_seconds`,
    /// `scale_up.percent`, `scale_up.pods`, `scale_up.period_seconds`, `scale_down.…`; `null`
    /// turns a rate policy off. Defaults: Kubernetes' (a 15 s sync; up by 100 % or 4 pods per
    /// 15 s; down by 100 % per 15 s).
    #[arg(long = "hpa", value_name = "FIELD=VALUE", value_parser = crate::dag::spec::parse_override)]
    hpa: Vec<(String, serde_json::Value)>,
    /// Every service's load times this: 1 puts the trace's 99th percentile at the load a
    /// busy hour brings each service (about 70 % of its maxReplicas at its HPA target); 1.5 asks
    /// what a policy does when traffic outgrows the cluster.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    load: f64,
    /// CPU % of the ready pods' request over which a service counts as under-provisioned.
    #[arg(long, default_value_t = closed_loop::DEFAULT_TARGET_UTILIZATION, value_name = "PERCENT")]
    target_utilization: f64,
    /// Also write the comparison as JSON here.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// `base` with `FIELD=VALUE` settings applied (`scale_up.pods` reaches into a rate); a field
/// that is not one, or a value of the wrong type, is a usage error naming `flag` and `what`.
fn with_settings<T: serde::Serialize + serde::de::DeserializeOwned>(base: T, sets: &[(String, serde_json::Value)], flag: &str, what: &str) -> Result<T> {
    let mut v = serde_json::to_value(&base)?;
    for (field, value) in sets {
        let mut at = &mut v;
        for part in field.split('.') {
            at = match at.get_mut(part) {
                Some(next) => next,
                None => return Err(super::usage_error("simulate", flag, format!("`{field}` is not a setting of {what} (see --help)"))),
            };
        }
        // `[2,5]` arrives as a string: read it as the JSON it is.
        *at = match value {
            serde_json::Value::String(s) if s.starts_with('[') => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
            _ => value.clone(),
        };
    }
    serde_json::from_value(v).map_err(|e| super::usage_error("simulate", flag, e.to_string()))
}

/// The HPA's settings with `--hpa FIELD=VALUE` applied.
fn hpa_settings(base: crate::hpa::Hpa, sets: &[(String, serde_json::Value)]) -> Result<crate::hpa::Hpa> {
    let hpa = with_settings(base, sets, "--hpa", "the HPA")?;
    hpa.check().map_err(|e| super::usage_error("simulate", "--hpa", e.to_string()))?;
    Ok(hpa)
}

/// The named world with `--world-set FIELD=VALUE` and `--pod-startup-seconds` applied.
fn world_settings(a: &SimulateArgs) -> Result<World> {
    let (base, _) = world::named(&a.world).expect("clap checked the name");
    let mut w: World = with_settings(base, &a.world_set, "--world-set", "a world")?;
    if let Some(s) = a.pod_startup_seconds {
        w.pod_startup_seconds = s;
    }
    w.check().map_err(|e| super::usage_error("simulate", "--world-set/--pod-startup-seconds", e))?;
    Ok(w)
}

pub fn simulate(a: SimulateArgs, runtime: tokio::runtime::Handle) -> Result<u8> {
    if a.list_worlds {
        println!("{:<14} {:>9}  what it is", "world", "start-up");
        for name in world::NAMES {
            let (w, what) = world::named(name).expect("a named world");
            println!("{name:<14} {:>8}s  {what}", w.pod_startup_seconds);
        }
        return Ok(exit::SUCCESS);
    }
    if !(0.0..=3600.0).contains(&a.stabilization_seconds) {
        return Err(super::usage_error("simulate", "--stabilization-seconds", "must be within 0..3600 seconds"));
    }
    if a.hpa.iter().any(|(f, _)| f == "pod_startup_seconds") {
        return Err(super::usage_error("simulate", "--hpa", "a pod's start-up is the world's: say --pod-startup-seconds or --world-set pod_startup_seconds=…"));
    }
    let world = world_settings(&a)?;
    let hpa = hpa_settings(
        crate::hpa::Hpa { pod_startup_seconds: world.pod_startup_seconds, scale_down_stabilization_seconds: a.stabilization_seconds, ..Default::default() },
        &a.hpa,
    )?;
    if !(a.load > 0.0 && a.load <= 100.0) {
        anyhow::bail!("--load must be a factor above 0 and at most 100 (1: the profiles' own load), not {}", a.load);
    }
    let opts = Options {
        days: a.days,
        warm_up_days: a.warm_up_days,
        out: a.out.expect("clap requires --out without --list-worlds"),
        trace: a.trace,
        services: a.services,
        seed: a.seed,
        layout: a.layout,
        start: a.start,
        gzip: a.gzip,
        hpa,
        load: a.load,
        world,
        server_from: a.server_from,
        judge: a.judge,
    };
    let t0 = std::time::Instant::now();
    if a.scaler.is_empty() {
        let summary = simulate::simulate(&opts)?;
        println!("wrote {} files to {} in {:.2}s", summary.files.len(), opts.out.display(), t0.elapsed().as_secs_f64());
        print_mix(&summary);
        return Ok(exit::SUCCESS);
    }
    let mut cmp = closed_loop::compare(&opts, &a.scaler, a.scaler_token, runtime, a.target_utilization)?;
    cmp.world_name = a.world.clone();
    println!(
        "world: {} ({}){}",
        a.world,
        world::named(&a.world).expect("a named world").1,
        if a.world_set.is_empty() && a.pod_startup_seconds.is_none() { "" } else { ", with changes (see --summary)" }
    );
    for r in &cmp.runs {
        println!("{}: wrote {} files to {}", r.scaler, r.files, r.out.display());
    }
    if let Some(at) = opts.server_from {
        println!("a server saw the services' rows from {} of the first judged day (their own HPA scaled them before)", clock(at));
    }
    if let Some((from, to)) = opts.judge {
        println!("judged: {}-{} of each judged day", clock(from), clock(to));
    }
    print_comparison(&cmp);
    if let Some(path) = &a.summary {
        crate::io::fs::write_atomic(path, &serde_json::to_vec_pretty(&cmp)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let unanswered = cmp.runs.iter().filter(|r| r.failed_batches > 0).count();
    Ok(if unanswered > 0 { exit::FAILURE } else { exit::SUCCESS })
}

fn print_mix(summary: &simulate::Summary) {
    let mix = label_mix(&summary.samples);
    println!("{:<14} {:>7} {:>9} {:>8} {:>8} {:>8}", "service", "rows", "replicas", "up", "down", "keep");
    for (svc, rows) in &summary.rows {
        let (lo, hi) = summary.replicas[svc];
        let (u, d, k) = mix.get(svc).copied().unwrap_or_default();
        let total = (u + d + k).max(1) as f64;
        let pct = |x: u64| format!("{:.1}%", 100.0 * x as f64 / total);
        println!("{svc:<14} {rows:>7} {:>9} {:>8} {:>8} {:>8}", format!("{lo}–{hi}"), pct(u), pct(d), pct(k));
    }
    println!("(up / down / keep: how the seed's look-ahead rules label the rows)");
}

fn print_comparison(c: &Comparison) {
    println!();
    println!(
        "{:<28} {:<14} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "scaler", "service", "pod-hours", "under (min)", "slow min", "error min", "decisions", "fallbacks", "first fallback"
    );
    let line = |scaler: &str, service: &str, t: &Tally| {
        // Minutes into the judged days, as the day's clock (day 2 and later: +Nd).
        let first = t.first_fallback_minute.map_or_else(String::new, |m| {
            let (day, secs) = ((m / 1440.0).floor(), (m * 60.0).rem_euclid(86_400.0));
            let plus = if day > 0.0 { format!(" +{day}d") } else { String::new() };
            format!("{}{plus}", clock(secs))
        });
        println!(
            "{scaler:<28} {service:<14} {:>9.1} {:>11.1} {:>9.1} {:>9.1} {:>9} {:>9} {first:>14}",
            t.pod_hours, t.under_provisioned_minutes, t.slow_minutes, t.error_minutes, t.decisions, t.fallbacks
        );
    };
    for r in &c.runs {
        for (service, t) in &r.services {
            line(&r.scaler, service, t);
        }
        line(&r.scaler, "total", &r.total);
    }
    println!();
    println!("the internal HPA's frontier (under-provisioned: the load needs more than {:.0} % CPU of the ready pods):", c.target_utilization);
    for p in &c.frontier.points {
        println!("  hpa:{:<4} {:>9.1} pod-hours {:>9.1} min", p.target, p.pod_hours, p.under_provisioned_minutes);
    }
    if c.capacity_bound_minutes > 0.0 {
        println!(
            "{:.1} of those minutes, every scaler's, the load needed more than {:.0} % even of all max replicas: no policy avoids them (raise maxReplicas)",
            c.capacity_bound_minutes, c.target_utilization
        );
    }
    for r in &c.runs {
        let margin = match (&r.margin, &r.saving) {
            (Some(m), Some(s)) => format!("{}; {}", m.describe(), s.describe()),
            _ => "no frontier to compare with".to_string(),
        };
        let avoidable = match &r.avoidable_margin {
            Some(m) if c.capacity_bound_minutes > 0.0 && m.hpa_minutes > 0.0 => format!("; {:.0}% of the minutes a scaler could avoid", m.percent),
            _ => String::new(),
        };
        let unanswered = if r.failed_batches > 0 { format!(" ({} steps unanswered)", r.failed_batches) } else { String::new() };
        println!("{}: {margin}{avoidable}{unanswered}", r.scaler);
    }
    // What knowing the future is worth here, against the HPA at 60 %: the limit of any forecast.
    let hpa60 = c.frontier.points.iter().find(|p| p.target == 60.0);
    for (r, h) in c.runs.iter().filter(|r| r.scaler == "oracle").zip(hpa60) {
        println!(
            "oracle (knew the future): {:.1} pod-hours, {:.1} % fewer than the HPA at 60 % ({:.1}), at {:.1} under-provisioned minutes (the HPA's: {:.1})",
            r.total.pod_hours,
            100.0 * (1.0 - r.total.pod_hours / h.pod_hours),
            h.pod_hours,
            r.total.under_provisioned_minutes,
            h.under_provisioned_minutes
        );
    }
}

/// Seconds since midnight as `HH:MM` (`24:00`: the end of the day), the inverse of
/// [`time_of_day`].
fn clock(secs: f64) -> String {
    format!("{:02}:{:02}", (secs / 3600.0).floor(), (secs % 3600.0 / 60.0).floor())
}

/// `HH:MM` as seconds since midnight.
fn time_of_day(s: &str) -> Result<f64, String> {
    let t = chrono::NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("`{s}` is not a time of day as HH:MM (e.g. 12:00)"))?;
    Ok(chrono::Timelike::num_seconds_from_midnight(&t) as f64)
}

/// `HH:MM-HH:MM` as seconds since midnight, the end after the start (`24:00` ends the day).
fn part_of_day(s: &str) -> Result<(f64, f64), String> {
    let (from, to) = s.split_once('-').ok_or_else(|| format!("`{s}` is not a part of the day as HH:MM-HH:MM (e.g. 12:00-13:00)"))?;
    let to = if to == "24:00" { 86_400.0 } else { time_of_day(to)? };
    let from = time_of_day(from)?;
    if to <= from {
        return Err(format!("`{s}` ends before it starts"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_the_day_parse_or_say_what_is_expected() {
        assert_eq!(time_of_day("12:30"), Ok(45_000.0));
        assert_eq!(part_of_day("12:00-13:00"), Ok((43_200.0, 46_800.0)));
        assert_eq!(part_of_day("22:00-24:00"), Ok((79_200.0, 86_400.0)));
        assert!(part_of_day("13:00-12:00").unwrap_err().contains("ends before it starts"));
        assert!(part_of_day("noon").unwrap_err().contains("HH:MM-HH:MM"));
        assert!(time_of_day("25:00").unwrap_err().contains("HH:MM"));
        assert_eq!((clock(45_000.0), clock(86_400.0)), ("12:30".to_string(), "24:00".to_string()));
    }
}
