//! Versioned things a run leaves behind: run folders with their manifest and report, and the
//! model registry with its promoted versions.

pub mod lock;
pub mod models;
pub mod runs;
pub mod shared;
