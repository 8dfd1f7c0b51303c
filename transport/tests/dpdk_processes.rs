//! The DPDK transport across processes (feature `dpdk`; EAL can be initialised once per process,
//! so each side needs its own): the `faascache-dpdk-echo` binary serves in a child process.
//!
//! - memif: the server in a child process, the client in this one (the closest thing to a NIC
//!   path on one host). Needs no hugepages (`huge=0`).
//! - af_packet over a veth pair between two network namespaces that the test creates and
//!   removes; server and client are both children, one per namespace; the client runs twice
//!   (a restarted client on the same MAC). Needs root
//!   (CAP_NET_ADMIN) and `ip` (iproute2); prints SKIP otherwise.
//!
//! Liveness timeouts only; assertions are on the bytes that come back.
#![cfg(feature = "dpdk")]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_faascache-dpdk-echo");

/// A `faascache-dpdk-echo serve` child: its locator, and its stdin (closing it stops it).
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    local: Locator,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn faascache-dpdk-echo");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(LIVE) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server printed no locator within {LIVE:?}");
            }
        };
        let Some(loc) = line.trim().strip_prefix("LOCAL ") else {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!("server failed to start: {line:?} {out:?}");
        };
        Server {
            local: loc.parse().expect("server locator parses"),
            child,
            stdin,
        }
    }

    /// Close stdin and wait for a clean exit.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + LIVE;
        loop {
            match self.child.try_wait().expect("wait") {
                Some(st) => {
                    assert!(st.success(), "server exited with {st}");
                    return;
                }
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("server did not stop within {LIVE:?}");
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn memif_server_in_another_process() {
    let socket = format!("/tmp/faascache-memif-proc-{}.sock", std::process::id());
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        &format!("dpdk:vdev=memif,socket={socket},huge=0"),
        "2",
    ]);
    let server = Server::start(cmd);
    assert_eq!(server.local.kind(), TransportKind::Dpdk);
    assert!(server.local.get("mac").is_some(), "{}", server.local);
    let loc = server.local.clone().with("huge", "0");
    let s = connect(&loc.into(), ClientConfig::default()).expect("connect over memif");
    assert_eq!(s.transport(), TransportKind::Dpdk);
    for n in [0, 1, 100, 1494, 1495, 5000, 1 << 20] {
        let p = pattern(n, n as u8);
        let (st, r) = s.call(Opcode::Echo, &p, LIVE).expect("echo");
        assert_eq!(st, Status::OK);
        assert!(r == p, "echo of {n} bytes differs");
    }
    let mut pending: Vec<_> = (0..100u32)
        .map(|i| {
            let p = pattern(1 + (i as usize * 37) % 3000, i as u8);
            (s.send(Opcode::Echo, &p).unwrap(), p)
        })
        .collect();
    for (rpc, p) in &mut pending {
        let (st, r) = rpc.wait(LIVE).unwrap();
        assert_eq!(st, Status::OK);
        assert!(r == *p);
    }
    // Stop the server while this side is idle, then drop the session (memif tears down shared
    // memory on disconnect; nobody polls it here meanwhile).
    server.stop();
    drop(s);
}

/// Runs `ip` with `args`; Err(stderr) if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two network namespaces joined by a veth pair; removed on drop.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    fn create(tag: &str, va: &str, vb: &str) -> Result<Netns, String> {
        let ns = Netns {
            a: format!("fc-{tag}-a"),
            b: format!("fc-{tag}-b"),
        };
        ip(&["netns", "add", &ns.a])?;
        ip(&["netns", "add", &ns.b])?;
        ip(&["link", "add", va, "type", "veth", "peer", "name", vb])?;
        ip(&["link", "set", va, "netns", &ns.a])?;
        ip(&["link", "set", vb, "netns", &ns.b])?;
        ip(&["-n", &ns.a, "link", "set", va, "up"])?;
        ip(&["-n", &ns.b, "link", "set", vb, "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it (and so the pair).
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

#[test]
fn af_packet_over_veth_between_namespaces() {
    let id = std::process::id() % 100_000;
    let (va, vb) = (format!("fcva{id}"), format!("fcvb{id}"));
    let ns = match Netns::create(&id.to_string(), &va, &vb) {
        Ok(ns) => ns,
        Err(e) => {
            // Leave nothing half-made behind.
            let _ = ip(&["netns", "del", &format!("fc-{id}-a")]);
            let _ = ip(&["netns", "del", &format!("fc-{id}-b")]);
            faascache_testkit::skip_or_fail(
                "netns",
                "dpdk_processes",
                &format!(
                    "cannot create network namespaces and a veth pair ({e}); needs root and \
                     iproute2 (run .ci/run to install)"
                ),
            );
            return;
        }
    };
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.a,
        BIN,
        "serve",
        &format!("dpdk:vdev=af_packet,iface={va},huge=0"),
    ]);
    let server = Server::start(cmd);
    let client_loc = server
        .local
        .clone()
        .with("iface", &vb)
        .with("huge", "0")
        .to_string();
    // Twice: the second client process has the same MAC (the same veth) as the first, so its
    // sessions must not look like the first one's to the server (whose per-peer watermark would
    // make it ignore a new session's low RPC ids on a reused endpoint).
    for round in 1..=2 {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.b, BIN, "call", &client_loc, "300"])
            .output()
            .expect("run the client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "OK 300",
            "client {round} failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop();
}

/// Setup mistakes are errors that say what to do: no server on the memif socket, no `mac=`, no
/// device named.
#[test]
fn setup_errors_name_the_fix() {
    let sock = format!("/tmp/faascache-nobody-{}.sock", std::process::id());
    let loc: ServiceLocator = format!("dpdk:vdev=memif,socket={sock},mac=02:00:00:00:00:01,huge=0")
        .parse()
        .unwrap();
    let e = connect(&loc, ClientConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&sock) && e.to_lowercase().contains("start"),
        "{e}"
    );
    let e = connect(
        &format!("dpdk:vdev=memif,socket={sock},huge=0")
            .parse()
            .unwrap(),
        ClientConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mac="), "{e}");
    let e = connect(
        &"dpdk:mac=02:00:00:00:00:01,huge=0".parse().unwrap(),
        ClientConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vdev=memif,socket=PATH"), "{e}");
    let e = connect(
        &"dpdk:port=9,mac=02:00:00:00:00:01,huge=0".parse().unwrap(),
        ClientConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vfio-pci"), "{e}");
}
