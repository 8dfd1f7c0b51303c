//! Write-back, write-through and flush with real processes against real stores: moto's S3
//! server and Swift's native API (started by the test kit; SKIP when not installed).

mod cluster_util;

use std::time::Duration;

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, ObjectStore, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

fn stored(s: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    match s.get(key, None).unwrap() {
        GetResult::Found { body, .. } => Some(body.to_vec()),
        _ => None,
    }
}

/// One server whose environment is `vars`; tables backed by `base/<unique>`.
fn run(tag: &str, vars: &[(&str, String)], base: &str) {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir(tag);
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (_s, _) = server_env(&dir, &coord, "s1", &["--replicas", "0"], &pairs);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("{base}/{tag}-{}-{nanos}", std::process::id());
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(&url, &settings, &StoreOptions::default()).unwrap();
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let wb = c
        .create_backed_table("wb", 1, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    let wt = c
        .create_backed_table("wt", 1, &TableBacking::new(&url, WritePolicy::WriteThrough))
        .unwrap();
    // Write-through: in the store when the write returns.
    c.write(wt, b"through/a", b"now").unwrap();
    assert_eq!(
        stored(&*store, "through/a").as_deref(),
        Some(&b"now"[..]),
        "{tag}"
    );
    // Write-back: overwritten, then flushed; the store ends with the last value.
    for round in 0..3u8 {
        for k in 0..20 {
            c.write(wb, format!("back/{k}").as_bytes(), &[round; 300])
                .unwrap();
        }
    }
    c.remove(wb, b"back/0").unwrap();
    c.flush(wb, None, Duration::from_secs(30)).unwrap();
    assert_eq!(
        stored(&*store, "back/0"),
        None,
        "{tag}: the removal reached the store"
    );
    for k in 1..20 {
        assert_eq!(
            stored(&*store, &format!("back/{k}")),
            Some(vec![2; 300]),
            "{tag}: back/{k}"
        );
    }
    // Flush of one key that is clean already: nothing to wait for.
    assert_eq!(
        c.flush(wb, Some(b"back/1"), Duration::from_secs(5))
            .unwrap()
            .objects,
        0
    );
}

#[test]
fn write_back_and_write_through_on_moto() {
    let Some(env) = faascache_testkit::stores::moto("write_back_and_write_through_on_moto") else {
        return;
    };
    let vars = vec![
        (
            "AWS_ENDPOINT_URL",
            env.var("FAASCACHE_MOTO_ENDPOINT").to_string(),
        ),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    run(
        "moto",
        &vars,
        &format!("s3://{}", env.var("FAASCACHE_MOTO_BUCKET")),
    );
}

#[test]
fn write_back_and_write_through_on_swift() {
    let Some(env) = faascache_testkit::stores::swift("write_back_and_write_through_on_swift")
    else {
        return;
    };
    let vars = vec![
        ("ST_AUTH", env.var("ST_AUTH").to_string()),
        ("ST_USER", env.var("ST_USER").to_string()),
        ("ST_KEY", env.var("ST_KEY").to_string()),
    ];
    run(
        "swift",
        &vars,
        &format!("swift://{}", env.var("FAASCACHE_SWIFT_CONTAINER")),
    );
}
