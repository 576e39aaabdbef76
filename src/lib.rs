//! Training and serving pipeline for ML autoscaling on Kubernetes: the library behind the
//! `pipeline` binary.

pub mod artifacts;
pub mod cache;
pub mod cli;
pub mod collect;
pub mod engine;
pub mod evaluation;
pub mod features;
pub mod hpa;
pub mod ingest;
pub mod io;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod serving;
pub mod simulate;
pub mod store;
