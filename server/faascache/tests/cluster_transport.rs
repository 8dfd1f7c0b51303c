//! A whole cluster over the transport under test: TCP by default; CI runs it again with
//! `FAASCACHE_TEST_TRANSPORT=dpdk` (DPDK af_packet stations on a Linux bridge, one per process)
//! and `scripts/rxe-guest.sh` with `infrc` (verbs on Soft-RoCE inside a QEMU guest). Every RPC —
//! enlistment, heartbeats, replication to backups, recovery, client reads and writes — crosses
//! that transport.
//!
//! Coordinator + 3 servers replicating once (R = 1): `status` reports the transport and why;
//! objects from 1 byte to 1 MiB (many datagrams / fragments each) are written, read back,
//! multi-read, conditionally written and enumerated; then the master owning most tablets is
//! killed and every object must come back, from its backups, with its version.

mod cluster_util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions, Error, RejectRules, WriteOptions};

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
        .collect()
}

#[test]
fn cluster_over_the_test_transport() {
    let want = net::kind();
    let dir = tempdir(&format!("transport-{want}"));
    let (_cp, coord) = coordinator_with(&dir, 0, "coordinator", &["--heartbeat-timeout", "3s"]);
    assert!(
        coord.starts_with(&format!("{want}:")),
        "coordinator at {coord}"
    );
    let mut servers: Vec<(Proc, String)> = (1..=3)
        .map(|i| server_with(&dir, &coord, &format!("server-{i}"), &["--replicas", "1"]))
        .collect();
    for (_, l) in &servers {
        assert!(l.starts_with(&format!("{want}:")), "server at {l}");
    }
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(60)),
    )
    .expect("client connects");
    assert_eq!(c.transport().unwrap(), want);

    // status: every master serves on the transport under test, as its first choice.
    let up: Vec<_> = c
        .servers()
        .unwrap()
        .into_iter()
        .filter(|s| s.status == "up")
        .collect();
    assert_eq!(up.len(), 3, "{up:?}");
    for s in &up {
        let st = c.server_stats(&s.locator).unwrap();
        assert_eq!(st.transport, want, "{s:?}");
        assert_eq!(st.transport_choice, "first choice", "{s:?}");
    }

    let t = c.create_table("t", 3).unwrap();
    // Sizes: tiny, around one datagram / fragment, many of them, and 1 MiB.
    let sizes = [1, 100, 1400, 1500, 4000, 70_000, 1 << 20];
    let mut want_objects: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
    for i in 0..700 {
        let len = sizes[i % sizes.len()];
        let len = if len == 1 << 20 && i > 100 { 300 } else { len };
        let k = format!("key-{i}").into_bytes();
        let v = value(i, len);
        let ver = c
            .write(t, &k, &v)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        want_objects.insert(k, (v, ver));
    }
    for (k, (v, ver)) in &want_objects {
        let o = c.read(t, k).unwrap();
        assert_eq!(
            (&o.value, o.version),
            (v, *ver),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    // Multi-read across the three masters.
    let keys: Vec<&Vec<u8>> = want_objects.keys().take(300).collect();
    let items: Vec<(u64, &[u8])> = keys.iter().map(|k| (t, k.as_slice())).collect();
    for (k, r) in keys.iter().zip(c.multi_read(&items)) {
        assert_eq!(r.unwrap().value, want_objects[*k].0);
    }
    // A conditional write with a stale version is rejected and changes nothing.
    let (k0, (v0, ver0)) = want_objects
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let stale = c.write_with(
        t,
        &k0,
        b"must not land",
        &WriteOptions::default().reject(RejectRules {
            version_ne_given: true,
            given_version: ver0 + 100,
            ..RejectRules::NONE
        }),
    );
    assert!(
        matches!(stale, Err(Error::VersionMismatch { .. })),
        "{stale:?}"
    );
    assert_eq!(c.read(t, &k0).unwrap().value, v0);
    // Enumeration sees every object once.
    let mut seen = 0;
    for item in c.enumerate(t) {
        let e = item.unwrap();
        assert_eq!(e.value, want_objects[&e.key].0);
        seen += 1;
    }
    assert_eq!(seen, want_objects.len());

    // Crash the master that owns most tablets; recovery runs over the same transport.
    let tablets = c.tablets(t).unwrap();
    let victim = (0..servers.len())
        .max_by_key(|&i| {
            tablets
                .iter()
                .filter(|tb| tb.master == servers[i].1)
                .count()
        })
        .unwrap();
    let started = Instant::now();
    servers[victim].0.kill();
    for (k, (v, ver)) in &want_objects {
        let o = c
            .read(t, k)
            .unwrap_or_else(|e| panic!("read after the crash: {e}"));
        assert_eq!(
            (&o.value, o.version),
            (v, *ver),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    eprintln!(
        "{want}: {} objects back {:?} after killing server {}",
        want_objects.len(),
        started.elapsed(),
        victim + 1
    );
    // The survivors own every tablet and keep taking writes.
    let dead = servers[victim].1.clone();
    assert!(c.tablets(t).unwrap().iter().all(|tb| tb.master != dead));
    for i in 0..50 {
        let k = format!("after-{i}").into_bytes();
        c.write(t, &k, &value(i, 2000)).unwrap();
        assert_eq!(c.read(t, &k).unwrap().value, value(i, 2000));
    }
}

/// `--listen` alternatives: one that cannot start is skipped (the server serves on the next and
/// `status` says why); `--require-bypass` refuses to start instead. The DPDK alternative names an
/// interface that does not exist, so it fails with or without the `dpdk` feature.
#[test]
fn listen_alternatives_fall_back_and_require_bypass_refuses() {
    let dir = tempdir("fallback");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let broken = "dpdk:vdev=af_packet,iface=fcnosuchif0,huge=0,mem=128";
    let listen = format!("{broken};tcp:host=127.0.0.1,port=0");
    let lf = dir.join("s1.locator");
    let lfs = lf.to_str().unwrap();
    let base = [
        "server",
        "--coordinator",
        &coord,
        "--memory",
        "48MiB",
        "--replicas",
        "0",
        "--poll",
        "block",
        "--no-pin",
    ];
    let mut args = base.to_vec();
    args.extend(["--listen", &listen, "--locator-file", lfs]);
    let mut s1 = spawn("s1", &args, &dir);
    let loc = wait_up(&mut s1, &lf, T);
    assert!(loc.starts_with("tcp:"), "{loc}");
    let c = Client::connect(&coord).unwrap();
    let st = c.server_stats(&loc).unwrap();
    assert_eq!(st.transport, "tcp");
    assert!(
        st.transport_choice.starts_with("fallback") && st.transport_choice.contains("fcnosuchif0"),
        "{}",
        st.transport_choice
    );
    let status = std::process::Command::new(BIN)
        .args(["status", "--coordinator", &coord])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("tcp (fallback; failed: dpdk:"),
        "status shows the choice and why:\n{text}"
    );

    // --require-bypass: the failing DPDK alternative is fatal, and so is a locator without any.
    for l in [listen.as_str(), "tcp:host=127.0.0.1,port=0"] {
        let mut args = base.to_vec();
        args.extend(["--listen", l, "--require-bypass"]);
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started with --require-bypass on {l}"
        );
        assert!(
            err.contains("--require-bypass"),
            "the error names the flag: {err}"
        );
    }
}
