//! Where metrics files come from: a local folder or file, or `s3://bucket/prefix/`, listed
//! recursively (the collector writes `YYYY/MM/metrics_YYYYMMDD.csv`) through object_store.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt};

use super::date_filter::DateFilter;
use crate::cache::InputFile;
use crate::store::s3;
pub use crate::store::s3::S3Options;

pub struct Source {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjPath>,
    /// When the source names one file, only that file.
    single: Option<ObjPath>,
    /// How the source is shown to users (`data/metrics`, `s3://bucket/metrics`).
    pub display: String,
    /// A local source: its folder, and the project whose remembered content hashes version
    /// its files (an S3 object's version is its ETag).
    local: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// One listed metrics file.
#[derive(Debug, Clone)]
pub struct MetricsFile {
    pub location: ObjPath,
    /// Full name for messages: `s3://bucket/metrics/2024/10/metrics_20241015.csv`.
    pub display: String,
    pub size: u64,
    /// `blake3:<hex>` of a local file's listed bytes (see `fingerprint`), an S3 object's ETag.
    pub version: String,
}

impl MetricsFile {
    pub fn input(&self) -> InputFile {
        InputFile { path: self.display.clone(), size: self.size, version: self.version.clone() }
    }
}

fn is_metrics_file(name: &str) -> bool {
    name.ends_with(".csv") || name.ends_with(".csv.gz")
}

impl Source {
    pub fn open(uri: &str, root: &Path, s3: &S3Options) -> Result<Source> {
        if let Some((bucket, prefix)) = s3::split_url(uri) {
            if bucket.is_empty() {
                bail!("`{uri}` names no bucket (expected s3://bucket/prefix/)");
            }
            let store = s3::client(bucket, s3).with_context(|| format!("configuring S3 for {uri}"))?;
            return Ok(Source {
                store: Arc::new(store),
                prefix: (!prefix.is_empty()).then(|| ObjPath::from(prefix)),
                single: None,
                display: s3::display(bucket, prefix),
                local: None,
            });
        }
        let path = if Path::new(uri).is_absolute() { Path::new(uri).to_path_buf() } else { root.join(uri) };
        let meta = std::fs::metadata(&path).with_context(|| format!("metrics source {} does not exist", path.display()))?;
        let (dir, single) = if meta.is_file() {
            let name = path.file_name().context("a file source needs a file name")?.to_string_lossy().into_owned();
            (path.parent().unwrap_or(Path::new(".")).to_path_buf(), Some(ObjPath::from(name)))
        } else {
            (path.clone(), None)
        };
        let store = LocalFileSystem::new_with_prefix(&dir).with_context(|| format!("opening {}", dir.display()))?;
        Ok(Source { store: Arc::new(store), prefix: None, single, display: uri.trim_end_matches('/').to_string(), local: Some((dir, root.to_path_buf())) })
    }

    /// Every `.csv`/`.csv.gz` below the source that the date filter keeps, sorted by path.
    pub async fn list(&self, filter: &DateFilter) -> Result<Vec<MetricsFile>> {
        let metas: Vec<ObjectMeta> = match &self.single {
            Some(p) => vec![self.store.head(p).await.with_context(|| format!("reading {}", self.display))?],
            None => self.store.list(self.prefix.as_ref()).try_collect().await.with_context(|| format!("listing {}", self.display))?,
        };
        let mut files: Vec<MetricsFile> = metas
            .into_iter()
            .filter(|m| m.location.filename().is_some_and(is_metrics_file))
            .filter(|m| self.single.is_some() || filter.keeps(m.location.as_ref()))
            .map(|m| {
                let rel = match &self.prefix {
                    Some(p) => m.location.as_ref().strip_prefix(p.as_ref()).unwrap_or(m.location.as_ref()).trim_start_matches('/').to_string(),
                    None => m.location.to_string(),
                };
                let display = if self.single.is_some() { self.display.clone() } else { format!("{}/{rel}", self.display) };
                MetricsFile { version: m.e_tag.clone().unwrap_or_else(|| m.last_modified.to_rfc3339()), location: m.location, display, size: m.size }
            })
            .collect();
        files.sort_by(|a, b| a.display.cmp(&b.display));
        if let Some((dir, project)) = self.local.clone() {
            files = tokio::task::spawn_blocking(move || -> Result<Vec<MetricsFile>> {
                let mut known = super::fingerprint::Fingerprints::load(&project);
                for f in &mut files {
                    f.version = known.version(&dir.join(f.location.as_ref()), f.size)?;
                }
                known.save()?;
                Ok(files)
            })
            .await??;
        }
        Ok(files)
    }

