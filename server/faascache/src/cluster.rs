//! `faascache cluster up|down`: a local cluster of child processes on 127.0.0.1.
//!
//! Layout of the cluster directory (default `./.faascache-cluster`):
//!
//! ```text
//! DIR/coordinator.locator   the coordinator's locator (written once every server enlisted)
//! DIR/supervisor.pid        pid of the `cluster up` process
//! DIR/pids/NAME.pid         pid of each child (coordinator, server-1, ...)
//! DIR/logs/NAME.log         stderr of each child
//! DIR/run/NAME.locator      locator each child serves on
//! DIR/coordinator-storage/  the coordinator's file: storage
//! ```
//!
//! `cluster up` starts a fresh cluster each time (it clears the previous run's state in DIR),
//! stays in the foreground and stops everything on Ctrl-C / SIGTERM; `cluster down` stops a
//! cluster whose supervisor is gone or runs elsewhere.

use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::units::parse_size;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use faascache_client::cli::{DEFAULT_CLUSTER_DIR, LOCATOR_FILE};
use faascache_launch::pid::{alive, signal, Sig};
use faascache_launch::{Daemon, Launch, LaunchError, Stopped};
use faascache_transport::PollMode;

use super::daemon::write_atomic;
use crate::lifecycle::Termination;

/// `faascache cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a coordinator and N servers on 127.0.0.1 as child processes; stay in the foreground
    /// and stop them all on Ctrl-C or SIGTERM
    Up {
        /// Number of servers
        #[arg(long, value_name = "N", default_value_t = 3)]
        servers: usize,
        /// Cluster directory (locator file, pid files, logs, coordinator storage)
        #[arg(long, value_name = "DIR", default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        /// Transport: tcp or udp
        #[arg(long, value_name = "KIND", default_value = "tcp")]
        transport: String,
        /// Log memory of each server (bytes; units B, KiB, MiB, GiB); at least 32MiB
        #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
        memory: usize,
        /// Poll mode of the servers: spin, adaptive[:SPIN] or block. Default: adaptive when the
        /// machine has a core for each server and one for clients, else block (spinning
        /// servers that share cores delay each other's wake-ups by their whole spin window)
        #[arg(long, value_name = "MODE")]
        poll: Option<PollMode>,
        /// Give up if the cluster is not up after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
        /// Backup copies of each master's log on other servers [default: 3, or servers − 2 if
        /// fewer servers, at least 1: so writes go on after one server crashes]
        #[arg(long, value_name = "R")]
        replicas: Option<usize>,
        /// Backups acknowledge replicas once in memory, or once on disk (files under
        /// DIR/backups/)
        #[arg(long, value_name = "MODE", default_value = "memory")]
        durability: faascache_server::backup::Durability,
        /// The coordinator's client lease term (its --client-lease-term) [default: 30s]
        #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
        client_lease_term: Option<Duration>,
        /// The coordinator's --rebalance: tablets follow the servers' memory budgets
        #[arg(long)]
        rebalance: bool,
        /// The servers' object-store settings file (their --store-config; backed tables). The
        /// servers also inherit this process's environment (AWS_*, OS_*, ST_*,
        /// FAASCACHE_STORE_CONFIG)
        #[arg(long, value_name = "FILE")]
        store_config: Option<PathBuf>,
        /// The servers' --write-back-limit (units B, KiB, MiB, GiB) [default: a quarter of
        /// --memory]
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        write_back_limit: Option<usize>,
        /// The servers' --max-memory: how far `faascache resize` (or the node agent) may grow
        /// each one (units B, KiB, MiB, GiB) [default: --memory, no growth]
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_memory: Option<usize>,
    },
    /// Stop a cluster started by `cluster up` (its supervisor, or its children if the supervisor
    /// is gone)
    Down {
        /// Cluster directory
        #[arg(long, value_name = "DIR", default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
    },
}

/// The servers' poll mode when none is given: adaptive if every server and a client can have a
/// core of their own, block otherwise. (Measured on 2 cores with 3 servers: adaptive gave a
/// 205 µs read p50 — each request waited out another server's 200 µs spin — block gave 31 µs.)
pub fn default_poll(servers: usize) -> PollMode {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cores > servers {
        PollMode::default()
    } else {
        PollMode::Block
    }
}

