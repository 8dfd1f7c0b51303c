//! `faascache agent`: the node agent (`faascache-agent`), one per worker node beside the
//! server. It takes sandbox events from the FaaS platform on a local HTTP API, watches the
//! node's and the sandboxes' memory, and resizes the local cache (`docs/faas.md`,
//! "Elasticity: the node agent").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use faascache_agent::{
    Agent, AgentConfig, Amount, ApiConfig, BookedModel, CommandResizer, FakeResizer, NodeSource,
    PolicyConfig, Resizer,
};

use crate::units::{parse_duration, parse_size};

/// `faascache agent`. Every policy constant is a flag; the defaults and their reasons are in
/// `faascache_agent::policy::PolicyConfig`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address of the HTTP API (keep it on loopback: the platform's invoker is on this node)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9200")]
    pub listen: SocketAddr,
    /// Write the API's address (http://HOST:PORT) to FILE once listening (useful with port 0)
    #[arg(long, value_name = "FILE")]
    pub addr_file: Option<PathBuf>,
    /// The node is this memory cgroup (v1 or v2): its limit is the node's memory (default: the
    /// machine, from /proc/meminfo). The cache server must run inside it
    #[arg(long, value_name = "PATH")]
    pub node_cgroup: Option<PathBuf>,
    /// Sandbox cgroups given to the API must be under this directory
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Memory kept free of cache and sandboxes: a size (512MiB) or a share of the node (10%)
    #[arg(long, value_name = "AMOUNT", default_value = "10%", value_parser = parse_amount)]
    pub reserve: Amount,
    /// The cache is never made smaller than this
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub min_cache: usize,
    /// Nor larger than this [default: the node's memory]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_cache: Option<usize>,
    /// Shrink whatever the predictions say when the node's measured use is above this (OFC: 90%)
    #[arg(long, value_name = "PCT", default_value = "90%", value_parser = parse_percent)]
    pub shrink_at: f64,
    /// How far below the budget a shrink under pressure goes (OFC: 10% of the node)
    #[arg(long, value_name = "AMOUNT", default_value = "10%", value_parser = parse_amount)]
    pub shrink_step: Amount,
    /// How far below the target a predicted shrink goes (batches a burst of creations)
    #[arg(long, value_name = "AMOUNT", default_value = "2%", value_parser = parse_amount)]
    pub shrink_slack: Amount,
    /// Least growth worth a resize (keep it above --shrink-slack: the hysteresis band)
    #[arg(long, value_name = "AMOUNT", default_value = "5%", value_parser = parse_amount)]
    pub grow_step: Amount,
    /// Largest single growth (OFC: 30%)
    #[arg(long, value_name = "AMOUNT", default_value = "30%", value_parser = parse_amount)]
    pub grow_max_step: Amount,
    /// Growth leaves at least this much of the node free with the cache full (OFC: 40%)
    #[arg(long, value_name = "PCT", default_value = "40%", value_parser = parse_percent)]
    pub grow_free: f64,
    /// How long the target must stay a grow step above the budget before growing
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Sampling period of the node and the sandboxes' cgroups, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub interval: u64,
    /// Most sandboxes tracked (creations beyond it are answered 429)
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sandboxes: u64,
    /// Most functions tracked
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_functions: u64,
    /// Most API connections at once (more are closed when accepted)
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// The cache server's process id: its resident set is the cache's memory (default: the
    /// cache is taken to fill its budget)
    #[arg(long, value_name = "PID")]
    pub cache_pid: Option<u32>,
    /// Where the memory predictor keeps what it learns (DIR/predictor.json, loaded at start);
    /// without it, it learns afresh at every start
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Reserve each sandbox's booked memory instead of the predictor's estimate
    #[arg(long)]
    pub booked_only: bool,
    /// Without a server: an in-memory cache of this budget (to try the API and the policy)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with_all = ["resize_command", "server"])]
    pub fake_cache: Option<usize>,
    /// Resize by running a program: `CMD budget` prints the budget in bytes, `CMD resize BYTES`
    /// resizes and prints the new budget; a non-zero exit is a refusal
    #[arg(long, value_name = "CMD", conflicts_with = "server")]
    pub resize_command: Option<String>,
    /// Time allowed for one resize command
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub resize_timeout: Duration,
    /// The local cache server to resize (its server id), found through --dir or --coordinator
    #[arg(long, value_name = "ID")]
    pub server: Option<String>,
    /// Coordinator service locator (as for the client commands)
    #[arg(long, value_name = "LOCATOR", conflicts_with = "dir")]
    pub coordinator: Option<String>,
    /// Local cluster directory (reads DIR/coordinator.locator)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `12%` or `12` (percent) as a fraction in [0, 1].
fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!(
            "bad percentage {s:?}: expected a number from 0 to 100, e.g. 90%"
        )),
    }
}

