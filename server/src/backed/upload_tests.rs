use std::sync::Arc;
use std::time::Duration;

use faascache_objstore::{Faulty, GetResult, MemoryStore, ObjectStore};
use faascache_protocol::msg::faas::ObjectMeta;
use faascache_storage::{EngineConfig, TableOptions};

use super::*;

fn engine() -> Engine {
    let e = Engine::new(EngineConfig {
        memory_bytes: 8 << 20,
        max_memory_bytes: 8 << 20,
        seglet_bytes: 64 * 1024,
        segment_bytes: 1 << 20,
        hash_buckets: Some(1024),
        huge_pages: false,
        log_id: 1,
        background_cleaner: false,
        cleaner_reserve_seglets: None,
        warm_ahead_bytes: 0,
    })
    .unwrap();
    e.create_table(1, TableOptions { evictable: true }).unwrap();
    e
}

fn whole(data: &[u8]) -> Vec<u8> {
    envelope::to_vec(Kind::Whole, 1, &ObjectMeta::default(), data)
}

fn stored(s: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    match s.get(key, None).unwrap() {
        GetResult::Found { body, .. } => Some(body.to_vec()),
        _ => None,
    }
}

#[test]
fn uploads_the_current_value_and_marks_it_clean_with_the_etag() {
    let (e, s, c) = (engine(), MemoryStore::new("b"), Counters::default());
    let v = e
        .write(1, b"k", &whole(b"one"), &RejectRules::NONE)
        .unwrap();
    assert_eq!(upload_one(&e, &s, &c, 1, b"k"), Done::Clean);
    assert_eq!(stored(&s, "k").as_deref(), Some(&b"one"[..]));
    assert_eq!(e.is_dirty(1, b"k").unwrap(), Some(false));
    let mut out = Vec::new();
    assert_eq!(e.read(1, b"k", &RejectRules::NONE, &mut out).unwrap(), v);
    let env = envelope::decode(&out).unwrap();
    assert!(!env.meta.etag.is_empty(), "the store's ETag is kept");
    assert_eq!(env.data, b"one");
    // Clean already: nothing to do.
    assert_eq!(upload_one(&e, &s, &c, 1, b"k"), Done::Clean);
    assert_eq!(c.uploads.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_removal_marker_deletes_then_goes() {
    let (e, s, c) = (engine(), MemoryStore::new("b"), Counters::default());
    e.write(1, b"k", &whole(b"x"), &RejectRules::NONE).unwrap();
    upload_one(&e, &s, &c, 1, b"k");
    let gone = envelope::to_vec(Kind::Deleted, 2, &ObjectMeta::default(), b"");
    e.write(1, b"k", &gone, &RejectRules::NONE).unwrap();
    assert_eq!(upload_one(&e, &s, &c, 1, b"k"), Done::Clean);
    assert_eq!(stored(&s, "k"), None);
    assert_eq!(e.is_dirty(1, b"k").unwrap(), None, "marker removed");
    assert_eq!(upload_one(&e, &s, &c, 1, b"absent"), Done::Clean);
}

#[test]
fn store_failures_keep_the_object_dirty() {
    let (e, c) = (engine(), Counters::default());
    let s = Faulty::new(MemoryStore::new("b"));
    e.write(1, b"k", &whole(b"x"), &RejectRules::NONE).unwrap();
    s.set_down(true);
    assert!(matches!(
        upload_one(&e, &s, &c, 1, b"k"),
        Done::Failed { retryable: true }
    ));
    assert_eq!(e.is_dirty(1, b"k").unwrap(), Some(true));
    assert!(!c.last_error().is_empty());
    let bad = MemoryStore::missing_bucket("nope");
    assert!(matches!(
        upload_one(&e, &bad, &c, 1, b"k"),
        Done::Failed { retryable: false }
    ));
    s.set_down(false);
    assert_eq!(upload_one(&e, &s, &c, 1, b"k"), Done::Clean);
}

/// An uploader over one engine and store, as the master's is.
struct Up(Arc<Engine>, Arc<Faulty<MemoryStore>>, Counters);

impl Uploader for Up {
    fn upload(&self, key: &Key) -> Option<Done> {
        Some(upload_one(&self.0, &*self.1, &self.2, key.0, &key.1))
    }
}

#[test]
fn the_worker_drains_in_order_and_answers_flushes() {
    let e = Arc::new(engine());
    let s = Arc::new(Faulty::new(MemoryStore::new("b")));
    let wb = WriteBack::new(1 << 20);
    let up: Arc<dyn Uploader> = Arc::new(Up(e.clone(), s.clone(), Counters::default()));
    wb.start(|| up);
    s.set_down(true);
    for round in 0..5u8 {
        for i in 0..20u8 {
            let key = format!("k{i}");
            e.write(1, key.as_bytes(), &whole(&[round, i]), &RejectRules::NONE)
                .unwrap();
            wb.dirty((1, key.into_bytes()), 2);
        }
    }
    assert_eq!(wb.gauges().objects, 20, "coalesced");
    // Store down: a flush times out naming what remains.
    let (tx, rx) = std::sync::mpsc::channel();
    let t = tx.clone();
    wb.flush(
        |_| true,
        Duration::from_millis(300),
        Box::new(move |end| t.send(end).unwrap()),
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        FlushEnd::TimedOut(20)
    );
    s.set_down(false);
    wb.flush(
        |_| true,
        Duration::from_secs(20),
        Box::new(move |end| tx.send(end).unwrap()),
    );
    match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
        // (Some may have been uploaded before the flush arrived.)
        FlushEnd::Done(f) => assert!(f.objects <= 20 && f.bytes == 2 * f.objects, "{f:?}"),
        other => panic!("flush did not finish: {other:?}"),
    }
    for i in 0..20u8 {
        assert_eq!(
            stored(&*s, &format!("k{i}")),
            Some(vec![4, i]),
            "the last value"
        );
    }
    assert_eq!(wb.gauges().objects, 0);
}
