//! The cache's second tier: entries in the shared store (`crate::store`), fetched when the
//! local cache misses and shared once built, so another machine reuses them.

use anyhow::{Context, Result};

use super::key::CacheKey;
use super::store::{checksum, Cache, Entry, EntryMeta, META};

fn entry_rel(key: CacheKey) -> String {
    format!("cache/entries/{}", key.hex())
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
        tracing::info!("stage `{}`: reusing {} from the store", meta.stage, store.url_of(&rel));
        Ok(Some(self.commit(pending, meta)?))
    }

    /// Make sure the store holds `entry` (a no-op without a store, or when it is there already).
    pub async fn share(&self, entry: &Entry) -> Result<()> {
        let Some(store) = self.store() else { return Ok(()) };
        let key = CacheKey::parse(&entry.meta.key).context("a cache entry with a malformed key")?;
        let rel = entry_rel(key);
        if store.exists(&format!("{rel}/{META}")).await? {
            return Ok(());
        }
        for name in entry.meta.files.keys() {
            store.upload(&entry.dir.join(name), &format!("{rel}/{name}")).await?;
        }
        store.upload(&entry.dir.join(META), &format!("{rel}/{META}")).await
    }
}
