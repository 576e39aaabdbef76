//! Where cache entries live: `<root>/entries/<key>/` holding the stage's files and a
//! `meta.json`, plus `<root>/stages/<pipeline>/<stage>.json` remembering the last key each
//! stage was built with (so `status` can say what changed since).
//!
//! An entry is built in a temp folder and renamed into place, so a crash leaves either no
//! entry or a whole one. Each file's checksum is in `meta.json` and is checked before reuse.

use std::collections::BTreeMap;
use std::fs;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::key::{CacheKey, KeyParts};
use crate::io::fs::{FileSum, check_name, checksum, sync_dir, write_atomic};
use crate::io::table::SortKey;
use crate::store::Store;

/// The main table every stage writes; side tables sit beside it as `<name>.parquet`.
pub const OUTPUT: &str = "output.parquet";
pub const META: &str = "meta.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub key: String,
    pub pipeline: String,
    pub stage: String,
    pub parts: KeyParts,
    pub rows: u64,
    pub built_at: String,
    pub seconds: f64,
    pub files: BTreeMap<String, FileSum>,
    /// Op-specific facts worth showing (quarantine counts, model metrics).
    #[serde(default)]
    pub summary: serde_json::Value,
    /// The order `output.parquet` is sorted in.
    #[serde(default)]
    pub sorted_by: Vec<SortKey>,
}

impl EntryMeta {
    /// Every name here that becomes a local path (its files; its pipeline and stage, which name
    /// the stage's last-key file) is one path component: a `meta.json` from a shared store, or
    /// a damaged one, must not write or read outside its folder.
    pub fn check_names(&self) -> Result<(), String> {
        check_name(&self.pipeline).map_err(|e| format!("pipeline {e}"))?;
        check_name(&self.stage).map_err(|e| format!("stage {e}"))?;
        for name in self.files.keys() {
            check_name(name).map_err(|e| format!("file {e}"))?;
        }
        Ok(())
    }
}

/// A complete entry on disk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: EntryMeta,
}

impl Entry {
    pub fn output(&self) -> PathBuf {
        self.dir.join(OUTPUT)
    }

    /// Side tables, by name (`quarantine` for `quarantine.parquet`).
    pub fn tables(&self) -> Vec<(String, PathBuf)> {
        self.meta
            .files
            .keys()
            .filter(|f| f.ends_with(".parquet") && f.as_str() != OUTPUT)
            .map(|f| (f.trim_end_matches(".parquet").to_string(), self.dir.join(f)))
            .collect()
    }

    pub fn bytes(&self) -> u64 {
        self.meta.files.values().map(|f| f.bytes).sum()
    }
}