/// Run a cluster subcommand.
pub fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Up {
            servers,
            dir,
            transport,
            memory,
            poll,
            timeout,
            replicas,
            durability,
            client_lease_term,
            rebalance,
            store_config,
            write_back_limit,
            max_memory,
        } => up(
            &Options {
                servers,
                transport,
                memory,
                poll: poll.unwrap_or_else(|| default_poll(servers)),
                timeout: Duration::from_secs(timeout),
                replicas: replicas_for(servers, replicas)?,
                durability,
                client_lease_term,
                rebalance,
                store_config,
                write_back_limit,
                max_memory,
            },
            &dir,
        ),
        ClusterCommand::Down { dir } => down(&dir),
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How long children get to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often a starting cluster checks for a termination signal.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// A termination signal came while the cluster was starting (its processes are stopped).
#[derive(Debug, thiserror::Error)]
#[error("terminated by a signal while the cluster was starting")]
pub struct Interrupted;

struct Cluster {
    dir: PathBuf,
    procs: Vec<Daemon>,
}

impl Cluster {
    fn spawn(&mut self, name: &str, args: &[String]) -> Result<()> {
        let exe =
            std::env::current_exe().context("cannot find this executable to start children")?;
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let child = Launch::new(name, exe, &log).args(args).spawn()?;
        write_atomic(
            &self.dir.join("pids").join(format!("{name}.pid")),
            &child.pid().to_string(),
        )?;
        tracing::info!(name, pid = child.pid(), log = %log.display(), "started");
        self.procs.push(child);
        Ok(())
    }

