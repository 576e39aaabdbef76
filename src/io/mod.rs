//! Low-level IO every layer may use and that knows nothing of pipelines: Parquet tables
//! ([`table`]), files written atomically, walked and checksummed ([`fs`]), and short parallel
//! bursts ([`threads`]), the machine's memory and sizes ([`memory`]). It imports nothing else of
//! the crate.

pub mod fs;
pub mod memory_size;
pub mod table;
pub mod threads;
