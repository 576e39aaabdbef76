//! Versioned things a run leaves behind: run folders with their manifest.

pub mod runs;
