//! The collector's output: one CSV per day, `YYYY/MM/metrics_YYYYMMDD.csv` below a folder or
//! an `s3://bucket/prefix`, where ingest finds it.
//!
//! S3 cannot append, so a flush writes the whole day so far (a single PUT, which readers see
//! whole or not at all); a folder gets the same treatment (object_store writes a temporary file
//! and renames it), so a reader never sees a torn line and a crash loses at most the rows since
//! the last flush. A collector restarted mid-day reads the day's file first and goes on from it.
//! A day of 200 services is ~100 MB of CSV; a flush every few minutes keeps that cheap.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::Row;

pub struct DayFiles {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjPath>,
    /// The folder or URL, for messages.
    display: String,
    day: Option<NaiveDate>,
    /// The day's file so far, header included.
    text: String,
    /// Rows added since the last flush.
    pending: usize,
}

impl DayFiles {
    /// A folder (created if needed) or `s3://bucket/prefix` (credentials from the `AWS_*`
    /// variables).
    pub fn open(out: &str) -> Result<DayFiles> {
        let (store, prefix, display): (Arc<dyn ObjectStore>, Option<ObjPath>, String) = match crate::store::s3::split_url(out) {
            Some(("", _)) => bail!("--out `{out}` names no bucket (expected s3://bucket/prefix)"),
            Some((bucket, prefix)) => {
                let client = crate::store::s3::client(bucket, &Default::default()).with_context(|| format!("configuring S3 for {out}"))?;
                (Arc::new(client), (!prefix.is_empty()).then(|| ObjPath::from(prefix)), crate::store::s3::display(bucket, prefix))
            }
            None => {
                std::fs::create_dir_all(out).with_context(|| format!("creating the output folder {out}"))?;
                let fs = LocalFileSystem::new_with_prefix(out).with_context(|| format!("opening {out}"))?;
                (Arc::new(fs), None, out.trim_end_matches('/').to_string())
            }
        };
        Ok(DayFiles { store, prefix, display, day: None, text: String::new(), pending: 0 })
    }

    fn path(&self, day: NaiveDate) -> ObjPath {
        let rel = format!("{}/metrics_{}.csv", day.format("%Y/%m"), day.format("%Y%m%d"));
        match &self.prefix {
            Some(p) => ObjPath::from(format!("{p}/{rel}")),
            None => ObjPath::from(rel),
        }
    }

    /// Where a day's file is, for messages.
    pub fn display(&self, day: NaiveDate) -> String {
        format!("{}/{}/metrics_{}.csv", self.display, day.format("%Y/%m"), day.format("%Y%m%d"))
    }

    /// Adds rows (in time order); see [`DayFiles::push_row`].
    pub async fn push(&mut self, rows: &[Row]) -> Result<()> {
        for row in rows {
            self.push_row(row).await?;
        }
        Ok(())
    }

    /// Adds one row; a row of a new day first writes the old day out in full and reads the new
    /// day's file if it exists. All or nothing: on an error the row is not added and the old
    /// day is still here, so the caller can try the same row again later.
    pub async fn push_row(&mut self, row: &Row) -> Result<()> {
        let day = row.timestamp.date_naive();
        if self.day != Some(day) {
            self.flush().await?;
            self.text = self.existing(day).await?;
            self.day = Some(day);
        }
        self.text.push_str(&row.csv_line());
        self.text.push('\n');
        self.pending += 1;
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Writes the day so far. On failure the rows stay here for the next flush.
    pub async fn flush(&mut self) -> Result<()> {
        let Some(day) = self.day else { return Ok(()) };
        if self.pending == 0 {
            return Ok(());
        }
        self.store.put(&self.path(day), PutPayload::from(self.text.clone().into_bytes())).await.with_context(|| format!("writing {}", self.display(day)))?;
        self.pending = 0;
        Ok(())
    }

    /// Replaces a day's file with these rows (a backfill).
    pub async fn write_day(&self, day: NaiveDate, rows: &[Row]) -> Result<()> {
        let mut text = super::header();
        text.push('\n');
        for r in rows {
            text.push_str(&r.csv_line());
            text.push('\n');
        }
        self.store.put(&self.path(day), PutPayload::from(text.into_bytes())).await.with_context(|| format!("writing {}", self.display(day)))?;
        Ok(())
    }

    /// The day's file as it is (a restarted collector appends to it), or a new one's header.
    async fn existing(&self, day: NaiveDate) -> Result<String> {
        let header = super::header();
        match self.store.get(&self.path(day)).await {
            Ok(got) => {
                let bytes = got.bytes().await.with_context(|| format!("reading {}", self.display(day)))?;
                let mut text = String::from_utf8(bytes.to_vec()).with_context(|| format!("{} is not UTF-8 text", self.display(day)))?;
                if text.lines().next() != Some(header.as_str()) {
                    bail!("{} exists with other columns than the collector writes; move it away or collect into another folder", self.display(day));
                }
                // A torn last line (a crash of another writer) is cut, not continued.
                if !text.ends_with('\n') {
                    let keep = text.rfind('\n').map_or(0, |i| i + 1);
                    text.truncate(keep);
                }
                Ok(text)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(format!("{header}\n")),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.display(day))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u32, hour: u32, service: &str) -> Row {
        let mut values = [Some(1.0); crate::row::NUMERIC.len()];
        values[0] = None;
        Row {
            timestamp: NaiveDate::from_ymd_opt(2026, 11, day).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc().fixed_offset(),
            service: service.into(),
            values,
        }
    }

    #[tokio::test]
    async fn days_are_written_whole_and_continued_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let mut files = DayFiles::open(out).unwrap();
        files.push(&[row(1, 10, "a"), row(1, 11, "a")]).await.unwrap();
        assert_eq!(files.pending(), 2);
        let file = dir.path().join("2026/11/metrics_20261101.csv");
        assert!(!file.exists(), "nothing is written before a flush");
        files.flush().await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);

        // Restarted: the morning is kept, then a new day writes the old one out.
        let mut again = DayFiles::open(out).unwrap();
        again.push(&[row(1, 12, "a"), row(2, 0, "a")]).await.unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.starts_with(&format!("{}\n", super::super::header())));
        assert!(text.lines().nth(1).unwrap().starts_with("2026-11-01T10:00:00,a,,1,"));
        again.flush().await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("2026/11/metrics_20261102.csv")).unwrap().lines().count(), 2);

        std::fs::write(dir.path().join("2026/11/metrics_20261103.csv"), "a,b\n1,2\n").unwrap();
        let e = again.push_row(&row(3, 0, "a")).await.unwrap_err().to_string();
        assert!(e.contains("metrics_20261103.csv exists with other columns"), "{e}");
        // Refused whole: once the file is moved away, the same row goes in.
        std::fs::remove_file(dir.path().join("2026/11/metrics_20261103.csv")).unwrap();
        again.push_row(&row(3, 0, "a")).await.unwrap();
        again.flush().await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("2026/11/metrics_20261103.csv")).unwrap().lines().count(), 2);
    }
}
