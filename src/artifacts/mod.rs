//! Versioned things a run leaves behind: run folders with their manifest and report, and the
//! model registry with its promoted versions.

pub mod models;
pub mod runs;