/// A size (`512MiB`) or a share of the node (`10%`).
fn parse_amount(s: &str) -> std::result::Result<Amount, String> {
    if s.trim().ends_with('%') {
        parse_percent(s).map(|f| Amount::Percent(f * 100.0))
    } else {
        parse_size(s)
            .map(|b| Amount::Bytes(b as u64))
            .map_err(|e| format!("{e} (or a share of the node such as 10%)"))
    }
}

fn resizer(args: &AgentArgs) -> Result<Box<dyn Resizer>> {
    if let Some(size) = args.fake_cache {
        tracing::warn!(
            size,
            "agent: --fake-cache: resizing an in-memory number, not a server"
        );
        return Ok(Box::new(FakeResizer::new(size as u64)));
    }
    if let Some(cmd) = &args.resize_command {
        return Ok(Box::new(
            CommandResizer::new(cmd, args.resize_timeout).context("--resize-command")?,
        ));
    }
    match &args.server {
        Some(id) => Ok(Box::new(crate::agent_links::ClusterResizer::connect(
            args.dir.as_deref(),
            args.coordinator.as_deref(),
            id,
        )?)),
        None => bail!(
            "nothing to resize: give --server ID (with --dir or --coordinator), --resize-command CMD, or --fake-cache SIZE"
        ),
    }
}

fn config(args: &AgentArgs) -> AgentConfig {
    AgentConfig {
        policy: PolicyConfig {
            reserve: args.reserve,
            min_cache: args.min_cache as u64,
            max_cache: args.max_cache.map(|m| m as u64),
            shrink_at: args.shrink_at,
            shrink_step: args.shrink_step,
            shrink_slack: args.shrink_slack,
            grow_step: args.grow_step,
            grow_max_step: args.grow_max_step,
            grow_free: args.grow_free,
            settle: args.settle,
        },
        max_sandboxes: args.max_sandboxes as usize,
        max_functions: args.max_functions as usize,
        cgroup_root: args.cgroup_root.clone(),
        interval: Duration::from_millis(args.interval),
        cache_pid: args.cache_pid,
        ..AgentConfig::default()
    }
}

/// Run the agent until the process is ended.
pub fn run(args: AgentArgs) -> Result<()> {
    let node = match &args.node_cgroup {
        Some(p) => NodeSource::cgroup(p).with_context(|| {
            format!(
                "--node-cgroup {}: give a memory cgroup directory (v1: /sys/fs/cgroup/memory/..., v2: /sys/fs/cgroup/...)",
                p.display()
            )
        })?,
        None => NodeSource::proc(),
    };
    let first = node
        .sample()
        .context("cannot read the node's memory at start")?;
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --state-dir {}", dir.display()))?;
    }
    let resizer = resizer(&args)?;
    let cfg = config(&args);
    tracing::info!(node_bytes = first.total, used_bytes = first.used, policy = ?cfg.policy, "agent: starting");
    let model: Box<dyn faascache_agent::MemoryModel> = if args.booked_only {
        Box::new(BookedModel)
    } else {
        Box::new(crate::agent_links::PredictorModel::open(
            args.state_dir.as_deref(),
        )?)
    };
    let agent = Arc::new(Agent::new(cfg, node, resizer, model));
    agent
        .spawn_sampler()
        .context("cannot start the sampler thread")?;
    let on_signal = agent.clone();
    let addr_file = args.addr_file.clone();
    let remove_on_signal = addr_file.clone();
    ctrlc::set_handler(move || {
        on_signal.maybe_save(true);
        if let Some(f) = &remove_on_signal {
            let _ = std::fs::remove_file(f);
        }
        std::process::exit(0);
    })
    .context("cannot install the signal handler")?;
    let api = ApiConfig {
        listen: args.listen,
        max_connections: args.max_connections,
        ..ApiConfig::default()
    };
    faascache_agent::serve(agent, api, |addr| {
        println!("agent listening on http://{addr}");
        if let Some(f) = &addr_file {
            if let Err(e) = std::fs::write(f, format!("http://{addr}\n")) {
                eprintln!(
                    "faascache: error: cannot write --addr-file {}: {e}",
                    f.display()
                );
                std::process::exit(1);
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_percentages_parse() {
        assert_eq!(parse_percent("90%"), Ok(0.9));
        assert_eq!(parse_percent("40"), Ok(0.4));
        assert!(parse_percent("120%").is_err());
        assert!(parse_percent("-1").is_err());
        assert_eq!(parse_amount("10%"), Ok(Amount::Percent(10.0)));
        assert_eq!(parse_amount("512MiB"), Ok(Amount::Bytes(512 << 20)));
        let e = parse_amount("3 furlongs").unwrap_err();
        assert!(e.contains("share of the node"), "{e}");
    }
}
