//! Bad input against real stores, each refused at the right moment with a clear error:
//! wrong Swift credentials and a missing S3 bucket when the table is created (the servers'
//! `CheckBacking`), a key the store cannot take when it is written (`STORE_REJECTED`, nothing
//! written), and an object over the table's admission limit served but not cached.
//!
//! Real processes; Swift and moto from the test kit (SKIP when not installed unless
//! `FAASCACHE_REQUIRE` names them).

mod cluster_util;

use std::process::Command;
use std::time::Duration;

use cluster_util::*;
use faascache_client::{Client, ClientOptions, Error};
use faascache_objstore::{ClientOptions as StoreOptions, PutMeta, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

fn client(coord: &str) -> Client {
    Client::connect_with(
        coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap()
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// `faascache table create NAME --backing URL`: exit status and stderr.
fn cli_create(coord: &str, name: &str, url: &str) -> (bool, String) {
    let o = Command::new(BIN)
        .args([
            "table",
            "create",
            name,
            "--backing",
            url,
            "--coordinator",
            coord,
        ])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn wrong_swift_credentials_are_refused_at_create() {
    let Some(env) =
        faascache_testkit::stores::swift("wrong_swift_credentials_are_refused_at_create")
    else {
        return;
    };
    let dir = tempdir("bad-swift");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let env_vars = [
        ("ST_AUTH", env.var("ST_AUTH")),
        ("ST_USER", env.var("ST_USER")),
        ("ST_KEY", "not-the-key"),
    ];
    let (_s, _) = server_env(&dir, &coord, "s1", &["--replicas", "0"], &env_vars);
    let url = format!(
        "swift://{}/{}",
        env.var("FAASCACHE_SWIFT_CONTAINER"),
        unique("bad")
    );
    let c = client(&coord);
    match c.create_backed_table("t", 1, &TableBacking::new(&url, WritePolicy::WriteBack)) {
        Err(Error::StoreRejected(d)) => eprintln!("refused: {d}"),
        other => panic!("wrong ST_KEY: expected StoreRejected, got {other:?}"),
    }
    assert!(matches!(c.table_config("t"), Err(Error::NoSuchTable(_))));
    let (ok, err) = cli_create(&coord, "t", &url);
    assert!(!ok && !err.trim().is_empty(), "{err}");
    assert!(!err.contains("not-the-key"), "a secret in an error: {err}");
    eprintln!("cli: {err}");
    assert!(matches!(c.table_config("t"), Err(Error::NoSuchTable(_))));
}

#[test]
fn bad_input_on_moto() {
    let Some(env) = faascache_testkit::stores::moto("bad_input_on_moto") else {
        return;
    };
    let vars = moto_vars(env);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("bad-moto");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (_s, loc) = server_env(&dir, &coord, "s1", &["--replicas", "0"], &pairs);
    let c = client(&coord);

    // No such bucket: refused at create, naming it.
    let missing = format!("s3://{}/p", unique("no-such-bucket"));
    match c.create_backed_table("t", 1, &TableBacking::new(&missing, WritePolicy::WriteBack)) {
        Err(Error::StoreRejected(d)) => {
            eprintln!("missing bucket: {d}");
            assert!(d.contains("no-such-bucket"), "{d}");
        }
        other => panic!("missing bucket: expected StoreRejected, got {other:?}"),
    }
    let (ok, err) = cli_create(&coord, "t", &missing);
    assert!(!ok && err.contains("no-such-bucket"), "{err}");
    assert!(matches!(c.table_config("t"), Err(Error::NoSuchTable(_))));

    let url = format!(
        "s3://{}/{}",
        env.var("FAASCACHE_MOTO_BUCKET"),
        unique("bad")
    );
    let mut backing = TableBacking::new(&url, WritePolicy::WriteBack);
    backing.admit_max_bytes = 64 << 10;
    let t = c.create_backed_table("t", 1, &backing).unwrap();

    // Keys the store cannot take: refused at the write, nothing written.
    for key in [&b"a//b"[..], b"/lead", b"trail/", b"dot/../x", b"\xff\xfe"] {
        match c.write(t, key, b"v") {
            Err(Error::StoreRejected(d)) => assert!(d.contains("nothing was written"), "{d}"),
            other => panic!("key {key:?}: expected StoreRejected, got {other:?}"),
        }
    }
    let stats = c.server_stats(&loc).unwrap().cache;
    assert_eq!(stats.dirty_objects, 0, "{stats:?}");
    c.write(t, b"good/key", b"v").unwrap();
    c.flush(t, None, Duration::from_secs(30)).unwrap();

    // Over the admission limit: served every time, never cached; under it: cached.
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(&url, &settings, &StoreOptions::default()).unwrap();
    let big: Vec<u8> = (0..100 << 10).map(|i| (i % 251) as u8).collect();
    let small: Vec<u8> = (0..1 << 10).map(|i| (i % 13) as u8).collect();
    store
        .put("big", big.clone().into(), &PutMeta::default())
        .unwrap();
    store
        .put("small", small.clone().into(), &PutMeta::default())
        .unwrap();
    let before = c.server_stats(&loc).unwrap().cache;
    for _ in 0..3 {
        assert!(c.read(t, b"big").unwrap().value == big);
        assert_eq!(c.read(t, b"small").unwrap().value, small);
    }
    let after = c.server_stats(&loc).unwrap().cache;
    eprintln!("before {before:?}\nafter {after:?}");
    assert_eq!(after.not_admitted - before.not_admitted, 3, "{after:?}");
    // big: three store reads; small: one miss, then two hits.
    assert_eq!(after.store_reads - before.store_reads, 4, "{after:?}");
    assert!(after.hits - before.hits >= 2, "{after:?}");
}

/// The status code of an unsigned request to moto (it checks no signatures).
fn moto_http(endpoint: &str, method: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

/// The bucket removed after the table was created: writes are still acknowledged (write-back),
/// the flush times out naming the missing bucket, nothing is dropped, and once the bucket is
/// back the queue drains and the store holds every value.
#[test]
fn a_bucket_removed_after_create_loses_nothing() {
    let Some(env) = faascache_testkit::stores::moto("a_bucket_removed_after_create_loses_nothing")
    else {
        return;
    };
    let vars = moto_vars(env);
    let endpoint = env.var("FAASCACHE_MOTO_ENDPOINT");
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("bad-gone");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (_s, loc) = server_env(&dir, &coord, "s1", &["--replicas", "0"], &pairs);
    let c = client(&coord);
    let bucket = unique("gone");
    assert_eq!(moto_http(endpoint, "PUT", &format!("/{bucket}")), 200);
    let url = format!("s3://{bucket}/p");
    let t = c
        .create_backed_table("t", 1, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    assert_eq!(moto_http(endpoint, "DELETE", &format!("/{bucket}")), 204);
    for k in 0..20 {
        c.write(t, format!("k/{k}").as_bytes(), format!("v{k}").as_bytes())
            .unwrap();
    }
    match c.flush(t, None, Duration::from_secs(3)) {
        Err(Error::Timeout { cause: d, .. }) => {
            eprintln!("flush without the bucket: {d}");
            assert!(d.contains("still dirty") && d.contains(&bucket), "{d}");
        }
        other => panic!("flush without the bucket: expected Timeout, got {other:?}"),
    }
    let stats = c.server_stats(&loc).unwrap().cache;
    assert_eq!(stats.dirty_objects, 20, "{stats:?}");
    assert!(stats.last_error.contains(&bucket), "{stats:?}");

    assert_eq!(moto_http(endpoint, "PUT", &format!("/{bucket}")), 200);
    let back = std::time::Instant::now();
    eventually(Duration::from_secs(90), || {
        c.flush(t, None, Duration::from_secs(40))
            .map_err(|e| format!("flush: {e}"))
    });
    eprintln!(
        "bucket back: drained in {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(&url, &settings, &StoreOptions::default()).unwrap();
    for k in 0..20 {
        match store.get(&format!("k/{k}"), None).unwrap() {
            faascache_objstore::GetResult::Found { body, .. } => {
                assert_eq!(&body[..], format!("v{k}").as_bytes())
            }
            _ => panic!("k/{k} is not in the store"),
        }
    }
}
