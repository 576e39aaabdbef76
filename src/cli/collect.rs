//! `pipeline collect`: Prometheus → the day files that `pipeline run` trains on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, Utc};

use super::exit;
use crate::collect::config::Config;
use crate::collect::day_files::DayFiles;
use crate::collect::prometheus::{Prometheus, QueryError};
use crate::collect::{Collector, header};
use crate::invalid::InvalidInput;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  pipeline collect --prometheus http://prometheus:9090 --once
  pipeline collect --prometheus http://prometheus:9090 --out s3://bucket/metrics
  pipeline collect --prometheus http://prometheus:9090 --from 2026-11-01 --to 2026-11-14 --out data/metrics")]
pub struct CollectArgs {
    /// The Prometheus server to query (http://host:9090).
    #[arg(long, value_name = "URL", env = "PIPELINE_PROMETHEUS")]
    pub prometheus: String,
    /// Which PromQL gives each column, which services, time zone and holidays [default: the
    /// built-in pipelines/collect.yaml, for kube-prometheus-stack and ingress-nginx].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Take one row per service now and stop (to standard output unless --out is given).
    #[arg(long, conflicts_with_all = ["from", "every"])]
    pub once: bool,
    /// Time between rows in the live loop (30, 30s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::parse_seconds)]
    pub every: f64,
    /// Write day files (YYYY/MM/metrics_YYYYMMDD.csv) below this folder or s3://bucket/prefix.
    #[arg(long, value_name = "DIR|URL")]
    pub out: Option<String>,
    /// Write the day so far at least this often (5m, 300s; a bare number is minutes), and at
    /// the end of each day and on SIGTERM / ctrl-c.
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = flush_minutes)]
    pub flush_every: f64,
    /// Backfill: rebuild past days from Prometheus' history, from this day (YYYY-MM-DD, in the
    /// config's time zone) ...
    #[arg(long, value_name = "DAY", requires_all = ["to", "out"])]
    pub from: Option<NaiveDate>,
    /// ... to this day, inclusive.
    #[arg(long, value_name = "DAY", requires = "from")]
    pub to: Option<NaiveDate>,
    /// On SIGTERM or ctrl-c, the step or write in progress is dropped and the day so far
    /// written within this; past it the rows since the last flush are lost, and the exit code
    /// says so. Keep the pod's terminationGracePeriodSeconds above it.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = super::parse_seconds)]
    pub stop_timeout: f64,
    /// Time to wait for Prometheus' answer to one query (10, 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_seconds)]
    pub timeout: f64,
    /// Serve the live loop's own metrics (steps, skipped steps, rows, last write) at
    /// http://ADDR/metrics for Prometheus to scrape, e.g. 0.0.0.0:9464.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["once", "from"])]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `--flush-every`: minutes when bare (as it always was), else a duration; in minutes.
fn flush_minutes(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(m) if m > 0.0 && m * 60.0 <= super::MAX_SECONDS => Ok(m),
        Ok(m) if m > 0.0 => Err(format!("`{text}` minutes is longer than a year")),
        _ => super::parse_seconds(text).map(|s| s / 60.0),
    }
}

fn usage(flag: &str, message: String) -> anyhow::Error {
    super::usage_error("collect", flag, message)
}

pub async fn collect(a: CollectArgs) -> Result<u8> {
    let config = Config::load(a.config.as_deref())?;
    let prometheus = Prometheus::new(&a.prometheus, Duration::from_secs_f64(a.timeout.max(0.1))).map_err(|e| usage("--prometheus", e.to_string()))?;
    let mut collector = Collector::new(config, prometheus);
    if let (Some(from), Some(to)) = (a.from, a.to) {
        if to < from {
            return Err(usage("--to", format!("{to} is before --from {from}")));
        }
        return backfill(&mut collector, from, to, a.out.as_deref().expect("clap requires --out")).await;
    }
    if a.once {
        let rows = collector.collect(Utc::now()).await.map_err(with_config(&collector))?;
        match &a.out {
            Some(out) => {
                let mut files = DayFiles::open(out)?;
                files.push(&rows).await?;
                files.flush().await?;
            }
            None => {
                println!("{}", header());
                for r in &rows {
                    println!("{}", r.csv_line());
                }
            }
        }
        tracing::info!("{} rows", rows.len());
        return Ok(exit::SUCCESS);
    }
    let Some(out) = a.out else {
        return Err(usage(
            "--out",
            "the live loop writes day files: give --out DIR or s3://bucket/prefix (or --once for one row per service on standard output)".into(),
        ));
    };
    let timing = Timing {
        every: Duration::from_secs_f64(a.every),
        flush_every: Duration::from_secs_f64(a.flush_every * 60.0),
        stop_timeout: Duration::from_secs_f64(a.stop_timeout),
    };
    let metrics = std::sync::Arc::new(crate::collect::exposition::CollectorMetrics::default());
    if let Some(addr) = a.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| usage("--metrics-addr", format!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr()?;
        tracing::info!("the collector's metrics at http://{bound}/metrics");
        eprintln!("metrics on http://{bound}/metrics");
        tokio::spawn(crate::collect::exposition::serve(listener, metrics.clone()));
    }
    live(collector, &out, timing, &metrics).await
}

