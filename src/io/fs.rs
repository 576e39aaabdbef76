//! Files written whole or not at all, walked, and checksummed: what the cache, the run records
//! and the model registry all rely on.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A file's size and BLAKE3, as cache entries and the shared store record them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    pub blake3: String,
}

pub fn checksum(path: &Path) -> Result<FileSum> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok(FileSum { bytes, blake3: h.finalize().to_hex().to_string() })
}

/// Every regular file below `dir` (links are not followed); none when `dir` does not exist.
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir) {
        match e {
            Ok(e) if e.file_type().is_file() => out.push(e.into_path()),
            Ok(_) => {}
            Err(e) if e.depth() == 0 && e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        }
    }
    Ok(out)
}

/// Write a file so that readers see the old bytes or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// A name read from a file someone else may have written (a shared store's `meta.json` or
/// `promoted.json`, a listing) that is about to be joined to a local folder: it must be one
/// path component, so nothing it names lies outside that folder.
pub fn check_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) || Path::new(name).is_absolute() || name.len() > 255;
    if bad { Err(format!("`{}` is not a file name (one path component, not `.` or `..`)", name.escape_debug())) } else { Ok(()) }
}

/// Makes a rename in `dir` durable (best effort: not every filesystem can sync a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_folder_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "nul\0", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["output.parquet", "v12", "random_forest", "..hidden", "a..b"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }
}
