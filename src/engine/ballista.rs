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

use super::Engine;
use super::codec::PlanCodec;

/// What the scheduler plans a stage's query with: the client's settings (which Ballista sends
/// with the query), our window functions and the batch window operator.
fn planning_state(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let mut state = crate::features::state(config, Some(super::objects::runtime(None)?), true).build();
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
pub async fn scheduler(bind: SocketAddr, external_host: Option<String>, executor_timeout_seconds: u64) -> Result<()> {
    let config = ballista_scheduler::config::SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: external_host.unwrap_or_else(|| bind.ip().to_string()),
        override_physical_codec: Some(Arc::new(PlanCodec::default())),
        executor_timeout_seconds,
        // A stage whose last executor died fails after the same wait instead of hanging.
        no_executors_grace_period_seconds: executor_timeout_seconds,
        expire_dead_executor_interval_seconds: (executor_timeout_seconds / 3).clamp(1, 15),
        ..Default::default()
    };
    let config = config.with_override_session_builder(Arc::new(planning_state));
    let cluster = ballista_scheduler::cluster::BallistaCluster::new_from_config(&config).await.context("starting the scheduler's cluster state")?;
    tracing::info!("Ballista scheduler listening on {bind}; point stages at it with --engine ballista://HOST:{}", bind.port());
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config)).await.with_context(|| format!("running the scheduler on {bind}"))
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
    pub heartbeat_seconds: u64,
}

/// `pipeline executor`: runs the tasks its scheduler hands it, with our functions and nodes.
pub async fn executor(o: ExecutorOptions) -> Result<()> {
    let mut registry = BallistaFunctionRegistry::default();
    for f in crate::features::window_functions() {
        registry.window_functions.insert(f.name().to_string(), f);
    }
    let spill = o.work_dir.clone();
    let config = ballista_executor::executor_process::ExecutorProcessConfig {
        bind_host: o.bind.ip().to_string(),
        port: o.bind.port(),
        grpc_port: o.grpc_port,
        external_host: o.external_host,
        scheduler_host: o.scheduler.0.clone(),
        scheduler_port: o.scheduler.1,
        // Executors may start before their scheduler (a deployment starts both at once).
        scheduler_connect_timeout_seconds: 60,
        vcores: o.vcores.max(1),
        // Tables in the shared store are read where the task runs.
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| super::objects::runtime(spill.as_deref()))),
        work_dir: o.work_dir,
        print_thread_info: false,
        executor_heartbeat_interval_seconds: o.heartbeat_seconds,
        override_function_registry: Some(Arc::new(registry)),
        override_physical_codec: Some(Arc::new(PlanCodec::default())),
        ..Default::default()
    };
    tracing::info!("Ballista executor on {} for the scheduler at {}:{}", o.bind, o.scheduler.0, o.scheduler.1);
    ballista_executor::executor_process::start_executor_process(Arc::new(config))
        .await
        .with_context(|| format!("running the executor on {} (scheduler {}:{})", o.bind, o.scheduler.0, o.scheduler.1))
}
