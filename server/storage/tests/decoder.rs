//! The segment decoder on random and mutated bytes: every input yields entries or a typed
//! error, never a panic (the stable-toolchain companion of the cargo-fuzz target in
//! `server/fuzz`).

use faascache_storage::format::{self, Certificate, EntryType, SegmentIterator};
use faascache_storage::{Engine, EngineConfig, RejectRules, TableOptions};
use proptest::prelude::*;

fn walk(bytes: &[u8], cert: Option<Certificate>) -> usize {
    let Ok(mut it) = SegmentIterator::new(bytes, cert) else {
        return 0;
    };
    let mut n = 0;
    while let Some(e) = it.next() {
        if e.is_err() {
            break;
        }
        n += 1;
    }
    n
}

fn real_segment() -> (Vec<u8>, Certificate) {
    let mut cfg = EngineConfig::with_memory(64 << 20);
    cfg.background_cleaner = false;
    let e = Engine::new(cfg).unwrap();
    e.create_table(1, TableOptions::default()).unwrap();
    for i in 0..50u32 {
        e.write(
            1,
            format!("key{i}").as_bytes(),
            &vec![i as u8; i as usize * 7],
            &RejectRules::NONE,
        )
        .unwrap();
        if i % 5 == 0 {
            e.remove(1, format!("key{}", i / 2).as_bytes(), &RejectRules::NONE)
                .unwrap();
        }
    }
    let (_, img, cert) = e.segment_images().pop().unwrap();
    (img, cert)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), len in any::<u32>(), crc in any::<u32>()) {
        walk(&bytes, None);
        walk(&bytes, Some(Certificate { length: len, checksum: crc }));
        for ty in 1..=6u8 {
            let _ = format::decode_body(EntryType::from_u8(ty).unwrap(), &bytes, 0);
        }
    }

    #[test]
    fn mutated_real_segments_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let (mut img, cert) = real_segment_cached();
        for (at, b) in edits {
            let i = at.index(img.len());
            img[i] = b;
        }
        let cut = cut.index(img.len() + 1);
        walk(&img[..cut], None);
        walk(&img, Some(cert));
    }
}

fn real_segment_cached() -> (Vec<u8>, Certificate) {
    use std::sync::OnceLock;
    static SEG: OnceLock<(Vec<u8>, Certificate)> = OnceLock::new();
    SEG.get_or_init(real_segment).clone()
}

#[test]
fn a_real_segment_decodes_completely() {
    let (img, cert) = real_segment();
    // header + digest + safe version + stats + 50 objects + 10 tombstones
    assert_eq!(walk(&img, Some(cert)), 3 + 50 + 10);
}
