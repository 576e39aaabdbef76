//! S3 clients for ingest sources and the shared store: one place that knows how custom
//! endpoints (MinIO, Ceph, moto) want to be spoken to, and how long to retry.

use std::time::Duration;

use anyhow::Result;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, RetryConfig};

/// S3 settings a stage may give; everything else comes from the usual `AWS_*` variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// `s3://bucket/prefix` as (bucket, prefix without slashes at its ends); None when it is not
/// an s3:// URL. The bucket may come back empty: each caller says what it expected.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket, prefix.trim_matches('/')))
}

/// How an s3:// location is shown: `s3://bucket/prefix`, or `s3://bucket` without a prefix.
pub fn display(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_string()
}

/// Retries ride out a throttle or a restarting endpoint; past ~30 s a nightly run is better
/// off failing with the reason (the next run picks up where this one stopped) than hanging
/// for object_store's default 3 minutes per request.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5), base: 2.0 },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

pub fn client(bucket: &str, opts: &S3Options) -> Result<AmazonS3> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry());
    if let Some(e) = &opts.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    let env_endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let endpoint = opts.endpoint.as_deref().or(env_endpoint.as_deref());
    if endpoint.is_some() {
        // Custom endpoints rarely serve virtual-hosted buckets.
        b = b.with_virtual_hosted_style_request(false);
    }
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        b = b.with_allow_http(true);
    }
    Ok(b.build()?)
}
