//! A private FaaSCache cluster for `compare`: one coordinator and one server started as child
//! processes of the harness (the `faascache` binary next to `faascache-bench`), the server pinned
//! to a core with `taskset`, stopped (and its directory removed) when dropped.
//!
//! One server, because the targets compare one server core of FaaSCache with one Redis
//! thread and memcached; the server's polling mode is recorded with every result.

use anyhow::{Context, Result};
use faascache_launch::{Daemon, Launch};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// The `faascache` binary.
    pub bin: PathBuf,
    /// Log memory of the server, bytes.
    pub memory_bytes: u64,
    /// Core the server runs on (`taskset -c`), if any.
    pub core: Option<usize>,
    /// Server polling mode: spin, adaptive or block.
    pub poll: String,
    /// The server's `--listen` (`{dir}` is replaced by the cluster's directory).
    pub listen: String,
    /// Environment of the coordinator process (e.g. `FAASCACHE_TRANSPORTS=tcp`).
    pub coordinator_env: Vec<(String, String)>,
    /// Extra flags of the coordinator (e.g. `--client-lease-term 2s`).
    pub coordinator_args: Vec<String>,
}

impl LocalClusterConfig {
    /// Defaults: the binary next to the running executable (or `$FAASCACHE_BIN`), 1 GiB.
    pub fn new(poll: &str, core: Option<usize>) -> Result<Self> {
        Ok(Self {
            bin: faascache_binary()?,
            memory_bytes: 1 << 30,
            core,
            poll: poll.to_string(),
            listen: "tcp:host=127.0.0.1,port=0".into(),
            coordinator_env: Vec::new(),
            coordinator_args: Vec::new(),
        })
    }
}

/// Finds the `faascache` binary: `$FAASCACHE_BIN`, else next to this executable (both live in
/// `target/<profile>/`).
pub fn faascache_binary() -> Result<PathBuf> {
    Ok(faascache_launch::find_binary(None)?)
}

/// A running coordinator + server.
#[derive(Debug)]
pub struct LocalCluster {
    /// The server, then the coordinator (dropped, so killed, in this order: the server does not
    /// report the coordinator missing).
    _children: Vec<Daemon>,
    coordinator: String,
    server_pid: u32,
    /// What was started, for the report.
    pub description: String,
    dir: tempfile::TempDir,
}

/// How long the daemons get to come up.
const START: Duration = Duration::from_secs(20);

impl LocalCluster {
    /// Starts the coordinator and the server and waits until the server has enlisted.
    pub fn start(cfg: &LocalClusterConfig) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("faascache-bench-cluster-")
            .tempdir()
            .context("creating the cluster's temporary directory")?;
        let d = dir.path();
        let coord_file = d.join("coordinator.run");
        let mut coord = Launch::new("coordinator", &cfg.bin, d.join("coordinator.log"))
            .args([
                "coordinator",
                "--listen",
                "tcp:host=127.0.0.1,port=0",
                "--poll",
                "block",
            ])
            .arg("--storage")
            .arg(format!("file:{}", d.join("coordinator").display()))
            .arg("--locator-file")
            .arg(&coord_file)
            .args(cfg.coordinator_args.iter())
            .envs(cfg.coordinator_env.iter().cloned())
            .spawn()?;
        let coordinator = coord.wait_file(&coord_file, START)?;
        let server_file = d.join("server.run");
        let wrap: Vec<String> = match cfg.core {
            Some(core) if which("taskset") => vec!["taskset".into(), "-c".into(), core.to_string()],
            _ => Vec::new(),
        };
        // No replication: one server compared with Redis (persistence off) and memcached, which
        // keep one copy in memory too.
        let mut server = Launch::new("server", &cfg.bin, d.join("server.log"))
            .wrap(wrap)
            .args(["server", "--coordinator", &coordinator])
            .arg("--listen")
            .arg(cfg.listen.replace("{dir}", &d.display().to_string()))
            .args(["--no-pin", "--replicas", "0", "--no-backup"])
            .arg("--memory")
            .arg(format!("{}B", cfg.memory_bytes))
            .args(["--poll", &cfg.poll])
            .arg("--locator-file")
            .arg(&server_file)
            .spawn()?;
        server.wait_file(&server_file, START)?;
        std::fs::write(d.join("coordinator.locator"), &coordinator)?;
        let description = format!(
            "local cluster: coordinator + 1 server (listen {}, {} MiB, poll {}, core {}, --replicas 0 like the peers' single in-memory copy)",
            cfg.listen,
            cfg.memory_bytes >> 20,
            cfg.poll,
            cfg.core.map_or("any".into(), |c| c.to_string())
        );
        Ok(LocalCluster {
            server_pid: server.pid(),
            _children: vec![server, coord],
            coordinator,
            description,
            dir,
        })
    }

    /// The coordinator's locator.
    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }

    /// The server's process id (for CPU and RSS accounting).
    pub fn server_pid(&self) -> u32 {
        self.server_pid
    }

    /// The cluster's directory (logs, locator files, coordinator storage).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn which(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
