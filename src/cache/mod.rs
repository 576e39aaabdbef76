//! The stage cache: keys computed from everything an output depends on, and a store of
//! entries written atomically and checked before reuse.

mod entries;
mod key;
mod shared;

pub use entries::{Cache, Entry, EntryMeta, META, OUTPUT, Pending};
pub use key::{CacheKey, InputFile, KeyParts};
pub use shared::STORE_ENTRIES;
