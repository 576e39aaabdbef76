//! What SQL stages can call beyond DataFusion's built-ins, and the session they run in.

pub mod quantile;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::prelude::SessionConfig;

/// A DataFusion session with the project's functions registered, using `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(threads.max(1))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udwf(WindowUDF::from(quantile::RollingQuantile::new()));
    ctx
}
