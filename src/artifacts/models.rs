//! The model registry: `artifacts/models/<model>/<version>/` and which version is promoted.
//!
//! ```text
//! artifacts/models/random_forest/
//!   v1/  v2/ ...        a trained model folder + version.json (where it came from, its scores)
//!   promoted.json       the serving version and the promotion history (rollback walks it back)
//! ```
//! Versions are copied in under a temporary name and renamed, and `promoted.json` is replaced
//! atomically, so a reader (the server) never sees a half-registered version or pointer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::evaluation::policy::PolicySpec;
use crate::io::fs::write_atomic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub model: String,
    /// The cache key of the train stage's entry: the same model is registered once.
    pub source_key: String,
    pub stage: String,
    pub pipeline: String,
    pub registered_at: String,
    /// Hold-out scores at registration (exact accuracy, replay under-provisioning).
    pub holdout: serde_json::Value,
    /// How serve turns the model's output into replicas; absent in versions published before
    /// policies were recorded, which serve as they did then (the output is the replica count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    /// The label rule it learned (`seed`, `hpa`, `demand`); absent in versions published before
    /// it was recorded, which all learned `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_rule: Option<String>,
    /// The member of the risk family it serves with (`evaluation::risk`): the level and the
    /// pods each service's forecast is raised by. Absent: the forecast as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::evaluation::risk::RiskMember>,
    /// The pooled forest the version carries in `pooled/` (`models::pooled`): per trained
    /// service, which forest serves it; services it does not list (new ones) get the pooled one.
    /// Absent: the version's own forest alone, which answers `unknown_service` for a new service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled: Option<crate::models::pooled::PooledChoice>,
}