    /// Wait for `file` to appear, failing early if the child `name` exits or `cancel` says so
    /// (asked every 100 ms).
    fn wait_file(
        &mut self,
        name: &str,
        file: &Path,
        deadline: Instant,
        cancel: &dyn Fn() -> bool,
    ) -> Result<String> {
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name() == name)
            .with_context(|| format!("no cluster process named {name}"))?;
        let waited = deadline.saturating_duration_since(Instant::now());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.wait_file(file, left.min(CANCEL_CHECK)) {
                Ok(s) => return Ok(s),
                Err(LaunchError::Timeout { .. }) if left > CANCEL_CHECK => {
                    if cancel() {
                        return Err(Interrupted.into());
                    }
                }
                Err(mut e) => {
                    if let LaunchError::Timeout { waited: w, .. } = &mut e {
                        *w = waited;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// SIGTERM every child (servers first), wait, SIGKILL stragglers.
    fn stop(&mut self) {
        let how = faascache_launch::stop_all(&mut self.procs, GRACE);
        for (p, how) in self.procs.iter().zip(how) {
            if how == Stopped::Killed {
                tracing::warn!(name = %p.name(), "did not stop in 5 s; killed it");
            }
            let _ = std::fs::remove_file(self.dir.join("pids").join(format!("{}.pid", p.name())));
        }
        let _ = std::fs::remove_file(self.dir.join(LOCATOR_FILE));
        let _ = std::fs::remove_file(self.dir.join("supervisor.pid"));
        self.procs.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A started local cluster: its processes (stopped on drop) and the coordinator locator.
pub struct Started {
    cluster: Cluster,
    /// The coordinator's locator.
    pub coordinator: String,
    /// The cluster directory (canonical).
    pub dir: PathBuf,
}

impl Started {
    /// Stops every process of the cluster.
    pub fn stop(mut self) {
        self.cluster.stop();
    }
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Servers.
    pub servers: usize,
    /// tcp or udp.
    pub transport: String,
    /// Log memory per server.
    pub memory: usize,
    /// Server polling mode.
    pub poll: PollMode,
    /// Give up after this long.
    pub timeout: Duration,
    /// Backup copies of each master's log.
    pub replicas: usize,
    /// Backup durability (disk: files under DIR/backups/).
    pub durability: faascache_server::backup::Durability,
    /// The coordinator's client lease term (its default if `None`).
    pub client_lease_term: Option<Duration>,
    /// The coordinator's `--rebalance`.
    pub rebalance: bool,
    /// The servers' `--store-config`.
    pub store_config: Option<PathBuf>,
    /// The servers' `--write-back-limit`.
    pub write_back_limit: Option<usize>,
    /// The servers' `--max-memory`.
    pub max_memory: Option<usize>,
}

/// Replicas for `servers` servers: the requested number if possible (a clear error if not),
/// else 3, or fewer so that after one crash every master still finds enough backups
/// (servers − 2, at least 1; 0 for a single server).
pub fn replicas_for(servers: usize, requested: Option<usize>) -> Result<usize> {
    let others = servers.saturating_sub(1);
    match requested {
        Some(r) if r > others => bail!(
            "--replicas {r} needs at least {} servers (a master never keeps a replica of its own log): use --servers {} or fewer replicas",
            r + 1,
            r + 1
        ),
        Some(r) => Ok(r),
        None => Ok(3.min(servers.saturating_sub(2)).max(others.min(1))),
    }
}

/// What `cluster up` says when `r` replicas cannot be kept after one of `servers` crashes: the
/// survivors' masters then have `servers − 2` other backups each.
pub fn replication_warning(servers: usize, r: usize) -> Option<String> {
    let left = servers.saturating_sub(2);
    if r == 0 || servers == 0 || left >= r {
        return None;
    }
    let after = if left == 0 {
        "no other backup: the survivor acknowledges no write (and recovers no tablet) until a server joins".to_string()
    } else {
        format!("{left} other backup(s): they keep serving with {left} replica(s) per segment (under-replicated, shown by `faascache status`) until servers join")
    };
    Some(format!(
        "--replicas {r} cannot be kept after a crash with {servers} servers: each surviving master has {after}; use --servers {} for full replication after one crash",
        r + 2
    ))
}

fn up(o: &Options, dir: &Path) -> Result<()> {
    // The main thread polls for signals while it starts the children (and stops those already
    // started if one comes), then while the cluster runs; a second signal during the shutdown
    // exits at once (the children have had their SIGTERM).
    let stop = Termination::delivered()?;
    if let Some(w) = replication_warning(o.servers, o.replicas) {
        tracing::warn!("{w}");
        eprintln!("faascache: warning: {w}");
    }
    let servers = o.servers;
    let transport = o.transport.as_str();
    let mut started = match start_until(o, dir, &|| stop.requested()) {
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("faascache: terminated by a signal while the cluster was starting; its processes are stopped");
            return Ok(());
        }
        r => r?,
    };
    let coordinator = started.coordinator.clone();
    let dir = started.dir.clone();
    let c = &mut started.cluster;
    let mut exited = vec![false; c.procs.len()];
    println!("{coordinator}");
    eprintln!(
        "faascache: cluster up: coordinator + {servers} servers over {transport}; locator in {}; logs in {}; Ctrl-C stops it",
        dir.join(LOCATOR_FILE).display(),
        dir.join("logs").display()
    );
    loop {
        match stop.recv_timeout(Duration::from_millis(250)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        for (p, seen) in c.procs.iter_mut().zip(exited.iter_mut()) {
            if let (false, Some(status)) = (*seen, p.exited()) {
                *seen = true;
                tracing::warn!(name = %p.name(), %status, "a cluster process exited");
            }
        }
    }
    tracing::info!("stopping the cluster");
    started.stop();
    eprintln!("faascache: cluster stopped");
    Ok(())
}

/// Starts a coordinator and `servers` servers as child processes and waits until all are up,
/// giving up with [`Interrupted`] (and stopping what it started) once `cancel` says so.
pub fn start_until(o: &Options, dir: &Path, cancel: &dyn Fn() -> bool) -> Result<Started> {
    let (servers, transport, memory, timeout) =
        (o.servers, o.transport.as_str(), o.memory, o.timeout);
    let poll = &o.poll;
    if servers == 0 {
        bail!("--servers must be at least 1");
    }
    // The servers may run in another directory: give them the file's absolute path.
    let store_config = match &o.store_config {
        Some(f) => Some(
            std::fs::canonicalize(f)
                .with_context(|| format!("cannot find --store-config {}", f.display()))?,
        ),
        None => None,
    };

    if !matches!(transport, "tcp" | "udp") {
        bail!("--transport {transport:?} is not supported by `cluster up`: use tcp or udp");
    }
    if let Some(pid) = read_pid(&dir.join("supervisor.pid")).filter(|&p| alive(p)) {
        bail!("a cluster is already running in {} (supervisor pid {pid}); stop it with `faascache cluster down --dir {}`", dir.display(), dir.display());
    }
    // A fresh cluster: clear the previous run's state.
    for sub in ["pids", "logs", "run", "coordinator-storage", "backups"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    let _ = std::fs::remove_file(dir.join(LOCATOR_FILE));
    for sub in ["pids", "logs", "run"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    write_atomic(&dir.join("supervisor.pid"), &std::process::id().to_string())?;
    let mut c = Cluster {
        dir: dir.clone(),
        procs: Vec::new(),
    };
    let deadline = Instant::now() + timeout;
    let poll = poll.to_string();
    let run = |name: &str| {
        dir.join("run")
            .join(format!("{name}.locator"))
            .display()
            .to_string()
    };
    let mut coord_args: Vec<String> = vec![
        "coordinator".into(),
        "--listen".into(),
        format!("{transport}:host=127.0.0.1,port=0"),
        "--storage".into(),
        format!("file:{}", dir.join("coordinator-storage").display()),
        "--poll".into(),
        "block".into(),
        "--locator-file".into(),
        run("coordinator"),
    ];
    if let Some(t) = o.client_lease_term {
        coord_args.extend([
            "--client-lease-term".into(),
            format!("{}ms", t.as_millis().max(1)),
        ]);
    }
    if o.rebalance {
        coord_args.push("--rebalance".into());
    }
    c.spawn("coordinator", &coord_args)?;
    let coordinator = c.wait_file(
        "coordinator",
        Path::new(&run("coordinator")),
        deadline,
        cancel,
    )?;
    tracing::info!(%coordinator, %transport, "coordinator up");
    for i in 1..=servers {
        let name = format!("server-{i}");
        let mut args: Vec<String> = vec![
            "server".into(),
            "--coordinator".into(),
            coordinator.clone(),
            "--listen".into(),
            format!("{transport}:host=127.0.0.1,port=0"),
            "--memory".into(),
            memory.to_string(),
            "--poll".into(),
            poll.clone(),
            "--no-pin".into(),
            "--locator-file".into(),
            run(&name),
            "--replicas".into(),
            o.replicas.to_string(),
        ];
        if o.durability == faascache_server::backup::Durability::Disk {
            let bdir = dir.join("backups").join(&name);
            args.extend([
                "--durability".into(),
                "disk".into(),
                "--backup-dir".into(),
                bdir.display().to_string(),
            ]);
        }
        if let Some(f) = &store_config {
            args.extend(["--store-config".into(), f.display().to_string()]);
        }
        if let Some(l) = o.write_back_limit {
            args.extend(["--write-back-limit".into(), l.to_string()]);
        }
        if let Some(m) = o.max_memory {
            args.extend(["--max-memory".into(), m.to_string()]);
        }
        c.spawn(&name, &args)?;
    }
    for i in 1..=servers {
        let name = format!("server-{i}");
        let loc = c.wait_file(&name, Path::new(&run(&name)), deadline, cancel)?;
        tracing::info!(%name, locator = %loc, "server up");
    }
    write_atomic(&dir.join(LOCATOR_FILE), &coordinator)?;
    Ok(Started {
        cluster: c,
        coordinator,
        dir,
    })
}

fn down(dir: &Path) -> Result<()> {
    if !dir.exists() {
        bail!("no cluster directory {}", dir.display());
    }
    let mut stopped = 0;
    if let Some(pid) = read_pid(&dir.join("supervisor.pid")).filter(|&p| alive(p)) {
        signal(pid, Sig::Term);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            bail!("the supervisor (pid {pid}) did not stop within 10 s");
        }
        stopped += 1;
    }
    // Children left behind (supervisor killed hard).
    if let Ok(entries) = std::fs::read_dir(dir.join("pids")) {
        let pids: Vec<(PathBuf, u32)> = entries
            .flatten()
            .filter_map(|e| read_pid(&e.path()).map(|p| (e.path(), p)))
            .collect();
        for (_, pid) in pids.iter().filter(|(_, p)| alive(*p)) {
            signal(*pid, Sig::Term);
            stopped += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (path, pid) in &pids {
            while alive(*pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(*pid) {
                signal(*pid, Sig::Kill);
            }
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = std::fs::remove_file(dir.join(LOCATOR_FILE));
    let _ = std::fs::remove_file(dir.join("supervisor.pid"));
    if stopped == 0 {
        eprintln!("faascache: no running cluster in {}", dir.display());
    } else {
        eprintln!("faascache: cluster in {} stopped", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_one_crash_leaves_fewer_than_r_backups() {
        // 3 servers, R = 2: a survivor has 1 other backup.
        let w = replication_warning(3, 2).expect("a warning");
        assert!(
            w.contains("--replicas 2") && w.contains("1 replica(s)") && w.contains("--servers 4"),
            "{w}"
        );
        // 2 servers, R = 1: the survivor has none.
        let w = replication_warning(2, 1).expect("a warning");
        assert!(w.contains("no other backup"), "{w}");
        // Enough servers, memory only, the defaults of `cluster up`.
        assert_eq!(replication_warning(4, 2), None);
        assert_eq!(replication_warning(3, 0), None);
        assert_eq!(replication_warning(1, 0), None);
        for n in 3..8 {
            let r = replicas_for(n, None).unwrap();
            assert_eq!(replication_warning(n, r), None, "{n} servers, R = {r}");
        }
    }
}