    /// The file's first `file.size` bytes, to read from a blocking thread. Collectors append to
    /// today's file (or rewrite the object with more rows), so reading as far as the listing
    /// said keeps out rows that arrived after it, which the next run's key will cover. A file
    /// now shorter than that was not appended to but replaced, and is an error. A gzipped file
    /// is read whole: the start of a recompressed file is not the old one. A local file is
    /// read as it is parsed; an S3 object is fetched whole first (its size is what ingest then holds).
    pub async fn reader(&self, file: &MetricsFile) -> Result<Box<dyn Read + Send>> {
        let as_listed = !file.display.ends_with(".gz");
        if as_listed && file.size == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        let range = as_listed.then_some(GetRange::Bounded(0..file.size));
        let got = self.store.get_opts(&file.location, GetOptions { range, ..Default::default() }).await.with_context(|| format!("reading {}", file.display))?;
        match got.payload {
            GetResultPayload::File(f, _) if as_listed => Ok(Box::new(AsListed(f.take(file.size)))),
            GetResultPayload::File(f, _) => Ok(Box::new(f)),
            GetResultPayload::Stream(_) => {
                let bytes = got.bytes().await.with_context(|| format!("reading {}", file.display))?;
                if as_listed && (bytes.len() as u64) < file.size {
                    bail!("reading {}: {}", file.display, shorter_than_listed(file.size - bytes.len() as u64));
                }
                Ok(Box::new(bytes::Buf::reader(bytes)))
            }
        }
    }
}

/// A local file's listed bytes: the end comes as an error when the file has fewer.
struct AsListed<R>(std::io::Take<R>);

impl<R: Read> Read for AsListed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.limit() > 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, shorter_than_listed(self.0.limit())));
        }
        Ok(n)
    }
}

fn shorter_than_listed(missing: u64) -> String {
    format!("{missing} bytes shorter than when this run listed it (replaced meanwhile, not appended to); run again")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(source: &Source, file: &MetricsFile) -> Result<String> {
        let mut reader = source.reader(file).await?;
        tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            reader.read_to_string(&mut text).map(|_| text)
        })
        .await?
        .map_err(anyhow::Error::from)
    }

    #[tokio::test]
    async fn a_file_is_read_as_far_as_it_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics_20241015.csv");
        std::fs::write(&path, "header\nrow 1\n").unwrap();
        let source = Source::open(dir.path().to_str().unwrap(), dir.path(), &S3Options::default()).unwrap();
        let listed = source.list(&DateFilter::All).await.unwrap();
        assert_eq!(listed.len(), 1);
        // The collector appends after the listing: this run reads what was listed.
        std::fs::write(&path, "header\nrow 1\nrow 2\n").unwrap();
        assert_eq!(read_all(&source, &listed[0]).await.unwrap(), "header\nrow 1\n");
        // Replaced by something shorter: not what the run's key names, so an error.
        std::fs::write(&path, "header\n").unwrap();
        let e = format!("{:#}", read_all(&source, &listed[0]).await.unwrap_err());
        assert!(e.contains("6 bytes shorter than when this run listed it"), "{e}");
        // An empty file stays empty.
        std::fs::write(&path, "").unwrap();
        let empty = source.list(&DateFilter::All).await.unwrap();
        assert_eq!(read_all(&source, &empty[0]).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_gzipped_file_is_read_whole() {
        // Recompressed with more rows, its first bytes are not the listed file's: read it all.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics_20241015.csv.gz");
        std::fs::write(&path, b"short").unwrap();
        let source = Source::open(dir.path().to_str().unwrap(), dir.path(), &S3Options::default()).unwrap();
        let listed = source.list(&DateFilter::All).await.unwrap();
        std::fs::write(&path, b"recompressed, longer").unwrap();
        assert_eq!(read_all(&source, &listed[0]).await.unwrap(), "recompressed, longer");
    }
}
