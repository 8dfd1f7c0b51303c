//! A private ZooKeeper server for tests: Debian's `zookeeper` package run from a temporary
//! directory (its own `zoo.cfg`, data directory and a free client port on 127.0.0.1), killed
//! and removed when the guard drops. Shared by the transport, server and client tests (included
//! with `#[path]`).
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
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn java() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("java"))
            .find(|j| j.is_file())
    })
}

/// Why ZooKeeper cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if !Path::new(ZK_JAR).is_file() {
        return Some(format!("ZooKeeper is not installed ({ZK_JAR} missing)"));
    }
    if java().is_none() {
        return Some("java is not on PATH".into());
    }
    None
}

impl ZkServer {
    /// Start one, or print `SKIP: ...` and return `None` when ZooKeeper is not installed.
    pub fn start(test: &str) -> Option<ZkServer> {
        if let Some(why) = missing() {
            println!("SKIP: {test}: {why} (run scripts/zk.sh install)");
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("faascache-zk-{test}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("zk dir");
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
        let log = std::fs::File::create(dir.join("zookeeper.log")).expect("log");
        let mut cp = ZK_JAR.to_string();
        if Path::new(SLF4J_JAR).is_file() {
            cp.push(':');
            cp.push_str(SLF4J_JAR);
        }
        let child = Command::new(java().expect("java"))
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
        let z = ZkServer {
            child: Some(child),
            port,
            dir,
        };
        z.wait_ready();
        Some(z)
    }

    fn wait_ready(&self) {
        let addr: ZkAddress = self.address().parse().expect("address");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(s) = ZkSession::connect(&addr, Duration::from_secs(5)) {
                s.close();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private ZooKeeper did not start within 60 s; see {}",
                self.dir.join("zookeeper.log").display()
            );
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
