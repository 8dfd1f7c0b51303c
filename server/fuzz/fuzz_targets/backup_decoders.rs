//! Feeds arbitrary bytes to the backup's decoders: the replica file header, the recovery-data
//! parser the recovery master runs (`for_each_recovery_entry`), and the backup's filter over a
//! replica image under a certificate. Corrupt input must be an error, never a panic, an
//! overflow or an oversized allocation.

#![no_main]

use faascache_server::backup::file::FileHeader;
use faascache_server::backup::for_each_recovery_entry;
use faascache_server::backup::recovery::{filter_recovery_entries, validate};
use faascache_storage::format::Certificate;
use faascache_protocol::msg::control::TabletRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = FileHeader::decode(data);
    let mut n = 0usize;
    let _ = for_each_recovery_entry(data, |_| n += 1);
    if data.len() < 8 {
        return;
    }
    let (head, image) = data.split_at(8);
    let Ok(cert) = Certificate::from_bytes(head) else {
        return;
    };
    let _ = validate(image, cert);
    let all = [TabletRange {
        table_id: u64::from(head[0]),
        start_hash: 0,
        end_hash: u64::MAX,
    }];
    let mut out = Vec::new();
    if filter_recovery_entries(image, cert, &all, &mut out).is_ok() {
        // What the backup sends must parse at the recovery master.
        for_each_recovery_entry(&out, |_| {}).expect("filtered entries parse");
    } else {
        assert!(out.is_empty(), "an invalid replica returned bytes");
    }
});
