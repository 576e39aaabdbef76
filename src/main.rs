use std::process::ExitCode;

use autoscale::cli::{self, Cli, exit};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memory settings for this process, each kept when its variable is set.
fn tune_memory() {
    no_huge_pages();
    prompt_purge();
}

/// No transparent huge pages for this process. mimalloc asks for them on its regions
/// (madvise); then every page it touches after returning memory to the kernel comes back as a
/// zeroed 2 MiB page: perf put 17-28% of each data stage's CPU time in zeroing pages, and the
/// 1M-row features benchmark peaked ~30 MB higher. (MIMALLOC_ALLOW_THP=1 keeps them; libtorch
/// asks for none.)
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: a process attribute; no memory is touched.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

// mimalloc's options are an enum of the C library (mimalloc.h, `mi_option_e`, of the mimalloc v3
// that Cargo.lock pins through libmimalloc-sys 0.1.49); the test below pins the positions.
unsafe extern "C" {
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: i32) -> std::ffi::c_long;
}
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Return freed memory to the kernel after 250 ms instead of mimalloc's 1 s. Ingest frees its
/// parsed columns while it builds the table from them; held for a second, both were resident at
/// once and the 1M-row benchmark peaked at 497-507 MiB; with 250 ms at 485-488 MiB and no
/// slower (100 ms: ~450 MiB but 0.2-0.3 s slower). (MIMALLOC_PURGE_DELAY sets it.)
fn prompt_purge() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; allowed at any time, from any thread.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 250) };
    }
}

fn main() -> ExitCode {
    tune_memory();
    let args = Cli::parse();
    cli::logging::init(args.verbose, args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(cli::execute(args.command, args.log_format));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_option_positions_match_the_linked_library() {
        // purge_delay and the two options after it with distinct defaults (1000 ms, 32, 32): a
        // mimalloc upgrade that moved them fails here rather than setting another option.
        if std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MIMALLOC_")) {
            return;
        }
        let got = unsafe { [MI_OPTION_PURGE_DELAY, 19, 20].map(|o| mi_option_get(o)) };
        assert_eq!(got, [1000, 32, 32]);
    }
}
