//! What SQL stages can call beyond DataFusion's built-ins, and the session they run in.

pub mod batch_window;
pub mod named_windows;
pub mod rolling;
pub mod seasonal;
pub mod spill_pool;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::prelude::SessionConfig;

/// Plan settings for the tables stages pass on, which come sorted by service and time and are
/// wide (25-47 columns) with cheap expressions over them; each can be overridden by its
/// DATAFUSION_* variable (e.g. DATAFUSION_OPTIMIZER_REPARTITION_WINDOWS=true).
/// - Windows on one thread: hash-repartitioning service-sorted input while keeping its order
///   makes every output wait for services another partition has not reached, and the rows in
///   between pile up (labels held 120 MB more on 1M rows, and was no faster on 2 cores).
/// - One reading partition, no round-robin after the window: each split is merged back in
///   order by copying every column (two order-preserving merges of the whole table), which cost
///   more than the parallel decoding and projection they enabled (features and labels ~10%
///   faster on 2 cores). Writing still encodes columns in parallel.
const SORTED_TABLE_DEFAULTS: &[(&str, bool)] = &[
    ("datafusion.optimizer.repartition_windows", false),
    ("datafusion.optimizer.repartition_file_scans", false),
    ("datafusion.optimizer.enable_round_robin_repartition", false),
];

/// Joins over the same tables build their small side whole (the per-service and per-slot tables
/// the stages put first in their joins) and stream the rows past it in their order. Past
/// DataFusion's defaults (1 MB, 128k rows) a join hash-repartitioned both sides instead: the
/// rows were shuffled and merged back in order; 1M rows of 200 services (100k slots) crossed
/// them, and features and labels took ~35 % longer. The build side is held whole either way.
const SORTED_TABLE_SIZES: &[(&str, usize)] =
    &[("datafusion.optimizer.hash_join_single_partition_threshold", 1 << 30), ("datafusion.optimizer.hash_join_single_partition_threshold_rows", 1 << 30)];

/// A DataFusion session with the project's functions registered, using `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    session_with(threads, true)
}

/// `session` for a stage: sorts, joins and aggregations that would hold more than `memory`
/// bytes spill to files in `spill_dir` (removed when done) instead of growing the process
/// (see [`spill_pool::SpillBudget`]).
pub fn stage_session(threads: usize, memory: u64, spill_dir: &std::path::Path) -> datafusion::error::Result<SessionContext> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    std::fs::create_dir_all(spill_dir)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(std::sync::Arc::new(spill_pool::SpillBudget::new(memory as usize)))
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill_dir.to_path_buf()])))
        .build_arc()?;
    Ok(build(threads, true, Some(runtime)))
}

/// `session`, optionally without the batch window operator (for comparing the two).
pub(crate) fn session_with(threads: usize, batch_windows: bool) -> SessionContext {
    build(threads, batch_windows, None)
}

fn build(threads: usize, batch_windows: bool, runtime: Option<std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>>) -> SessionContext {
    let ctx = SessionContext::new_with_state(state(config(threads), runtime, batch_windows).build());
    for f in window_functions() {
        ctx.register_udwf(std::sync::Arc::unwrap_or_clone(f));
    }
    ctx
}

/// The window functions SQL stages can call beyond DataFusion's.
pub fn window_functions() -> Vec<std::sync::Arc<WindowUDF>> {
    [rolling::Stat::Quantile, rolling::Stat::Max, rolling::Stat::Stddev]
        .into_iter()
        .map(|stat| std::sync::Arc::new(WindowUDF::from(rolling::Rolling::new(stat))))
        .chain([std::sync::Arc::new(WindowUDF::from(seasonal::HoltWintersNext::default()))])
        .collect()
}

/// The settings stages plan with on `threads` partitions (see [`SORTED_TABLE_DEFAULTS`] and
/// [`SORTED_TABLE_SIZES`]).
pub fn config(threads: usize) -> SessionConfig {
    // DATAFUSION_* environment variables tune the engine (e.g. DATAFUSION_EXECUTION_BATCH_SIZE).
    let mut config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(threads.max(1))
        .with_information_schema(true)
        // Cached stages record their sort order: keep it through repartitioning instead of
        // sorting every column again (which held a whole table in memory per window).
        .with_prefer_existing_sort(true);
    let unset = |key: &str| std::env::var_os(key.to_uppercase().replace('.', "_")).is_none();
    for (key, value) in SORTED_TABLE_DEFAULTS {
        if unset(key) {
            config = config.set_bool(key, *value);
        }
    }
    for (key, value) in SORTED_TABLE_SIZES {
        if unset(key) {
            config = config.set_usize(key, *value);
        }
    }
    config
}

/// A session state on `config` with the batch window operator (the window functions are
/// registered on what is built from it: a builder's list would replace DataFusion's).
pub fn state(
    config: SessionConfig,
    runtime: Option<std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>>,
    batch_windows: bool,
) -> datafusion::execution::SessionStateBuilder {
    let mut state = datafusion::execution::SessionStateBuilder::new().with_config(config).with_default_features();
    if let Some(runtime) = runtime {
        state = state.with_runtime_env(runtime);
    }
    if batch_windows {
        state = state.with_physical_optimizer_rule(std::sync::Arc::new(batch_window::BatchWindows));
    }
    state
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorted_tables_are_read_and_windowed_in_one_partition() {
        let session = super::session(4);
        let state = session.state();
        let o = &state.config().options().optimizer;
        // (Unless the DATAFUSION_* variables say otherwise, which the test environment does not.)
        assert!(!o.repartition_windows && !o.repartition_file_scans && !o.enable_round_robin_repartition);
        assert!(o.prefer_existing_sort);
        assert_eq!(o.hash_join_single_partition_threshold_rows, 1 << 30);
        assert_eq!(state.config().target_partitions(), 4);
    }
}
