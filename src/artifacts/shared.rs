//! Runs and the model registry in the shared store (`crate::store`), so every machine sees
//! the same model versions and the same promotion, and each run's record outlives the machine.
//!
//! Immutable things (a run's folder, a model version) are uploaded once, their marker file
//! last (`manifest.json`, `version.json`), and only marked ones are read back. The mutable
//! pointers (`promoted.json`, `runs/latest`) are replaced whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use super::models::{Promoted, Registry};
use super::runs::MANIFEST;
use crate::io::fs::{files_below, write_atomic};
use crate::store::Store;

const VERSION_MARK: &str = "version.json";
const PROMOTED: &str = "promoted.json";

/// Bring the store's model versions and promotions into the local registry before a run, so
/// `publish` compares against what the whole team serves.
pub async fn pull_registry(store: &Store, registry: &Registry) -> Result<()> {
    let remote = store.list("models").await?;
    // <model>/<version>/<file> grouped by version; <model>/promoted.json on its own.
    let mut versions: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut promoted = BTreeSet::new();
    for rel in &remote {
        let parts: Vec<&str> = rel.split('/').collect();
        // Each part becomes a local folder or file name: one that would leave the registry is
        // refused, named, and the rest is fetched.
        if let Some(bad) = parts.iter().find_map(|p| crate::io::fs::check_name(p).err()) {
            tracing::warn!("{}: {bad}; not fetched", store.url_of(&format!("models/{rel}")));
            continue;
        }
        match parts.as_slice() {
            [model, PROMOTED] => {
                promoted.insert(model.to_string());
            }
            // A version's files, and those of its folders (a forest's `pooled/`).
            [model, version, _, ..] => versions.entry((model.to_string(), version.to_string())).or_default().push(rel.clone()),
            _ => {}
        }
    }
    for ((model, version), files) in versions {
        let dest = registry.version_dir(&model, &version);
        if dest.exists() || !files.iter().any(|f| f.ends_with(&format!("/{VERSION_MARK}"))) {
            continue;
        }
        let parent = dest.parent().unwrap();
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new().prefix(".pulling-").tempdir_in(parent)?;
        for rel in &files {
            // Below <model>/<version>/, each part already checked above.
            let inside: std::path::PathBuf = rel.split('/').skip(2).collect();
            if let Some(folder) = inside.parent().filter(|f| !f.as_os_str().is_empty()) {
                std::fs::create_dir_all(tmp.path().join(folder))?;
            }
            store.download(&format!("models/{rel}"), &tmp.path().join(inside)).await?;
        }
        std::fs::rename(tmp.keep(), &dest).with_context(|| format!("moving {} into place", dest.display()))?;
        tracing::info!("model {model} {version}: fetched from {}", store.url());
    }
    for model in promoted {
        let Some(bytes) = store.get(&format!("models/{model}/{PROMOTED}")).await? else { continue };
        let theirs: Promoted = serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", store.url_of(&format!("models/{model}/{PROMOTED}"))))?;
        theirs.check().with_context(|| format!("{} is damaged", store.url_of(&format!("models/{model}/{PROMOTED}"))))?;
        let ours = registry.promoted(&model)?;
        // Promotions only ever append: keep ours when it extends theirs (made here, not yet
        // shared), else the store's is the newer word.
        if !extends(&ours, &theirs) {
            let path = registry.root().join(&model).join(PROMOTED);
            write_atomic(&path, &serde_json::to_vec_pretty(&theirs)?)?;
        }
    }
    Ok(())
}

fn extends(ours: &Promoted, theirs: &Promoted) -> bool {
    let key = |p: &super::models::Promotion| (p.version.clone(), p.at.clone());
    ours.history.len() >= theirs.history.len() && ours.history.iter().zip(&theirs.history).all(|(a, b)| key(a) == key(b))
}

/// Share what this machine has and the store lacks: every model version, the promotions, every
/// run folder, and `runs/latest` when `latest_run` is given.
pub async fn push(store: &Store, root: &Path, latest_run: Option<&str>) -> Result<()> {
    push_registry(store, &Registry::of_project(root)).await?;
    let runs = super::layout::Layout::of(root).runs();
    let remote: BTreeSet<String> = store.list("runs").await?.into_iter().collect();
    if let Ok(rd) = std::fs::read_dir(&runs) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            let is_run = !e.file_type().is_ok_and(|t| t.is_symlink()) && dir.join(MANIFEST).is_file();
            if is_run && !remote.contains(&format!("{id}/{MANIFEST}")) {
                upload_folder(store, &dir, &format!("runs/{id}"), MANIFEST).await?;
            }
        }
    }
    if let Some(id) = latest_run {
        store.put("runs/latest", id.as_bytes().to_vec()).await?;
    }
    Ok(())
}

