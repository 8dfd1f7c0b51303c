//! `faascache coordinator` and `faascache server`: run in the foreground until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::lifecycle::Termination;
use crate::units::{parse_duration, parse_size};
use anyhow::{Context, Result};
use clap::Args;
use faascache_server::coordinator::{self, CoordinatorConfig, MemStorage};
use faascache_server::node::{self, NodeConfig};
use faascache_transport::CoordinatorLocator;
use faascache_transport::{DispatchConfig, PollMode, ServiceLocator};

/// Options of `faascache coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Service locator to listen on, e.g. tcp:host=10.0.0.1,port=12246 (port=0 picks a free port)
    #[arg(long, value_name = "LOCATOR")]
    pub listen: String,
    /// Where the state (server list, tables, tablets) is kept so a restarted coordinator recovers
    /// it: file:DIR, or zk:HOST:PORT[,HOST:PORT...][/CHROOT] for standby coordinators with leader
    /// election (start several; one leads, the others wait and take over when it dies). Without
    /// it the state lives in memory only and is lost on restart
    #[arg(long, value_name = "STORAGE")]
    pub storage: Option<String>,
    /// Mark a server crashed when it has not sent a heartbeat for this long (e.g. 15s, 500ms)
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// Client lease term: a client that has not renewed its lease for this long (it renews at
    /// half the term) is dead; masters then drop its exactly-once results and refuse its old
    /// requests (e.g. 30s, 2s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub client_lease_term: Duration,
    /// Move tablets between masters in the background so that each holds a share proportional
    /// to its memory budget: a server that joins takes a share of the tablets, and one that
    /// grows (faascache resize) takes more. One move at a time, every 2 s at most
    #[arg(long)]
    pub rebalance: bool,
    /// Dispatch threads
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cores: usize,
    /// How dispatch threads poll: spin, adaptive[:SPIN] (spin then block) or block
    #[arg(long, value_name = "MODE", default_value = "block")]
    pub poll: PollMode,
    /// Write the locator actually served (with the real port) to this file once serving
    #[arg(long, value_name = "FILE")]
    pub locator_file: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub eal: crate::bypass::EalArgs,
}

/// Connection limits of `faascache server` and `faascache coordinator` (TCP and the verbs side
/// channel; see docs/operations.md, "Connection limits").
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Most open client connections; beyond it new ones are accepted and closed at once
    #[arg(long, value_name = "N", default_value_t = faascache_transport::limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most request bytes buffered over all connections (units B, KiB, MiB, GiB); a connection
    /// that needs more waits, unread, until others finish
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_buffered: usize,
    /// Close a connection that sends no complete request this long after connecting
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close a connection that holds a partial request and sends no byte for this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
}

impl ConnArgs {
    fn limits(&self) -> Result<faascache_transport::ConnLimits> {
        let min = faascache_transport::limits::MAX_MESSAGE;
        if self.max_buffered < min {
            anyhow::bail!(
                "--max-buffered {} is below the largest request ({min} bytes), which could then \
                 never be received; give at least {}MiB",
                self.max_buffered,
                min.div_ceil(1 << 20)
            );
        }
        if self.max_connections == 0 || self.idle_timeout.is_zero() || self.stall_timeout.is_zero()
        {
            anyhow::bail!("--max-connections, --idle-timeout and --stall-timeout must be above 0");
        }
        Ok(faascache_transport::ConnLimits {
            max_connections: self.max_connections,
            max_buffered_bytes: self.max_buffered,
            idle_timeout: self.idle_timeout,
            stall_timeout: self.stall_timeout,
        })
    }
}

