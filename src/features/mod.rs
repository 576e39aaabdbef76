//! What SQL stages can call beyond DataFusion's built-ins, and the session they run in.

pub mod quantile;
pub mod rolling;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::prelude::SessionConfig;

/// A DataFusion session with the project's functions registered, using `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    // DATAFUSION_* environment variables tune the engine (e.g. DATAFUSION_EXECUTION_BATCH_SIZE).
    let mut config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(threads.max(1))
        .with_information_schema(true)
        // Cached stages record their sort order: keep it through repartitioning instead of
        // sorting every column again (which held a whole table in memory per window).
        .with_prefer_existing_sort(true);
    // Windows on one thread (reading and writing stay parallel). Upstream tables come sorted by
    // service, so each reading partition holds whole services; hash-repartitioning them while
    // keeping the order makes every output wait for services another partition has not reached,
    // and the rows in between pile up: labels held 120 MB more on 1M rows and was no faster on
    // 2 cores (the windows are 0.5 s of CPU there). DATAFUSION_OPTIMIZER_REPARTITION_WINDOWS=true
    // brings it back for many-core machines with memory to spare.
    if std::env::var_os("DATAFUSION_OPTIMIZER_REPARTITION_WINDOWS").is_none() {
        config = config.with_repartition_windows(false);
    }
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udwf(WindowUDF::from(quantile::RollingQuantile::new()));
    ctx.register_udwf(WindowUDF::from(rolling::Rolling::new(rolling::Stat::Max)));
    ctx.register_udwf(WindowUDF::from(rolling::Rolling::new(rolling::Stat::Stddev)));
    ctx
}
