//! How every process of a cluster reaches `s3://` tables: the client (which reads a table's
//! schema), the scheduler (which plans its file groups) and the executors (which read it) each
//! open a bucket on first use, with the credentials and endpoint of the usual `AWS_*` variables,
//! as the shared store does. DataFusion's default registry only knows the local file system.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use url::Url;

/// Local files as DataFusion has them, and any `s3://bucket` opened from the environment.
#[derive(Debug, Default)]
pub struct EnvObjectStores {
    local: DefaultObjectStoreRegistry,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStoreRegistry for EnvObjectStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        match (url.scheme(), url.host_str()) {
            ("s3", Some(bucket)) => self.buckets.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_string(), store),
            _ => self.local.register_store(url, store),
        }
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if url.scheme() != "s3" {
            return self.local.get_store(url);
        }
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| DataFusionError::Configuration(format!("`{url}` names no bucket")))?;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let client = crate::store::s3::client(bucket, &crate::store::s3::S3Options::default())
            .map_err(|e| DataFusionError::Configuration(format!("opening s3://{bucket} (from the AWS_* variables): {e:#}")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(client);
        buckets.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

/// A runtime whose tables may live in S3; `temp_dir` is where sorts and shuffles spill.
pub fn runtime(temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(EnvObjectStores::default()));
    if let Some(dir) = temp_dir {
        b = b.with_temp_file_path(dir);
    }
    b.build_arc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_resolve_and_buckets_open_once() {
        let stores = EnvObjectStores::default();
        assert!(stores.get_store(&Url::parse("file:///tmp/x.parquet").unwrap()).is_ok());
        let a = stores.get_store(&Url::parse("s3://team-cache/cache/entries/x/output.parquet").unwrap()).unwrap();
        let b = stores.get_store(&Url::parse("s3://team-cache/other").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one client per bucket");
        assert!(stores.get_store(&Url::parse("gs://elsewhere/x").unwrap()).is_err());
    }
}