/// Options of `faascache server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Coordinator service locator, e.g. tcp:host=10.0.0.1,port=12246, or
    /// zk:HOST:PORT[,HOST:PORT...][/CHROOT] to find the leading coordinator through ZooKeeper
    /// (looked up again whenever the coordinator's session fails)
    #[arg(long, value_name = "LOCATOR")]
    pub coordinator: String,
    /// Service locator to listen on; use a concrete address, clients are given it (port=0 picks a
    /// free port). With alternatives separated by ';' (dpdk:...;tcp:...) it serves on every one
    /// that starts, the first as the data plane; one that cannot start is skipped with a warning
    /// and the reason shown by `status`
    #[arg(
        long,
        value_name = "LOCATOR",
        default_value = "tcp:host=127.0.0.1,port=0"
    )]
    pub listen: String,
    /// Log memory of the master (bytes; units B, KiB, MiB, GiB, TiB); at least 32MiB
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory: usize,
    /// The most log memory a live resize (`faascache resize`, the node agent) may give this
    /// server: reserved as address space at start, not as memory (units as --memory); checked
    /// against the machine's and the cgroup's memory like --memory [default: --memory, no growth]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
    /// Dispatch threads (each pinned to a core)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cores: usize,
    /// How dispatch threads poll: spin (lowest latency, a full core each), adaptive[:SPIN] (spin
    /// 200us after activity, then block) or block
    #[arg(long, value_name = "MODE", default_value = "adaptive")]
    pub poll: PollMode,
    /// Do not pin dispatch threads to cores
    #[arg(long)]
    pub no_pin: bool,
    /// Give up if the coordinator cannot be reached for this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub enlist_timeout: Duration,
    /// Write the locator actually served (with the real port) to this file once enlisted
    #[arg(long, value_name = "FILE")]
    pub locator_file: Option<PathBuf>,
    /// Backup copies of every log segment, on other servers' backups; a write is acknowledged
    /// once all of them hold it. 0 = memory only (a crash loses this master's data). Writes
    /// wait (with a clear message) while fewer other backups are up.
    #[arg(long, value_name = "R", default_value_t = 3)]
    pub replicas: usize,
    /// Run no backup service on this server (it then keeps no replicas of other masters)
    #[arg(long)]
    pub no_backup: bool,
    /// Directory for this server's replica files (found again after a restart); without it
    /// replicas live in memory only
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// When the backup acknowledges a replica write: memory (once in RAM; files written soon
    /// after) or disk (once fdatasync'ed; needs --backup-dir)
    #[arg(long, value_name = "MODE", default_value = "memory")]
    pub durability: faascache_server::backup::Durability,
    /// Most replica bytes this backup keeps (units B, KiB, MiB, GiB)
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub backup_capacity: usize,
    /// Credentials and endpoints of the object stores behind backed tables: a TOML file with
    /// [s3] and [swift] tables (docs/faas.md, "Credentials"). Without it, FAASCACHE_STORE_CONFIG
    /// names the file; the environment (AWS_*, OS_*, ST_*) fills what the file leaves unset
    #[arg(long, value_name = "FILE")]
    pub store_config: Option<PathBuf>,
    /// Most dirty (not yet uploaded) bytes of write-back tables this master holds before it
    /// answers writes WRITE_BACK_FULL (units B, KiB, MiB, GiB) [default: a quarter of --memory]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub write_back_limit: Option<usize>,
    /// How long the chunks of a large object being written (values above 1 MiB, sent in
    /// chunks and then committed) wait for the next chunk or the commit before they are
    /// removed as abandoned by a client that died mid-write
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub orphan_chunk_age: Duration,
    /// Free log memory kept faulted in ahead of the log head by a background thread, so that
    /// writes do not take page faults (units B, KiB, MiB, GiB); as much as --memory faults the
    /// whole log in at start (resident memory is then --memory from the start); 0 = off
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub warm_ahead: usize,
    /// Refuse to start unless a kernel-bypass alternative of --listen (dpdk:, infrc:) serves,
    /// instead of falling back to a kernel transport
    #[arg(long)]
    pub require_bypass: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub eal: crate::bypass::EalArgs,
}

fn locator(s: &str, what: &str) -> Result<ServiceLocator> {
    s.parse().with_context(|| {
        format!("bad {what} locator {s:?} (expected e.g. tcp:host=127.0.0.1,port=12246)")
    })
}

