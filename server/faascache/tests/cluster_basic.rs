//! A real cluster (coordinator + 3 servers as processes on 127.0.0.1): tables, every data
//! operation, exactly-once retries, bad input, and a coordinator crash + restart that recovers
//! its state from `file:` storage while the servers keep serving.

mod cluster_util;

use std::path::Path;
use std::time::Duration;

use cluster_util::*;
use faascache_protocol::msg::control::GetServerInfoRequest;
use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::master::*;
use faascache_protocol::msg::{key_hash, RejectRules, Services};
use faascache_protocol::wire::codec::Writer;
use faascache_transport::call;
use faascache_transport::{Opcode, Status};

#[test]
fn cluster_end_to_end_and_coordinator_restart() {
    let dir = tempdir("basic");
    let (coord, cloc) = coordinator_tcp(&dir, 0, "coordinator");
    let _servers: Vec<_> = (1..=3)
        .map(|i| server(&dir, &cloc, &format!("server-{i}")))
        .collect();
    let mut c = Raw::new(&cloc);

    // Tables: spread over the three masters.
    let t = c.create_table("users", 3);
    assert_eq!(c.create_table("users", 3), t, "create is idempotent");
    let tablets = c.tablets(t);
    assert_eq!(tablets.len(), 3);
    let owners: std::collections::HashSet<_> = tablets.iter().map(|x| x.2.clone()).collect();
    assert_eq!(owners.len(), 3, "one tablet per master");
    assert_eq!(tablets[0].0, 0);
    assert_eq!(tablets[2].1, u64::MAX);

    writes_reads_and_conditions(&mut c, t);
    exactly_once(&mut c, t);
    let masters = multi_ops(&mut c, t);
    enumerate_all(&mut c, t, masters);
    bad_input(&mut c, t);
    coordinator_restart(&dir, coord, &mut c, t, &cloc);
}

fn writes_reads_and_conditions(c: &mut Raw, t: u64) {
    // Writes and reads.
    for i in 0..300u32 {
        c.write(
            t,
            format!("key{i}").as_bytes(),
            format!("value{i}").as_bytes(),
        )
        .unwrap();
    }
    for i in (0..300u32).step_by(7) {
        let (_, v) = c.read(t, format!("key{i}").as_bytes()).unwrap();
        assert_eq!(v, format!("value{i}").as_bytes());
    }
    assert_eq!(status(c.read(t, b"missing")), Status::OBJECT_DOESNT_EXIST);

    // Conditional write: wrong version carries the current one.
    let (ver, _) = c.read(t, b"key1").unwrap();
    let rpc = c.eo();
    let req = WriteRequest {
        table: t,
        rpc,
        rules: RejectRules {
            version_ne_given: true,
            given_version: ver + 1000,
            ..RejectRules::NONE
        },
        key: b"key1",
        value: b"x",
    };
    let r = c.keyed(t, b"key1", &req, T, |r| r.version);
    match r {
        Err(faascache_transport::CallError::Failed(f)) => {
            assert_eq!(f.status, Status::WRONG_VERSION);
            assert_eq!(f.version, ver);
        }
        other => panic!("{other:?}"),
    }
}

