//! Versioned things a run leaves behind: run folders with their manifest and report, and the
//! model registry with its promoted versions.

pub mod layout;
pub mod local_gc;
pub mod lock;
pub mod models;
pub mod promotion;
pub mod runs;
pub mod shared;
pub mod store_gc;
