//! `faascache`: the one binary of FaaSCache.
//!
//! * `faascache coordinator --listen LOCATOR [--storage file:DIR]`
//! * `faascache server --coordinator LOCATOR --listen LOCATOR --memory 1GiB [--cores N] [--poll MODE]`
//! * `faascache cluster up|down` — a local cluster of child processes (see `cluster.rs`)
//! * `faascache gateway --listen ADDR` — the S3 and Swift endpoint (`faascache-gateway`)
//! * `faascache agent --listen ADDR` — the node agent (`faascache-agent`): sandbox events in,
//!   cache resizes out
//! * `faascache demo` — a local cluster, a short workload with its latency, then shutdown
//! * client commands (`status`, `table`, `put`, `get`, `rm`, `incr`, ...) from
//!   `faascache_client::cli`
//!
//! Logs go to stderr (`RUST_LOG` filters them; default `info` for the daemons, `warn` for client
//! commands); errors are printed to stderr with a non-zero exit status. A panic in a daemon
//! (`coordinator`, `server`) is logged and aborts the process; SIGINT/SIGTERM end a daemon at
//! every stage (see `lifecycle.rs`).

#![deny(unsafe_code)]

mod agent;
mod agent_links;
mod bypass;
mod cluster;
mod daemon;
mod demo;
mod gateway;
mod lifecycle;
mod memcheck;
mod sys;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// FaaSCache: a low-latency distributed in-memory key-value store.
#[derive(Debug, Parser)]
#[command(name = "faascache", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator (server list, tables, tablet map)
    Coordinator(daemon::CoordinatorArgs),
    /// Run a server (a master serving tablets) that joins a coordinator
    Server(daemon::ServerArgs),
    /// Start or stop a local cluster of child processes on 127.0.0.1
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Serve the S3 and Swift APIs in front of the cluster's backed tables (an endpoint for
    /// unmodified boto3, AWS CLI and python-swiftclient code)
    Gateway(gateway::GatewayArgs),
    /// Run the node agent: take sandbox events from the FaaS platform (HTTP), watch memory,
    /// resize the local cache so sandboxes never run short
    Agent(agent::AgentArgs),
    /// Start a local 3-server cluster, run a short workload through the client, print its
    /// latency, and stop the cluster
    Demo(demo::DemoArgs),
    // ---- Client commands (status, table, put, get, rm, incr, ...): defined by the client library.
    #[command(flatten)]
    Client(faascache_client::cli::ClientCommand),
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(cmd) => {
            init_logging("warn");
            return faascache_client::cli::run(cmd);
        }
        Command::Coordinator(args) => {
            init_logging("info");
            lifecycle::abort_on_panic();
            daemon::coordinator(args)
        }
        Command::Server(args) => {
            init_logging("info");
            lifecycle::abort_on_panic();
            sys::keep_freed_memory();
            daemon::server(args)
        }
        Command::Cluster(cmd) => {
            init_logging("info");
            cluster::run(cmd)
        }
        Command::Gateway(args) => {
            init_logging("info");
            gateway::run(args)
        }
        Command::Agent(args) => {
            init_logging("info");
            agent::run(args)
        }
        Command::Demo(args) => {
            init_logging("warn");
            demo::run(args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faascache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
