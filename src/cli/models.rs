//! `pipeline models list|show|promote|rollback`: the model registry by hand.

use anyhow::{Context, Result};

use super::args::{RegistryArgs, StoreArgs};
use super::exit;
use crate::artifacts::models::Registry;
use crate::artifacts::shared;

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every registered version of every model; `*` marks the serving one.
    List,
    /// One version in detail (the serving one when VERSION is left out).
    Show { model: String, version: Option<String> },
    /// Serve VERSION from now on (a running `pipeline serve` picks it up).
    Promote {
        model: String,
        version: String,
        /// Why, for the promotion history.
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
    },
    /// Serve the previously promoted version again.
    Rollback { model: String },
}

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// (With --store a promotion or rollback is shared at once; the registry is fetched first.)
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn models(a: ModelsArgs) -> Result<u8> {
    let store = a.store.open()?;
    let (registry, cmd) = (a.registry.dir.as_path(), a.command);
    let reg = Registry::at(registry);
    if let Some(store) = &store {
        shared::pull_registry(store, &reg).await.with_context(|| format!("fetching the registry from {}", store.url()))?;
    }
    let changes = matches!(cmd, ModelsCommand::Promote { .. } | ModelsCommand::Rollback { .. });
    match cmd {
        ModelsCommand::List => {
            let models = reg.models()?;
            if models.is_empty() {
                println!("no models registered in {} yet: a pipeline with a `publish` stage registers them", registry.display());
                return Ok(exit::SUCCESS);
            }
            println!("{:<16} {:>8}  {:<21} {:<30} {:>9} {:>13}", "model", "version", "registered", "stage", "exact", "under (min)");
            for m in models {
                let serving = reg.promoted(&m)?.current().map(|p| p.version.clone());
                for v in reg.versions(&m)? {
                    let mark = if serving.as_deref() == Some(v.version.as_str()) { "*" } else { " " };
                    let exact = v.holdout["exact_accuracy"].as_f64().map(|e| format!("{:.2}%", 100.0 * e)).unwrap_or_default();
                    let under = v.holdout["under_provisioned_minutes"].as_f64().map(|u| format!("{u:.0}")).unwrap_or_default();
                    println!("{:<16} {mark}{:>7}  {:<21} {:<30} {exact:>9} {under:>13}", m, v.version, v.registered_at, v.stage);
                }
            }
        }
        ModelsCommand::Show { model, version } => {
            let version = match version {
                Some(v) => v,
                None => reg
                    .promoted(&model)?
                    .current()
                    .map(|p| p.version.clone())
                    .with_context(|| format!("{model} has no promoted version; name one (see `pipeline models list`)"))?,
            };
            let info = reg.version(&model, &version)?;
            let dir = reg.version_dir(&model, &version);
            let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(crate::models::ModelDir::new(&dir).meta())?)?;
            let promoted = reg.promoted(&model)?;
            println!("model:      {model} {version}{}", if promoted.current().is_some_and(|p| p.version == version) { " (serving)" } else { "" });
            println!("folder:     {}", dir.display());
            println!("from:       stage `{}` of pipeline `{}`, cache entry {}", info.stage, info.pipeline, info.source_key);
            println!("registered: {}", info.registered_at);
            println!("trained:    {}", meta["trained_at"].as_str().unwrap_or("?"));
            println!("features:   {}", meta["features"].as_array().map_or(0, |f| f.len()));
            println!("label rule: {}", info.label_rule());
            let policy = match &info.policy {
                Some(p) => p.describe(),
                None => "its prediction is the replica count (published before policies were recorded)".to_string(),
            };
            println!("policy:     {policy}");
            if let Some(r) = &info.risk {
                let offsets: Vec<String> = r.offsets.iter().map(|(s, o)| format!("{s} {o:+.1}")).collect();
                println!("risk:       {}; pods added: {} (any other service {:+.1})", r.describe(), offsets.join(", "), r.pooled);
            }
            if let Some(p) = &info.pooled {
                let pooled: Vec<&str> =
                    p.services.iter().filter(|(_, s)| **s == crate::models::pooled::Serves::Pooled).map(|(name, _)| name.as_str()).collect();
                let list = if pooled.is_empty() { "none".to_string() } else { pooled.join(", ") };
                println!(
                    "pooled:     a pooled forest (stage `{}`) serves services it was not trained on, and of the {} trained: {list}",
                    p.stage,
                    p.services.len()
                );
            }
            println!("hold-out:   {}", info.holdout);
            println!("metrics:    {}", serde_json::to_string_pretty(&meta["metrics"])?);
            for p in promoted.history.iter().filter(|p| p.version == version) {
                println!("promoted:   {} ({})", p.at, p.reason);
            }
        }
        ModelsCommand::Promote { model, version, reason } => {
            reg.promote(&model, &version, &reason)?;
            println!("{model} {version} is now serving");
        }
        ModelsCommand::Rollback { model } => {
            let v = reg.rollback(&model)?;
            println!("{model} {v} is serving again");
        }
    }
    if let Some(store) = store.filter(|_| changes) {
        shared::push_registry(&store, &reg)
            .await
            .with_context(|| format!("sharing the change in {} (it is made here; run the command again to share it)", store.url()))?;
    }
    Ok(exit::SUCCESS)
}
