//! Streaming writes ([`ObjectStore::put_stream`]) against real stores (Swift's S3 API and
//! native API, moto), started by the test kit like `real_stores.rs`: bytes and metadata come
//! back whole, part boundaries given with `write_part` give S3's multipart ETag of those
//! parts, and an aborted or dropped stream stores nothing.

mod common;

use bytes::Bytes;
use common::{pattern, Backend};
use faascache_objstore::{GetResult, ObjectStore, Payload, PutMeta, PART_SIZE};
use md5::{Digest, Md5};

const MIB: usize = 1 << 20;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// S3's ETag of an object uploaded in `parts`.
fn multipart_etag(parts: &[Vec<u8>]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(Md5::digest(p));
    }
    format!("{}-{}", hex(&h.finalize()), parts.len())
}

fn body_of(s: &dyn ObjectStore, key: &str) -> Option<(Bytes, faascache_objstore::ObjectMeta)> {
    match s.get(key, None).unwrap() {
        GetResult::Found { body, meta } => Some((body, meta)),
        _ => None,
    }
}

fn streaming(b: Backend) {
    let test = format!("streaming_{}", b.name());
    let Some(s) = b.open(&test) else { return };
    let is_s3 = !matches!(b, Backend::SwiftNative);
    let meta = PutMeta {
        content_type: Some("application/x-test".into()),
        user_meta: [("color".to_string(), "blue".to_string())].into(),
    };

    // Within one part: one plain PUT, its ETag the MD5 of the bytes.
    let small = pattern(3 * MIB + 5, 1);
    let mut w = s.put_stream("small", &meta).unwrap();
    for c in small.chunks(MIB) {
        w.write(Bytes::copy_from_slice(c)).unwrap();
    }
    let put = w.finish().unwrap();
    assert_eq!(put.etag.as_str(), md5_hex(&small), "{}", b.name());
    let (body, m) = body_of(&*s, "small").unwrap();
    assert!(body[..] == small[..], "{}: small differs", b.name());
    assert_eq!(m.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(m.user_meta.get("color").map(String::as_str), Some("blue"));

    // Longer than a part, in 1 MiB writes: the store's parts (S3) or one chunked PUT (Swift).
    let big = pattern(2 * PART_SIZE + 3 * MIB, 2);
    let mut w = s.put_stream("big", &meta).unwrap();
    for c in big.chunks(MIB) {
        w.write(Bytes::copy_from_slice(c)).unwrap();
    }
    let put = w.finish().unwrap();
    let (body, m) = body_of(&*s, "big").unwrap();
    assert!(body[..] == big[..], "{}: big differs", b.name());
    assert_eq!(m.etag, put.etag, "{}", b.name());
    assert_eq!(m.user_meta.get("color").map(String::as_str), Some("blue"));
    if is_s3 {
        assert!(
            put.etag.as_str().ends_with("-3"),
            "{}: {:?}",
            b.name(),
            put.etag
        );
    } else {
        assert_eq!(put.etag.as_str(), md5_hex(&big));
    }

    // Parts given: S3's ETag of exactly those parts.
    let parts = vec![pattern(6 * MIB, 3), pattern(5 * MIB, 4), pattern(1000, 5)];
    let mut w = s.put_stream("parts", &PutMeta::default()).unwrap();
    for p in &parts {
        w.write_part(Payload::from(p.clone())).unwrap();
    }
    let put = w.finish().unwrap();
    let all = parts.concat();
    if is_s3 {
        assert_eq!(put.etag.as_str(), multipart_etag(&parts), "{}", b.name());
    } else {
        assert_eq!(put.etag.as_str(), md5_hex(&all));
    }
    let (body, m) = body_of(&*s, "parts").unwrap();
    assert!(body[..] == all[..] && m.etag == put.etag, "{}", b.name());

    // Aborted or dropped after more than a part: nothing stored, the old object stays.
    let mut w = s.put_stream("small", &PutMeta::default()).unwrap();
    for c in big.chunks(MIB).take(PART_SIZE / MIB + 2) {
        w.write(Bytes::copy_from_slice(c)).unwrap();
    }
    w.abort();
    // Aborted right after its last piece, with pieces still queued for the wire: the body must
    // be broken off, not ended (a chunked PUT that ends is a complete object to Swift).
    let mut w = s.put_stream("queued", &PutMeta::default()).unwrap();
    for c in big.chunks(MIB).take(4) {
        w.write(Bytes::copy_from_slice(c)).unwrap();
    }
    w.abort();
    let mut w = s.put_stream("never", &PutMeta::default()).unwrap();
    w.write(Bytes::from(pattern(MIB, 6))).unwrap();
    drop(w);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (body, _) = body_of(&*s, "small").unwrap();
    assert!(
        body[..] == small[..],
        "{}: an abort replaced the object",
        b.name()
    );
    assert!(body_of(&*s, "never").is_none(), "{}", b.name());
    assert!(
        body_of(&*s, "queued").is_none(),
        "{}: an upload aborted with pieces queued was stored",
        b.name()
    );
    for k in ["small", "big", "parts"] {
        s.delete(k).unwrap();
    }
}

#[test]
fn streaming_swift_s3() {
    streaming(Backend::SwiftS3);
}

#[test]
fn streaming_swift_native() {
    streaming(Backend::SwiftNative);
}

#[test]
fn streaming_moto() {
    streaming(Backend::Moto);
}
