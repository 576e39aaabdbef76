//! `pipeline scheduler` and `pipeline executor`: this binary as a Ballista cluster.

use std::net::SocketAddr;

use anyhow::Result;

use super::exit;
use crate::engine::ballista::{self, ExecutorOptions};

#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    /// Address to listen on; stages reach it as --engine ballista://HOST:PORT. Other than
    /// loopback only with --insecure.
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
    /// Bind an address other machines can reach. Ballista has no authentication: anyone who
    /// reaches the port can run queries with this process's S3 credentials, so put a
    /// NetworkPolicy in front (deploy/ballista.yaml does).
    #[arg(long)]
    pub insecure: bool,
    /// The host name executors and clients reach this scheduler by [default: the bind address].
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// An executor silent this long is dead: its tasks run again elsewhere, and a stage left
    /// with no executor at all fails after the same wait. Longer than executors' --heartbeat.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(2..))]
    pub executor_timeout: u64,
}

#[derive(clap::Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler to serve, as HOST:PORT (the port defaults to 50050).
    #[arg(long, default_value = "localhost:50050", value_name = "HOST:PORT")]
    pub scheduler: String,
    /// Address of the data port (Arrow Flight): where the scheduler's clients fetch results.
    /// Other than loopback only with --insecure.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
    /// Bind an address other machines can reach (both ports). Ballista has no
    /// authentication: put a NetworkPolicy in front (deploy/ballista.yaml does).
    #[arg(long)]
    pub insecure: bool,
    /// The control port (gRPC) on the same host.
    #[arg(long, default_value_t = 50052, value_name = "PORT")]
    pub grpc_port: u16,
    /// The host name the scheduler and clients reach this executor by [default: the bind address].
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// Tasks run at once [default: number of cores].
    #[arg(long, value_name = "N")]
    pub concurrent_tasks: Option<usize>,
    /// Folder for shuffle files [default: a temporary folder].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<String>,
    /// How often to tell the scheduler this executor is alive; keep it well under the
    /// scheduler's --executor-timeout.
    #[arg(long, default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat: u64,
}

/// Ballista 55 has no authentication hook: a port others can reach is refused unless the
/// operator says the network around it is guarded.
fn check_bind(command: &str, bind: SocketAddr, insecure: bool) -> Result<()> {
    if bind.ip().is_loopback() || insecure {
        return Ok(());
    }
    Err(super::usage_error(
        command,
        "--bind",
        format!(
            "{bind} is reachable from other machines, and Ballista has no authentication: anyone who reaches it can run queries with this process's S3 credentials. Bind 127.0.0.1, or give --insecure with a NetworkPolicy in front (see deploy/ballista.yaml)"
        ),
    ))
}

pub async fn scheduler(args: SchedulerArgs) -> Result<u8> {
    check_bind("scheduler", args.bind, args.insecure)?;
    ballista::scheduler(args.bind, args.external_host, args.executor_timeout).await?;
    Ok(exit::SUCCESS)
}

pub async fn executor(args: ExecutorArgs) -> Result<u8> {
    check_bind("executor", args.bind, args.insecure)?;
    let scheduler = match args.scheduler.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => return Err(super::usage_error("executor", "--scheduler", format!("`{port}` is not a port number"))),
        },
        None => (args.scheduler.clone(), crate::engine::DEFAULT_SCHEDULER_PORT),
    };
    ballista::executor(ExecutorOptions {
        scheduler,
        bind: args.bind,
        grpc_port: args.grpc_port,
        external_host: args.external_host,
        vcores: args.concurrent_tasks.unwrap_or_else(crate::io::threads::available),
        work_dir: args.work_dir,
        heartbeat_seconds: args.heartbeat,
    })
    .await?;
    Ok(exit::SUCCESS)
}
