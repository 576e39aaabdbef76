//! `op: ingest`: metrics CSVs from a folder, a file or S3 into one typed, ordered table,
//! with rows that break the data contract in the side table `quarantine`.
//!
//! ```yaml
//! ingest:
//!   op: ingest
//!   source: ${metrics_uri}        # data/metrics, a file, or s3://bucket/metrics/
//!   date: ${date}                 # "", 2024-10 or 2024-10-15
//!   endpoint: http://127.0.0.1:9000   # optional, for S3-compatible stores
//!   max_bad_fraction: 0.05        # fail when more rows than this are invalid
//! ```

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::parse_params;
use crate::cache::InputFile;
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Stage, StageContext, StageOutput};
use crate::ingest::date_filter::DateFilter;
use crate::ingest::read::{Reading, read_files};
use crate::ingest::source::{MetricsFile, S3Options, Source};
use crate::ingest::{self, KNOWN_SERVICES};

fn default_max_bad() -> f64 {
    0.05
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    source: String,
    #[serde(default)]
    date: String,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default = "default_max_bad")]
    max_bad_fraction: f64,
}

pub struct Ingest {
    params: Params,
    filter: DateFilter,
    root: std::path::PathBuf,
}

impl Ingest {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec) -> Result<Ingest, SpecError> {
        super::expect_deps(p, spec, 0..=0, "no deps")?;
        let params: Params = parse_params(p, spec)?;
        let filter = DateFilter::parse(&params.date).map_err(|m| p.error(spec, Some("date"), m.to_string()))?;
        if !(0.0..=1.0).contains(&params.max_bad_fraction) {
            return Err(p.error(spec, Some("max_bad_fraction"), "must be between 0 and 1"));
        }
        if params.source.trim().is_empty() {
            return Err(p.error(spec, Some("source"), "is empty; give a folder, a file or s3://bucket/prefix/"));
        }
        Ok(Ingest { params, filter, root: p.root.clone() })
    }

    fn source(&self) -> Result<Source> {
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.trim().is_empty());
        let s3 = S3Options { endpoint: nonempty(&self.params.endpoint), region: nonempty(&self.params.region) };
        Source::open(&self.params.source, &self.root, &s3)
    }

    async fn files(&self) -> Result<(Source, Vec<MetricsFile>)> {
        let source = self.source()?;
        let files = source.list(&self.filter).await?;
        Ok((source, files))
    }
}

