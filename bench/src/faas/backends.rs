//! The backends compared, each started by the harness (Swift is found running or started with
//! `scripts/swift.sh start`):
//!
//! - `swift`: Swift direct through its S3 API (boto3 in the function);
//! - `gateway`: `faascache gateway` on a private cluster (`faascache cluster up`) in front of
//!   the same Swift — the functions' code is the same, only the endpoint differs;
//! - `faascache`: the Python client straight to that cluster (`store.kind = "faascache"`;
//!   buckets = backed tables of the same names, created here);
//! - `redis`: `redis-server` on a free port as a plain cache in front of Swift (`redis+s3`).
//!
//! Dropping a backend stops what it started.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// The local Swift's endpoints and credentials (from `scripts/swift.sh env`).
#[derive(Debug, Clone)]
pub struct Swift {
    pub auth_url: String,
    pub user: String,
    pub key: String,
    pub s3_endpoint: String,
}

/// Parses `export K=V` lines (`scripts/swift.sh env`).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        .collect()
}

impl Swift {
    /// Finds the local Swift (starting it if installed), or says how to install it.
    pub fn ensure(root: &Path) -> Result<Swift> {
        let script = root.join("scripts/swift.sh");
        if !script.exists() {
            bail!(
                "{} is missing (run from the repository's root)",
                script.display()
            );
        }
        let status = Command::new(&script).arg("status").output()?;
        if !status.status.success()
            || String::from_utf8_lossy(&status.stdout).contains("not running")
        {
            if Command::new("sh")
                .arg("-c")
                .arg("command -v swift-proxy-server")
                .output()?
                .stdout
                .is_empty()
            {
                bail!("OpenStack Swift is not installed: run scripts/swift.sh install (Debian packages), then again");
            }
            let out = Command::new(&script)
                .arg("start")
                .stdout(Stdio::null())
                .output()?;
            if !out.status.success() {
                bail!(
                    "scripts/swift.sh start failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let env = Command::new(&script).arg("env").output()?;
        let vars = parse_env(&String::from_utf8_lossy(&env.stdout));
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("scripts/swift.sh env did not give {k}"))
        };
        Ok(Swift {
            auth_url: get("ST_AUTH")?,
            user: get("ST_USER")?,
            key: get("ST_KEY")?,
            s3_endpoint: get("FAASCACHE_SWIFT_S3_ENDPOINT")?,
        })
    }

    /// The environment the cluster's servers and the gateway get (Swift's credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ST_AUTH", self.auth_url.clone()),
            ("ST_USER", self.user.clone()),
            ("ST_KEY", self.key.clone()),
        ]
    }

    /// A store of container `bucket` through Swift's native API (uploads and read-backs).
    pub fn store(
        &self,
        bucket: &str,
    ) -> Result<std::sync::Arc<dyn faascache_objstore::ObjectStore>> {
        let mut settings = faascache_objstore::Settings::default();
        settings.swift.auth_url = Some(self.auth_url.clone());
        settings.swift.user = Some(self.user.clone());
        settings.swift.key = Some(faascache_objstore::Secret::new(self.key.clone()));
        let opts = faascache_objstore::ClientOptions::default();
        Ok(faascache_objstore::open(
            &format!("swift://{bucket}"),
            &settings,
            &opts,
        )?)
    }

    fn s3_args(&self, endpoint: &str) -> Value {
        json!({"kind": "s3", "endpoint": endpoint, "access_key": self.user, "secret_key": self.key, "region": "us-east-1"})
    }
}

/// Log memory of each server of a backend's private cluster at start (`cluster up --memory`).
pub const CLUSTER_MEMORY: u64 = 512 << 20;

/// How far the node agent may grow a server (`cluster up --max-memory`, `--faas-agent` only:
/// without it the servers cannot grow).
pub const AGENT_MAX_MEMORY: u64 = 2 << 30;

/// A started backend.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// `args.store` for the functions.
    pub store: Value,
    /// The private cluster's directory (gateway, faascache), to flush write-back tables.
    pub cluster: Option<PathBuf>,
    children: Vec<Child>,
    bin: PathBuf,
}

/// A free port on 127.0.0.1.
fn port() -> Result<u16> {
    super::sandbox::free_port()
}

fn wait_for(
    what: &str,
    timeout: Duration,
    child: &mut Child,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            bail!("{what} exited ({s}) before it was ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} was not ready within {timeout:?}")
}

fn tcp_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

