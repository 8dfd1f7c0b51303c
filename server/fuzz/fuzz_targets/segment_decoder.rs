//! Feeds arbitrary bytes to the segment iterator (with and without a certificate) and to
//! every entry-body decoder. Any panic, overflow or oversized allocation is a bug: corrupt
//! replicas must produce a `FormatError`.

#![no_main]

use faascache_storage::format::{self, Certificate, EntryType, SegmentIterator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (head, seg) = data.split_at(9);
    let cert = Certificate::from_bytes(&head[..8]).ok().filter(|_| head[8] & 1 == 1);
    if let Ok(mut it) = SegmentIterator::new(seg, cert) {
        let mut n = 0;
        while let Some(e) = it.next() {
            n += 1;
            if e.is_err() || n > 100_000 {
                break;
            }
        }
    }
    // Every body decoder on the raw bytes.
    for ty in 1..=6u8 {
        if let Some(t) = EntryType::from_u8(ty) {
            let _ = format::decode_body(t, seg, 0);
        }
    }
    let _ = format::decode_entry_header(seg, 0);
});
