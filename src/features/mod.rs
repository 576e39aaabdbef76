//! What SQL stages can call beyond DataFusion's built-ins, and the session they run in.

pub mod quantile;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::prelude::SessionConfig;

/// A DataFusion session with the project's functions registered, using `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    // DATAFUSION_* environment variables tune the engine (e.g. DATAFUSION_EXECUTION_BATCH_SIZE).
    let config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(threads.max(1))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udwf(WindowUDF::from(quantile::RollingQuantile::new()));
    ctx
}