fn exactly_once(c: &mut Raw, t: u64) {
    // Exactly-once: the same (client, rpc id) twice runs once.
    let rpc = c.eo();
    let inc = IncrementRequest {
        table: t,
        rpc,
        rules: RejectRules::NONE,
        key: b"counter",
        delta: Number::I64(5),
    };
    let a = c
        .keyed(t, b"counter", &inc, T, |r| (r.version, r.value))
        .unwrap();
    let b = c
        .keyed(t, b"counter", &inc, T, |r| (r.version, r.value))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.1, Number::I64(5));
    let rpc = c.eo();
    let inc2 = IncrementRequest { rpc, ..inc };
    assert_eq!(
        c.keyed(t, b"counter", &inc2, T, |r| r.value).unwrap(),
        Number::I64(10)
    );
    // Acked: a retry of the first is now stale.
    let inc3 = IncrementRequest {
        rpc: faascache_protocol::msg::ExactlyOnce {
            ack_id: rpc.rpc_id,
            ..c.eo()
        },
        ..inc
    };
    assert_eq!(
        c.keyed(t, b"counter", &inc3, T, |r| r.value).unwrap(),
        Number::I64(15)
    );
    assert_eq!(
        status(c.keyed(t, b"counter", &inc, T, |r| r.value)),
        Status::REQUEST_FORMAT_ERROR
    );
    // Untracked float increment.
    let finc = IncrementRequest {
        table: t,
        rpc: Default::default(),
        rules: RejectRules::NONE,
        key: b"f",
        delta: Number::F64(0.5),
    };
    assert_eq!(
        c.keyed(t, b"f", &finc, T, |r| r.value).unwrap(),
        Number::F64(0.5)
    );
}

/// Multi-write, multi-read and multi-remove on each master; returns the number of masters.
fn multi_ops(c: &mut Raw, t: u64) -> usize {
    // Multi-ops, grouped per master.
    c.refresh();
    let keys: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    let mut by_master: std::collections::HashMap<String, Vec<&String>> = Default::default();
    for k in &keys {
        let h = key_hash(k.as_bytes());
        let loc = c
            .tablets(t)
            .into_iter()
            .find(|x| x.0 <= h && h <= x.1)
            .unwrap()
            .2;
        by_master.entry(loc).or_default().push(k);
    }
    assert!(by_master.len() >= 2);
    for (loc, ks) in &by_master {
        let s = connect(loc);
        let items = ks
            .iter()
            .enumerate()
            .map(|(i, k)| MultiWriteItem {
                table: t,
                rpc_id: 10_000 + i as u64,
                rules: RejectRules::NONE,
                key: k.as_bytes(),
                value: k.as_bytes(),
            })
            .collect();
        let w = call(
            &s,
            &MultiWriteRequest {
                client_id: c.client_id,
                ack_id: 0,
                lease: c.lease,
                items,
            },
            T,
            |r| r.items,
        )
        .unwrap();
        assert!(
            w.iter().all(|x| x.status == Status::OK && x.version > 0),
            "{w:?}"
        );
        let mut items: Vec<MultiReadItem<'_>> = ks
            .iter()
            .map(|k| MultiReadItem {
                table: t,
                key: k.as_bytes(),
            })
            .collect();
        items.push(MultiReadItem {
            table: t,
            key: b"nope-not-here",
        });
        let n = items.len();
        let r = call(&s, &MultiReadRequest { items }, T, |r| {
            r.items
                .iter()
                .map(|x| (x.status, x.value.to_vec()))
                .collect::<Vec<_>>()
        })
        .unwrap();
        assert_eq!(r.len(), n);
        for (i, k) in ks.iter().enumerate() {
            assert_eq!(r[i], (Status::OK, k.as_bytes().to_vec()));
        }
        // The extra key may belong to another master: either way a per-item status.
        assert!(matches!(
            r[n - 1].0,
            Status::OBJECT_DOESNT_EXIST | Status::UNKNOWN_TABLET
        ));
        let items = ks
            .iter()
            .take(2)
            .enumerate()
            .map(|(i, k)| MultiRemoveItem {
                table: t,
                rpc_id: 20_000 + i as u64,
                rules: RejectRules::NONE,
                key: k.as_bytes(),
            })
            .collect();
        let rm = call(
            &s,
            &MultiRemoveRequest {
                client_id: c.client_id,
                ack_id: 0,
                lease: c.lease,
                items,
            },
            T,
            |r| r.items,
        )
        .unwrap();
        assert!(rm.iter().all(|x| x.status == Status::OK && x.version > 0));
    }

    by_master.len()
}

