//! The stage cache: keys computed from everything an output depends on, and a store of
//! entries written atomically and checked before reuse.

mod key;
mod shared;
mod entries;

pub use key::{CacheKey, InputFile, KeyParts};
pub use shared::STORE_ENTRIES;
pub use entries::{Cache, Entry, EntryMeta, Pending, META, OUTPUT};
