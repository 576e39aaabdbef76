//! Exit codes, so cron and CI can tell failures apart.

use crate::dag::SpecError;

pub const SUCCESS: u8 = 0;
/// A stage failed, or a command could not do its work.
pub const FAILURE: u8 = 1;
/// The pipeline file, a flag or an input file is invalid; nothing ran.
pub const INVALID: u8 = 2;
/// Another run holds the project's lock and `--no-wait` was given; nothing ran.
pub const BUSY: u8 = 3;

pub fn code_for(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<SpecError>() || c.is::<crate::invalid::InvalidInput>()) {
        INVALID
    } else if e.chain().any(|c| c.is::<crate::artifacts::lock::Busy>()) {
        BUSY
    } else {
        FAILURE
    }
}
