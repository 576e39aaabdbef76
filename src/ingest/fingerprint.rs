//! Local metrics files are keyed by their content, not by where or when they were written: a
//! fresh clone, a copied project folder or a restored backup reuses every stage built from the
//! same bytes, and two machines sharing a store share those stages too. Hashing gigabytes on
//! every `run` and `status` would cost more than the stages it saves, so, as DVC does, each
//! hash is remembered with the file's path, size, modification time and inode in a state file
//! of the project; a file whose metadata is unchanged is not read again.
//!
//! Only the bytes up to the listed size are hashed: a collector appending to today's file
//! while it is listed changes the size, so the next listing hashes it again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What a hash was computed from; any difference means the file may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    /// The bytes hashed: the size the file was listed with.
    hashed: u64,
    /// The file's size when hashed.
    len: u64,
    /// Nanoseconds since 1970 (u64 lasts until 2554; serde's flatten cannot carry a u128).
    mtime_ns: u64,
    inode: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    #[serde(flatten)]
    stat: Stat,
    blake3: String,
}

/// The remembered hashes of one project, loaded once per listing and saved if any changed.
pub struct Fingerprints {
    state: PathBuf,
    known: BTreeMap<PathBuf, Known>,
    changed: bool,
}

impl Fingerprints {
    /// The project's remembered hashes; a missing or unreadable state file only means that
    /// files are hashed again.
    pub fn load(project: &Path) -> Fingerprints {
        let state = crate::artifacts::layout::Layout::of(project).input_hashes();
        let known = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Fingerprints { state, known, changed: false }
    }

    /// `blake3:<hex>` of the file's first `size` bytes, from memory when its metadata is unchanged.
    pub fn version(&mut self, file: &Path, size: u64) -> Result<String> {
        let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
        let stat = stat_of(&meta, size);
        let path = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        if let Some(k) = self.known.get(&path).filter(|k| k.stat == stat) {
            return Ok(format!("blake3:{}", k.blake3));
        }
        let hex = hash_prefix(file, size)?;
        self.known.insert(path, Known { stat, blake3: hex.clone() });
        self.changed = true;
        Ok(format!("blake3:{hex}"))
    }

    /// Writes the state file when a hash was added (atomically: a reader sees the old or the new).
    pub fn save(self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        // Files deleted since are forgotten, so the state stays the size of what is there.
        let mut known = self.known;
        known.retain(|path, _| path.exists());
        if let Some(dir) = self.state.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        crate::io::fs::write_atomic(&self.state, &serde_json::to_vec(&known)?)
    }
}

fn stat_of(meta: &std::fs::Metadata, listed: u64) -> Stat {
    let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    Stat { hashed: listed, len: meta.len(), mtime_ns, inode }
}

fn hash_prefix(file: &Path, size: u64) -> Result<String> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut hasher = blake3::Hasher::new();
    let read =
        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f).take(size), &mut hasher).with_context(|| format!("reading {}", file.display()))?;
    if read < size {
        bail!("{} is {} bytes shorter than when it was listed (replaced meanwhile); run again", file.display(), size - read);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_give_the_same_version_wherever_and_whenever_written() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("m.csv"), "header\nrow\n").unwrap();
        std::fs::write(b.path().join("copy.csv"), "header\nrow\n").unwrap();
        let mut fa = Fingerprints::load(a.path());
        let mut fb = Fingerprints::load(b.path());
        let va = fa.version(&a.path().join("m.csv"), 11).unwrap();
        assert!(va.starts_with("blake3:"));
        assert_eq!(va, fb.version(&b.path().join("copy.csv"), 11).unwrap());
        // Only the listed prefix counts: rows appended after the listing do not change it.
        std::fs::write(b.path().join("copy.csv"), "header\nrow\nmore\n").unwrap();
        assert_eq!(va, fb.version(&b.path().join("copy.csv"), 11).unwrap());
        assert_ne!(va, fb.version(&b.path().join("copy.csv"), 16).unwrap());
        // Other bytes of the same size are another version.
        std::fs::write(a.path().join("m.csv"), "header\nwor\n").unwrap();
        let mut fresh = Fingerprints::load(a.path());
        assert_ne!(va, fresh.version(&a.path().join("m.csv"), 11).unwrap());
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.csv");
        std::fs::write(&file, "header\nrow\n").unwrap();
        let mut f = Fingerprints::load(dir.path());
        let v = f.version(&file, 11).unwrap();
        f.save().unwrap();
        assert!(crate::artifacts::layout::Layout::of(dir.path()).input_hashes().is_file());
        // The state file answers for an unchanged file: a remembered hash is trusted (here a
        // forged one shows that the file was not read).
        let state = crate::artifacts::layout::Layout::of(dir.path()).input_hashes();
        let text = std::fs::read_to_string(&state).unwrap().replace(v.trim_start_matches("blake3:"), "remembered");
        std::fs::write(&state, text).unwrap();
        let mut again = Fingerprints::load(dir.path());
        assert_eq!(again.version(&file, 11).unwrap(), "blake3:remembered");
        assert!(!again.changed, "nothing new to save");
        // A new modification time (same bytes) is read again and gives the real hash.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(later).unwrap();
        assert_eq!(again.version(&file, 11).unwrap(), v);
    }

    #[test]
    fn a_file_shorter_than_listed_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.csv");
        std::fs::write(&file, "header\n").unwrap();
        let e = Fingerprints::load(dir.path()).version(&file, 100).unwrap_err().to_string();
        assert!(e.contains("m.csv") && e.contains("93 bytes shorter"), "{e}");
        // A corrupt state file is only a cache: it is ignored.
        std::fs::create_dir_all(dir.path().join("artifacts/cache")).unwrap();
        std::fs::write(crate::artifacts::layout::Layout::of(dir.path()).input_hashes(), "{not json").unwrap();
        assert!(Fingerprints::load(dir.path()).version(&file, 7).is_ok());
    }
}
