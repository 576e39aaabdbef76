//! One `pipeline run` per project at a time: an exclusive lock on `artifacts/run.lock`
//! (`File::lock`, a `flock` on Linux).
//!
//! The kernel releases a `flock` when its holder dies, however it dies, so a lock left by a
//! killed run is simply free: nothing to detect, nothing stale to clean up. The file also holds
//! the holder's pid and start time, for the message a waiting run prints.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Held for the life of the value.
pub struct RunLock {
    file: File,
}

/// Another run holds the lock (and `--no-wait` was given).
#[derive(Debug, thiserror::Error)]
#[error("another `pipeline run` is using this project ({holder}); wait for it, or drop --no-wait to queue behind it")]
pub struct Busy {
    pub holder: String,
}

fn try_lock(f: &File) -> std::io::Result<bool> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn holder(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.seek(std::io::SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() { "holder unknown".into() } else { s.to_string() }
}

impl RunLock {
    /// Takes the project's run lock; waits for it unless `wait` is false. `on_wait` is called
    /// once, with the holder, when the lock is busy.
    pub fn acquire(root: &Path, wait: bool, on_wait: impl FnOnce(&str)) -> Result<RunLock> {
        let layout = super::layout::Layout::of(root);
        let dir = layout.artifacts();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = layout.run_lock();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if !try_lock(&file)? {
            let who = holder(&mut file);
            if !wait {
                return Err(Busy { holder: who }.into());
            }
            on_wait(&who);
            file.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        file.set_len(0)?;
        let _ = write!(file, "pid {} since {}", std::process::id(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let _ = file.flush();
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // Closing the file would release it as well; unlocking first frees it before the close.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_or_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), false, |_| {}).unwrap();
        let e = RunLock::acquire(dir.path(), false, |_| {}).err().expect("busy");
        let busy = e.downcast_ref::<Busy>().expect("a Busy error");
        assert!(busy.holder.contains(&format!("pid {}", std::process::id())), "{}", busy.holder);
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let mut waited = false;
            let _l = RunLock::acquire(&path, true, |_| waited = true).unwrap();
            waited
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
        assert!(waiter.join().unwrap(), "the second run waited");
    }
}