/// Enumerate every tablet: all live objects exactly once.
fn enumerate_all(c: &mut Raw, t: u64, masters: usize) {
    let mut seen = std::collections::HashSet::new();
    for (start, end, loc) in c.tablets(t) {
        let s = connect(&loc);
        let mut cursor = None;
        loop {
            let (next, objs) = call(
                &s,
                &EnumerateRequest {
                    table: t,
                    start_hash: start,
                    end_hash: end,
                    cursor,
                    max_bytes: 2000,
                },
                T,
                |r| {
                    (
                        r.next_cursor,
                        r.objects.iter().map(|o| o.key.to_vec()).collect::<Vec<_>>(),
                    )
                },
            )
            .unwrap();
            for k in objs {
                assert!(seen.insert(k), "an object enumerated twice");
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    // 300 keys + counter + f + 60 multi-written - 2 removed per master.
    assert_eq!(seen.len(), 300 + 2 + 60 - 2 * masters);
}

fn bad_input(c: &mut Raw, t: u64) {
    // Bad input: each a clear status, nothing crashes.
    assert_eq!(
        status(
            c.coord_call(&GetTableIdRequest(TableNameRequest { name: "nope" }), |r| r
                .table_id)
        ),
        Status::TABLE_DOESNT_EXIST
    );
    assert_eq!(
        status(c.coord_call(&DropTableRequest(TableNameRequest { name: "nope" }), |_| ())),
        Status::TABLE_DOESNT_EXIST
    );
    let (_, _, some_master) = c.tablets(t)[0].clone();
    let s = connect(&some_master);
    assert_eq!(
        status(call(
            &s,
            &ReadRequest {
                table: 999,
                rules: RejectRules::NONE,
                key: b"k"
            },
            T,
            |_| ()
        )),
        Status::UNKNOWN_TABLET
    );
    assert_eq!(
        status(call(
            &s,
            &ReadRequest {
                table: 1 << 40,
                rules: RejectRules::NONE,
                key: b"k"
            },
            T,
            |_| ()
        )),
        Status::TABLE_DOESNT_EXIST
    );
    // A value above 1 MiB is refused by the decoder; garbage and truncated payloads too.
    let mut big = Vec::new();
    Writer::new(&mut big)
        .u64(t)
        .u64(0)
        .u64(0)
        .u64(0)
        .u8(0)
        .u64(0)
        .bytes_u16(b"k")
        .u32(2 << 20);
    big.resize(big.len() + (2 << 20), 7);
    let (st, body) = s.call(Opcode::Write, &big, T).unwrap();
    assert_eq!(st, Status::REQUEST_FORMAT_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("exceeds the limit"));
    let (st, _) = s.call(Opcode::Write, &[1, 2, 3], T).unwrap();
    assert_eq!(st, Status::MESSAGE_TOO_SHORT);
    let (st, _) = s.call(Opcode::EnlistServer, &[], T).unwrap();
    assert_eq!(
        st,
        Status::UNIMPLEMENTED_REQUEST,
        "a master is not a coordinator"
    );
    let (st, _) = c
        .coord
        .call(Opcode::CreateTable, &[2, 0, 0xff, 0xfe, 1, 0, 0, 0], T)
        .unwrap();
    assert_eq!(st, Status::REQUEST_FORMAT_ERROR);
    // Everything still serves.
    assert_eq!(c.read(t, b"key5").unwrap().1, b"value5");
    let info = call(&s, &GetServerInfoRequest, T, |r| {
        (r.tablets, r.transport.to_string(), r.durability.to_string())
    })
    .unwrap();
    assert_eq!(info.0, 1);
    assert_eq!(info.1, "tcp");
    assert!(info.2.contains("memory"));
}

fn coordinator_restart(dir: &Path, mut coord: Proc, c: &mut Raw, t: u64, cloc: &str) {
    // Coordinator crash (SIGKILL) and restart on the same port: state recovered.
    let servers_before = c
        .coord_call(
            &GetServerListRequest {
                services: Services(0),
            },
            |r| r.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
        )
        .unwrap();
    coord.kill();
    // Masters keep serving meanwhile.
    assert_eq!(c.read(t, b"key9").unwrap().1, b"value9");
    // The same port the first instance got from the OS.
    let (_coord2, cloc2) = coordinator(dir, port_of(cloc), "coordinator-2");
    assert_eq!(cloc2, cloc);
    let mut c2 = Raw::new(&cloc2);
    let tables = c2
        .coord_call(&ListTablesRequest, |r| {
            r.tables
                .iter()
                .map(|t| (t.id, t.name.to_string(), t.tablets))
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(tables, vec![(t, "users".to_string(), 3)]);
    assert_eq!(c2.tablets(t), c.tablets(t));
    let servers_after = c2
        .coord_call(
            &GetServerListRequest {
                services: Services(0),
            },
            |r| {
                r.servers
                    .iter()
                    .map(|s| (s.id, s.status))
                    .collect::<Vec<_>>()
            },
        )
        .unwrap();
    assert_eq!(
        servers_after.iter().map(|s| s.0).collect::<Vec<_>>(),
        servers_before
    );
    assert!(servers_after.iter().all(|s| s.1 == ServerStatus::Up));
    for i in (0..300u32).step_by(11) {
        assert_eq!(
            c2.read(t, format!("key{i}").as_bytes()).unwrap().1,
            format!("value{i}").as_bytes()
        );
    }
    // New tables after the restart; client ids are not reused.
    assert!(c2.client_id > c.client_id);
    let t2 = c2.create_table("after", 2);
    assert!(t2 > t);
    c2.write(t2, b"a", b"b").unwrap();
    assert_eq!(c2.read(t2, b"a").unwrap().1, b"b");
    // Drop: the masters forget the data; the name is free again.
    c2.coord_call(
        &DropTableRequest(TableNameRequest { name: "after" }),
        |_| (),
    )
    .unwrap();
    let t3 = c2.create_table("after", 1);
    assert_ne!(t3, t2);
    assert_eq!(status(c2.read(t3, b"a")), Status::OBJECT_DOESNT_EXIST);
}

#[test]
fn cluster_bad_invocations_fail_clearly() {
    let dir = tempdir("bad");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = run(&["coordinator", "--listen", "tcp:hots=1"]);
    assert!(!ok && err.contains("bad --listen locator"), "{err}");
    let (ok, err) = run(&[
        "server",
        "--coordinator",
        "nonsense",
        "--listen",
        "tcp:host=127.0.0.1,port=0",
    ]);
    assert!(!ok && err.contains("--coordinator"), "{err}");
    // Nothing listens there (and nothing can while the guard lives).
    let closed = faascache_testkit::closed_port();
    let (ok, err) = run(&[
        "server",
        "--coordinator",
        &format!("tcp:host=127.0.0.1,port={}", closed.port),
        "--memory",
        "48MiB",
        "--no-pin",
        "--enlist-timeout",
        "1s",
    ]);
    assert!(!ok && err.contains("cannot enlist"), "{err}");
    let (ok, err) = run(&[
        "server",
        "--coordinator",
        "tcp:host=127.0.0.1,port=1",
        "--memory",
        "1MiB",
    ]);
    assert!(!ok && err.contains("too small"), "{err}");
    // More than the machine (or the cgroup) has: refused at start-up with the numbers, before
    // the server reserves memory or tries the coordinator (nothing listens on port 1).
    let (ok, err) = run(&[
        "server",
        "--coordinator",
        "tcp:host=127.0.0.1,port=1",
        "--memory",
        "1TiB",
    ]);
    assert!(
        !ok && err.contains("--memory 1024.0 GiB does not fit")
            && err.contains("lower --memory to at most"),
        "{err}"
    );
    let (ok, err) = run(&[
        "server",
        "--coordinator",
        "tcp:host=127.0.0.1,port=1",
        "--memory",
        "lots",
    ]);
    assert!(!ok && err.contains("bad size"), "{err}");
    let (ok, err) = run(&[
        "coordinator",
        "--listen",
        "tcp:host=127.0.0.1,port=0",
        "--storage",
        "zk:host=x",
    ]);
    assert!(!ok && err.contains("file:DIR"), "{err}");
    // A corrupt state file: a clear error naming the file, no start.
    let sdir = dir.join("storage");
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(sdir.join("coordinator-state"), b"FCEB garbage").unwrap();
    let (ok, err) = run(&[
        "coordinator",
        "--listen",
        "tcp:host=127.0.0.1,port=0",
        "--storage",
        &format!("file:{}", sdir.display()),
    ]);
    assert!(
        !ok && err.contains("corrupt") && err.contains("coordinator-state"),
        "{err}"
    );
}

#[test]
fn cluster_crashed_server_is_detected() {
    let dir = tempdir("crash");
    let (_coord, cloc) = coordinator_with(&dir, 0, "coordinator", &["--heartbeat-timeout", "2s"]);
    let (_a, aloc) = server(&dir, &cloc, "server-a");
    let (mut b, bloc) = server(&dir, &cloc, "server-b");
    let mut c = Raw::new(&cloc);
    let t = c.create_table("t", 2);
    let tablets = c.tablets(t);
    assert_eq!(tablets.iter().filter(|x| x.2 == bloc).count(), 1);
    let a_key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let h = key_hash(k.as_bytes());
            tablets.iter().any(|x| x.0 <= h && h <= x.1 && x.2 == aloc)
        })
        .unwrap();
    c.write(t, a_key.as_bytes(), b"v").unwrap();
    b.kill();
    // Within a few heartbeat timeouts the coordinator marks it crashed and its tablet recovering.
    // Crashed lasts only until recovery ends (~80 ms without replicas), then the server is
    // Removed or gone from the list: any of the three shows the crash was detected, and a poll
    // that missed the short Crashed window must not fail the test.
    eventually(Duration::from_secs(10), || {
        let list = c
            .coord_call(
                &GetServerListRequest {
                    services: Services(0),
                },
                |r| {
                    r.servers
                        .iter()
                        .map(|s| (s.locator.to_string(), s.status))
                        .collect::<Vec<_>>()
                },
            )
            .unwrap();
        let b_up = list.iter().any(|s| s.0 == bloc && s.1 == ServerStatus::Up);
        if !b_up {
            assert!(list.iter().any(|s| s.0 == aloc && s.1 == ServerStatus::Up));
            Ok(())
        } else {
            Err(format!("crash not detected: {list:?}"))
        }
    });
    // Without replication (`--replicas 0`) there is nothing to recover: the crashed server's
    // tablet is handed to the survivor, empty (its data is lost, as the operator chose).
    eventually(Duration::from_secs(10), || {
        let states = c
            .coord_call(&GetTabletMapRequest { table_id: t }, |r| {
                r.tablets
                    .iter()
                    .map(|x| (x.locator.to_string(), x.state))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        if states
            .iter()
            .all(|s| *s == (aloc.clone(), TabletState::Normal))
        {
            return Ok(());
        }
        assert!(
            states
                .iter()
                .all(|s| s.0 == aloc || s.1 == TabletState::Recovering),
            "{states:?}"
        );
        Err(format!("tablets not reassigned: {states:?}"))
    });
    // The survivor serves on; new tables go to up masters only.
    assert_eq!(c.read(t, a_key.as_bytes()).unwrap().1, b"v");
    let t2 = c.create_table("t2", 2);
    assert!(c.tablets(t2).iter().all(|x| x.2 == aloc));
}
