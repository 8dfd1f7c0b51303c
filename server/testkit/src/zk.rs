//! A private ZooKeeper server for tests: Debian's `zookeeper` package run from a temporary
//! directory (its own `zoo.cfg`, data directory and a client port on 127.0.0.1, retried with
//! another port when the bind fails), killed and removed when the guard drops. Shared by the
//! transport, server and client tests.
//!
//! `tickTime` is 500 ms, so sessions may ask for 1–10 s timeouts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faascache_zk::{ZkAddress, ZkSession};

/// Where Debian's package puts the server jar (its manifest names its dependencies).
pub const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
/// SLF4J binding so the server logs to its stderr (our log file).
pub const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// A running private ZooKeeper.
#[derive(Debug)]
pub struct ZkServer {
    child: Option<Child>,
    /// Its client port.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// How many ports to try before giving up (each taken port costs one JVM start).
const PORT_ATTEMPTS: usize = 20;
/// How long one JVM may take to serve its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A port for the next attempt. ZooKeeper cannot listen on port 0 and report the port, so this
/// is a guess (a port free a moment ago): if another process takes it first, ZooKeeper fails
/// to bind, [`ZkServer::start`] sees it and tries another.
fn candidate_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to choose a port for ZooKeeper")
}

fn java() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("java"))
            .find(|j| j.is_file())
    })
}

/// The server jar: `$FAASCACHE_ZK_JAR` or [`ZK_JAR`].
pub fn zk_jar() -> PathBuf {
    std::env::var_os("FAASCACHE_ZK_JAR").map_or_else(|| PathBuf::from(ZK_JAR), PathBuf::from)
}

/// Why ZooKeeper cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let jar = zk_jar();
    if !jar.is_file() {
        return Some(format!(
            "ZooKeeper is not installed ({} missing): run scripts/zk.sh install",
            jar.display()
        ));
    }
    if java().is_none() {
        return Some("java is not on PATH: run scripts/zk.sh install".into());
    }
    None
}

/// How one start attempt ended.
enum Attempt {
    Up(Child),
    PortTaken,
}

impl ZkServer {
    /// Start one. When ZooKeeper is not installed: print `SKIP: ...` and return `None`, or
    /// panic if `FAASCACHE_REQUIRE` names `zk` (see [`crate::require`]).
    pub fn start(test: &str) -> Option<ZkServer> {
        if !crate::require::require_or_skip("zk", test, missing()) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("faascache-zk-{test}-"))
            .tempdir()
            .expect("cannot create a temporary directory for ZooKeeper");
        std::fs::create_dir_all(dir.path().join("data")).expect("zk data dir");
        for _ in 0..PORT_ATTEMPTS {
            let port = candidate_port();
            if let Attempt::Up(child) = Self::attempt(dir.path(), port) {
                return Some(ZkServer {
                    child: Some(child),
                    port,
                    dir,
                });
            }
        }
        panic!("private ZooKeeper: {PORT_ATTEMPTS} ports in a row were taken by other processes");
    }

    /// Start ZooKeeper on `port` and wait until it serves; `PortTaken` if the bind failed.
    fn attempt(dir: &Path, port: u16) -> Attempt {
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 minSessionTimeout=1000\nmaxSessionTimeout=10000\n\
                 4lw.commands.whitelist=ruok\n",
                dir.join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let log_path = dir.join("zookeeper.log");
        let log = std::fs::File::create(&log_path).expect("zookeeper.log");
        let mut cp = zk_jar().display().to_string();
        if Path::new(SLF4J_JAR).is_file() {
            cp.push(':');
            cp.push_str(SLF4J_JAR);
        }
        let mut child = Command::new(java().expect("java"))
            .args([
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-cp",
                &cp,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start java");
        let addr: ZkAddress = format!("zk:127.0.0.1:{port}").parse().expect("address");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let exited = child.try_wait().ok().flatten();
            if text.contains("Address already in use") || exited.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                assert!(
                    text.contains("Address already in use") || text.contains("BindException"),
                    "private ZooKeeper exited ({exited:?}) at start; its log:\n{text}"
                );
                return Attempt::PortTaken;
            }
            // Connect only once ZooKeeper says it listens, so a session never lands on another
            // process that took the port.
            if text.contains("binding to port") {
                if let Ok(s) = ZkSession::connect(&addr, Duration::from_secs(5)) {
                    s.close();
                    return Attempt::Up(child);
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "private ZooKeeper did not start within {START_TIMEOUT:?}; its log:\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `zk:127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("zk:127.0.0.1:{}", self.port)
    }

    /// `zk:127.0.0.1:PORT/CHROOT` (a fresh tree per use).
    pub fn address_in(&self, chroot: &str) -> String {
        format!("zk:127.0.0.1:{}/{chroot}", self.port)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port another process holds is detected from ZooKeeper's log / exit (and the caller
    /// tries another); a free one serves.
    #[test]
    fn a_taken_port_is_detected_and_another_one_serves() {
        if !crate::require::require_or_skip("zk", "zk_port_retry", missing()) {
            return;
        }
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        assert!(matches!(
            ZkServer::attempt(dir.path(), port),
            Attempt::PortTaken
        ));
        let zk = ZkServer::start("zk_port_retry").expect("ZooKeeper is installed");
        assert_ne!(zk.port, 0);
        let addr: ZkAddress = zk.address().parse().unwrap();
        ZkSession::connect(&addr, Duration::from_secs(5))
            .unwrap()
            .close();
    }
}
