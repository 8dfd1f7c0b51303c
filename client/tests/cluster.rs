//! The client against a real cluster: a coordinator and two masters from `faascache-server`,
//! in this process, over TCP on 127.0.0.1 (ports picked by the OS). Covers every public
//! operation, tables spread over both masters, multi-ops across masters, enumeration across
//! tablets, pipelined operations, error mapping, and the tablet-map refresh after a tablet
//! moves to another master.

use std::sync::Arc;
use std::time::Duration;

use faascache_client::{
    Client, ClientOptions, Error, ReadOptions, RejectRules, WriteItem, WriteOptions,
};
use faascache_testkit::inproc::{cluster, Cluster};

use faascache_protocol::msg::coordinator::MigrateTabletRequest;
use faascache_protocol::msg::coordinator::SplitTabletRequest;
use faascache_protocol::msg::{self, ServerId};

fn client(c: &Cluster) -> Client {
    Client::connect_with(
        &c.locator(),
        ClientOptions::default().timeout(Duration::from_secs(10)),
    )
    .expect("client connects")
}

#[test]
fn single_object_operations() {
    let c = cluster(1);
    let cl = client(&c);
    let servers = cl.servers().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].status, "up");
    assert!(servers[0].services.contains("master"));

    let t = cl.create_table("users", 1).unwrap();
    assert_eq!(
        cl.create_table("users", 1).unwrap(),
        t,
        "create is idempotent"
    );
    assert_eq!(cl.table_id("users").unwrap(), t);
    assert!(matches!(cl.table_id("nope"), Err(Error::NoSuchTable(n)) if n == "nope"));

    assert_eq!(cl.read(t, b"alice"), Err(Error::NoSuchObject));
    let v1 = cl.write(t, b"alice", b"42").unwrap();
    let o = cl.read(t, b"alice").unwrap();
    assert_eq!((o.value.as_slice(), o.version), (&b"42"[..], v1));
    let v2 = cl.write(t, b"alice", b"43").unwrap();
    assert!(v2 > v1);

    // Conditional operations.
    let cas = WriteOptions::default().reject(RejectRules::version_is(v1));
    assert_eq!(
        cl.write_with(t, b"alice", b"x", &cas),
        Err(Error::VersionMismatch { current: v2 })
    );
    let create = WriteOptions::default().reject(RejectRules::must_not_exist());
    assert!(matches!(
        cl.write_with(t, b"alice", b"x", &create),
        Err(Error::ObjectExists)
    ));
    assert!(cl.write_with(t, b"bob", b"1", &create).is_ok());
    let newer = ReadOptions::default().reject(RejectRules {
        version_le_given: true,
        given_version: v2,
        ..RejectRules::NONE
    });
    assert!(matches!(
        cl.read_with(t, b"alice", &newer),
        Err(Error::VersionMismatch { .. })
    ));

    // Increments.
    assert_eq!(cl.increment_i64(t, b"n", 5).unwrap().0, 5);
    assert_eq!(cl.increment_i64(t, b"n", -7).unwrap().0, -2);
    assert_eq!(cl.increment_f64(t, b"f", 0.5).unwrap().0, 0.5);
    assert_eq!(cl.increment_i64(t, b"alice", 1), Err(Error::NotANumber));
    assert_eq!(
        cl.read(t, b"n").unwrap().value,
        (-2i64).to_le_bytes().to_vec()
    );

    // Removes.
    assert_eq!(cl.remove(t, b"alice").unwrap(), Some(v2));
    assert_eq!(cl.remove(t, b"alice").unwrap(), None);
    assert_eq!(cl.read(t, b"alice"), Err(Error::NoSuchObject));
    assert!(matches!(
        cl.remove_with(
            t,
            b"bob",
            &WriteOptions::default().reject(RejectRules::version_is(999))
        ),
        Err(Error::VersionMismatch { .. })
    ));

    // Limits are checked before sending.
    assert!(matches!(
        cl.write(t, b"", b"v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        cl.write(t, b"k", &vec![0; msg::MAX_VALUE_LEN + 1]),
        Err(Error::TooLarge { what: "value", .. })
    ));

    // Tables.
    let listed = cl.list_tables().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "users");
    cl.drop_table("users").unwrap();
    assert!(matches!(cl.read(t, b"bob"), Err(Error::NoSuchTable(_))));
    assert!(matches!(cl.drop_table("users"), Err(Error::NoSuchTable(_))));
    assert!(cl.list_tables().unwrap().is_empty());
    drop(c);
}

