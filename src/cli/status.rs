//! `pipeline status`: fresh or stale per stage, and for stale ones what changed.

use anyhow::Result;

use super::{PipelineArgs, exit, load_plan};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub async fn status(args: StatusArgs) -> Result<u8> {
    let (plan, cache) = load_plan(&args.pipeline).await?;
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
    let mut stale = 0;
    for s in &plan.stages {
        match &s.cached {
            Some(e) => println!("{:<width$}  fresh   {} rows, built {}", s.name, e.meta.rows, e.meta.built_at),
            None => {
                stale += 1;
                let why = s.why_stale(&cache, &plan.pipeline.name);
                println!("{:<width$}  stale   {}", s.name, why.first().map(String::as_str).unwrap_or(""));
                for w in why.iter().skip(1) {
                    println!("{:<width$}          {w}", "");
                }
            }
        }
    }
    if stale == 0 {
        println!("everything is up to date");
    } else {
        println!("{stale} of {} stages would run; `pipeline run` builds them", plan.stages.len());
    }
    Ok(exit::SUCCESS)
}
