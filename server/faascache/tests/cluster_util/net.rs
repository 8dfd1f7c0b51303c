//! The network the cluster tests' processes use, from `FAASCACHE_TEST_TRANSPORT`:
//!
//! - `tcp` (default): TCP on 127.0.0.1.
//! - `dpdk`: DPDK's af_packet poll-mode driver on veth pairs joined by a Linux bridge: a switched
//!   Ethernet segment, as on a real cluster. Each coordinator or server process runs in a
//!   network namespace of its own holding two stations (veths): one it serves on, one for its
//!   own client sessions (`--dpdk-client-dev`); this test process has one station in the root
//!   namespace. (One namespace per process because DPDK's af_packet driver names its socket
//!   fanout group after `pid ^ ifindex`, which collides between processes sharing a namespace.)
//!   The bridge, veths and namespaces are named `fc<pid>…`, created on first use and deleted
//!   when the test process exits (by a reaper shell started with the bridge) (stale ones of dead test processes are deleted at start).
//!   Needs the `dpdk` feature, root (CAP_NET_ADMIN) and iproute2.
//! - `infrc`: verbs. Servers listen on `FAASCACHE_VERBS_TEST_SERVER` (default
//!   `infrc:host=10.77.0.2,port=0,dev=rxe1`); clients use the device `FAASCACHE_VERBS_DEV` names.
//!   Runs inside the Soft-RoCE guest of `scripts/rxe-guest.sh`.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The transport of this run: `tcp`, `dpdk` or `infrc`.
pub fn kind() -> &'static str {
    static KIND: OnceLock<String> = OnceLock::new();
    KIND.get_or_init(|| {
        let k = std::env::var("FAASCACHE_TEST_TRANSPORT").unwrap_or_else(|_| "tcp".into());
        assert!(
            matches!(k.as_str(), "tcp" | "dpdk" | "infrc"),
            "FAASCACHE_TEST_TRANSPORT={k}: use tcp, dpdk or infrc"
        );
        let mut built = vec!["tcp"];
        if cfg!(feature = "dpdk") {
            built.push("dpdk");
        }
        if cfg!(feature = "verbs") {
            built.push("infrc");
        }
        assert!(
            built.contains(&k.as_str()),
            "FAASCACHE_TEST_TRANSPORT={k} needs the tests built with --features dpdk (dpdk) or verbs (infrc)"
        );
        k
    })
}

/// How to start a coordinator or server process on the test network.
pub struct Station {
    /// `--listen` and further transport flags.
    pub args: Vec<String>,
    /// A command to run it under (e.g. `ip netns exec NS`), or empty.
    pub wrap: Vec<String>,
}

/// A station for a new coordinator or server process.
pub fn station() -> Station {
    match kind() {
        "dpdk" => {
            let b = bridge();
            let ns = b.namespace();
            let serve = b.attach(Some(&ns));
            let client = b.attach(Some(&ns));
            Station {
                args: vec![
                    "--listen".into(),
                    format!("dpdk:vdev=af_packet,iface={serve},huge=0,mem=256"),
                    "--dpdk-client-dev".into(),
                    format!("vdev=af_packet,iface={client}"),
                ],
                wrap: vec!["ip".into(), "netns".into(), "exec".into(), ns],
            }
        }
        "infrc" => Station {
            args: vec![
                "--listen".into(),
                std::env::var("FAASCACHE_VERBS_TEST_SERVER")
                    .unwrap_or_else(|_| "infrc:host=10.77.0.2,port=0,dev=rxe1".into()),
            ],
            wrap: Vec::new(),
        },
        _ => Station {
            args: vec!["--listen".into(), "tcp:host=127.0.0.1,port=0".into()],
            wrap: Vec::new(),
        },
    }
}

/// Make this (client) process ready to talk over the test transport: with `dpdk`, give it a
/// station (veth) of its own on the bridge and start EAL without hugepages.
pub fn prepare_client() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if kind() == "dpdk" {
            dpdk_client();
        }
    });
}