/// The files the cache key was computed from, as they were listed then (`Source::reader`
/// reads each as far as that listing's size). Files that appeared since are left for the next run.
fn as_keyed(listed: Vec<MetricsFile>, keyed: &[InputFile]) -> Result<Vec<MetricsFile>> {
    let mut now: std::collections::HashMap<String, MetricsFile> = listed.into_iter().map(|f| (f.display.clone(), f)).collect();
    let mut files = Vec::with_capacity(keyed.len());
    for k in keyed {
        let Some(mut file) = now.remove(&k.path) else { bail!("{} was listed when this run started and is gone now; run again", k.path) };
        file.size = k.size;
        file.version = k.version.clone();
        files.push(file);
    }
    if !now.is_empty() {
        let mut new: Vec<&str> = now.keys().map(String::as_str).collect();
        new.sort_unstable();
        tracing::info!("{} metrics file(s) appeared after this run started ({}); the next run reads them", new.len(), new.join(", "));
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}

#[async_trait]
impl Stage for Ingest {
    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "source": self.params.source,
            "date": self.params.date,
            "endpoint": self.params.endpoint,
            "region": self.params.region,
            "max_bad_fraction": self.params.max_bad_fraction,
        })
    }

    async fn inputs(&self) -> Result<Vec<InputFile>> {
        let (_, files) = self.files().await?;
        Ok(files.iter().map(MetricsFile::input).collect())
    }

    /// Its parsed rows, up to one sorted run: past that they go to disk in runs. A `.csv.gz`
    /// unpacks to about six times its size, hence the generous factor on small inputs.
    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Holds(input_bytes.saturating_mul(16).min(ingest::sorted_runs::RUN_BYTES))
    }

    fn describe(&self) -> String {
        if self.params.date.is_empty() { self.params.source.clone() } else { format!("{} ({})", self.params.source, self.params.date) }
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let (source, listed) = self.files().await?;
        let files = as_keyed(listed, &ctx.inputs)?;
        if files.is_empty() {
            bail!(
                "no metrics files (*.csv, *.csv.gz) in {}{}",
                source.display,
                if self.filter == DateFilter::All { String::new() } else { format!(" for date {}", self.params.date) }
            );
        }
        ctx.progress.set_length(files.len() as u64, "files");
        let t0 = std::time::Instant::now();
        let source = Arc::new(source);
        let how = Reading {
            threads: ctx.threads,
            run_rows: ingest::sorted_runs::run_rows(ctx.memory),
            spill: crate::artifacts::layout::Layout::of(&ctx.pipeline.root).spill(),
        };
        let progress = ctx.progress.clone();
        let mut runs = read_files(source.clone(), &files, how, move || progress.inc(1)).await?;
        tracing::debug!("ingest: read and parsed {} files in {:.2}s", files.len(), t0.elapsed().as_secs_f64());

        let invalid = runs.invalid().count() as u64;
        let seen = runs.rows() + invalid;
        if seen > 0 && invalid as f64 / seen as f64 > self.params.max_bad_fraction {
            let examples: Vec<String> = runs.invalid().take(3).map(|r| format!("  {}:{}: {}", r.file, r.line, r.reason)).collect();
            bail!(
                "{invalid} of {seen} rows ({:.1}%) break the data contract, over max_bad_fraction = {}; first ones:\n{}",
                100.0 * invalid as f64 / seen as f64,
                self.params.max_bad_fraction,
                examples.join("\n")
            );
        }
        if runs.rows() == 0 {
            bail!("no valid rows in {} file(s) from {}", files.len(), source.display);
        }

        ctx.progress.message("merging");
        let out = ctx.output_path();
        let done = tokio::task::spawn_blocking(move || runs.finish(&out)).await.context("ingest's merge thread")??;
        tracing::debug!("ingest: merged and written in {:.2}s ({} sorted runs on disk)", t0.elapsed().as_secs_f64(), done.spilled_runs);
        let kept = done.rows;
        let mut rejects = done.invalid;
        let duplicates = done.duplicates.len() as u64;
        rejects.extend(done.duplicates);
        crate::io::table::write_parquet(&ctx.out_dir.join("quarantine.parquet"), ingest::quarantine_schema(), &[ingest::quarantine_batch(&rejects)?])?;

        let mut notes = done.notes;
        let (zoned, out_of_order) = (done.zoned_timestamps, done.out_of_order);
        if zoned > 0 {
            notes.push(format!("{zoned} timestamps carried a zone and were converted to UTC"));
        }
        if out_of_order > 0 {
            notes.push(format!("{out_of_order} rows were out of order in their file and have been sorted"));
        }
        let new_services: Vec<&String> = done.rows_per_service.keys().filter(|s| !KNOWN_SERVICES.contains(&s.as_str())).collect();
        if !new_services.is_empty() {
            notes.push(format!(
                "new service{}: {}",
                if new_services.len() > 1 { "s" } else { "" },
                new_services.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if !rejects.is_empty() {
            notes.push(format!(
                "{} rows quarantined ({invalid} invalid, {duplicates} duplicates); see `pipeline inspect {} --table quarantine`",
                rejects.len(),
                ctx.name
            ));
        }
        Ok(StageOutput {
            rows: kept,
            sorted_by: vec![crate::io::table::SortKey::asc(crate::row::SERVICE), crate::io::table::SortKey::asc(crate::row::TIMESTAMP)],
            summary: json!({
                "files": files.len(),
                "rows": kept,
                "quarantined": rejects.len(),
                "invalid": invalid,
                "duplicates": duplicates,
                "out_of_order": out_of_order,
                "zoned_timestamps": zoned,
                "rows_per_service": done.rows_per_service,
                "sorted_runs_on_disk": done.spilled_runs,
                "notes": notes,
            }),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, size: u64) -> MetricsFile {
        MetricsFile { location: name.into(), display: format!("data/{name}"), size, version: format!("v{size}") }
    }

    fn keyed(name: &str, size: u64) -> InputFile {
        InputFile { path: format!("data/{name}"), size, version: format!("v{size}") }
    }

    #[test]
    fn ingest_reads_the_files_its_key_names_as_they_were() {
        // b grew and c appeared after planning: b is read as far as planned, c is left for the next run.
        let now = vec![listed("c.csv", 5), listed("b.csv", 90), listed("a.csv", 10)];
        let files = as_keyed(now, &[keyed("a.csv", 10), keyed("b.csv", 40)]).unwrap();
        let got: Vec<(&str, u64, &str)> = files.iter().map(|f| (f.display.as_str(), f.size, f.version.as_str())).collect();
        assert_eq!(got, [("data/a.csv", 10, "v10"), ("data/b.csv", 40, "v40")]);
        let e = as_keyed(vec![listed("a.csv", 10)], &[keyed("a.csv", 10), keyed("b.csv", 40)]).unwrap_err();
        assert_eq!(e.to_string(), "data/b.csv was listed when this run started and is gone now; run again");
    }
}
