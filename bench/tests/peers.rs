//! Integration tests against real Redis and memcached. Each test starts its own server on a
//! loopback port of its own (retried on another port if taken; persistence off) and stops it
//! afterwards; when the server binary is not installed the test prints SKIP and passes, or
//! fails if `FAASCACHE_REQUIRE` names `peers` (CI installs them with scripts/peers.sh install).

use faascache_bench::driver::{ClientConfig, Driver, DriverSpec, Op, Reply};
use faascache_bench::drivers;
use faascache_bench::keys::make_key;
use faascache_bench::load::{self, LoadMode, LoadSpec, OpGen, Stop};
use faascache_bench::net::PollMode;
use faascache_bench::workloads::{preload, KvGen, Pattern};
use faascache_bench::{keys::KeyChooser, memory};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
    _dir: faascache_testkit::TestDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Start Redis or memcached on a port of its own; `None` (after a SKIP line, or a failure when
/// `FAASCACHE_REQUIRE` names `peers`) when it is not installed.
fn start(kind: &str, test: &str) -> Option<Server> {
    let bin = if kind == "redis" {
        "redis-server"
    } else {
        "memcached"
    };
    if !which(bin) {
        faascache_testkit::skip_or_fail(
            "peers",
            test,
            &format!("{bin} is not installed (scripts/peers.sh install)"),
        );
        return None;
    }
    let dir = faascache_testkit::tempdir("peer");
    let (child, port) = faascache_testkit::serve_on_some_port(bin, |port| {
        let mut c = Command::new(bin);
        if kind == "redis" {
            c.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--loglevel", "warning", "--dir"])
                .arg(dir.path());
        } else {
            c.args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", "0", "-t", "1", "-m", "256"]);
            if rustix::process::geteuid().is_root() {
                c.args(["-u", "root"]);
            }
        }
        c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    });
    Some(Server {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    })
}

fn open(kind: &str, s: &Server) -> Box<dyn Driver> {
    let spec = if kind == "redis" {
        DriverSpec::Redis(s.addr.clone())
    } else {
        DriverSpec::Memcached(s.addr.clone())
    };
    // wait until the server answers its protocol
    faascache_testkit::eventually(Duration::from_secs(30), || {
        drivers::open(&spec, Some(s.child.id())).map_err(|e| format!("{e:#}"))
    })
}

fn semantics(kind: &str) {
    let Some(s) = start(kind, &format!("{kind}_semantics")) else {
        return;
    };
    let d = open(kind, &s);
    let info = d.info();
    assert_eq!(info.name, kind);
    assert!(info.server_version.is_some(), "{info:?}");
    for poll in [PollMode::Busy, PollMode::Block] {
        let mut c = d
            .connect(&ClientConfig {
                poll,
                timeout: Duration::from_secs(5),
            })
            .unwrap();
        let keys: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i}").into_bytes()).collect();
        c.send(&Op::Set {
            key: b"k0",
            value: b"hello",
        })
        .unwrap();
        c.send(&Op::Get { key: b"k0" }).unwrap();
        c.send(&Op::Get { key: b"missing" }).unwrap();
        c.send(&Op::MultiSet {
            keys: &keys,
            value: b"vv",
        })
        .unwrap();
        c.send(&Op::MultiGet { keys: &keys }).unwrap();
        c.send(&Op::Delete { key: b"k1" }).unwrap();
        c.send(&Op::Delete { key: b"k1" }).unwrap();
        c.send(&Op::Echo { payload: b"ping" }).unwrap();
        assert_eq!(c.outstanding(), 8);
        c.flush().unwrap();
        let mut got = Vec::new();
        for _ in 0..8 {
            got.push(c.recv(None).unwrap().unwrap());
        }
        assert_eq!(
            got,
            vec![
                Reply::Ok,
                Reply::Value(5),
                Reply::Miss,
                Reply::Ok,
                Reply::Values {
                    found: 5,
                    bytes: 10
                },
                Reply::Deleted(true),
                Reply::Deleted(false),
                Reply::Ok
            ],
            "{kind} {poll:?}"
        );
        assert_eq!(c.outstanding(), 0);
        // deadline: nothing outstanding ⇒ error, not a hang
        assert!(c.recv(Some(Instant::now())).is_err());
    }
    d.flush_all().unwrap();
    // server accounting
    let pid = d.server_pid().unwrap();
    assert_eq!(pid, s.child.id());
    assert!(faascache_bench::procinfo::rss_bytes(pid).unwrap() > 0);
}

#[test]
fn redis_semantics() {
    semantics("redis");
}

#[test]
fn memcached_semantics() {
    semantics("memcached");
}

fn gen(pattern: Pattern, n: u64) -> impl Fn(usize) -> anyhow::Result<Box<dyn OpGen>> + Sync {
    move |t| {
        Ok(Box::new(KvGen::new(
            pattern.clone(),
            KeyChooser::Uniform(n),
            30,
            100,
            Arc::new(AtomicU64::new(n)),
            t as u64,
        )) as Box<dyn OpGen>)
    }
}

fn load_models(kind: &str) {
    let Some(s) = start(kind, &format!("{kind}_load_models")) else {
        return;
    };
    let d = open(kind, &s);
    preload(&*d, 1000, 30, 100, PollMode::Block).unwrap();
    let mut k = Vec::new();
    make_key(999, 30, &mut k).unwrap();
    let base = LoadSpec {
        clients: 2,
        pipeline: 4,
        warmup: Duration::from_millis(50),
        stop: Stop::Time(Duration::from_millis(300)),
        poll: PollMode::Block,
        server_pid: d.server_pid(),
        ..Default::default()
    };
    let r = load::run(&*d, &gen(Pattern::Read, 1000), &base).unwrap();
    assert!(r.ops > 100, "{}", r.ops);
    assert_eq!(r.errors, 0);
    assert_eq!(r.misses, 0);
    assert!(r.server_cpu.is_some());
    // ops-limited, busy poll, multi-read
    let spec = LoadSpec {
        stop: Stop::Ops(200),
        poll: PollMode::Busy,
        pipeline: 1,
        ..base.clone()
    };
    let r = load::run(&*d, &gen(Pattern::MultiRead(10), 1000), &spec).unwrap();
    assert!(r.ops >= 200 && r.ops <= 210, "{}", r.ops);
    assert_eq!(r.objects, r.ops * 10);
    assert_eq!(r.misses, 0);
    // open loop at a modest rate: achieved ≈ offered
    let spec = LoadSpec {
        mode: LoadMode::Open { rate: 2000.0 },
        stop: Stop::Time(Duration::from_millis(500)),
        ..base
    };
    let r = load::run(&*d, &gen(Pattern::Write, 1000), &spec).unwrap();
    let achieved = r.ops_per_sec;
    assert!(
        achieved > 1400.0 && achieved < 2600.0,
        "achieved {achieved}"
    );
    assert_eq!(r.offered_ops_per_sec, Some(2000.0));
}

#[test]
fn redis_load_models() {
    load_models("redis");
}

#[test]
fn memcached_load_models() {
    load_models("memcached");
}

#[test]
fn memory_pattern_runs() {
    for kind in ["redis", "memcached"] {
        let Some(s) = start(kind, "memory_pattern_runs") else {
            continue;
        };
        let d = open(kind, &s);
        let p = memory::pattern("W3").unwrap();
        let m = memory::run(&*d, &p, 2 << 20, 30, 1).unwrap();
        assert!(m.live_bytes >= 2 << 20, "{m:?}");
        assert!(m.rss_per_live > 0.5, "{kind}: {m:?}");
        assert_eq!(m.refused, 0);
    }
}