/// Write `text` to `path` atomically (temp file + rename).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Run the coordinator until a termination signal.
pub fn coordinator(args: CoordinatorArgs) -> Result<()> {
    // The main thread polls for signals at every stage (the start runs on its own thread).
    let stop = Termination::delivered()?;
    let listen = locator(&args.listen, "--listen")?;
    args.eal.init(&listen, None)?;
    let storage: Arc<dyn coordinator::ExternalStorage> = match &args.storage {
        Some(s) => Arc::from(coordinator::open_storage(s)?),
        None => {
            tracing::warn!("no --storage: the coordinator's state is kept in memory only and lost if it restarts");
            Arc::new(MemStorage::default())
        }
    };
    let shared = storage.clone();
    let cfg = CoordinatorConfig {
        dispatch: DispatchConfig {
            cores: args.cores,
            pin: false,
            first_core: 0,
            poll: args.poll,
            conn: args.conn.limits()?,
        },
        heartbeat_timeout: args.heartbeat_timeout,
        client_lease_term: args.client_lease_term,
        rebalance: args.rebalance,
        ..CoordinatorConfig::default()
    };
    // With zk: storage, `start` waits (as a standby) until this process leads: keep answering
    // termination signals meanwhile.
    let (started_tx, started) = mpsc::channel();
    std::thread::Builder::new()
        .name("coord-start".into())
        .spawn(move || {
            let _ = started_tx.send(coordinator::start(&listen, Box::new(storage), cfg));
        })
        .context("cannot start a thread")?;
    let handle = loop {
        match started.recv_timeout(LEADERSHIP_CHECK) {
            Ok(r) => break r.context("cannot start the coordinator")?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the coordinator's start thread ended without an answer")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop.requested() {
            tracing::info!("terminated while starting (or a standby)");
            shared.release();
            return Ok(());
        }
    };
    let served = handle.locator().to_string();
    println!("coordinator serving at {served}");
    if let Some(f) = &args.locator_file {
        write_atomic(f, &served)?;
    }
    loop {
        match stop.recv_timeout(LEADERSHIP_CHECK) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = handle.storage().check_leadership() {
                    tracing::error!(error = %e, "this coordinator lost its leadership; exiting so that it stops acting as leader");
                    handle.shutdown();
                    shared.release();
                    anyhow::bail!("lost leadership: {e}; a standby coordinator takes over (restart this process to rejoin as a standby)");
                }
            }
        }
    }
    tracing::info!("shutting down (a second signal exits at once)");
    handle.shutdown();
    shared.release();
    Ok(())
}

/// The object-store settings of a server: `--store-config` (or `FAASCACHE_STORE_CONFIG`) under
/// the environment; a named file that is missing or does not parse stops the start.
fn store_settings(args: &ServerArgs) -> Result<faascache_objstore::Settings> {
    if args.write_back_limit == Some(0) {
        anyhow::bail!("--write-back-limit must be above 0 (it bounds the dirty bytes of write-back tables; e.g. 256MiB)");
    }
    let file = args.store_config.as_deref();
    faascache_objstore::Settings::resolve(faascache_objstore::Settings::default(), file)
        .with_context(|| match file {
            Some(f) => format!(
                "cannot use --store-config {}: fix the file (TOML with [s3] and [swift] tables, see docs/faas.md) or leave the flag out",
                f.display()
            ),
            None => format!(
                "cannot read the object-store settings named by ${}: fix the file or unset the variable",
                faascache_objstore::config::CONFIG_ENV
            ),
        })
}

/// How often the coordinator daemon asks its storage whether it still leads.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(500);

