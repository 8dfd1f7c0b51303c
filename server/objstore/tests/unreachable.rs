//! Stores that cannot be reached or do not answer: typed, retryable errors within the
//! configured timeout, for both network backends (no store needs to be installed).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use faascache_objstore::config::{S3Settings, SwiftSettings};
use faascache_objstore::{
    ClientOptions, Error, ObjectStore, PutMeta, S3Store, Secret, StoreUrl, SwiftStore,
};

fn s3(endpoint: String, options: &ClientOptions) -> S3Store {
    let s = S3Settings {
        endpoint: Some(endpoint),
        access_key_id: Some("id".into()),
        secret_access_key: Some(Secret::new("secret")),
        ..Default::default()
    };
    S3Store::new("s3://bucket/p".parse::<StoreUrl>().unwrap(), &s, options).unwrap()
}

fn swift(auth: String, options: &ClientOptions) -> SwiftStore {
    let s = SwiftSettings {
        auth_url: Some(auth),
        user: Some("a:b".into()),
        key: Some(Secret::new("k")),
        ..Default::default()
    };
    SwiftStore::new("swift://c/p".parse::<StoreUrl>().unwrap(), &s, options).unwrap()
}

#[test]
fn a_refused_connection_is_unavailable_and_retryable() {
    let closed = faascache_testkit::closed_port();
    let options = ClientOptions::default();
    let stores: [Box<dyn ObjectStore>; 2] = [
        Box::new(s3(format!("http://127.0.0.1:{}", closed.port), &options)),
        Box::new(swift(
            format!("http://127.0.0.1:{}/auth/v1.0", closed.port),
            &options,
        )),
    ];
    for s in &stores {
        for e in [
            s.check().unwrap_err(),
            s.get("k", None).unwrap_err(),
            s.put("k", b"v".to_vec().into(), &PutMeta::default())
                .unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    Error::Unavailable {
                        retryable: true,
                        ..
                    }
                ),
                "{}: {e}",
                s.describe()
            );
            assert!(e.is_retryable());
        }
    }
}

#[test]
fn a_silent_store_times_out() {
    // Accepts connections (the kernel does, from its backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        s3_retries: 0,
        ..Default::default()
    };
    let stores: [Box<dyn ObjectStore>; 2] = [
        Box::new(s3(format!("http://127.0.0.1:{port}"), &options)),
        Box::new(swift(
            format!("http://127.0.0.1:{port}/auth/v1.0"),
            &options,
        )),
    ];
    for s in &stores {
        let t = Instant::now();
        let e = s.head("k").unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{}: {e}", s.describe());
        assert!(e.is_retryable());
        // Bounded by the timeout (plus scheduling slack on a loaded machine), not hung.
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
    drop(silent);
}
