//! Every backup RPC decoder (`msg::backup`) on arbitrary bytes: a typed error or a value that
//! re-encodes to the same bytes (plus a defaulted trailing epoch where the field is optional),
//! never a panic or an allocation sized by an unchecked count.
#![no_main]
use faascache_protocol::msg::backup::*;
use faascache_protocol::msg::Message;
use libfuzzer_sys::fuzz_target;

fn check<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(data: &'a [u8]) {
    if let Ok(m) = M::decode(data) {
        assert_eq!(m.to_vec(), data, "{m:?} does not re-encode to its input");
    }
}

/// For messages ending in an optional `u64` (the replica epoch; absent = 0): the input, or the
/// input without that field, which re-encodes with eight zero bytes appended.
fn check_trailing_u64<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(data: &'a [u8]) {
    if let Ok(m) = M::decode(data) {
        let again = m.to_vec();
        let padded = [data, &[0u8; 8][..]].concat();
        assert!(
            again == data || again == padded,
            "{m:?} does not re-encode to its input"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check_trailing_u64::<BackupWriteRequest<'_>>(data);
    check::<BackupFreeRequest>(data);
    check_trailing_u64::<BackupGetReplicasRequest>(data);
    check::<BackupGetReplicasResponse>(data);
    check::<BackupGetRecoveryDataRequest>(data);
    check::<BackupGetRecoveryDataResponse<'_>>(data);
    check::<BackupRecoveryDoneRequest>(data);
    check::<SetReplicaEpochRequest>(data);
});
