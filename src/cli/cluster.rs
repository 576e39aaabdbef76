//! `pipeline scheduler` and `pipeline executor`: this binary as a Ballista cluster.

use std::net::SocketAddr;

use anyhow::Result;

use super::exit;
use crate::engine::cluster::{self, ExecutorOptions};

#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    /// Address to listen on; stages reach it as --engine ballista://HOST:PORT.
    #[arg(long, default_value = "0.0.0.0:50050", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
    /// The host name executors and clients reach this scheduler by [default: the bind address].
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler to serve, as HOST:PORT (the port defaults to 50050).
    #[arg(long, default_value = "localhost:50050", value_name = "HOST:PORT")]
    pub scheduler: String,
    /// Address of the data port (Arrow Flight): where the scheduler's clients fetch results.
    #[arg(long, default_value = "0.0.0.0:50051", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
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
}

pub async fn scheduler(args: SchedulerArgs) -> Result<u8> {
    cluster::scheduler(args.bind, args.external_host).await?;
    Ok(exit::SUCCESS)
}

pub async fn executor(args: ExecutorArgs) -> Result<u8> {
    let scheduler = match args.scheduler.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => return Err(super::usage_error("executor", "--scheduler", format!("`{port}` is not a port number"))),
        },
        None => (args.scheduler.clone(), crate::engine::DEFAULT_SCHEDULER_PORT),
    };
    cluster::executor(ExecutorOptions {
        scheduler,
        bind: args.bind,
        grpc_port: args.grpc_port,
        external_host: args.external_host,
        vcores: args.concurrent_tasks.unwrap_or_else(crate::io::threads::available),
        work_dir: args.work_dir,
    })
    .await?;
    Ok(exit::SUCCESS)
}
