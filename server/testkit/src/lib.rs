//! What FaaSCache's tests share. Dev-only: no shipped crate depends on it.
//!
//! * [`inproc`] — a coordinator and masters in this process, over TCP on 127.0.0.1;
//! * [`zk`] — a private ZooKeeper server (Debian's package) for the coordinator HA tests;
//! * [`wait`] — [`eventually`] and [`continually`] instead of fixed sleeps;
//! * [`require`] — SKIP a test whose outside dependency is missing, or fail it when
//!   `FAASCACHE_REQUIRE` names that dependency;
//! * [`stores`] — Swift and moto for the object-store tests, started through the scripts;
//! * [`tempdir`] — temporary directories (`tempfile`).

#![forbid(unsafe_code)]

use std::path::Path;

pub mod inproc;
pub mod require;
pub mod stores;
pub mod wait;
pub mod zk;

pub use require::{require_or_skip, skip_or_fail};
pub use wait::{check, continually, eventually};

/// A temporary directory for a test, removed when dropped — unless the test is failing
/// (panicking), when it is kept and its path printed so the daemons' logs can be read.
/// Dereferences to its [`Path`].
#[derive(Debug)]
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("test failed: keeping {} (logs)", d.keep().display());
            }
        }
    }
}

/// A fresh temporary directory named `faascache-{tag}-XXXXXX` (see [`TestDir`]).
pub fn tempdir(tag: &str) -> TestDir {
    TestDir(Some(
        tempfile::Builder::new()
            .prefix(&format!("faascache-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e} (check $TMPDIR)")),
    ))
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as this guard lives: bound
/// but not listening, so no other process can take it and connecting to it fails at once.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: rustix::fd::OwnedFd,
    /// The port.
    pub port: u16,
}

/// See [`ClosedPort`].
pub fn closed_port() -> ClosedPort {
    use rustix::net::{bind, getsockname, socket, AddressFamily, SocketAddrV4, SocketType};
    let s = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    bind(&s, &SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = getsockname(&s).expect("getsockname");
    let port = std::net::SocketAddr::try_from(addr)
        .expect("an IPv4 address")
        .port();
    ClosedPort { _socket: s, port }
}

/// Whether process `pid` has a TCP socket listening on 127.0.0.1:`port` (or any address) —
/// from `/proc/net/tcp` and `/proc/PID/fd`, so a port taken by another process does not count.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, ..., st (0A = LISTEN), ..., inode (10th column)
            (f.len() > 9 && want.iter().any(|w| w == f[1]) && f[3] == "0A")
                .then(|| f[9].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|l| {
            let l = l.to_string_lossy();
            inodes.iter().any(|i| l == format!("socket:[{i}]"))
        })
    })
}

/// Start a server that cannot listen on port 0 and report its port (Redis, memcached): pick a
/// port, `spawn` it there, and wait until that very process listens on it; if it exits first
/// (another process took the port meanwhile), try another port. Returns the child and its port.
pub fn serve_on_some_port(
    what: &str,
    mut spawn: impl FnMut(u16) -> std::io::Result<std::process::Child>,
) -> (std::process::Child, u16) {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0 to choose a port");
        let mut child = spawn(port).unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let up = eventually(std::time::Duration::from_secs(30), || {
            if listens_on(child.id(), port) {
                return Ok(true);
            }
            match child.try_wait() {
                Ok(Some(_)) => Ok(false),
                _ => Err(format!("{what} is not listening on 127.0.0.1:{port} yet")),
            }
        });
        if up {
            return (child, port);
        }
        let _ = child.wait();
    }
    panic!("{what} exited at start on 20 ports in a row (see its output above)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_refuses_and_a_listener_is_seen() {
        let closed = closed_port();
        assert!(std::net::TcpStream::connect(("127.0.0.1", closed.port)).is_err());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        assert!(!listens_on(std::process::id(), closed.port));
    }

    #[test]
    fn a_test_dir_is_removed_on_drop() {
        let d = tempdir("testkit");
        let p = d.to_path_buf();
        std::fs::write(d.join("f"), b"x").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
