//! A private FaaSCache cluster for `compare`: one coordinator and one server started as child
//! processes of the harness (the `faascache` binary next to `faascache-bench`), the server pinned
//! to a core with `taskset`, stopped (and its directory removed) when dropped.
//!
//! One server, because the targets compare one server core of FaaSCache with one Redis
//! thread and memcached; the server's polling mode is recorded with every result.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        })
    }
}

/// Finds the `faascache` binary: `$FAASCACHE_BIN`, else next to this executable (both live in
/// `target/<profile>/`).
pub fn faascache_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FAASCACHE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    // Test binaries live one level further down, in target/<profile>/deps.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join("faascache");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the `faascache` binary is not next to {} : build it with `cargo build --release -p \
         faascache-server` (or set FAASCACHE_BIN)",
        exe.display()
    )
}

/// A running coordinator + server.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    children: Vec<Child>,
    coordinator: String,
    server_pid: u32,
    /// What was started, for the report.
    pub description: String,
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl LocalCluster {
    /// Starts the coordinator and the server and waits until the server has enlisted.
    pub fn start(cfg: &LocalClusterConfig) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "faascache-bench-cluster-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut c = LocalCluster {
            dir: dir.clone(),
            children: Vec::new(),
            coordinator: String::new(),
            server_pid: 0,
            description: String::new(),
        };
        let log = |name: &str| -> Result<Stdio> {
            Ok(std::fs::File::create(dir.join(name))
                .with_context(|| format!("creating {name}"))?
                .into())
        };
        let coord_file = dir.join("coordinator.run");
        let child = Command::new(&cfg.bin)
            .args([
                "coordinator",
                "--listen",
                "tcp:host=127.0.0.1,port=0",
                "--poll",
                "block",
            ])
            .arg("--storage")
            .arg(format!("file:{}", dir.join("coordinator").display()))
            .arg("--locator-file")
            .arg(&coord_file)
            .envs(cfg.coordinator_env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log("coordinator.log")?)
            .spawn()
            .with_context(|| format!("starting {}", cfg.bin.display()))?;
        c.children.push(child);
        c.coordinator = wait_file(&coord_file, &dir.join("coordinator.log"))?;
        let server_file = dir.join("server.run");
        let mut cmd = match cfg.core {
            Some(core) if which("taskset") => {
                let mut t = Command::new("taskset");
                t.arg("-c").arg(core.to_string()).arg(&cfg.bin);
                t
            }
            _ => Command::new(&cfg.bin),
        };
        // No replication: one server compared with Redis (persistence off) and memcached, which
        // keep one copy in memory too.
        cmd.args(["server", "--coordinator", &c.coordinator])
            .arg("--listen")
            .arg(cfg.listen.replace("{dir}", &dir.display().to_string()))
            .arg("--no-pin")
            .args(["--replicas", "0", "--no-backup"])
            .arg("--memory")
            .arg(format!("{}B", cfg.memory_bytes))
            .args(["--poll", &cfg.poll])
            .arg("--locator-file")
            .arg(&server_file)
            .stdout(Stdio::null())
            .stderr(log("server.log")?);
        let child = cmd.spawn().context("starting the FaaSCache server")?;
        c.server_pid = child.id();
        c.children.push(child);
        wait_file(&server_file, &dir.join("server.log"))?;
        std::fs::write(dir.join("coordinator.locator"), &c.coordinator)?;
        c.description = format!(
            "local cluster: coordinator + 1 server (listen {}, {} MiB, poll {}, core {}, --replicas 0 like the peers' single in-memory copy)",
            cfg.listen,
            cfg.memory_bytes >> 20,
            cfg.poll,
            cfg.core.map_or("any".into(), |c| c.to_string())
        );
        Ok(c)
    }

    /// The coordinator's locator.
    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }

    /// The server's process id (for CPU and RSS accounting).
    pub fn server_pid(&self) -> u32 {
        self.server_pid
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The server first, so it does not report the coordinator missing.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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

fn wait_file(path: &Path, log: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            let s = s.trim();
            if !s.is_empty() {
                return Ok(s.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    bail!(
        "FaaSCache did not start within 20 s (no {}); last log lines:\n{}",
        path.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}