/// Share the versions the store lacks, then the promotions.
pub async fn push_registry(store: &Store, registry: &Registry) -> Result<()> {
    let remote: BTreeSet<String> = store.list("models").await?.into_iter().collect();
    for model in registry.models()? {
        for v in registry.versions(&model)? {
            let rel = format!("{model}/{}", v.version);
            if !remote.contains(&format!("{rel}/{VERSION_MARK}")) {
                upload_folder(store, &registry.version_dir(&model, &v.version), &format!("models/{rel}"), VERSION_MARK).await?;
            }
        }
        let promoted = registry.root().join(&model).join(PROMOTED);
        if promoted.is_file() {
            store.upload(&promoted, &format!("models/{model}/{PROMOTED}")).await?;
        }
    }
    Ok(())
}

/// Upload a folder's regular files (links are local conveniences), `mark` last.
async fn upload_folder(store: &Store, dir: &Path, rel: &str, mark: &str) -> Result<()> {
    let mut names: Vec<String> = files_below(dir)?.iter().filter_map(|f| f.strip_prefix(dir).ok()).map(|r| r.to_string_lossy().replace('\\', "/")).collect();
    names.sort_by_key(|n| n == mark);
    for name in names {
        store.upload(&dir.join(&name), &format!("{rel}/{name}")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::models::Promotion;

    fn history(versions: &[&str]) -> Promoted {
        Promoted {
            history: versions
                .iter()
                .enumerate()
                .map(|(i, v)| Promotion { version: v.to_string(), at: format!("2026-11-2{i}T02:00:00Z"), reason: "test".into() })
                .collect(),
        }
    }

    #[test]
    fn local_promotions_win_only_when_they_extend_the_stores() {
        // Promoted here and not shared yet: keep ours.
        assert!(extends(&history(&["v1", "v2"]), &history(&["v1"])));
        assert!(extends(&history(&["v1"]), &history(&["v1"])));
        // The store moved on (another machine promoted): take theirs.
        assert!(!extends(&history(&["v1"]), &history(&["v1", "v2"])));
        // Diverged: the store is the shared word.
        assert!(!extends(&history(&["v1", "v3"]), &history(&["v1", "v2"])));
        assert!(extends(&history(&["v1"]), &Promoted::default()));
    }

    #[tokio::test]
    async fn a_version_is_fetched_only_once_it_is_complete() {
        let objects = std::sync::Arc::new(object_store::memory::InMemory::new());
        let store = Store::with(objects, "team", "memory://team");
        // An upload cut short: the model file is there, version.json is not.
        store.put("models/random_forest/v2/model.json", b"{}".to_vec()).await.unwrap();
        store.put("models/random_forest/v1/model.json", b"{}".to_vec()).await.unwrap();
        store.put("models/random_forest/v1/pooled/forest.bin", b"trees".to_vec()).await.unwrap();
        store.put("models/random_forest/v1/version.json", b"{}".to_vec()).await.unwrap();
        let local = tempfile::tempdir().unwrap();
        let registry = Registry::at(local.path());
        pull_registry(&store, &registry).await.unwrap();
        assert!(registry.version_dir("random_forest", "v1").join("model.json").is_file());
        assert_eq!(std::fs::read(registry.version_dir("random_forest", "v1").join("pooled/forest.bin")).unwrap(), b"trees", "a version's folders come too");
        assert!(!registry.version_dir("random_forest", "v2").exists(), "a half-uploaded version must not be fetched");

        // A promotion naming a path instead of a version is refused, named, and not written.
        let evil = Promoted { history: vec![Promotion { version: "../../../escaped".into(), at: "now".into(), reason: "x".into() }] };
        store.put("models/random_forest/promoted.json", serde_json::to_vec(&evil).unwrap()).await.unwrap();
        let e = format!("{:#}", pull_registry(&store, &registry).await.unwrap_err());
        assert!(e.contains("promoted.json is damaged") && e.contains("../../../escaped"), "{e}");
        assert!(!registry.root().join("random_forest/promoted.json").exists());
        // The same file already in the registry (copied by hand): refused when read.
        std::fs::write(registry.root().join("random_forest/promoted.json"), serde_json::to_vec(&evil).unwrap()).unwrap();
        let e = format!("{:#}", registry.serving_dir("random_forest").unwrap_err());
        assert!(e.contains("is not a file name"), "{e}");
    }
}
