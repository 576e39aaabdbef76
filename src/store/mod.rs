//! A shared store in object storage (`--store s3://bucket/prefix`, or `store:` in the
//! pipeline file): the cache and the artifacts of every machine that runs the pipeline, so a
//! second machine reuses the first one's stages and models.
//!
//! The local `artifacts/` folder stays the working copy (DataFusion, libtorch and the server
//! read files); the store is a second tier behind it, as a DVC remote is:
//!
//! ```text
//! s3://bucket/prefix/
//!   cache/entries/<key>/...        a stage's files, then meta.json, written last: an entry
//!                                  without meta.json is unfinished and never read
//!   runs/<run-id>/...              manifest.json and the report of every run
//!   runs/latest                    the id of the newest run that succeeded
//!   models/<model>/<version>/...   the registry's versions (immutable)
//!   models/<model>/promoted.json   which version serves
//! ```

pub mod s3;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};

/// Files above this go up in parts, so memory stays bounded whatever a stage wrote.
const SINGLE_PUT_MAX: u64 = 16 << 20;
const PART: usize = 8 << 20;

/// The shape of a store URL, checked before anything runs (the pipeline file's `store:` and
/// `--store` alike).
pub fn check_url(url: &str) -> Result<(), BadUrl> {
    match s3::split_url(url) {
        Some(("", _)) => Err(BadUrl::NoBucket(url.into())),
        Some(_) => Ok(()),
        None => Err(BadUrl::NotS3(url.into())),
    }
}

/// A store URL of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("store `{0}` names no bucket (expected s3://bucket/prefix)")]
    NoBucket(String),
    #[error("store `{0}` is not an s3://bucket/prefix URL")]
    NotS3(String),
}

#[derive(Debug, Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    url: String,
}

impl Store {
    /// Open `s3://bucket/prefix`; credentials, region and endpoint come from the usual
    /// `AWS_*` variables (`AWS_ENDPOINT_URL` for MinIO, Ceph or moto).
    pub fn open(url: &str) -> Result<Store> {
        check_url(url)?;
        let (bucket, prefix) = s3::split_url(url).expect("checked above");
        let objects = s3::client(bucket, &s3::S3Options::default()).with_context(|| format!("configuring S3 for the store {url}"))?;
        Ok(Store { objects: Arc::new(objects), prefix: prefix.to_string(), url: s3::display(bucket, prefix) })
    }

    /// Any object store (tests use the in-memory one).
    pub fn with(objects: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Store {
        Store { objects, prefix: prefix.trim_matches('/').to_string(), url: url.to_string() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of something in the store, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn path(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() { ObjPath::from(rel) } else { ObjPath::from(format!("{}/{rel}", self.prefix)) }
    }

    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.objects.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(brief(e)).with_context(|| format!("looking for {}", self.url_of(rel))),
        }
    }

    /// The bytes of a small object, or None when there is none.
    pub async fn get(&self, rel: &str) -> Result<Option<bytes::Bytes>> {
        let got = match self.objects.get(&self.path(rel)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(brief(e)).with_context(|| format!("reading {}", self.url_of(rel))),
        };
        Ok(Some(got.bytes().await.map_err(brief).with_context(|| format!("reading {}", self.url_of(rel)))?))
    }

    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.objects.put(&self.path(rel), PutPayload::from(bytes)).await.map_err(brief).with_context(|| format!("writing {}", self.url_of(rel)))?;
        Ok(())
    }

    /// Copy a local file up. An object appears whole or not at all (S3 semantics).
    pub async fn upload(&self, local: &Path, rel: &str) -> Result<()> {
        let size = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?.len();
        let what = || format!("uploading {} to {}", local.display(), self.url_of(rel));
        if size <= SINGLE_PUT_MAX {
            let bytes = std::fs::read(local).with_context(what)?;
            return self.put(rel, bytes).await;
        }
        let mut upload = self.objects.put_multipart(&self.path(rel)).await.map_err(brief).with_context(what)?;
        let sent = send_parts(upload.as_mut(), local).await;
        if sent.is_err() {
            // An upload left open keeps its parts (and their storage bill) until the bucket's
            // lifecycle rule, if any, removes them.
            if let Err(e) = upload.abort().await {
                tracing::warn!("could not abort the failed upload of {}: {}", self.url_of(rel), brief(e));
            }
        }
        sent.with_context(what)
    }

    /// Copy an object down to `local`, through a temp file renamed into place. Ok(false) when
    /// the object does not exist.
    pub async fn download(&self, rel: &str, local: &Path) -> Result<bool> {
        let what = || format!("downloading {} to {}", self.url_of(rel), local.display());
        let got = match self.objects.get(&self.path(rel)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(brief(e)).with_context(what),
        };
        let dir = local.parent().context("a download needs a folder")?;
        std::fs::create_dir_all(dir).with_context(what)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(what)?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(brief).with_context(what)? {
            std::io::Write::write_all(&mut tmp, &chunk).with_context(what)?;
        }
        tmp.as_file().sync_all().with_context(what)?;
        tmp.persist(local).with_context(what)?;
        Ok(true)
    }