/// The live loop's clock: rows every `every`, written every `flush_every`, and at most
/// `stop_timeout` to write them once asked to stop.
struct Timing {
    every: Duration,
    flush_every: Duration,
    stop_timeout: Duration,
}

/// A query Prometheus rejects is a mistake in collect.yaml: say which file.
fn with_config(c: &Collector) -> impl Fn(QueryError) -> anyhow::Error + '_ {
    move |e| match e {
        QueryError::Rejected { .. } => anyhow::Error::new(InvalidInput::file(c.config.file.display(), e.to_string())),
        other => other.into(),
    }
}

async fn backfill(collector: &mut Collector, from: NaiveDate, to: NaiveDate, out: &str) -> Result<u8> {
    let files = DayFiles::open(out)?;
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let bar = super::progress_bar(days.len() as u64, "days");
    for day in days {
        let rows = collector.backfill_day(day).await.map_err(with_config(collector)).with_context(|| format!("backfilling {day}"))?;
        if rows.is_empty() {
            tracing::warn!("{day}: Prometheus has no rows for any service (outside its retention?); no file written");
        } else {
            files.write_day(day, &rows).await?;
            tracing::info!("{day}: {} rows → {}", rows.len(), files.display(day));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(exit::SUCCESS)
}

async fn live(mut collector: Collector, out: &str, timing: Timing, metrics: &crate::collect::exposition::CollectorMetrics) -> Result<u8> {
    let Timing { every, flush_every, stop_timeout } = timing;
    let mut files = DayFiles::open(out)?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut flushed = Instant::now();
    let (mut written, mut skipped) = (0u64, 0u64);
    // Rows the output did not take yet (S3 away at midnight): kept, in order, and tried again.
    let mut backlog: std::collections::VecDeque<crate::collect::Row> = Default::default();
    let stop = crate::serving::server::shutdown();
    tokio::pin!(stop);
    tracing::info!("collecting from {} every {:?} into {out}", collector.prometheus().url(), every);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        // A step waiting on a slow Prometheus must not eat the time left to write the day.
        let step = tokio::select! {
            _ = &mut stop => break,
            step = collector.collect(Utc::now()) => step,
        };
        match step {
            Ok(rows) => {
                written += rows.len() as u64;
                metrics.step(rows.len());
                backlog.extend(rows);
            }
            Err(e @ QueryError::Rejected { .. }) => return Err(with_config(&collector)(e)),
            // Never invented: the step is skipped, counted, and the loop goes on.
            Err(e) => {
                skipped += 1;
                metrics.skipped();
                tracing::warn!(skipped, "step skipped: {e}");
            }
        }
        // Writing, too, gives way to a stop: each await of the day files leaves them as they
        // were or done (a row leaves the backlog once taken; a flush counts once written), so
        // what is dropped here is tried again by the last write below.
        let write = async {
            drain(&mut files, &mut backlog).await;
            metrics.backlog(backlog.len() + files.pending());
            if flushed.elapsed() >= flush_every && files.pending() > 0 {
                match files.flush().await {
                    Ok(()) => {
                        flushed = Instant::now();
                        metrics.flushed(Utc::now().timestamp_millis() as f64 / 1000.0);
                        metrics.backlog(backlog.len());
                    }
                    Err(e) => {
                        metrics.flush_failed();
                        tracing::warn!("{e:#}; the rows are kept for the next flush");
                    }
                }
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = write => {}
        }
    }
    let last_write = async {
        drain(&mut files, &mut backlog).await;
        if !backlog.is_empty() {
            bail!("{} rows could not be written to {out}; see the warnings above", backlog.len() + files.pending());
        }
        files.flush().await
    };
    match tokio::time::timeout(stop_timeout, last_write).await {
        Ok(written) => written?,
        Err(_) => bail!(
            "the day so far was not written to {out} within --stop-timeout {stop_timeout:?}: the rows since the last flush (at most --flush-every) are lost"
        ),
    }
    eprintln!("collected {written} rows; {skipped} steps skipped (Prometheus did not answer)");
    if written == 0 && skipped > 0 {
        bail!("Prometheus at {} never answered", collector.prometheus().url());
    }
    Ok(exit::SUCCESS)
}

/// Hands the backlog to the day files in order, stopping at the first row they cannot take.
async fn drain(files: &mut DayFiles, backlog: &mut std::collections::VecDeque<crate::collect::Row>) {
    while let Some(row) = backlog.front() {
        match files.push_row(row).await {
            Ok(()) => {
                backlog.pop_front();
            }
            Err(e) => {
                tracing::warn!("{e:#}; {} rows kept to try again", backlog.len());
                return;
            }
        }
    }
}
