//! `faascache cluster up` / `cluster down` as a user runs them, with the client commands of the
//! same binary: start, use, stop with SIGTERM (everything exits, files are cleaned up); a
//! second `up` in a running directory is refused; `down` stops a cluster whose supervisor runs.

mod cluster_util;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_util::*;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn wait_exit(p: &mut Proc, timeout: Duration) -> std::process::ExitStatus {
    let name = p.name().to_string();
    p.wait_until(Instant::now() + timeout)
        .unwrap_or_else(|| panic!("{name} did not exit within {timeout:?}"))
}

/// On drop (also when the test fails): `cluster down`, which stops the supervisor and any child
/// left behind (a killed supervisor cannot stop its children itself).
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["cluster", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

#[test]
fn cluster_up_use_and_stop() {
    let dir = tempdir("up");
    let cdir = dir.join("cluster");
    let d = cdir.to_str().unwrap();
    let _down = Down(cdir.clone());
    let mut up = spawn(
        "up",
        &[
            "cluster",
            "up",
            "--servers",
            "2",
            "--dir",
            d,
            "--memory",
            "48MiB",
            "--poll",
            "block",
        ],
        &dir,
    );
    let loc = wait_up(&mut up, &cdir.join("coordinator.locator"), T);
    assert!(loc.starts_with("tcp:host=127.0.0.1,port="), "{loc}");
    // Two servers keep R = 1 only while both are up: `up` says so.
    let log = std::fs::read_to_string(dir.join("up.log")).unwrap();
    assert!(
        log.contains("warning: --replicas 1 cannot be kept after a crash with 2 servers"),
        "{log}"
    );
    let pids: Vec<u32> = std::fs::read_dir(cdir.join("pids"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 3);

    // A second `up` in the same directory is refused.
    let (ok, _, err) = cli(&["cluster", "up", "--dir", d]);
    assert!(!ok && err.contains("already running"), "{err}");

    // Client commands against it.
    let (ok, out, err) = cli(&["table", "create", "t", "--span", "2", "--dir", d]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(&["put", "t", "hello", "world", "--dir", d]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&["get", "t", "hello", "--dir", d]);
    assert!(ok && out == "world", "{out}");
    let (ok, out, _) = cli(&["status", "--dir", d]);
    assert!(ok && out.contains("tcp"), "{out}");
    let (ok, _, err) = cli(&["get", "nosuch", "k", "--dir", d]);
    assert!(!ok && !err.is_empty());

    // SIGTERM to the supervisor stops everything and cleans up.
    up.terminate();
    let status = wait_exit(&mut up, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(
            !faascache_launch::pid::alive(pid),
            "child {pid} still running"
        );
    }
    assert!(!cdir.join("coordinator.locator").exists());

    // `cluster down` stops a running cluster; on a stopped one it says so.
    let mut up = spawn(
        "up2",
        &[
            "cluster",
            "up",
            "--servers",
            "1",
            "--dir",
            d,
            "--memory",
            "48MiB",
            "--poll",
            "block",
        ],
        &dir,
    );
    wait_up(&mut up, &cdir.join("coordinator.locator"), T);
    let (ok, _, err) = cli(&["cluster", "down", "--dir", d]);
    assert!(ok, "{err}");
    assert!(wait_exit(&mut up, Duration::from_secs(20)).success());
    let (ok, _, err) = cli(&["cluster", "down", "--dir", d]);
    assert!(ok && err.contains("no running cluster"), "{err}");
}
