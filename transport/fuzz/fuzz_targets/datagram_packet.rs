//! Datagram packet decoder: never panics; what decodes re-encodes identically.
#![no_main]
use faascache_transport::datagram::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        assert_eq!(p.encode(), data);
    }
});
