//! The cache's second tier: entries in the shared store (`crate::store`), fetched when the
//! local cache misses and shared once built, so another machine reuses them.

use anyhow::{Context, Result};

use super::entries::{Cache, Entry, EntryMeta, META};
use super::key::CacheKey;
use crate::io::fs::checksum;

/// Where entries live in the shared store, one folder per key.
pub const STORE_ENTRIES: &str = "cache/entries";

fn entry_rel(key: CacheKey) -> String {
    format!("{STORE_ENTRIES}/{}", key.hex())
}

impl Entry {
    /// The URL of one of the entry's files (`output.parquet`, a side table) in `store`, where
    /// `Cache::share` put it.
    pub fn url_in(&self, store: &crate::store::Store, file: &std::path::Path) -> Result<String> {
        let key = CacheKey::parse(&self.meta.key).context("a cache entry with a malformed key")?;
        let name = file.file_name().context("an entry file has a name")?.to_string_lossy();
        Ok(store.url_of(&format!("{}/{name}", entry_rel(key))))
    }
}

impl Cache {
    /// The entry for `key`: the local one, else the shared store's, copied down and checked
    /// file by file against its checksums before it is used.
    pub async fn fetch(&self, key: CacheKey) -> Result<Option<Entry>> {
        if let Some(e) = self.lookup(key)? {
            return Ok(Some(e));
        }
        let Some(store) = self.store() else { return Ok(None) };
        let rel = entry_rel(key);
        // meta.json is written last, so its presence means every file is there.
        let Some(meta) = store.get(&format!("{rel}/{META}")).await? else { return Ok(None) };
        let meta: EntryMeta = match serde_json::from_slice(&meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{} is unreadable ({e}); the stage will be rebuilt and shared again", store.url_of(&format!("{rel}/{META}")));
                return Ok(None);
            }
        };
        if let Err(e) = meta.check_names() {
            // Refused before anything touches the disk; the rebuild shares a good entry over it.
            tracing::warn!("{} names a {e}: refused; the stage will be rebuilt and shared again", store.url_of(&format!("{rel}/{META}")));
            store.delete(&format!("{rel}/{META}")).await?;
            return Ok(None);
        }
        let pending = self.begin(key)?;
        for (name, sum) in &meta.files {
            let local = pending.dir.join(name);
            let fetched = store.download(&format!("{rel}/{name}"), &local).await;
            let intact = match &fetched {
                Ok(true) => checksum(&local).is_ok_and(|s| s.blake3 == sum.blake3 && s.bytes == sum.bytes),
                _ => false,
            };
            if !intact {
                self.abandon(pending);
                fetched.with_context(|| format!("fetching stage `{}` from the store", meta.stage))?;
                tracing::warn!(
                    "{} is missing or does not match its checksum; stage `{}` will be rebuilt and shared again",
                    store.url_of(&format!("{rel}/{name}")),
                    meta.stage
                );
                // Without its meta.json the damaged entry is invisible, and the rebuild replaces it.
                store.delete(&format!("{rel}/{META}")).await?;
                return Ok(None);
            }
        }
        // A `pipeline status` or `inspect` beside this process may have fetched it meanwhile.
        if let Some(e) = self.lookup(key)? {
            self.abandon(pending);
            return Ok(Some(e));
        }
        tracing::info!("stage `{}`: reusing {} from the store", meta.stage, store.url_of(&rel));
        // Every file was just checked against meta.files: no need to read them again.
        Ok(Some(self.seal(pending, meta)?))
    }

    /// Make sure the store holds `entry` (a no-op without a store, or when it is there already).
    /// `built_now`: this run built it (a forced rebuild, say after a code change), so a different
    /// build of the key in the store is replaced, its meta.json first so that no machine fetches
    /// a mix of the two. A reused entry never replaces the store's.
    pub async fn share(&self, entry: &Entry, built_now: bool) -> Result<()> {
        let Some(store) = self.store() else { return Ok(()) };
        let key = CacheKey::parse(&entry.meta.key).context("a cache entry with a malformed key")?;
        let rel = entry_rel(key);
        let meta = format!("{rel}/{META}");
        if let Some(bytes) = store.get(&meta).await? {
            let theirs: Option<EntryMeta> = serde_json::from_slice(&bytes).ok();
            if !built_now || theirs.is_some_and(|t| t.files == entry.meta.files) {
                return Ok(());
            }
            store.delete(&meta).await?;
        }
        for name in entry.meta.files.keys() {
            store.upload(&entry.dir.join(name), &format!("{rel}/{name}")).await?;
        }
        store.upload(&entry.dir.join(META), &format!("{rel}/{META}")).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::entries::{OUTPUT, tests::meta};
    use super::*;
    use crate::store::Store;

    fn machine(store: &Store) -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path()).with_store(Some(store.clone()));
        (dir, cache)
    }

    #[tokio::test]
    async fn an_entry_built_on_one_machine_is_fetched_on_another_and_checked() {
        let store = Store::with(Arc::new(object_store::memory::InMemory::new()), "team", "memory://team");
        let (_a_dir, a) = machine(&store);
        let m = meta();
        let key = m.parts.key();
        let p = a.begin(key).unwrap();
        std::fs::write(p.dir.join(OUTPUT), b"pretend parquet").unwrap();
        let built = a.commit(p, m).unwrap();
        a.share(&built, true).await.unwrap();

        let (_b_dir, b) = machine(&store);
        let fetched = b.fetch(key).await.unwrap().expect("the store has it");
        assert_eq!(std::fs::read(fetched.output()).unwrap(), b"pretend parquet");
        assert!(b.lookup(key).unwrap().is_some(), "kept locally once fetched");

        // Damaged in the store: not used, and hidden so the rebuild shares a good copy.
        store.put(&format!("cache/entries/{}/{OUTPUT}", key.hex()), b"flipped".to_vec()).await.unwrap();
        let (_c_dir, c) = machine(&store);
        assert!(c.fetch(key).await.unwrap().is_none());
        assert!(!store.exists(&format!("cache/entries/{}/{META}", key.hex())).await.unwrap());
        assert!(c.lookup(key).unwrap().is_none(), "nothing half-fetched is left behind");
        a.share(&built, true).await.unwrap();
        assert!(c.fetch(key).await.unwrap().is_some(), "shared again, fetched again");

        // A meta.json whose names leave the entry's folder is refused before anything is written.
        let (_f_dir, f) = machine(&store);
        for (field, value) in [
            ("files", serde_json::json!({ "../../escaped": { "bytes": 1, "blake3": "x" } })),
            ("stage", serde_json::json!("../../escaped")),
            ("pipeline", serde_json::json!("/tmp")),
        ] {
            let mut bad = serde_json::to_value(&built.meta).unwrap();
            bad[field] = value;
            store.put(&format!("cache/entries/{}/{META}", key.hex()), serde_json::to_vec(&bad).unwrap()).await.unwrap();
            assert!(f.fetch(key).await.unwrap().is_none(), "{field}");
            assert!(!f.root().join("escaped").exists() && !f.root().join("escaped.json").exists(), "{field}: written outside the entry");
            assert!(!store.exists(&format!("cache/entries/{}/{META}", key.hex())).await.unwrap(), "{field}: hidden, so a rebuild shares over it");
        }
        a.share(&built, true).await.unwrap();

        // A forced rebuild on A (after a code change) replaces the store's copy too.
        let p = a.begin(key).unwrap();
        std::fs::write(p.dir.join(OUTPUT), b"rebuilt parquet").unwrap();
        let rebuilt = a.commit(p, meta()).unwrap();
        a.share(&rebuilt, false).await.unwrap();
        let (_d_dir, d) = machine(&store);
        assert_eq!(std::fs::read(d.fetch(key).await.unwrap().unwrap().output()).unwrap(), b"pretend parquet", "reusing shares nothing new");
        a.share(&rebuilt, true).await.unwrap();
        let (_e_dir, e) = machine(&store);
        assert_eq!(std::fs::read(e.fetch(key).await.unwrap().unwrap().output()).unwrap(), b"rebuilt parquet");
    }
}
