//! Helpers for the `cluster_*` tests: real `faascache` processes (killed when the guard drops)
//! and a small raw client built on `faascache_protocol::msg` that follows the tablet map and
//! retries `UNKNOWN_TABLET` / `RETRY`.
//!
//! The processes talk over TCP on 127.0.0.1, or over the transport `FAASCACHE_TEST_TRANSPORT`
//! names (see [`net`]): `dpdk` (af_packet on veth pairs joined by a Linux bridge; needs the
//! `dpdk` feature and root) or `infrc` (verbs; inside the Soft-RoCE guest of
//! `scripts/rxe-guest.sh`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use faascache_launch::Launch;

use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::master::*;
use faascache_protocol::msg::{key_hash, ClientLease, ExactlyOnce, RejectRules, Request};
use faascache_transport::{call, CallError};
use faascache_transport::{ClientConfig, ServiceLocator, Session, Status};

pub const BIN: &str = env!("CARGO_BIN_EXE_faascache");
pub const T: Duration = Duration::from_secs(10);

/// A `faascache` child process (SIGKILLed and reaped on drop): the shared launcher.
pub use faascache_launch::Daemon as Proc;
#[allow(unused_imports)]
pub use faascache_testkit::{continually, eventually, tempdir, TestDir};

pub mod net;

pub fn spawn(name: &str, args: &[&str], dir: &Path) -> Proc {
    spawn_wrapped(name, args, dir, &[])
}

