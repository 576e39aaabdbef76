//! `pipeline gc --store`: the shared store, collected by the local `gc`'s rules.
//!
//! Kept: the store's runs that the retention keeps (newest by when their manifest was
//! written; the one `runs/latest` names always), the cache entries those runs used, and every
//! entry the local collection kept. Removed: the other runs and entries, and uploads cut short
//! (no marker file) once they are an hour old. A run or entry is taken down marker first, so
//! no reader ever takes a half-removed one for a whole one.
//!
//! The run lock is per machine: collect where no other machine is running against the store
//! at that moment (e.g. after the nightly run, in the same job).

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::runs::{MANIFEST, Retention, manifest_keys};
use crate::cache::{META, STORE_ENTRIES};
use crate::store::{Listed, Store};

/// An unmarked folder younger than this may be an upload in progress.
const UNFINISHED_GRACE_HOURS: i64 = 1;

#[derive(Debug, Default, PartialEq)]
pub struct Collected {
    pub runs_removed: usize,
    pub runs_kept: usize,
    pub entries_removed: usize,
    pub bytes: u64,
}

/// Objects below a folder, grouped by their first path segment (a run id, an entry key).
/// Loose objects (`runs/latest`) belong to no group.
fn group(objects: Vec<Listed>) -> BTreeMap<String, Vec<Listed>> {
    let mut groups: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for o in objects {
        if let Some((first, _)) = o.path.split_once('/') {
            groups.entry(first.to_string()).or_default().push(o);
        }
    }
    groups
}

fn marked_at(name: &str, objects: &[Listed], mark: &str) -> Option<DateTime<Utc>> {
    let path = format!("{name}/{mark}");
    objects.iter().find(|o| o.path == path).map(|o| o.written)
}

fn abandoned(objects: &[Listed], now: DateTime<Utc>) -> bool {
    objects.iter().map(|o| o.written).max().is_none_or(|w| now - w > chrono::Duration::hours(UNFINISHED_GRACE_HOURS))
}

pub async fn collect(store: &Store, retention: Retention, kept_here: &HashSet<String>, dry_run: bool) -> Result<Collected> {
    let now = Utc::now();
    let mut collected = Collected::default();
    let runs = group(store.list_objects("runs").await?);
    let latest = store.get("runs/latest").await?.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let mut finished: Vec<(&String, DateTime<Utc>)> = runs.iter().filter_map(|(id, objects)| Some((id, marked_at(id, objects, MANIFEST)?))).collect();
    finished.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
    let mut wanted = kept_here.clone();
    let mut doomed: Vec<(&str, &String, &[Listed], &str)> = Vec::new();
    for (rank, (id, written)) in finished.iter().enumerate() {
        let age_days = (now - *written).num_seconds() as f64 / 86_400.0;
        if retention.keeps(rank, age_days, latest.as_deref() == Some(id.as_str())) {
            collected.runs_kept += 1;
            let manifest = format!("runs/{id}/{MANIFEST}");
            let bytes = store.get(&manifest).await?.with_context(|| format!("{} vanished while collecting", store.url_of(&manifest)))?;
            wanted.extend(manifest_keys(&bytes).with_context(|| format!("{} is damaged", store.url_of(&manifest)))?);
        } else {
            doomed.push(("runs", id, &runs[*id], MANIFEST));
        }
    }
    for (id, objects) in &runs {
        if marked_at(id, objects, MANIFEST).is_none() && abandoned(objects, now) {
            doomed.push(("runs", id, objects, MANIFEST));
        }
    }
    collected.runs_removed = doomed.len();
    let entries = group(store.list_objects(STORE_ENTRIES).await?);
    for (key, objects) in &entries {
        let unwanted = match marked_at(key, objects, META) {
            Some(_) => !wanted.contains(key),
            None => abandoned(objects, now),
        };
        if unwanted {
            doomed.push((STORE_ENTRIES, key, objects, META));
            collected.entries_removed += 1;
        }
    }
    for (folder, name, objects, mark) in doomed {
        let mut paths: Vec<&Listed> = objects.iter().collect();
        let marker = format!("{name}/{mark}");
        paths.sort_by_key(|o| o.path != marker);
        for o in paths {
            collected.bytes += o.size;
            if !dry_run {
                store.delete(&format!("{folder}/{}", o.path)).await?;
            }
        }
    }
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn put(store: &Store, rel: &str, text: &str) {
        store.put(rel, text.as_bytes().to_vec()).await.unwrap();
    }

    fn manifest(keys: &[&str]) -> String {
        serde_json::json!({ "stages": keys.iter().map(|k| serde_json::json!({ "stage": "s", "key": k })).collect::<Vec<_>>() }).to_string()
    }

    #[tokio::test]
    async fn the_store_keeps_what_kept_runs_and_this_machine_use() {
        let store = Store::with(std::sync::Arc::new(InMemory::new()), "team", "memory://team");
        // Three runs, oldest first (written in this order); `latest` names the oldest.
        for (id, keys) in [("r1", ["a", "b"]), ("r2", ["a", "c"]), ("r3", ["a", "d"])] {
            put(&store, &format!("runs/{id}/report/report.txt"), "report").await;
            put(&store, &format!("runs/{id}/{MANIFEST}"), &manifest(&keys)).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        put(&store, "runs/latest", "r1").await;
        for key in ["a", "b", "c", "d", "e", "f"] {
            put(&store, &format!("cache/entries/{key}/output.parquet"), "12345").await;
            put(&store, &format!("cache/entries/{key}/{META}"), "{}").await;
        }
        // An entry being uploaded right now: no meta.json yet, and young.
        put(&store, "cache/entries/g/output.parquet", "1").await;
        let here: HashSet<String> = ["e".to_string()].into();
        let keep_newest = Retention { keep_runs: 1, keep_days: None };

        let dry = collect(&store, keep_newest, &here, true).await.unwrap();
        assert_eq!(dry, Collected { runs_removed: 1, runs_kept: 2, entries_removed: 2, bytes: 6 + manifest(&["a", "c"]).len() as u64 + 5 + 2 + 5 + 2 });
        assert_eq!(store.list("cache/entries").await.unwrap().len(), 13, "a dry run removes nothing");

        assert_eq!(collect(&store, keep_newest, &here, false).await.unwrap(), dry);
        // r3 (newest) and r1 (latest) stay with their entries, e stays for this machine.
        let mut left: Vec<String> =
            store.list("cache/entries").await.unwrap().into_iter().filter_map(|p| p.split_once('/').map(|(k, _)| k.to_string())).collect();
        left.dedup();
        assert_eq!(left, ["a", "b", "d", "e", "g"]);
        let runs = store.list("runs").await.unwrap();
        assert!(runs.contains(&"latest".to_string()) && runs.iter().all(|p| !p.starts_with("r2/")), "{runs:?}");
        assert_eq!(collect(&store, keep_newest, &here, false).await.unwrap(), Collected { runs_kept: 2, ..Default::default() }, "nothing more to collect");
    }
}
