//! What SQL stages can call beyond DataFusion's built-ins, and the session they run in.

pub mod quantile;
pub mod rolling;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::prelude::SessionConfig;

/// A DataFusion session with the project's functions registered, using `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    // DATAFUSION_* environment variables tune the engine (e.g. DATAFUSION_EXECUTION_BATCH_SIZE).
    let config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(threads.max(1))
        .with_information_schema(true)
        // Cached stages record their sort order: keep it through repartitioning instead of
        // sorting every column again (which held a whole table in memory per window).
        .with_prefer_existing_sort(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udwf(WindowUDF::from(quantile::RollingQuantile::new()));
    ctx.register_udwf(WindowUDF::from(rolling::Rolling::new(rolling::Stat::Max)));
    ctx.register_udwf(WindowUDF::from(rolling::Rolling::new(rolling::Stat::Stddev)));
    ctx
}
