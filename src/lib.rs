//! Training and serving pipeline for ML autoscaling on Kubernetes: the library behind the
//! `pipeline` binary.

pub mod artifacts;
pub mod cache;
pub mod cli;
pub mod collect;
pub mod dag;
pub mod engine;
pub mod evaluation;
pub mod features;
pub mod hpa;
pub mod ingest;
pub mod invalid;
pub mod io;
pub mod models;
pub mod ops;
pub mod report;
pub mod rng;
pub mod row;
pub mod serving;
pub mod simulate;
pub mod store;