#[cfg(feature = "dpdk")]
fn dpdk_client() {
    use faascache_transport::dpdk;
    let iface = bridge().attach(None);
    let dev: faascache_transport::Locator = format!("dpdk:vdev=af_packet,iface={iface}")
        .parse()
        .unwrap();
    dpdk::set_local_device(&dev).unwrap();
    let cfg = dpdk::EalConfig {
        huge: dpdk::Huge::Off,
        memory_mb: Some(256),
        no_pci: true,
        ..dpdk::EalConfig::default()
    };
    dpdk::init_eal(&cfg).expect("DPDK EAL starts in the test process");
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_client() {
    unreachable!("kind() refuses dpdk without the feature")
}

/// The bridge all stations of this test process hang off.
struct Bridge {
    name: String,
    prefix: String,
    next: AtomicUsize,
    next_ns: AtomicUsize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
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

/// `fc<pid>X…` → pid, for X one of `tags`.
fn pid_of(name: &str, tags: &[char]) -> Option<u32> {
    let rest = name.strip_prefix("fc")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = rest[digits.len()..].chars().next()?;
    if tags.contains(&tail) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Our interfaces (`fc<pid>[bhp]…`) and namespaces (`fc<pid>n…`): (name, pid, is namespace).
fn ours() -> Vec<(String, u32, bool)> {
    let mut v = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for e in dir.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if let Some(pid) = pid_of(name, &['b', 'h', 'p']) {
                    v.push((name.to_string(), pid, false));
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if let Some(pid) = pid_of(name, &['n']) {
                    v.push((name.to_string(), pid, true));
                }
            }
        }
    }
    v
}

fn remove(name: &str, netns: bool) {
    let _ = if netns {
        ip(&["netns", "del", name])
    } else {
        ip(&["link", "del", name])
    };
}

/// Start a reaper: a shell that waits for this test process to exit, then deletes its bridge,
/// veths and namespaces (`fc<pid>…`), as the stale-entry sweep in [`bridge`] would.
fn reap_at_exit() {
    let pid = std::process::id();
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.2; done; \
         for l in $(ls /sys/class/net | grep '^fc{pid}[bhp]'); do ip link del \"$l\"; done; \
         for n in $(ls /run/netns 2>/dev/null | grep '^fc{pid}n'); do ip netns del \"$n\"; done"
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn bridge() -> &'static Bridge {
    static BRIDGE: OnceLock<Bridge> = OnceLock::new();
    BRIDGE.get_or_init(|| {
        // Left over by test processes that were killed.
        for (name, pid, netns) in ours() {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove(&name, netns);
            }
        }
        let pid = std::process::id();
        let b = Bridge {
            name: format!("fc{pid}b"),
            prefix: format!("fc{pid}"),
            next: AtomicUsize::new(0),
            next_ns: AtomicUsize::new(0),
        };
        ip(&["link", "add", &b.name, "type", "bridge"]).unwrap_or_else(|e| {
            panic!("cannot create the test bridge ({e}); DPDK cluster tests need root and iproute2")
        });
        ip(&["link", "set", &b.name, "up"]).unwrap();
        reap_at_exit();
        b
    })
}

impl Bridge {
    /// A new network namespace (removed at exit with the rest).
    fn namespace(&self) -> String {
        let n = self.next_ns.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}n{n}", self.prefix);
        ip(&["netns", "add", &ns]).unwrap();
        ns
    }

    /// A new station: a veth pair with one end on the bridge; returns the other end's name
    /// (moved into `netns` if given).
    fn attach(&self, netns: Option<&str>) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let host = format!("{}h{n}", self.prefix);
        let port = format!("{}p{n}", self.prefix);
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &port]).unwrap();
        ip(&["link", "set", &port, "master", &self.name]).unwrap();
        // No IPv6 chatter (router solicitations, DAD) on the segment.
        for i in [&host, &port] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        }
        ip(&["link", "set", &port, "up"]).unwrap();
        match netns {
            Some(ns) => {
                ip(&["link", "set", &host, "netns", ns]).unwrap();
                ip(&["-n", ns, "link", "set", &host, "up"]).unwrap();
            }
            None => ip(&["link", "set", &host, "up"]).unwrap(),
        }
        host
    }
}