/// Run a server until a termination signal.
pub fn server(args: ServerArgs) -> Result<()> {
    // Start-up runs on this thread and cannot stop half-way: until it serves, a signal ends
    // the process at once (see `lifecycle`).
    let stop = Termination::starting("checking the configuration")?;
    // Before anything is reserved or started: a --memory that cannot fit is refused now, with
    // the numbers, instead of being ended by the OOM killer once the log fills.
    let limits = crate::memcheck::limits();
    crate::memcheck::check(args.memory as u64, &limits)?;
    let max_memory = crate::memcheck::max_memory(args.memory, args.max_memory, &limits)?;
    let store_settings = store_settings(&args)?;
    let coordinator: CoordinatorLocator = args.coordinator.parse().with_context(|| {
        format!(
            "bad --coordinator locator {:?} (expected e.g. tcp:host=127.0.0.1,port=12246 or zk:127.0.0.1:2181)",
            args.coordinator
        )
    })?;
    let listen = locator(&args.listen, "--listen")?;
    let coordinator_direct = match &coordinator {
        CoordinatorLocator::Direct(l) => Some(l.clone()),
        _ => None,
    };
    args.eal.init(&listen, coordinator_direct.as_ref())?;
    let cfg = NodeConfig {
        coordinator,
        listen,
        require_bypass: args.require_bypass,
        memory_bytes: args.memory,
        max_memory_bytes: Some(max_memory),
        warm_ahead_bytes: Some(args.warm_ahead),
        dispatch: DispatchConfig {
            cores: args.cores,
            pin: !args.no_pin,
            first_core: 0,
            poll: args.poll,
            conn: args.conn.limits()?,
        },
        enlist_timeout: args.enlist_timeout,
        replicas: args.replicas,
        backup: (!args.no_backup).then(|| faascache_server::backup::BackupConfig {
            dir: args.backup_dir.clone(),
            durability: args.durability,
            capacity_bytes: args.backup_capacity,
            warm_bytes: args.warm_ahead.min(64 << 20),
        }),
        store_settings,
        write_back_limit: args.write_back_limit.map(|b| b as u64),
        orphan_chunk_age: args.orphan_chunk_age,
    };
    if args.durability == faascache_server::backup::Durability::Disk && args.backup_dir.is_none() {
        anyhow::bail!("--durability disk needs --backup-dir DIR (where the replicas are written)");
    }
    stop.stage(format!(
        "starting (reserving {} of log memory, opening the backup, enlisting with the coordinator at {})",
        crate::memcheck::gib(args.memory as u64),
        args.coordinator
    ));
    tracing::info!(memory = %crate::memcheck::gib(args.memory as u64), coordinator = %args.coordinator, "starting");
    let node = node::start(cfg).context("cannot start the server")?;
    stop.serving();
    let served = node.locator().to_string();
    println!("server {} serving at {served}", node.master().server_id());
    if let Some(f) = &args.locator_file {
        write_atomic(f, &served)?;
    }
    loop {
        match stop.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Timeout) if node.retired() => {
                tracing::warn!("drained and removed from the cluster (faascache drain): exiting");
                println!(
                    "server {} drained and removed: exiting",
                    node.master().server_id()
                );
                node.shutdown();
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !node.fenced() => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Declared dead: our tablets are being recovered elsewhere; serving on would
                // only confuse clients. Exit non-zero so a supervisor restarts us fresh.
                tracing::error!("declared dead by the coordinator: exiting");
                node.shutdown();
                std::process::exit(3);
            }
            _ => break,
        }
    }
    tracing::info!("shutting down (a second signal exits at once)");
    node.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(max_buffered: usize, stall: Duration) -> ConnArgs {
        ConnArgs {
            max_connections: 10,
            max_buffered,
            idle_timeout: Duration::from_secs(60),
            stall_timeout: stall,
        }
    }

    #[test]
    fn connection_limits_refuse_what_could_never_work() {
        let ok = args(64 << 20, Duration::from_secs(5)).limits().unwrap();
        assert_eq!(ok.max_buffered_bytes, 64 << 20);
        assert_eq!(ok.stall_timeout, Duration::from_secs(5));
        let small = args(1 << 20, Duration::from_secs(5)).limits().unwrap_err();
        assert!(small.to_string().contains("--max-buffered"), "{small}");
        assert!(args(64 << 20, Duration::ZERO).limits().is_err());
    }

    #[test]
    fn connection_flag_defaults_are_the_transport_defaults() {
        #[derive(clap::Parser)]
        struct W {
            #[command(flatten)]
            conn: ConnArgs,
        }
        let w = <W as clap::Parser>::parse_from(["faascache"]);
        assert_eq!(
            w.conn.limits().unwrap(),
            faascache_transport::ConnLimits::default()
        );
    }
}
