//! The object-store clients against real stores: Swift through its S3 API (`s3api`), Swift's
//! native API (tempauth), and moto's S3 server — started by `scripts/swift.sh` and
//! `scripts/moto.sh` through the test kit (SKIP when not installed, FAIL when
//! `FAASCACHE_REQUIRE` names `swift`/`moto`).

mod common;

use std::io::Read;

use bytes::Bytes;
use common::{pattern, unique_prefix, Backend};
use faascache_objstore::{Error, GetResult, GetStream, ObjectStore, Payload, PutMeta};

const MIB: usize = 1 << 20;

fn meta_with(ct: &str, pairs: &[(&str, &str)]) -> PutMeta {
    PutMeta {
        content_type: Some(ct.into()),
        user_meta: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn round_trip(b: Backend) {
    let test = format!("round_trip_{}", b.name());
    let Some(s) = b.open(&test) else { return };
    s.check().unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    let meta = meta_with(
        "image/png",
        &[("Width", "640"), ("colour-space", "sRGB IEC61966-2.1")],
    );
    let put = s.put("cat.png", b"meow".to_vec().into(), &meta).unwrap();
    let GetResult::Found { body, meta: got } = s.get("cat.png", None).unwrap() else {
        panic!("{}: the object just written is missing", b.name())
    };
    assert_eq!(&body[..], b"meow");
    assert_eq!(got.etag, put.etag, "{}", b.name());
    assert_eq!(got.len, 4);
    assert_eq!(
        got.content_type.as_deref(),
        Some("image/png"),
        "{}",
        b.name()
    );
    assert_eq!(
        got.user_meta.get("width").map(String::as_str),
        Some("640"),
        "{}: {:?}",
        b.name(),
        got.user_meta
    );
    assert_eq!(
        got.user_meta.get("colour-space").map(String::as_str),
        Some("sRGB IEC61966-2.1")
    );
    assert!(got.last_modified.is_some());
    // HEAD has the same metadata, no body.
    let head = s.head("cat.png").unwrap().expect("head finds the object");
    assert_eq!(
        (head.etag.clone(), head.len, head.user_meta.clone()),
        (got.etag.clone(), 4, got.user_meta.clone())
    );
    assert_eq!(head.content_type.as_deref(), Some("image/png"));
    // Conditional GET: 304 while unchanged, the new object once overwritten.
    assert_eq!(
        s.get("cat.png", Some(&put.etag)).unwrap(),
        GetResult::NotModified,
        "{}",
        b.name()
    );
    assert!(matches!(
        s.get_stream("cat.png", Some(&put.etag)).unwrap(),
        GetStream::NotModified
    ));
    let put2 = s
        .put("cat.png", b"purr".to_vec().into(), &PutMeta::default())
        .unwrap();
    assert_ne!(put2.etag, put.etag);
    match s.get("cat.png", Some(&put.etag)).unwrap() {
        GetResult::Found { body, meta } => {
            assert_eq!(&body[..], b"purr");
            assert_eq!(meta.etag, put2.etag);
            assert!(
                meta.user_meta.is_empty(),
                "an overwrite replaces the metadata"
            );
        }
        other => panic!("{}: {other:?}", b.name()),
    }
    // Missing objects are answers, deletes are idempotent.
    assert_eq!(s.get("no-such-key", None).unwrap(), GetResult::NotFound);
    assert!(matches!(
        s.get_stream("no-such-key", None).unwrap(),
        GetStream::NotFound
    ));
    assert_eq!(s.head("no-such-key").unwrap(), None);
    s.delete("cat.png").unwrap();
    s.delete("cat.png").unwrap();
    assert_eq!(s.get("cat.png", None).unwrap(), GetResult::NotFound);
}

fn sizes(b: Backend) {
    let test = format!("sizes_{}", b.name());
    let Some(s) = b.open(&test) else { return };
    for (i, len) in [0, 1, MIB - 1, MIB, MIB + 1].into_iter().enumerate() {
        let data = pattern(len, i as u8);
        let key = format!("size-{len}");
        let put = s
            .put(&key, data.clone().into(), &PutMeta::default())
            .unwrap();
        let GetResult::Found { body, meta } = s.get(&key, None).unwrap() else {
            panic!("{}: {key} missing", b.name())
        };
        assert_eq!(meta.len, len as u64, "{}: {key}", b.name());
        assert_eq!(meta.etag, put.etag);
        assert!(
            body[..] == data[..],
            "{}: {key}: the bytes differ",
            b.name()
        );
        s.delete(&key).unwrap();
    }
    // 64 MiB, uploaded as 64 chunks of 1 MiB (never joined), read back as a stream.
    let chunks: Vec<Bytes> = (0..64).map(|i| Bytes::from(pattern(MIB, i))).collect();
    let put = s
        .put(
            "size-64MiB",
            Payload::from(chunks.clone()),
            &PutMeta::default(),
        )
        .unwrap();
    let GetStream::Found(mut reader) = s.get_stream("size-64MiB", None).unwrap() else {
        panic!("{}: the 64 MiB object is missing", b.name())
    };
    assert_eq!(reader.meta().len, 64 * MIB as u64);
    assert_eq!(reader.meta().etag, put.etag);
    let mut buf = vec![0u8; MIB];
    for (i, want) in chunks.iter().enumerate() {
        reader
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("{}: chunk {i}: {e}", b.name()));
        assert!(buf[..] == want[..], "{}: chunk {i} differs", b.name());
    }
    assert_eq!(reader.read(&mut buf).unwrap(), 0, "no bytes after 64 MiB");
    // And whole, into one buffer.
    let GetResult::Found { body, .. } = s.get("size-64MiB", None).unwrap() else {
        panic!("missing")
    };
    assert_eq!(body.len(), 64 * MIB);
    assert!(body[63 * MIB..] == chunks[63][..]);
    s.delete("size-64MiB").unwrap();
}

fn listing(b: Backend) {
    let test = format!("listing_{}", b.name());
    let Some(s) = b.open(&test) else { return };
    let keys = ["ab", "ab/x", "abc", "b/1", "b/2"];
    for k in keys {
        s.put(k, k.as_bytes().to_vec().into(), &PutMeta::default())
            .unwrap();
    }
    // A string prefix, not a directory: `ab` matches `ab`, `ab/x` and `abc`.
    let p = s.list("ab", None, 10).unwrap();
    let got: Vec<&str> = p.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(got, ["ab", "ab/x", "abc"], "{}", b.name());
    assert_eq!(p.next, None);
    assert_eq!(p.entries[1].len, 4);
    // Pages of two, in key order, over everything under the store's prefix.
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..5 {
        let page = s.list("", after.as_deref(), 2).unwrap();
        assert!(page.entries.len() <= 2);
        all.extend(page.entries.iter().map(|e| e.key.clone()));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(all, keys, "{}", b.name());
    assert!(s.list("zzz", None, 10).unwrap().entries.is_empty());
    assert!(matches!(s.list("", None, 0), Err(Error::Config(_))));
    for k in keys {
        s.delete(k).unwrap();
    }
}

fn bad_input(b: Backend) {
    let test = format!("bad_input_{}", b.name());
    let Some(env) = b.env(&test) else { return };
    let (user, key) = b.credentials(env);
    let prefix = unique_prefix(&test);
    let s = b.open_as(env, &b.bucket(env), &prefix, &user, &key);
    // Invalid keys are refused before anything is sent.
    for bad in [
        String::new(),
        "a//b".into(),
        "k".repeat(1100),
        "x/../y".into(),
    ] {
        let e = s
            .put(&bad, Bytes::new().into(), &PutMeta::default())
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidKey { .. }),
            "{}: {bad:?}: {e}",
            b.name()
        );
        assert!(matches!(s.get(&bad, None), Err(Error::InvalidKey { .. })));
    }
    let e = s
        .put(
            "k",
            Bytes::new().into(),
            &meta_with("text/plain", &[("bad name", "v")]),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidMetadata { .. }), "{e}");
    // A missing bucket/container: check, put and list say so.
    let missing = b.open_as(env, "faascache-no-such-bucket", &prefix, &user, &key);
    for e in [
        missing.check().unwrap_err(),
        missing
            .put("k", b"v".to_vec().into(), &PutMeta::default())
            .unwrap_err(),
        missing.list("", None, 10).unwrap_err(),
    ] {
        assert!(matches!(e, Error::NoSuchBucket { .. }), "{}: {e}", b.name());
        assert!(e.to_string().contains("faascache-no-such-bucket"), "{e}");
        assert!(!e.is_retryable());
    }
    if b == Backend::Moto {
        println!(
            "NOTE: {test}: moto accepts any credentials; wrong credentials are tested on Swift"
        );
        return;
    }
    // Wrong credentials.
    let wrong = b.open_as(env, &b.bucket(env), &prefix, &user, "not-the-key");
    for e in [
        wrong.check().unwrap_err(),
        wrong.get("k", None).unwrap_err(),
        wrong
            .put("k", b"v".to_vec().into(), &PutMeta::default())
            .unwrap_err(),
    ] {
        assert!(
            matches!(e, Error::BadCredentials { .. }),
            "{}: {e}",
            b.name()
        );
        assert!(
            !e.to_string().contains("not-the-key"),
            "the secret leaked: {e}"
        );
    }
    // Valid credentials without rights on the container.
    let reader = b.open_as(
        env,
        &b.bucket(env),
        &prefix,
        env.var("FAASCACHE_SWIFT_READER_USER"),
        env.var("FAASCACHE_SWIFT_READER_KEY"),
    );
    let e = reader
        .put("k", b"v".to_vec().into(), &PutMeta::default())
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{}: {e}", b.name());
}

macro_rules! per_backend {
    ($($name:ident => $f:ident($b:expr);)*) => { $( #[test] fn $name() { $f($b) } )* };
}

per_backend! {
    round_trip_swift_s3 => round_trip(Backend::SwiftS3);
    round_trip_swift_native => round_trip(Backend::SwiftNative);
    round_trip_moto => round_trip(Backend::Moto);
    sizes_swift_s3 => sizes(Backend::SwiftS3);
    sizes_swift_native => sizes(Backend::SwiftNative);
    sizes_moto => sizes(Backend::Moto);
    listing_swift_s3 => listing(Backend::SwiftS3);
    listing_swift_native => listing(Backend::SwiftNative);
    listing_moto => listing(Backend::Moto);
    bad_input_swift_s3 => bad_input(Backend::SwiftS3);
    bad_input_swift_native => bad_input(Backend::SwiftNative);
    bad_input_moto => bad_input(Backend::Moto);
}

#[test]
fn the_backends_are_all_named() {
    assert_eq!(Backend::ALL.len(), 3);
}
