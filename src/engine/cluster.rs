//! `pipeline scheduler` and `pipeline executor`: a Ballista cluster that knows the project's
//! window functions and plan nodes, and the client session that sends it the SQL stages.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;

use super::codec::PlanCodec;
use super::Engine;

/// What the scheduler plans a stage's query with: the client's settings (which Ballista sends
/// with the query), our window functions and the batch window operator.
fn planning_state(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let mut state = crate::features::state(config, None, true).build();
    for f in crate::features::window_functions() {
        datafusion::execution::FunctionRegistry::register_udwf(&mut state, f)?;
    }
    Ok(state)
}

/// A session whose queries run on `engine` (not `Engine::Local`), with `threads` partitions.
pub async fn client_session(engine: &Engine, threads: usize) -> Result<SessionContext> {
    let config = crate::features::config(threads).with_ballista_physical_extension_codec(Arc::new(PlanCodec::default()));
    let state = planning_state(config)?;
    let session = match engine {
        Engine::Standalone => SessionContext::standalone_with_state(state).await,
        Engine::Ballista { host, port } => SessionContext::remote_with_state(&format!("df://{host}:{port}"), state).await,
        Engine::Local => anyhow::bail!("client_session is for a Ballista engine"),
    }
    .with_context(|| format!("connecting to the engine {engine}"))?;
    // Connecting replaces the session's functions with Ballista's defaults.
    for f in crate::features::window_functions() {
        session.register_udwf(Arc::unwrap_or_clone(f));
    }
    Ok(session)
}

/// `pipeline scheduler`: plans stages' queries and hands their tasks to executors.
pub async fn scheduler(bind: SocketAddr, external_host: Option<String>) -> Result<()> {
    let mut config = ballista_scheduler::config::SchedulerConfig::default();
    config.bind_host = bind.ip().to_string();
    config.bind_port = bind.port();
    config.external_host = external_host.unwrap_or_else(|| bind.ip().to_string());
    config.override_physical_codec = Some(Arc::new(PlanCodec::default()));
    let config = config.with_override_session_builder(Arc::new(planning_state));
    let cluster = ballista_scheduler::cluster::BallistaCluster::new_from_config(&config)
        .await
        .context("starting the scheduler's cluster state")?;
    tracing::info!("Ballista scheduler listening on {bind}; point stages at it with --engine ballista://HOST:{}", bind.port());
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .with_context(|| format!("running the scheduler on {bind}"))
}

/// Where an executor listens and which scheduler it serves.
pub struct ExecutorOptions {
    pub scheduler: (String, u16),
    pub bind: SocketAddr,
    /// The port its results and shuffle files are fetched from (Arrow Flight) is `bind`'s;
    /// this one is its control port.
    pub grpc_port: u16,
    pub external_host: Option<String>,
    pub vcores: usize,
    /// Where shuffle files go; a temporary folder when unset.
    pub work_dir: Option<String>,
}

/// `pipeline executor`: runs the tasks its scheduler hands it, with our functions and nodes.
pub async fn executor(o: ExecutorOptions) -> Result<()> {
    let mut registry = BallistaFunctionRegistry::default();
    for f in crate::features::window_functions() {
        registry.window_functions.insert(f.name().to_string(), f);
    }
    let mut config = ballista_executor::executor_process::ExecutorProcessConfig::default();
    config.bind_host = o.bind.ip().to_string();
    config.port = o.bind.port();
    config.grpc_port = o.grpc_port;
    config.external_host = o.external_host;
    config.scheduler_host = o.scheduler.0.clone();
    config.scheduler_port = o.scheduler.1;
    // Executors may start before their scheduler (a deployment starts both at once).
    config.scheduler_connect_timeout_seconds = 60;
    config.vcores = o.vcores.max(1);
    config.work_dir = o.work_dir;
    config.print_thread_info = false;
    config.override_function_registry = Some(Arc::new(registry));
    config.override_physical_codec = Some(Arc::new(PlanCodec::default()));
    tracing::info!("Ballista executor on {} for the scheduler at {}:{}", o.bind, o.scheduler.0, o.scheduler.1);
    ballista_executor::executor_process::start_executor_process(Arc::new(config))
        .await
        .with_context(|| format!("running the executor on {} (scheduler {}:{})", o.bind, o.scheduler.0, o.scheduler.1))
}
