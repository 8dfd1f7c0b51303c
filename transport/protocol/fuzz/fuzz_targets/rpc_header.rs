//! RPC header and whole-message decoders: never panic; what decodes re-encodes identically.
#![no_main]
use faascache_protocol::wire::{Header, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN]);
    }
    if let Ok((h, p)) = Header::decode_message(data) {
        assert_eq!(h.encode_message(p), data);
    }
});