#[test]
fn multi_ops_and_enumeration_span_masters() {
    let c = cluster(2);
    let cl = client(&c);
    let t = cl.create_table("spread", 2).unwrap();
    let tablets = cl.tablets(t).unwrap();
    assert_eq!(tablets.len(), 2);
    assert_ne!(
        tablets[0].master, tablets[1].master,
        "one tablet per master"
    );

    let keys: Vec<Vec<u8>> = (0..250)
        .map(|i| format!("key{i:04}").into_bytes())
        .collect();
    let values: Vec<Vec<u8>> = (0..250).map(|i| format!("value{i}").into_bytes()).collect();
    let items: Vec<WriteItem<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| WriteItem::new(t, k, v))
        .collect();
    let written = cl.multi_write(&items);
    assert!(written.iter().all(|r| r.is_ok()), "{written:?}");

    let mut reads: Vec<(u64, &[u8])> = keys.iter().map(|k| (t, k.as_slice())).collect();
    reads.push((t, b"missing"));
    let got = cl.multi_read(&reads);
    assert_eq!(got.len(), 251);
    for (i, r) in got[..250].iter().enumerate() {
        let o = r.as_ref().unwrap();
        assert_eq!(o.value, values[i]);
        assert_eq!(Some(o.version), written[i].clone().ok());
    }
    assert_eq!(got[250], Err(Error::NoSuchObject));

    // Both masters hold some of the keys.
    let per_tablet: Vec<usize> = tablets
        .iter()
        .map(|tb| {
            keys.iter()
                .filter(|k| tb.contains(faascache_client::key_hash(k)))
                .count()
        })
        .collect();
    assert!(per_tablet.iter().all(|&n| n > 0), "{per_tablet:?}");

    // Enumeration sees each object exactly once.
    let mut seen: Vec<Vec<u8>> = cl.enumerate(t).map(|e| e.unwrap().key).collect();
    seen.sort();
    assert_eq!(seen, keys);

    // Multi-remove: half of them, then one that is gone.
    let rm: Vec<(u64, &[u8])> = keys.iter().step_by(2).map(|k| (t, k.as_slice())).collect();
    assert!(cl
        .multi_remove(&rm)
        .iter()
        .all(|r| matches!(r, Ok(Some(_)))));
    assert_eq!(cl.multi_remove(&rm[..1]), vec![Ok(None)]);
    assert_eq!(cl.enumerate(t).count(), 125);

    // Pipelined single operations.
    let pending: Vec<_> = keys
        .iter()
        .map(|k| cl.write_async(t, k, b"p").unwrap())
        .collect();
    for p in pending {
        p.wait().unwrap();
    }
    let pending: Vec<_> = keys.iter().map(|k| cl.read_async(t, k).unwrap()).collect();
    for p in pending {
        assert_eq!(p.wait().unwrap().value, b"p");
    }
    assert!(cl
        .remove_async(t, &keys[0])
        .unwrap()
        .wait()
        .unwrap()
        .is_some());
    drop(c);
}

#[test]
fn enumerate_page_walks_the_same_objects_as_enumerate() {
    let c = cluster(2);
    let cl = client(&c);
    let t = cl.create_table("paged", 2).unwrap();
    // 768 KiB of values (3 x the client's 256 KiB batch) over two tablets: several pages each.
    let keys: Vec<Vec<u8>> = (0..96).map(|i| format!("p{i:03}").into_bytes()).collect();
    let value = vec![7u8; 8 * 1024];
    for chunk in keys.chunks(16) {
        let items: Vec<WriteItem<'_>> =
            chunk.iter().map(|k| WriteItem::new(t, k, &value)).collect();
        assert!(cl.multi_write(&items).iter().all(|r| r.is_ok()));
    }

    let (mut paged, mut pages, mut from) = (Vec::new(), 0, Some(0u64));
    while let Some(f) = from {
        let page = cl.enumerate_page(t, f).unwrap();
        for e in &page.entries {
            let h = faascache_client::key_hash(&e.key);
            assert!(
                h >= f && page.next.is_none_or(|n| h < n),
                "{h:#x} outside the page"
            );
        }
        assert!(page.next.is_none_or(|n| n > f), "the cursor moves forward");
        pages += 1;
        assert!(pages < 1000, "paging does not end");
        paged.extend(page.entries);
        from = page.next;
    }
    assert!(pages > 2, "more than one page per tablet: {pages}");
    let mut whole: Vec<_> = cl.enumerate(t).map(|e| e.unwrap()).collect();
    let key_of = |e: &faascache_client::Entry| e.key.clone();
    paged.sort_by_key(key_of);
    whole.sort_by_key(key_of);
    assert_eq!(paged, whole, "the same objects, each once");
    assert_eq!(paged.iter().map(key_of).collect::<Vec<_>>(), keys);

    // Resuming anywhere: the objects from that key hash on.
    let mid = 1u64 << 62;
    let mut tail = Vec::new();
    let mut from = Some(mid);
    while let Some(f) = from {
        let page = cl.enumerate_page(t, f).unwrap();
        tail.extend(page.entries.into_iter().map(|e| e.key));
        from = page.next;
    }
    tail.sort();
    let want: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| faascache_client::key_hash(k) >= mid)
        .cloned()
        .collect();
    assert_eq!(tail, want);
    // The last hash is a valid start; an unknown table is an error, not a panic.
    assert!(cl.enumerate_page(t, u64::MAX).is_ok());
    assert!(cl.enumerate_page(t + 1000, 0).is_err());
    drop(c);
}