impl Backend {
    /// Starts backend `name` (`swift`, `gateway`, `faascache`, `redis`); `work` holds logs and
    /// the cluster's directory; `bin` is the `faascache` binary; `max_memory` the cluster's
    /// servers' `--max-memory` (room for the node agent to grow them).
    pub fn start(
        name: &str,
        swift: &Swift,
        work: &Path,
        bin: &Path,
        buckets: &[&str],
        max_memory: Option<u64>,
    ) -> Result<Backend> {
        let mut b = Backend {
            name: name.into(),
            store: Value::Null,
            cluster: None,
            children: Vec::new(),
            bin: bin.into(),
        };
        match name {
            "swift" => b.store = swift.s3_args(&swift.s3_endpoint),
            "gateway" => {
                let dir = b.cluster_up(swift, work, name, max_memory)?;
                let p = port()?;
                let log = std::fs::File::create(work.join("gateway.log"))?;
                let mut c = Command::new(bin)
                    .process_group(0)
                    .args(["gateway", "--listen", &format!("127.0.0.1:{p}"), "--dir"])
                    .arg(&dir)
                    .envs(swift.env())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("starting faascache gateway")?;
                let r = wait_for("faascache gateway", Duration::from_secs(30), &mut c, || {
                    tcp_open(p)
                });
                b.children.push(c);
                r?;
                b.store = swift.s3_args(&format!("http://127.0.0.1:{p}"));
            }
            "faascache" => {
                let dir = b.cluster_up(swift, work, name, max_memory)?;
                for bucket in buckets {
                    b.faascache(
                        &[
                            "table",
                            "create",
                            bucket,
                            "--backing",
                            &format!("swift://{bucket}"),
                            "--dir",
                        ],
                        &dir,
                    )?;
                }
                let loc = std::fs::read_to_string(dir.join("coordinator.locator"))?;
                b.store = json!({"kind": "faascache", "coordinator": loc.trim()});
            }
            "redis" => {
                let p = port()?;
                let mut c = Command::new("redis-server")
                    .process_group(0)
                    .args([
                        "--port",
                        &p.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting redis-server (apt-get install redis-server)")?;
                let r = wait_for("redis-server", Duration::from_secs(10), &mut c, || {
                    tcp_open(p)
                });
                b.children.push(c);
                r?;
                let mut s = swift.s3_args(&swift.s3_endpoint);
                s["kind"] = json!("redis+s3");
                s["redis"] = json!(format!("127.0.0.1:{p}"));
                b.store = s;
            }
            _ => bail!("unknown backend {name:?} (swift, gateway, faascache, redis)"),
        }
        Ok(b)
    }

    fn cluster_up(
        &mut self,
        swift: &Swift,
        work: &Path,
        name: &str,
        max_memory: Option<u64>,
    ) -> Result<PathBuf> {
        let dir = work.join(format!("cluster-{name}"));
        let log = std::fs::File::create(work.join(format!("cluster-{name}.log")))?;
        let grow: Vec<String> = max_memory
            .map(|m| vec!["--max-memory".into(), format!("{m}B")])
            .unwrap_or_default();
        let mut c = Command::new(&self.bin)
            .process_group(0)
            .args([
                "cluster",
                "up",
                "--servers",
                "2",
                "--replicas",
                "1",
                "--poll",
                "block",
                "--memory",
                &format!("{}B", CLUSTER_MEMORY),
            ])
            .args(&grow)
            .arg("--dir")
            .arg(&dir)
            .envs(swift.env())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} cluster up", self.bin.display()))?;
        let loc = dir.join("coordinator.locator");
        let pids = [dir.join("pids/server-1.pid"), dir.join("pids/server-2.pid")];
        let r = wait_for(
            "faascache cluster up",
            Duration::from_secs(60),
            &mut c,
            || loc.exists() && pids.iter().all(|p| p.exists()),
        );
        self.children.push(c);
        self.cluster = Some(dir.clone());
        r?;
        Ok(dir)
    }

    fn faascache(&self, args: &[&str], dir: &Path) -> Result<String> {
        let out = Command::new(&self.bin).args(args).arg(dir).output()?;
        if !out.status.success() {
            bail!(
                "faascache {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the write-back tables `buckets` have reached Swift (no-op without a cluster).
    pub fn flush(&self, buckets: &[&str]) -> Result<()> {
        let Some(dir) = &self.cluster else {
            return Ok(());
        };
        for b in buckets {
            self.faascache(&["flush", b, "--timeout", "120s", "--dir"], dir)
                .with_context(|| format!("flushing {b} of the {} backend", self.name))?;
        }
        Ok(())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(dir) = &self.cluster {
            let _ = Command::new(&self.bin)
                .args(["cluster", "down", "--dir"])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swift_env_lines() {
        let v = parse_env("export ST_AUTH=http://127.0.0.1:18080/auth/v1.0\nexport ST_USER='test:tester'\nnoise\n");
        assert_eq!(
            v[0],
            ("ST_AUTH".into(), "http://127.0.0.1:18080/auth/v1.0".into())
        );
        assert_eq!(v[1], ("ST_USER".into(), "test:tester".into()));
        assert_eq!(v.len(), 2);
    }
}
