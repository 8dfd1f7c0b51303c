//! Payload reader driven by the input itself: the first byte of each step picks the field type.
#![no_main]
use faascache_protocol::wire::codec::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ops, body) = data.split_at(data.len().min(16));
    let mut r = Reader::new(body);
    for &op in ops {
        let _ = match op % 8 {
            0 => r.u8().map(drop),
            1 => r.u16().map(drop),
            2 => r.u32().map(drop),
            3 => r.u64().map(drop),
            4 => r.bytes_u16().map(drop),
            5 => r.bytes_u32().map(drop),
            6 => r.bytes_u32_max(64).map(drop),
            _ => r.finish(),
        };
    }
});