#[test]
fn tablet_moves_are_followed() {
    let c = cluster(2);
    let cl = client(&c);
    let t = cl.create_table("moving", 1).unwrap();
    for i in 0..100 {
        cl.write(t, format!("k{i}").as_bytes(), b"v").unwrap();
    }
    let before = cl.tablets(t).unwrap();
    assert_eq!(before.len(), 1);
    // A second client caches the map before the move and enumerates only after it.
    let stale = client(&c);
    assert_eq!(stale.tablets(t).unwrap().len(), 1);

    // Another handle (the operator) splits the tablet and moves the upper half elsewhere.
    let admin = faascache_transport::connect(
        &c.locator().parse().unwrap(),
        faascache_transport::ClientConfig::default(),
    )
    .unwrap();
    let split = 1u64 << 63;
    faascache_transport::call(
        &admin,
        &SplitTabletRequest {
            table_id: t,
            split_hash: split,
        },
        Duration::from_secs(5),
        |_| (),
    )
    .unwrap();
    let target = c
        .nodes
        .iter()
        .map(|n| n.master().server_id())
        .find(|id| id.0 != before[0].server_id)
        .expect("another master");
    faascache_transport::call(
        &admin,
        &MigrateTabletRequest {
            table_id: t,
            start_hash: split,
            end_hash: u64::MAX,
            target: ServerId(target.0),
        },
        Duration::from_secs(30),
        |_| (),
    )
    .unwrap();

    // Enumeration with the old map cached follows the split and the move.
    let mut keys: Vec<Vec<u8>> = stale.enumerate(t).map(|e| e.unwrap().key).collect();
    keys.sort();
    let mut want: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
    want.sort();
    assert_eq!(keys, want, "each object exactly once");

    // The client still has the old map cached: it must follow the move.
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(cl.read(t, k.as_bytes()).unwrap().value, b"v", "{k}");
        cl.write(t, k.as_bytes(), b"w").unwrap();
    }
    let after = cl.tablets(t).unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[1].server_id, target.0);
    assert_eq!(cl.enumerate(t).count(), 100);
    let shared = Arc::new(cl);
    let threads: Vec<_> = (0..4)
        .map(|th| {
            let cl = shared.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    cl.increment_i64(t, b"counter", 1).unwrap();
                    cl.write(t, format!("t{th}-{i}").as_bytes(), b"x").unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(shared.increment_i64(t, b"counter", 0).unwrap().0, 200);
    drop(c);
}

#[test]
fn unreachable_cluster_is_reported() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = Client::connect(&format!("tcp:host=127.0.0.1,port={port}")).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("coordinator"), "{e}");
    assert!(matches!(
        Client::connect("nonsense"),
        Err(Error::BadLocator(_))
    ));
}