/// A build in progress: files go into `dir`; nothing is visible until `commit`.
pub struct Pending {
    pub dir: PathBuf,
    key: CacheKey,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// The shared store behind the local folder, if the pipeline has one (see `shared.rs`).
    store: Option<Store>,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into(), store: None }
    }

    pub fn with_store(self, store: Option<Store>) -> Cache {
        Cache { store, ..self }
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, key: CacheKey) -> PathBuf {
        self.entry_path(&key.hex())
    }

    /// The folder of the entry with this key (hex), whether or not it exists.
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.entries_dir().join(key)
    }

    /// Whole entries, one folder per key.
    pub fn entries_dir(&self) -> PathBuf {
        self.root.join("entries")
    }

    /// Each stage's last build, `<pipeline>/<stage>.json` (what `status` compares with).
    pub fn stages_dir(&self) -> PathBuf {
        self.root.join("stages")
    }

    /// Builds in progress, and old entries a forced build replaced.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Damaged entries moved aside, for someone to look at.
    pub fn corrupt_dir(&self) -> PathBuf {
        self.root.join("corrupt")
    }

    fn last_path(&self, pipeline: &str, stage: &str) -> PathBuf {
        self.stages_dir().join(pipeline).join(format!("{stage}.json"))
    }

    /// The entry for `key`, if it exists and every file matches its checksum. A damaged
    /// entry is moved aside (never deleted: someone may want to look) and reported.
    pub fn lookup(&self, key: CacheKey) -> Result<Option<Entry>> {
        let dir = self.entry_dir(key);
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Ok(None);
        }
        let meta: EntryMeta = match fs::read(&meta_path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice(&b)?)) {
            Ok(m) => m,
            Err(e) => {
                self.quarantine(&dir, &format!("unreadable meta.json: {e}"))?;
                return Ok(None);
            }
        };
        if let Err(e) = meta.check_names() {
            self.quarantine(&dir, &format!("meta.json names a {e}"))?;
            return Ok(None);
        }
        for (name, sum) in &meta.files {
            let p = dir.join(name);
            match checksum(&p) {
                Ok(s) if s.blake3 == sum.blake3 && s.bytes == sum.bytes => {}
                Ok(_) => {
                    self.quarantine(&dir, &format!("{name} does not match its checksum"))?;
                    return Ok(None);
                }
                Err(e) => {
                    self.quarantine(&dir, &format!("{name}: {e}"))?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(Entry { dir, meta }))
    }

    fn quarantine(&self, dir: &Path, why: &str) -> Result<()> {
        let aside =
            self.corrupt_dir().join(format!("{}-{}", dir.file_name().unwrap_or_default().to_string_lossy(), chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")));
        tracing::warn!("cache entry {} is damaged ({why}); moved to {} and will be rebuilt", dir.display(), aside.display());
        fs::create_dir_all(aside.parent().unwrap())?;
        fs::rename(dir, &aside).with_context(|| format!("moving damaged cache entry {} aside", dir.display()))?;
        Ok(())
    }

    pub fn begin(&self, key: CacheKey) -> Result<Pending> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", key.hex()))
            .tempdir_in(&tmp)
            .with_context(|| format!("creating a temp folder in {}", tmp.display()))?
            .keep();
        Ok(Pending { dir, key })
    }

    /// Seal a build: checksum its files, write `meta.json`, sync, and rename into place.
    pub fn commit(&self, pending: Pending, mut meta: EntryMeta) -> Result<Entry> {
        let mut files = BTreeMap::new();
        for e in fs::read_dir(&pending.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == META || !e.file_type()?.is_file() {
                continue;
            }
            fs::File::open(e.path())?.sync_all()?;
            files.insert(name, checksum(&e.path())?);
        }
        anyhow::ensure!(files.contains_key(OUTPUT), "stage `{}` wrote no {OUTPUT}", meta.stage);
        meta.files = files;
        self.seal(pending, meta)
    }

    /// Put a build in place whose files `meta.files` already describes (synced and checksummed).
    pub(super) fn seal(&self, pending: Pending, mut meta: EntryMeta) -> Result<Entry> {
        meta.key = pending.key.hex();
        write_atomic(&pending.dir.join(META), &serde_json::to_vec_pretty(&meta)?)?;
        let dest = self.entry_dir(pending.key);
        fs::create_dir_all(dest.parent().unwrap())?;
        // The key is built already only when the stage was forced (the run lock keeps other runs
        // out): the new build replaces the old, which is moved aside first, so the entry is the
        // old one, none (a crash in between: the next run rebuilds), or the new one.
        let replaced = dest.exists().then(|| self.tmp_dir().join(format!("{}-replaced-{}", pending.key.hex(), std::process::id())));
        if let Some(old) = &replaced {
            fs::rename(&dest, old).with_context(|| format!("moving the old entry {} aside", dest.display()))?;
        }
        fs::rename(&pending.dir, &dest).with_context(|| format!("moving the finished entry to {}", dest.display()))?;
        if let Some(old) = replaced {
            let _ = fs::remove_dir_all(old);
        }
        sync_dir(dest.parent().unwrap());
        self.set_last(&meta.pipeline, &meta.stage, pending.key)?;
        Ok(Entry { dir: dest, meta })
    }

    pub fn abandon(&self, pending: Pending) {
        let _ = fs::remove_dir_all(&pending.dir);
    }

    fn set_last(&self, pipeline: &str, stage: &str, key: CacheKey) -> Result<()> {
        let p = self.last_path(pipeline, stage);
        fs::create_dir_all(p.parent().unwrap())?;
        write_atomic(&p, serde_json::json!({ "key": key.hex() }).to_string().as_bytes())
    }

    /// The entry this stage was last built into, whatever its key: the baseline for "what changed".
    pub fn last_built(&self, pipeline: &str, stage: &str) -> Option<EntryMeta> {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(self.last_path(pipeline, stage)).ok()?).ok()?;
        let key = CacheKey::parse(v.get("key")?.as_str()?)?;
        let b = fs::read(self.entry_dir(key).join(META)).ok()?;
        serde_json::from_slice(&b).ok()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::cache) fn meta() -> EntryMeta {
        EntryMeta {
            key: String::new(),
            pipeline: "p".into(),
            stage: "s".into(),
            parts: KeyParts {
                op: "sql".into(),
                op_version: 1,
                code_version: "t".into(),
                params: json!({}),
                files: Default::default(),
                upstream: Default::default(),
                inputs: vec![],
            },
            rows: 3,
            built_at: "now".into(),
            seconds: 0.1,
            files: Default::default(),
            summary: json!(null),
            sorted_by: vec![],
        }
    }

    #[test]
    fn commit_then_lookup_then_detect_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let m = meta();
        let key = m.parts.key();
        assert!(cache.lookup(key).unwrap().is_none());
        let p = cache.begin(key).unwrap();
        fs::write(p.dir.join(OUTPUT), b"pretend parquet").unwrap();
        fs::write(p.dir.join("quarantine.parquet"), b"side").unwrap();
        let e = cache.commit(p, m).unwrap();
        assert_eq!(e.meta.rows, 3);
        assert_eq!(e.tables()[0].0, "quarantine");
        assert!(cache.lookup(key).unwrap().is_some());
        assert_eq!(cache.last_built("p", "s").unwrap().key, key.hex());
        // No temp folder is left behind.
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);

        fs::write(e.output(), b"pretend parquet, but flipped").unwrap();
        assert!(cache.lookup(key).unwrap().is_none(), "a damaged entry must not be reused");
        assert!(!e.dir.exists());
        assert_eq!(fs::read_dir(tmp.path().join("corrupt")).unwrap().count(), 1);
    }

    #[test]
    fn a_forced_rebuild_replaces_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let key = meta().parts.key();
        for output in ["built before a code change", "built after it"] {
            let p = cache.begin(key).unwrap();
            fs::write(p.dir.join(OUTPUT), output).unwrap();
            cache.commit(p, meta()).unwrap();
        }
        let e = cache.lookup(key).unwrap().unwrap();
        assert_eq!(fs::read_to_string(e.output()).unwrap(), "built after it");
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0, "the old entry is gone");
    }

    #[test]
    fn a_build_without_output_is_not_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let m = meta();
        let key = m.parts.key();
        let p = cache.begin(key).unwrap();
        assert!(cache.commit(p, m).is_err());
        assert!(cache.lookup(key).unwrap().is_none());
    }
}
