//! Every integration test in one binary: each links DataFusion and libtorch, and one link
//! instead of fifteen is most of a test build (as `just` keeps its CLI tests in one crate).
//! Each module is one area of the product, exercised through the real `pipeline` binary or the
//! library, with the scenario builder in `common`.
//!
//! Run one area with `cargo test --release --test cli engine::`.

mod common;

mod architecture;
#[cfg(feature = "ballista")]
mod ballista;
mod closed_loop;
mod collect;
mod crash;
mod deploy;
mod engine;
mod fuzz;
mod gc;
mod hostile_clients;
mod hpa;
mod ingest_contract;
mod lock;
#[cfg(feature = "lstm")]
mod lstm_cnn;
mod parity;
mod policy;
mod pooled;
mod random_forest;
mod report;
mod s3;
mod serving;
mod simulate;
mod store;