impl VersionInfo {
    pub fn label_rule(&self) -> &str {
        self.label_rule.as_deref().unwrap_or("seed")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Promotion {
    pub version: String,
    pub at: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Promoted {
    /// Oldest first; the last one serves.
    pub history: Vec<Promotion>,
}

impl Promoted {
    pub fn current(&self) -> Option<&Promotion> {
        self.history.last()
    }

    /// Every version it names is a folder name of the registry (`v3`), never a path: the
    /// file may come from a shared store, and its versions are joined to the registry's folder.
    pub fn check(&self) -> Result<()> {
        for p in &self.history {
            crate::io::fs::check_name(&p.version).map_err(|e| anyhow::anyhow!("it names the version {e}"))?;
        }
        Ok(())
    }
}

pub struct Registry {
    root: PathBuf,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Registry {
    /// The registry of a project (`<root>/artifacts/models`).
    pub fn of_project(root: &Path) -> Registry {
        Registry { root: super::layout::Layout::of(root).models() }
    }

    pub fn at(root: impl Into<PathBuf>) -> Registry {
        Registry { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn models(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join(model)
    }

    pub fn version_dir(&self, model: &str, version: &str) -> PathBuf {
        self.model_dir(model).join(version)
    }

    /// Versions of a model, oldest first.
    pub fn versions(&self, model: &str) -> Result<Vec<VersionInfo>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.model_dir(model)) else { return Ok(out) };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('v') && e.path().join("version.json").is_file() {
                let info: VersionInfo =
                    serde_json::from_slice(&std::fs::read(e.path().join("version.json"))?).with_context(|| format!("{}/version.json", e.path().display()))?;
                out.push(info);
            }
        }
        out.sort_by_key(|v| v.version.trim_start_matches('v').parse::<u64>().unwrap_or(0));
        Ok(out)
    }

    pub fn version(&self, model: &str, version: &str) -> Result<VersionInfo> {
        self.versions(model)?
            .into_iter()
            .find(|v| v.version == version)
            .with_context(|| format!("{model} has no version `{version}` (see `pipeline models list`)"))
    }

    pub fn promoted(&self, model: &str) -> Result<Promoted> {
        let path = self.model_dir(model).join("promoted.json");
        match std::fs::read(&path) {
            Ok(b) => {
                let promoted: Promoted = serde_json::from_slice(&b).with_context(|| format!("{} is damaged", path.display()))?;
                promoted.check().with_context(|| format!("{} is damaged", path.display()))?;
                Ok(promoted)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Promoted::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The folder of the serving version, if any.
    pub fn serving_dir(&self, model: &str) -> Result<Option<(String, PathBuf)>> {
        Ok(self.promoted(model)?.current().map(|p| (p.version.clone(), self.version_dir(model, &p.version))))
    }

    /// Copies a trained model folder in as the next version, or returns the version that
    /// already holds the same source.
    pub fn register(&self, model: &str, src: &Path, info: VersionInfo) -> Result<(VersionInfo, bool)> {
        self.register_with(model, src, info, &[] as &[(&str, Vec<u8>)])
    }

    /// `register`, with `extra` files (name, bytes) written into the version beside the model's
    /// before it appears.
    pub fn register_with(&self, model: &str, src: &Path, mut info: VersionInfo, extra: &[(impl AsRef<str>, Vec<u8>)]) -> Result<(VersionInfo, bool)> {
        let existing = self.versions(model)?;
        if let Some(v) = existing.iter().find(|v| v.source_key == info.source_key) {
            return Ok((v.clone(), false));
        }
        let next = existing.iter().filter_map(|v| v.version.trim_start_matches('v').parse::<u64>().ok()).max().unwrap_or(0) + 1;
        info.version = format!("v{next}");
        info.model = model.to_string();
        info.registered_at = now();
        let dir = self.model_dir(model);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::Builder::new().prefix(".registering-").tempdir_in(&dir)?;
        for file in crate::io::fs::files_below(src)? {
            let rel = file.strip_prefix(src).expect("below src");
            let top = rel.to_string_lossy();
            // The cache's own bookkeeping and the predictions table are not part of the model.
            if top == "meta.json" || top == crate::cache::OUTPUT {
                continue;
            }
            if let Some(folder) = rel.parent().filter(|f| !f.as_os_str().is_empty()) {
                std::fs::create_dir_all(tmp.path().join(folder))?;
            }
            std::fs::copy(&file, tmp.path().join(rel))?;
        }
        for (name, bytes) in extra {
            let name = name.as_ref();
            if let Some(parent) = Path::new(name).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(tmp.path().join(parent))?;
            }
            std::fs::write(tmp.path().join(name), bytes).with_context(|| format!("writing {name} of {model} {}", info.version))?;
        }
        write_atomic(&tmp.path().join("version.json"), &serde_json::to_vec_pretty(&info)?)?;
        std::fs::rename(tmp.keep(), dir.join(&info.version)).with_context(|| format!("registering {model} {}", info.version))?;
        Ok((info, true))
    }

    /// Makes `version` the serving one.
    pub fn promote(&self, model: &str, version: &str, reason: &str) -> Result<()> {
        self.version(model, version)?;
        let mut p = self.promoted(model)?;
        if p.current().is_some_and(|c| c.version == version) {
            return Ok(());
        }
        p.history.push(Promotion { version: version.to_string(), at: now(), reason: reason.to_string() });
        write_atomic(&self.model_dir(model).join("promoted.json"), &serde_json::to_vec_pretty(&p)?)
    }

    /// Serves the version promoted before the current one again; returns it.
    pub fn rollback(&self, model: &str) -> Result<String> {
        let mut p = self.promoted(model)?;
        let Some(current) = p.current().cloned() else { bail!("{model} has no promoted version to roll back") };
        let previous = p.history.iter().rev().map(|h| h.version.clone()).find(|v| *v != current.version);
        let Some(previous) = previous else { bail!("{model} {} is the only version ever promoted; nothing to roll back to", current.version) };
        p.history.push(Promotion { version: previous.clone(), at: now(), reason: format!("rollback from {}", current.version) });
        write_atomic(&self.model_dir(model).join("promoted.json"), &serde_json::to_vec_pretty(&p)?)?;
        Ok(previous)
    }

    /// Versions that must survive garbage collection: every one ever promoted.
    pub fn protected(&self, model: &str) -> Result<Vec<String>> {
        Ok(self.promoted(model)?.history.into_iter().map(|h| h.version).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str) -> VersionInfo {
        VersionInfo {
            policy: None,
            label_rule: None,
            risk: None,
            pooled: None,
            version: String::new(),
            model: String::new(),
            source_key: key.into(),
            stage: "train".into(),
            pipeline: "p".into(),
            registered_at: String::new(),
            holdout: serde_json::json!({}),
        }
    }

    #[test]
    fn register_promote_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("model.json"), "{}").unwrap();
        std::fs::write(src.join("meta.json"), "{}").unwrap();
        let reg = Registry::at(dir.path().join("models"));
        let (v1, new) = reg.register("rf", &src, info("k1")).unwrap();
        assert!(new && v1.version == "v1");
        assert!(reg.version_dir("rf", "v1").join("model.json").is_file());
        assert!(!reg.version_dir("rf", "v1").join("meta.json").exists(), "cache bookkeeping stays out");
        // The same source registers once.
        let (again, new) = reg.register("rf", &src, info("k1")).unwrap();
        assert!(!new && again.version == "v1");
        let (v2, _) = reg.register("rf", &src, info("k2")).unwrap();
        assert_eq!(v2.version, "v2");
        assert!(reg.serving_dir("rf").unwrap().is_none());
        assert!(reg.rollback("rf").is_err());
        reg.promote("rf", "v1", "first").unwrap();
        reg.promote("rf", "v2", "better").unwrap();
        assert_eq!(reg.serving_dir("rf").unwrap().unwrap().0, "v2");
        assert_eq!(reg.rollback("rf").unwrap(), "v1");
        assert_eq!(reg.serving_dir("rf").unwrap().unwrap().0, "v1");
        assert!(reg.promote("rf", "v9", "x").unwrap_err().to_string().contains("no version `v9`"));
        assert_eq!(reg.protected("rf").unwrap(), vec!["v1", "v2", "v1"]);
        assert_eq!(reg.models().unwrap(), vec!["rf"]);
    }
}
