//! The DAG engine: a pipeline file's spec ([`Pipeline`]), its stage graph, planning (cache keys
//! and freshness) and the executor that runs stages in parallel within the run's memory.

pub mod cores;
pub mod critical_path;
pub mod expr;
pub mod graph;
pub mod memory_budget;
pub mod plan;
pub mod progress;
pub mod run;
pub mod spec;
pub mod stage;

pub use spec::{Pipeline, SpecError, StageSpec};