/// `write_object`, `head_object` and range reads against a real master, on an ephemeral backed
/// table (no store needed); `write_object` on a plain table is refused.
#[test]
fn objects_with_metadata_on_an_ephemeral_table() {
    use faascache_client::{ObjectMeta, TableBacking, WritePolicy};
    let c = cluster(1);
    let cl = client(&c);
    let t = cl
        .create_backed_table("scratch", 1, &TableBacking::new("", WritePolicy::Ephemeral))
        .unwrap();
    let meta = ObjectMeta {
        etag: "abc".into(),
        content_type: "application/json".into(),
        last_modified_ms: 0,
        user: vec![("Owner".into(), "me".into())],
    };
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let v = cl.write_object(t, b"o.json", &meta, &body).unwrap();
    let (m, len, version) = cl.head_object(t, b"o.json").unwrap();
    assert_eq!((len, version), (body.len() as u64, v));
    assert_eq!(
        (m.etag.as_str(), m.content_type.as_str()),
        ("abc", "application/json")
    );
    assert_eq!(m.user, vec![("owner".to_string(), "me".to_string())]);
    assert!(m.last_modified_ms > 0, "stamped by the master");
    let (m2, data, _) = cl.read_object(t, b"o.json").unwrap();
    assert_eq!((m2, data), (m.clone(), body.clone()));
    let mut out = Vec::new();
    let info = cl
        .read_object_range_to(t, b"o.json", 1000, Some(5000), &mut out)
        .unwrap();
    assert_eq!(out, &body[1000..6000]);
    assert_eq!(
        (info.len, info.total_len, info.version),
        (5000, body.len() as u64, v)
    );
    assert!(matches!(
        cl.read_object_range_to(t, b"o.json", body.len() as u64 + 1, None, &mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(cl.head_object(t, b"none").unwrap_err(), Error::NoSuchObject);
    // Conditional: create-only.
    let create = WriteOptions::default().reject(RejectRules::must_not_exist());
    assert!(matches!(
        cl.write_object_with(t, b"o.json", &meta, b"x", &create),
        Err(Error::ObjectExists)
    ));
    // Refused before sending: metadata over the protocol's limits.
    let mut long = meta.clone();
    long.etag = "e".repeat(5000);
    assert!(matches!(
        cl.write_object(t, b"k", &long, b"x"),
        Err(Error::InvalidArgument(_))
    ));
    // A plain table.
    let plain = cl.create_table("plain", 1).unwrap();
    let e = cl.write_object(plain, b"k", &meta, b"x").unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(d) if d.contains("WriteObject needs a table backed")),
        "{e}"
    );
}

/// Values above 1 MiB on a backed table (ephemeral: no store needed), written in chunks and
/// committed, with replication: `write` and `write_object` take them, readers see whole
/// objects, reject rules hold for the commit; a plain table answers `TooLarge`.
#[test]
fn large_objects_are_written_in_chunks() {
    use faascache_client::{ObjectMeta, TableBacking, WritePolicy};
    let c = cluster(2);
    let cl = client(&c);
    let t = cl
        .create_backed_table("big", 2, &TableBacking::new("", WritePolicy::Ephemeral))
        .unwrap();
    let meta = ObjectMeta {
        content_type: "image/png".into(),
        ..ObjectMeta::default()
    };
    for (i, len) in [msg::MAX_VALUE_LEN + 1, 3 << 20, (5 << 20) + 17]
        .into_iter()
        .enumerate()
    {
        let key = format!("o/{i}");
        let body: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
        let v = cl.write_object(t, key.as_bytes(), &meta, &body).unwrap();
        let (m, data, version) = cl.read_object(t, key.as_bytes()).unwrap();
        assert!(data == body, "{len} bytes read back");
        assert_eq!((version, m.content_type.as_str()), (v, "image/png"));
        assert_eq!(cl.read(t, key.as_bytes()).unwrap().value.len(), len);
    }
    // Within 1 MiB but too long for one value with its envelope: `write` goes in chunks.
    let edge = vec![5u8; msg::MAX_VALUE_LEN - 1];
    cl.write(t, b"o/edge", &edge).unwrap();
    assert!(cl.read(t, b"o/edge").unwrap().value == edge);
    // `write` (as the Python client's put) over a large object, then a small one over it.
    let body = vec![9u8; 2 << 20];
    let v = cl.write(t, b"o/0", &body).unwrap();
    let o = cl.read(t, b"o/0").unwrap();
    assert!(o.value == body && o.version == v);
    cl.write(t, b"o/0", b"small").unwrap();
    assert_eq!(cl.read(t, b"o/0").unwrap().value, b"small");
    // Reject rules apply to the commit: nothing changes when refused.
    let create = WriteOptions::default().reject(RejectRules::must_not_exist());
    assert!(matches!(
        cl.write_object_with(t, b"o/1", &meta, &body, &create),
        Err(Error::ObjectExists)
    ));
    assert_eq!(cl.read(t, b"o/1").unwrap().value.len(), 3 << 20);
    // Piece by piece (a gateway's PUT body): odd piece sizes, one chunk in memory.
    let body: Vec<u8> = (0..(2 << 20) + 4321).map(|j| (j % 241) as u8).collect();
    let mut w = cl.object_writer(t, b"o/pieces").unwrap();
    for piece in body.chunks(7_777) {
        w.write(piece).unwrap();
    }
    assert_eq!(w.len(), body.len() as u64);
    let v = w.commit(&meta, &WriteOptions::default()).unwrap();
    let (_, data, version) = cl.read_object(t, b"o/pieces").unwrap();
    assert!(data == body && version == v);
    // Dropped without a commit: no object; a small one is written whole at the commit.
    let mut w = cl.object_writer(t, b"o/dropped").unwrap();
    w.write(&body).unwrap();
    drop(w);
    assert_eq!(cl.read(t, b"o/dropped"), Err(Error::NoSuchObject));
    let mut w = cl.object_writer(t, b"o/tiny").unwrap();
    w.write(b"ab").unwrap();
    w.write(b"c").unwrap();
    w.commit(&meta, &WriteOptions::default()).unwrap();
    assert_eq!(cl.read(t, b"o/tiny").unwrap().value, b"abc");
    // A plain table keeps its 1 MiB limit.
    let plain = cl.create_table("plain", 1).unwrap();
    assert!(matches!(
        cl.write(plain, b"k", &body),
        Err(Error::TooLarge { what: "value", .. })
    ));
}