    /// Every object below `rel/`, as paths relative to it.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        Ok(self.list_objects(rel).await?.into_iter().map(|o| o.path).collect())
    }

    /// `list`, with each object's size and when it was written.
    pub async fn list_objects(&self, rel: &str) -> Result<Vec<Listed>> {
        let base = self.path(rel);
        let objects: Vec<_> = self.objects.list(Some(&base)).try_collect().await.map_err(brief).with_context(|| format!("listing {}", self.url_of(rel)))?;
        let base = format!("{}/", base.as_ref());
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let path = o.location.as_ref().strip_prefix(&base)?.to_string();
                Some(Listed { path, size: o.size, written: o.last_modified })
            })
            .collect())
    }

    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.objects.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(brief(e)).with_context(|| format!("deleting {}", self.url_of(rel))),
        }
    }
}

/// A file's bytes as parts of `PART` bytes (the last one shorter), two in flight at once, then
/// the upload completed: an error anywhere is returned for the caller to abort the upload.
async fn send_parts(upload: &mut dyn MultipartUpload, local: &Path) -> Result<()> {
    let mut file = std::fs::File::open(local).with_context(|| format!("reading {}", local.display()))?;
    let mut in_flight: futures::stream::FuturesUnordered<object_store::UploadPart> = futures::stream::FuturesUnordered::new();
    loop {
        let mut part = vec![0u8; PART];
        let n = fill(&mut file, &mut part).with_context(|| format!("reading {}", local.display()))?;
        if n == 0 {
            break;
        }
        part.truncate(n);
        while in_flight.len() >= 2 {
            in_flight.next().await.expect("parts in flight").map_err(brief)?;
        }
        in_flight.push(upload.put_part(PutPayload::from(part)));
        if n < PART {
            break;
        }
    }
    while let Some(sent) = in_flight.next().await {
        sent.map_err(brief)?;
    }
    upload.complete().await.map_err(brief)?;
    Ok(())
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn fill(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match std::io::Read::read(file, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An object found by `Store::list_objects`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub written: chrono::DateTime<chrono::Utc>,
}

/// object_store's messages repeat their source chain inline at every level; keep the outer
/// summary (which request, how many retries) and the root cause, once.
fn brief(e: object_store::Error) -> anyhow::Error {
    let outer = e.to_string();
    let summary = outer.split(" - ").next().unwrap_or(&outer).trim_end().trim_end_matches(':').to_string();
    let mut root: &dyn std::error::Error = &e;
    while let Some(next) = root.source() {
        root = next;
    }
    let root = root.to_string();
    if root == outer || summary.contains(&root) { anyhow::anyhow!(summary) } else { anyhow::anyhow!("{summary}: {root}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions, PutOptions, PutResult, UploadPart};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An in-memory store whose multipart uploads fail at their third part, recording whether
    /// the failed upload was aborted.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: InMemory,
        aborted: Arc<AtomicBool>,
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Flaky")
        }
    }

    #[derive(Debug)]
    struct FlakyUpload {
        inner: Box<dyn MultipartUpload>,
        parts: AtomicUsize,
        aborted: Arc<AtomicBool>,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for FlakyUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            if self.parts.fetch_add(1, Ordering::SeqCst) == 2 {
                return Box::pin(async { Err(object_store::Error::Generic { store: "Flaky", source: "connection reset".into() }) });
            }
            self.inner.put_part(data)
        }
        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            self.aborted.store(true, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(&self, location: &ObjPath, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(&self, location: &ObjPath, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(FlakyUpload { inner, parts: AtomicUsize::new(0), aborted: self.aborted.clone() }))
        }
        async fn get_opts(&self, location: &ObjPath, options: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<ObjPath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&ObjPath>) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &ObjPath, to: &ObjPath, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn a_failed_multipart_upload_is_aborted_and_nothing_appears() {
        let flaky = Arc::new(Flaky::default());
        let store = Store::with(flaky.clone(), "team", "memory://team");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.parquet");
        // Five parts: more than fits one PUT, and the third part fails.
        std::fs::write(&big, vec![7u8; SINGLE_PUT_MAX as usize + 3 * PART]).unwrap();
        let e = format!("{:#}", store.upload(&big, "cache/big.parquet").await.unwrap_err());
        assert!(e.contains("uploading") && e.contains("connection reset"), "{e}");
        assert!(flaky.aborted.load(Ordering::SeqCst), "the failed upload was not aborted");
        assert!(!store.exists("cache/big.parquet").await.unwrap());
        // A whole upload still goes through, in parts, byte for byte.
        let ok = Store::with(Arc::new(InMemory::new()), "team", "memory://team");
        ok.upload(&big, "cache/big.parquet").await.unwrap();
        assert_eq!(ok.get("cache/big.parquet").await.unwrap().unwrap().len(), SINGLE_PUT_MAX as usize + 3 * PART);
    }
}
