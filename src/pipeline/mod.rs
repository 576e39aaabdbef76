//! Pipelines: the YAML spec, the stage graph, planning (keys and freshness) and the executor.

pub mod cores;
pub mod graph;
pub mod memory;
pub mod plan;
pub mod progress;
pub mod run;
pub mod spec;
pub mod stage;

pub use spec::{Pipeline, SpecError, StageSpec};
