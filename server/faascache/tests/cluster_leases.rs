//! Client leases with real processes: a client process (`faascache shell`) frozen with SIGSTOP
//! past its lease term and thawed goes on under a new client id and its increments count once;
//! its old lease is refused by the masters with `EXPIRED_LEASE` once they know it expired; a
//! dropped client's lease is released at once; the coordinator grants, renews, releases and
//! checks leases, and a restarted coordinator honours its predecessor's ids for one term.

mod cluster_util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use cluster_util::*;
use faascache_protocol::msg::coordinator::{
    CheckClientLeasesRequest, GetClientLeaseRequest, ReleaseClientLeaseRequest,
};
use faascache_protocol::msg::master::{IncrementRequest, Number, RemoveRequest};
use faascache_protocol::msg::{ClientLease, ExactlyOnce, RejectRules};
use faascache_transport::Status;

/// A `faascache shell` child: one client across commands (killed on drop).
struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    fn start(coord: &str, dir: &std::path::Path) -> Shell {
        let log = std::fs::File::create(dir.join("shell.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["shell", "--coordinator", coord, "--timeout", "10s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Shell {
            child,
            stdin,
            stdout,
        }
    }

    /// One command, its reply line.
    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(!reply.is_empty(), "the shell exited at {line:?}");
        reply.trim_end().to_string()
    }

    /// The shell's client id and lease.
    fn lease(&mut self) -> (u64, ClientLease) {
        let r = self.cmd("lease");
        let f: Vec<u64> = r
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("lease: {r}"))
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
        (
            f[0],
            ClientLease {
                expiration: f[1],
                timestamp: f[2],
            },
        )
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The coordinator's word on `id`: its expiration, 0 = dead.
fn expiration(raw: &mut Raw, id: u64) -> u64 {
    raw.coord_call(
        &CheckClientLeasesRequest {
            client_ids: vec![id],
        },
        |r| r.expirations[0],
    )
    .unwrap()
}

const TERM: &str = "1500ms";

/// Freezes the shell until the coordinator declares its lease dead, thaws it, increments again.
/// Returns the old (id, lease).
fn freeze_past_the_lease(sh: &mut Shell, raw: &mut Raw) -> (u64, ClientLease) {
    assert_eq!(sh.cmd("incr t n"), "ok 1");
    let (old_id, old_lease) = sh.lease();
    assert_ne!(old_id, 0, "a tracked increment took a lease");
    assert!(expiration(raw, old_id) > 0, "alive while the client runs");
    sh.signal("-STOP");
    // Frozen: no renewal; the coordinator declares the id dead one term later.
    eventually(T, || match expiration(raw, old_id) {
        0 => Ok(()),
        e => Err(format!("lease {old_id} still alive until {e}")),
    });
    sh.signal("-CONT");
    assert_eq!(
        sh.cmd("incr t n"),
        "ok 2",
        "thawed: the increment counts once"
    );
    let (new_id, _) = sh.lease();
    assert_ne!(new_id, old_id, "an expired id is never renewed: a new one");
    assert_eq!(expiration(raw, old_id), 0, "and the old one stays dead");
    assert_eq!(sh.cmd("incr t n"), "ok 3");
    (old_id, old_lease)
}

#[test]
fn a_frozen_client_thaws_and_counts_once() {
    let dir = tempdir("leases");
    let (_c, coord) = coordinator_with(dir.path(), 0, "coord", &["--client-lease-term", TERM]);
    let (_s, _) = server(dir.path(), &coord, "s1");
    let mut raw = Raw::new(&coord);
    raw.create_table("t", 1);
    let mut sh = Shell::start(&coord, dir.path());
    freeze_past_the_lease(&mut sh, &mut raw);
    let t = raw.create_table("t", 1);
    let (_, v) = raw.read(t, b"n").unwrap();
    assert_eq!(v, 3i64.to_le_bytes(), "three increments, each counted once");
    // Other commands of the shell.
    assert!(sh.cmd("put t k hello world").starts_with("ok "));
    assert_eq!(sh.cmd("get t k"), "ok hello world");
    assert!(sh.cmd("rm t k").starts_with("ok "));
    assert_eq!(sh.cmd("get t k"), "notfound");
    let r = sh.cmd("frobnicate");
    assert!(
        r.starts_with("error ") && r.contains("unknown command"),
        "{r}"
    );
    // `status` shows the master's exactly-once state: the shell's and Raw's saved results.
    let out = Command::new(BIN)
        .args(["status", "--coordinator", &coord, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = &v["servers"][0];
    assert!(server["eo_clients"].as_u64().unwrap() >= 1, "{v}");
    assert!(server["eo_results"].as_u64().unwrap() >= 1, "{v}");
    assert!(server["eo_bytes"].as_u64().unwrap() > 0, "{v}");
    let out = Command::new(BIN)
        .args(["status", "--coordinator", &coord])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("exactly-once server"), "{text}");
    // Exiting releases the lease at once (not a term later).
    let (id, _) = sh.lease();
    assert!(expiration(&mut raw, id) > 0);
    writeln!(sh.stdin, "quit").unwrap();
    sh.stdin.flush().unwrap();
    let status = sh.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(expiration(&mut raw, id), 0, "released on exit");
}

#[test]
fn masters_refuse_an_expired_lease() {
    let dir = tempdir("leases");
    let (_c, coord) = coordinator_with(dir.path(), 0, "coord", &["--client-lease-term", TERM]);
    let (_s, _) = server(dir.path(), &coord, "s1");
    let mut raw = Raw::new(&coord);
    let t = raw.create_table("t", 1);
    let mut sh = Shell::start(&coord, dir.path());
    let (old_id, old_lease) = freeze_past_the_lease(&mut sh, &mut raw);
    // The master learns the cluster time from the coordinator (heartbeats, lease checks), a
    // moment after the coordinator declared the lease dead: probe with a harmless tracked
    // remove of a missing key until the master refuses the old lease.
    raw.refresh();
    let mut probe_rpc = 2_000;
    eventually(T, || {
        probe_rpc += 1;
        let probe = RemoveRequest {
            table: t,
            rpc: ExactlyOnce {
                client_id: old_id,
                rpc_id: probe_rpc,
                ack_id: 0,
                lease: old_lease,
            },
            rules: RejectRules::NONE,
            key: b"never-written",
        };
        match raw.keyed(t, b"never-written", &probe, T, |r| r.version) {
            Err(faascache_transport::CallError::Failed(f)) if f.status == Status::EXPIRED_LEASE => {
                Ok(())
            }
            other => Err(format!("old lease answered {other:?}")),
        }
    });
    // An increment under the old lease (as the frozen client would have retried it): refused
    // with EXPIRED_LEASE, and it never runs.
    let req = IncrementRequest {
        table: t,
        rpc: ExactlyOnce {
            client_id: old_id,
            rpc_id: 1_000,
            ack_id: 0,
            lease: old_lease,
        },
        rules: RejectRules::NONE,
        key: b"n",
        delta: Number::I64(1),
    };
    match raw.keyed(t, b"n", &req, T, |r| r.value) {
        Err(faascache_transport::CallError::Failed(f)) => {
            assert_eq!(f.status, Status::EXPIRED_LEASE, "{}", f.detail)
        }
        other => panic!("old lease answered {other:?}"),
    }
    let (_, v) = raw.read(t, b"n").unwrap();
    assert_eq!(v, 3i64.to_le_bytes(), "the refused increment did not run");
}

#[test]
fn the_coordinator_grants_renews_releases_and_survives_a_restart() {
    let dir = tempdir("lease-rpc");
    let flags = ["--client-lease-term", TERM];
    let (c1, coord) = coordinator_with(dir.path(), 0, "coord", &flags);
    let s = connect(&coord);
    let lease = |s: &faascache_transport::Session, id: u64| {
        faascache_transport::call(s, &GetClientLeaseRequest { client_id: id }, T, |r| {
            (r.client_id, r.lease, r.term_ms)
        })
        .unwrap()
    };
    let check = |s: &faascache_transport::Session, ids: &[u64]| {
        let req = CheckClientLeasesRequest {
            client_ids: ids.to_vec(),
        };
        faascache_transport::call(s, &req, T, |r| (r.cluster_time, r.expirations)).unwrap()
    };
    let (a, la, term) = lease(&s, 0);
    assert_eq!(term, 1500);
    assert_eq!(la.expiration - la.timestamp, 1500);
    let (a2, la2, _) = lease(&s, a);
    assert_eq!(a2, a, "a valid lease is renewed under its id");
    assert!(la2.expiration >= la.expiration);
    let (b, _, _) = lease(&s, 0);
    let (unrenewed, _, _) = lease(&s, 0);
    assert!(a != b && b != unrenewed);
    faascache_transport::call(&s, &ReleaseClientLeaseRequest { client_id: b }, T, |_| ()).unwrap();
    let (now, e) = check(&s, &[a, b, 1 << 40]);
    assert!(e[0] > now, "{e:?}");
    assert_eq!(&e[1..], &[0, 0], "released and never granted ids are dead");
    let (b2, _, _) = lease(&s, b);
    assert!(b2 != b, "a released id is never renewed: a new one");

    // A new coordinator (same storage and port): the predecessor's ids stay alive for one term
    // and a renewal in that window keeps them; new ids are above every earlier one.
    drop(s);
    drop(c1);
    let (_c2, coord2) = coordinator_with(dir.path(), port_of(&coord), "coord2", &flags);
    let s = connect(&coord2);
    let (now, e) = check(&s, &[a, unrenewed]);
    assert!(
        e[0] > now && e[1] > now,
        "grace for the predecessor's ids: {e:?}"
    );
    let (a3, _, _) = lease(&s, a);
    assert_eq!(a3, a, "renewed in the grace window: the same id");
    let (fresh, _, _) = lease(&s, 0);
    assert!(fresh > b2, "ids are never reused across coordinators");
    // An id nobody renews dies when the grace window ends, and stays dead.
    eventually(T, || match check(&s, &[unrenewed]).1[0] {
        0 => Ok(()),
        e => Err(format!("{unrenewed} alive until {e}")),
    });
    let (u2, _, _) = lease(&s, unrenewed);
    assert_ne!(u2, unrenewed);
}