/// [`spawn`] under a wrapper command (e.g. `ip netns exec NS`), which must exec the binary; its
/// stderr goes to `dir/NAME.log`.
pub fn spawn_wrapped(name: &str, args: &[&str], dir: &Path, wrap: &[String]) -> Proc {
    Launch::new(name, BIN, dir.join(format!("{name}.log")))
        .wrap(wrap)
        .args(args)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Wait for the locator file `p` writes (failing early, with its log, if it exits).
pub fn wait_up(p: &mut Proc, file: &Path, timeout: Duration) -> String {
    p.wait_file(file, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// The port of a `tcp:host=...,port=N` locator (to restart a coordinator on the port its first
/// instance got from the OS).
pub fn port_of(locator: &str) -> u16 {
    locator
        .split([',', ':'])
        .find_map(|kv| kv.strip_prefix("port="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {locator}"))
}

/// Start a coordinator on `port` (0 = any: the OS picks, the daemon reports it) with `file:`
/// storage in `dir/storage`.
pub fn coordinator(dir: &Path, port: u16, tag: &str) -> (Proc, String) {
    coordinator_with(dir, port, tag, &[])
}

/// [`coordinator`] with extra flags.
pub fn coordinator_with(dir: &Path, port: u16, tag: &str, extra: &[&str]) -> (Proc, String) {
    net::prepare_client();
    let station = if port == 0 {
        net::station()
    } else {
        tcp_station(port)
    };
    start_coordinator(dir, station, tag, extra)
}

/// A coordinator over TCP on 127.0.0.1 (any port) with extra flags, whatever the test transport.
pub fn coordinator_tcp_with(dir: &Path, tag: &str, extra: &[&str]) -> (Proc, String) {
    start_coordinator(dir, tcp_station(0), tag, extra)
}

/// A coordinator over TCP on 127.0.0.1 and `port` (0 = any), whatever the test transport.
pub fn coordinator_tcp(dir: &Path, port: u16, tag: &str) -> (Proc, String) {
    start_coordinator(dir, tcp_station(port), tag, &[])
}

fn tcp_station(port: u16) -> net::Station {
    net::Station {
        args: vec!["--listen".into(), format!("tcp:host=127.0.0.1,port={port}")],
        wrap: Vec::new(),
    }
}

fn start_coordinator(
    dir: &Path,
    station: net::Station,
    tag: &str,
    extra: &[&str],
) -> (Proc, String) {
    let lf = dir.join(format!("{tag}.locator"));
    let _ = std::fs::remove_file(&lf);
    let storage = format!("file:{}", dir.join("storage").display());
    let lfs = lf.to_str().unwrap().to_string();
    let mut args = vec!["coordinator", "--storage", &storage];
    args.extend(station.args.iter().map(String::as_str));
    args.extend_from_slice(&["--poll", "block", "--locator-file", &lfs]);
    args.extend_from_slice(extra);
    let mut p = spawn_wrapped(tag, &args, dir, &station.wrap);
    let loc = wait_up(&mut p, &lf, T);
    (p, loc)
}

/// Start a server joined to `coord`, without replication (`--replicas 0`).
pub fn server(dir: &Path, coord: &str, name: &str) -> (Proc, String) {
    server_with(dir, coord, name, &["--replicas", "0"])
}

/// Start a server joined to `coord` with extra flags.
pub fn server_with(dir: &Path, coord: &str, name: &str, extra: &[&str]) -> (Proc, String) {
    let lf = dir.join(format!("{name}.locator"));
    let _ = std::fs::remove_file(&lf);
    let lfs = lf.to_str().unwrap().to_string();
    let station = net::station();
    let mut args = vec![
        "server",
        "--coordinator",
        coord,
        "--memory",
        "48MiB",
        "--poll",
        "block",
        "--no-pin",
        "--locator-file",
        &lfs,
    ];
    args.extend(station.args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let mut p = spawn_wrapped(name, &args, dir, &station.wrap);
    let loc = wait_up(&mut p, &lf, T);
    (p, loc)
}

/// A server on TCP loopback started with extra flags and environment variables (test-only
/// fault hooks such as `FAASCACHE_TEST_DISK_FAULTS` or `FAASCACHE_TEST_PANIC_ON_WRITE`).
pub fn server_env(
    dir: &std::path::Path,
    coord: &str,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let lf = dir.join(format!("{name}.locator"));
    let lfs = lf.to_str().unwrap().to_string();
    let mut args = vec![
        "server",
        "--coordinator",
        coord,
        "--poll",
        "block",
        "--no-pin",
        "--listen",
        "tcp:host=127.0.0.1,port=0",
        "--locator-file",
        &lfs,
    ];
    // 48 MiB of log unless `extra` says otherwise.
    if !extra.contains(&"--memory") {
        args.extend(["--memory", "48MiB"]);
    }
    args.extend_from_slice(extra);
    let mut p = Launch::new(name, BIN, dir.join(format!("{name}.log")))
        .args(&args)
        .envs(env.iter().copied())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let loc = wait_up(&mut p, &lf, T);
    (p, loc)
}

pub fn connect(loc: &str) -> Session {
    let l: ServiceLocator = loc.parse().unwrap();
    faascache_transport::connect(&l, ClientConfig::default()).unwrap()
}

/// A raw client: a coordinator session, a cached tablet map, sessions to masters.
pub struct Raw {
    pub coord_loc: String,
    pub coord: Session,
    map: Vec<(u64, u64, u64, String)>,
    sessions: HashMap<String, Session>,
    pub client_id: u64,
    pub lease: ClientLease,
    pub next_rpc: u64,
    /// When the lease is half over (local clock): `eo` renews it then.
    renew_at: Instant,
}

impl Raw {
    pub fn new(coord: &str) -> Raw {
        // Like the real client, a broken coordinator session is reopened and the call retried
        // (for up to `T`): over the datagram transports a loaded machine can starve the
        // coordinator's poller past the 1.5 s silence that aborts an RPC.
        let deadline = Instant::now() + T;
        let (s, sent, (client_id, lease)) = loop {
            let s = connect(coord);
            let sent = Instant::now();
            match call(&s, &GetClientLeaseRequest { client_id: 0 }, T, |r| {
                (r.client_id, r.lease)
            }) {
                Ok(got) => break (s, sent, got),
                Err(CallError::Transport(e)) if Instant::now() < deadline => {
                    eprintln!("Raw::new: coordinator session broke ({e}); reconnecting");
                }
                Err(e) => panic!("GetClientLease from {coord}: {e:?}"),
            }
        };
        Raw {
            renew_at: half_term(sent, lease),
            coord_loc: coord.into(),
            coord: s,
            map: Vec::new(),
            sessions: HashMap::new(),
            client_id,
            lease,
            next_rpc: 1,
        }
    }

    pub fn coord_call<'a, R: Request<'a>, X>(
        &mut self,
        req: &R,
        f: impl for<'b> FnOnce(R::Response<'b>) -> X,
    ) -> Result<X, CallError> {
        let r = call(&self.coord, req, T, f);
        if matches!(r, Err(CallError::Transport(_))) {
            self.coord = connect(&self.coord_loc);
        }
        r
    }

    pub fn create_table(&mut self, name: &str, span: u32) -> u64 {
        self.coord_call(
            &CreateTableRequest {
                name,
                server_span: span,
                backing: None,
            },
            |r| r.table_id,
        )
        .unwrap()
    }

    pub fn refresh(&mut self) {
        let m = eventually(T, || {
            self.coord_call(&GetTabletMapRequest { table_id: 0 }, |r| {
                r.tablets
                    .iter()
                    .map(|t| (t.table_id, t.start_hash, t.end_hash, t.locator.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| format!("tablet map: {e}"))
        });
        self.map = m;
    }

    pub fn tablets(&mut self, table: u64) -> Vec<(u64, u64, String)> {
        self.refresh();
        self.map
            .iter()
            .filter(|t| t.0 == table)
            .map(|t| (t.1, t.2, t.3.clone()))
            .collect()
    }

    pub fn session_for(&mut self, table: u64, hash: u64) -> Option<Session> {
        let loc = self
            .map
            .iter()
            .find(|t| t.0 == table && t.1 <= hash && hash <= t.2)?
            .3
            .clone();
        if let Some(s) = self.sessions.get(&loc) {
            if s.failure().is_none() {
                return Some(s.clone());
            }
        }
        let l: ServiceLocator = loc.parse().ok()?;
        let s = faascache_transport::connect(&l, ClientConfig::default()).ok()?;
        self.sessions.insert(loc, s.clone());
        Some(s)
    }

    /// Send a keyed request to the owning master, following the map through UNKNOWN_TABLET,
    /// RETRY, NOT_SERVING (a master without its lease) and lost sessions, until `timeout`.
    pub fn keyed<'a, R: Request<'a>, X>(
        &mut self,
        table: u64,
        key: &[u8],
        req: &R,
        timeout: Duration,
        f: impl for<'b> Fn(R::Response<'b>) -> X,
    ) -> Result<X, CallError> {
        let deadline = Instant::now() + timeout;
        let hash = key_hash(key);
        loop {
            let r = match self.session_for(table, hash) {
                Some(s) => call(&s, req, T, &f),
                None => Err(CallError::Failed(faascache_protocol::msg::Failure {
                    status: Status::UNKNOWN_TABLET,
                    version: 0,
                    detail: "no tablet in the cached map".into(),
                })),
            };
            let again = match &r {
                Err(CallError::Failed(fl)) => {
                    fl.status == Status::UNKNOWN_TABLET
                        || fl.status == Status::RETRY
                        || fl.status == Status::NOT_SERVING
                }
                Err(CallError::Transport(_)) => true,
                _ => false,
            };
            if !again || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
            self.refresh();
        }
    }

    /// Renews the lease (as a real client does at half its term), best effort: while the
    /// coordinator cannot be reached the old lease is kept and renewal is tried again a second
    /// later. A lease that expired while this client was idle comes back with a new id, which it
    /// adopts (its next rpc ids never ran under it).
    pub fn renew(&mut self) {
        let sent = Instant::now();
        let req = GetClientLeaseRequest {
            client_id: self.client_id,
        };
        match call(&self.coord, &req, Duration::from_secs(1), |r| {
            (r.client_id, r.lease)
        }) {
            Ok((client_id, lease)) => {
                self.client_id = client_id;
                self.lease = lease;
                self.renew_at = half_term(sent, lease);
            }
            Err(_) => {
                self.renew_at = Instant::now() + Duration::from_secs(1);
                let fresh =
                    self.coord_loc.parse::<ServiceLocator>().ok().and_then(|l| {
                        faascache_transport::connect(&l, ClientConfig::default()).ok()
                    });
                if let Some(s) = fresh {
                    self.coord = s;
                }
            }
        }
    }

    pub fn eo(&mut self) -> ExactlyOnce {
        if Instant::now() >= self.renew_at {
            self.renew();
        }
        let rpc_id = self.next_rpc;
        self.next_rpc += 1;
        // This client issues one mutation at a time, so every earlier rpc has its reply:
        // acknowledge them all, or the master keeps their results until its per-client limit
        // (which a long run under load reaches, and then answers RETRY forever).
        ExactlyOnce {
            client_id: self.client_id,
            rpc_id,
            ack_id: rpc_id - 1,
            lease: self.lease,
        }
    }

    pub fn write(&mut self, table: u64, key: &[u8], value: &[u8]) -> Result<u64, CallError> {
        let rpc = self.eo();
        let req = WriteRequest {
            table,
            rpc,
            rules: RejectRules::NONE,
            key,
            value,
        };
        self.keyed(table, key, &req, Duration::from_secs(30), |r| r.version)
    }

    pub fn read(&mut self, table: u64, key: &[u8]) -> Result<(u64, Vec<u8>), CallError> {
        let req = ReadRequest {
            table,
            rules: RejectRules::NONE,
            key,
        };
        self.keyed(table, key, &req, Duration::from_secs(30), |r| {
            (r.version, r.value.to_vec())
        })
    }
}

/// Half of a lease's term after `sent`.
fn half_term(sent: Instant, lease: ClientLease) -> Instant {
    let term = Duration::from_millis(lease.expiration.saturating_sub(lease.timestamp));
    sent.checked_add(term / 2)
        .unwrap_or(sent + Duration::from_secs(3600))
}

/// Send `sig` (e.g. `-STOP`, `-CONT`) to a process this test started.
pub fn signal(p: &Proc, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &p.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {} failed", p.pid());
}

/// Whether the replica directory `dir` (a server's `--backup-dir`) holds a replica file of
/// master `id`.
pub fn holds_replica_of(dir: &Path, id: u64) -> bool {
    std::fs::read_dir(dir.join(format!("{id:016x}")))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".replica"))
        })
        .unwrap_or(false)
}

/// The status of a failed call.
pub fn status<X: std::fmt::Debug>(r: Result<X, CallError>) -> Status {
    match r {
        Err(CallError::Failed(f)) => f.status,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The AWS variables that point an S3 client (or a server's backed tables) at the test kit's
/// moto server.
pub fn moto_vars(env: &faascache_testkit::stores::StoreEnv) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_ENDPOINT_URL",
            env.var("FAASCACHE_MOTO_ENDPOINT").to_string(),
        ),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// The resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
