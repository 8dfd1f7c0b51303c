//! Every backup RPC decoder (`msg::backup`) on arbitrary bytes: a typed error or a value that
//! re-encodes to the same bytes, never a panic or an allocation sized by an unchecked count.
#![no_main]
use faascache_protocol::msg::backup::*;
use faascache_protocol::msg::Message;
use libfuzzer_sys::fuzz_target;

fn check<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(data: &'a [u8]) {
    if let Ok(m) = M::decode(data) {
        assert_eq!(m.to_vec(), data, "{m:?} does not re-encode to its input");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<BackupWriteRequest<'_>>(data);
    check::<BackupFreeRequest>(data);
    check::<BackupGetReplicasRequest>(data);
    check::<BackupGetReplicasResponse>(data);
    check::<BackupGetRecoveryDataRequest>(data);
    check::<BackupGetRecoveryDataResponse<'_>>(data);
    check::<BackupRecoveryDoneRequest>(data);
});
